"""The blocking driver every pattern shares: links, their threads, binding and reconnecting.

The patterns' decisions live in their sans-IO cores (``reqrep.py``,
``pubsub.py``, ``pushpull.py``) and in :class:`~.link.LinkCore`; this module
only moves bytes and time between those cores and real Channels. An asyncio
driver replaces this module and nothing else.

Threads, and why each exists (all bounded; all joined by ``close()``):

* A **bound** node (Rep, Pub, Push) runs :func:`sockwire.serve`: each
  connection's server thread is that link's *reader* (``recv`` with the
  heartbeat deadline, messages into the core, pattern work such as a Rep
  handler). ``max_connections`` bounds them.
* A **connecting** node (Req, Sub, Pull) has one *supervisor* thread that
  connects (backoff with jitter between attempts, reset after a success),
  then reads the link like a server thread does, and reconnects when the
  link ends, until ``close()``.
* Each link with heartbeats or an outgoing queue has a *writer* thread: it
  sends queued messages (a Pub's per-subscriber queue) and a HEARTBEAT when
  nothing was sent for ``interval``. It is separate from the reader so that
  neither a slow handler nor a peer that does not read stops the other
  direction; a blocked write stalls only its own link.

Lock discipline: one lock per node (``_lock``) guards the cores and the link
table; Conditions on it wake writers (per link) and waiters (``_changed``).
Socket I/O and user code never run with the lock held.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from .. import client, secure
from ..address import Endpoint, parse
from ..channel import Channel, State
from ..client import DEFAULT_BACKOFF, Backoff, retryable
from ..codecs import Codec, get_codec
from ..errors import (
    ClosedError,
    ConnectError,
    ConnectionLost,
    InvalidOperation,
    PermissionDenied,
    ProtocolError,
    SockwireError,
    TimeoutError,
)
from ..framing import DEFAULT_MAX_SIZE
from ..server import DEFAULT_GRACE, Server, serve
from ..sock import Peer
from .link import LinkCore, Liveness
from .wire import Hello, Msg, Role

__all__ = ["DEFAULT_LIVENESS", "Link", "Node"]

log = logging.getLogger("sockwire")

DEFAULT_LIVENESS = Liveness()
#: A reader whose heartbeat deadline has passed still takes what is already
#: buffered before it declares the peer dead (it may have been busy).
_MIN_WAIT = 0.01
#: Most frames a writer takes from its queue for one write.
WRITE_BATCH = 256


class Link:
    """One live connection of a node: its Channel, LinkCore and writer thread."""

    __slots__ = ("channel", "closing", "codec", "cond", "core", "key", "peer", "ready", "writer")

    def __init__(
        self,
        key: int,
        channel: Channel,
        peer: Peer | None,
        core: LinkCore,
        codec: Codec,
        lock: threading.Lock,
    ) -> None:
        self.key = key
        self.channel = channel
        self.peer = peer
        self.core = core
        self.codec = codec
        self.cond = threading.Condition(lock)
        self.closing = False
        self.ready = False
        self.writer: threading.Thread | None = None

    def send(self, payload: bytes, deadline: float | None = None) -> None:
        """Write one message now (any thread; the Channel keeps frames whole).

        With ``deadline`` (a ``time.monotonic()`` value) the write is bounded
        too: TimeoutError leaves either nothing of the message sent (the link
        is as it was: see :meth:`broken`) or the link broken (its Channel
        shut down; the reader ends it and the node reconnects).
        """
        channel = self.channel
        if deadline is None:
            channel.send(payload)
            channel.flush()
        else:
            channel.send(payload, timeout=max(0.0, deadline - time.monotonic()))
        self.core.sent(time.monotonic())

    @property
    def broken(self) -> bool:
        """The Channel broke (a write cut in two, a reset): this link is done."""
        return self.channel.state in (State.BROKEN, State.CLOSED)

    def send_many(self, payloads: Iterable[bytes]) -> None:
        channel = self.channel
        channel.send_many(payloads)
        channel.flush()
        self.core.sent(time.monotonic())

    def __repr__(self) -> str:
        return f"<Link {self.key} {self.peer} {self.core.state}>"


class Node:
    """What Req, Rep, Pub, Sub, Push and Pull share: endpoint, links, lifecycle.

    Subclasses set ``role`` and implement the hooks; ``_lock`` is held where
    the hook says so.
    """

    role: ClassVar[Role]
    #: Links of this pattern need a writer thread even without heartbeats (Pub).
    needs_writer: ClassVar[bool] = False
    #: Datagram endpoints are allowed (Req/Rep only).
    datagrams: ClassVar[bool] = False

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        bind: bool,
        codec: str | Codec = "bytes",
        liveness: Liveness | None = DEFAULT_LIVENESS,
        backoff: Backoff = DEFAULT_BACKOFF,
        connect_timeout: float = 10.0,
        max_connections: int = 64,
        max_size: int = DEFAULT_MAX_SIZE,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        ep = parse(endpoint)
        self._ep = ep
        self._dgram = ep.type == socket.SOCK_DGRAM
        if self._dgram and not self.datagrams:
            raise InvalidOperation(
                f"{type(self).__name__} on {ep.display()}",
                "this pattern keeps per-peer state (subscriptions, credit) that needs a "
                "connection: use unix:, unix+seqpacket: or tcp://",
            )
        self.codec = get_codec(codec, authenticated=True)  # unknown names fail here
        if self.codec.needs_auth and not secure.can_authenticate(ep):
            raise PermissionDenied(
                f"{type(self).__name__} on {ep.display()} with codec=pickle",
                "pickle needs authenticated peers: add ?authfile=, use tls+tcp:// with "
                "?cafile=, or on UNIX ?allowed_uids=/?allowed_gids=",
            )
        self._codec_spec = codec
        self.liveness = liveness
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.max_size = max_size
        self.grace = grace
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._links: dict[int, Link] = {}
        self._next_key = 0
        self._closing = False
        self._closed = False
        self.connects = 0
        self.dead = 0
        self._server: Server | None = None
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._channel: Channel | None = None
        self._fatal: SockwireError | None = None
        self._connect_error: SockwireError | None = None  # the last failed attempt, for hints
        if bind:
            self._server = serve(
                ep,
                self._datagram if self._dgram else self._serve_link,
                max_connections=max_connections,
                max_size=max_size,
                grace=grace,
                # links are live by heartbeat (Liveness), and a subscriber that only
                # listens is not idle: no idle limit, no eviction; at the limit a new
                # link waits in the backlog. The first-message deadline (HELLO) stays.
                idle_timeout=None,
                evict=False,
            )
            self._server.start()
            self.endpoint = self._server.endpoint
        else:
            self.endpoint = str(ep)
            self._supervisor = threading.Thread(
                target=self._supervise,
                name=f"sockwire {self.role.name} {ep.display()}",
                daemon=True,
            )
            self._supervisor.start()

    # ---- hooks (subclasses)

    def _opening(self, link: Link) -> list[bytes]:
        """Messages to send right after HELLO on a new link (lock held)."""
        return []

    def _link_ready(self, link: Link) -> None:
        """The peer's HELLO arrived: the link is usable (lock held)."""

    def _handle(self, link: Link, msg: Msg) -> None:
        """One message from the peer (lock NOT held: may run user code or block)."""
        raise ProtocolError(
            f"a {type(msg).__name__.upper()} sent to a {self.role.name}",
            f"a {self.role.peer.name} never sends that",
        )

    def _link_lost(self, link: Link, error: BaseException | None) -> None:
        """The link ended (lock held)."""

    def _outgoing(self, link: Link) -> list[bytes]:
        """Queued messages the writer should send now, taken out (lock held)."""
        return []

    def _datagram(self, payload: bytes, peer: Peer) -> bytes | None:
        raise InvalidOperation(f"{self.role.name} over datagrams", "not supported")

    # ---- waiting

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate(self)`` is true (re-checked on every state change).

        Returns False if ``timeout`` passed first. Meant for tests and
        embedding (``pub.wait_for(lambda p: p.stats.subscribers == 3, 5)``).
        """
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def _wait(
        self, ready: Callable[[], bool], deadline: float | None, what: str, cond: Any = None
    ) -> None:
        """Wait (lock held) until ``ready()``; TimeoutError at ``deadline``; ClosedError."""
        cond = cond if cond is not None else self._changed
        while not ready():
            if self._closing:
                raise ClosedError(f"{what} on a closed {self.role.name}", "it was closed")
            if self._fatal is not None:
                raise self._fatal
            if deadline is None:
                cond.wait()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                hint = "the deadline passed"
                if self._connect_error is not None:
                    hint += f" (not connected: {self._connect_error})"
                raise TimeoutError(f"{what} on {self._ep.display()}", hint)
            cond.wait(left)

    # ---- links

    def _serve_link(self, channel: Channel, peer: Peer) -> None:
        """The server's handler: one bound link, read in the server's thread."""
        refused = self._run_link(channel, peer)
        if refused is not None:
            log.info("%s: link from %s refused: %s", self.role.name, peer, refused)

    def _run_link(self, channel: Channel, peer: Peer | None) -> BaseException | None:
        """Read one link until it ends: greeting, messages, heartbeat deadline.

        Returns why a link that never got past its greeting ended (else None).
        """
        greet = not self._dgram
        try:
            codec = get_codec(self._codec_spec, authenticated=channel.authenticated)
        except PermissionDenied as exc:
            log.warning("%s: link from %s refused: %s", self.role.name, peer, exc)
            return exc
        core = LinkCore(self.role, self.liveness, time.monotonic(), greet=greet)
        with self._lock:
            if self._closing:
                return None
            key = self._next_key
            self._next_key += 1
            link = Link(key, channel, peer, core, codec, self._lock)
            self._links[key] = link
            opening = ([core.hello()] if greet else []) + self._opening(link)
            if not greet:
                link.ready = True
                self._link_ready(link)
            self._changed.notify_all()
        error: BaseException | None = None
        try:
            if opening:
                link.send_many(opening)
            if greet and (self.liveness is not None or self.needs_writer):
                link.writer = threading.Thread(
                    target=self._write_loop,
                    args=(link,),
                    name=f"sockwire {self.role.name} writer {key}",
                    daemon=True,
                )
                link.writer.start()
            self._read_loop(link)
        except (ConnectionLost, ProtocolError, ClosedError, TimeoutError, ConnectError) as exc:
            error = exc
            log.debug("%s: link %s ended: %s", self.role.name, peer, exc)
        finally:
            with self._lock:
                link.closing = True
                core.close()
                self._links.pop(key, None)
                self._link_lost(link, error)
                link.cond.notify_all()
                self._changed.notify_all()
            channel.close()  # wakes a writer blocked in send
            if link.writer is not None:
                link.writer.join()
        return None if link.ready else error

    def _read_loop(self, link: Link) -> None:
        channel = link.channel
        core = link.core
        recv = channel.recv
        monotonic = time.monotonic
        while True:
            deadline = core.deadline()
            try:
                if deadline is None:
                    payload = recv()
                else:
                    payload = recv(max(_MIN_WAIT, deadline - monotonic()))
            except TimeoutError:
                if core.expired(monotonic()):
                    with self._lock:
                        self.dead += 1
                    raise ConnectionLost(
                        f"{self.role.name} link to {link.peer or self._ep.display()}",
                        f"the peer was silent for {core.dead_after:g} s (heartbeat timeout); "
                        "it is hung, stopped or cut off",
                    ) from None
                continue
            except ConnectError as exc:
                if self._dgram:  # ICMP unreachable for an earlier datagram: keep reading
                    log.debug("%s: %s", self.role.name, exc)
                    continue
                raise
            msg = core.receive(payload, monotonic())
            if msg is None:
                continue
            if isinstance(msg, Hello):
                with self._lock:
                    link.ready = True
                    self._connect_error = None  # connected and greeted: no excuse to show
                    self._link_ready(link)
                    self._changed.notify_all()
                continue
            self._handle(link, msg)

    def _write_loop(self, link: Link) -> None:
        core = link.core
        try:
            while True:
                with self._lock:
                    while True:
                        if link.closing:
                            return
                        frames = self._outgoing(link)
                        if frames:
                            break
                        now = time.monotonic()
                        beat = core.heartbeat(now)
                        if beat is not None:
                            frames = [beat]
                            break
                        due = core.next_heartbeat()
                        link.cond.wait(None if due is None else max(0.0, due - now))
                link.send_many(frames)
                with self._lock:
                    self._sent(link, frames)
        except SockwireError as exc:  # the reader sees the broken channel and ends the link
            log.debug("%s: writer for %s stopped: %s", self.role.name, link.peer, exc)

    def _sent(self, link: Link, frames: list[bytes]) -> None:
        """The writer wrote ``frames`` (lock held): room in its queue now."""

    def _kick(self, links: list[Link]) -> None:
        """Close links (outside the lock): their readers end them."""
        for link in links:
            link.channel.close()

    # ---- connecting side

    def _supervise(self) -> None:
        pauses = self.backoff.delays()
        ep = self._ep
        while not self._stop.is_set():
            try:
                channel = client.connect_once(
                    ep,
                    timeout=self.connect_timeout,
                    max_size=self.max_size,
                )
            except SockwireError as exc:
                fatal = not (retryable(ep, exc) or isinstance(exc, ConnectionLost))
                if fatal:
                    log.warning("%s: cannot connect to %s: %s", self.role.name, ep.display(), exc)
                with self._lock:
                    self._connect_error = exc
                    if fatal:
                        self._fatal = exc
                    self._changed.notify_all()
                if self._stop.wait(next(pauses)):
                    return
                continue
            with self._lock:
                if self._closing:
                    channel.close()
                    return
                self._channel = channel
                self._fatal = None
                self.connects += 1
            pauses = self.backoff.delays()
            try:
                refused = self._run_link(channel, None)
                if refused is not None:  # e.g. a REQ that reached a PUB: say so in timeouts
                    log.info("%s: link to %s refused: %s", self.role.name, ep.display(), refused)
                    with self._lock:
                        self._connect_error = translate_refusal(refused)
                        self._changed.notify_all()
            finally:
                with self._lock:
                    self._channel = None
                channel.close()
            if self._stop.wait(next(pauses)):  # a server that accepts and drops is not hammered
                return

    # ---- lifecycle

    def close(self, timeout: float | None = None) -> None:
        """Stop: links are closed (a bound node lets handlers finish within ``timeout``)."""
        with self._lock:
            if self._closed:
                return
            self._closing = True
            self._closed = True
            channel = self._channel
            for link in self._links.values():
                link.cond.notify_all()
            self._changed.notify_all()
            self._closing_hook()
        self._stop.set()
        if channel is not None:
            channel.close()
        if self._supervisor is not None:
            self._supervisor.join()
        if self._server is not None:
            self._server.shutdown(self.grace if timeout is None else timeout)

    def _closing_hook(self) -> None:
        """close() began (lock held): wake whatever the pattern has waiting."""

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        side = "bound" if self._server is not None else "connecting"
        state = "closed" if self._closed else f"{len(self._links)} links"
        return f"<{type(self).__name__} {side} {self.endpoint} {state}>"

    def _ready_links(self) -> list[Link]:
        return [link for link in self._links.values() if link.ready and not link.closing]


def translate_refusal(error: BaseException) -> SockwireError:
    """A link that ended during its greeting, as the error a waiting caller is shown."""
    if isinstance(error, SockwireError):
        return error
    return SockwireError("greeting", str(error))
