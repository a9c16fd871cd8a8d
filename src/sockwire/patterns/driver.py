"""The blocking driver every pattern shares: links, their threads, binding and reconnecting.

The patterns' decisions live in their sans-IO cores (``reqrep.py``,
``pubsub.py``, ``pushpull.py``) and in :class:`~.link.LinkCore`; what a node
does with them that never waits (the link table, the errors, the counts) is
:class:`~.base.NodeBase` and each pattern's ``*Base`` class, shared with the
asyncio driver. This module only moves bytes and time between those cores
and real Channels: threads, the lock, waiting on Conditions.

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
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import client
from ..address import Endpoint
from ..channel import Channel, State
from ..codecs import Codec
from ..connecting import DEFAULT_BACKOFF, Backoff
from ..errors import (
    ClosedError,
    ConnectError,
    ConnectionLost,
    PermissionDenied,
    ProtocolError,
    SockwireError,
    TimeoutError,
)
from ..framing import DEFAULT_MAX_SIZE
from ..server import DEFAULT_GRACE, Server, serve
from ..sock import Peer
from .base import DEFAULT_LIVENESS, MIN_WAIT, LinkBase, NodeBase, translate_refusal
from .link import LinkCore, Liveness
from .wire import Hello, Msg

__all__ = ["DEFAULT_LIVENESS", "Link", "Node", "translate_refusal"]

log = logging.getLogger("sockwire")

#: Most frames a writer takes from its queue for one write.
WRITE_BATCH = 256


class Link(LinkBase[Channel]):
    """One live connection of a node: its Channel, LinkCore and writer thread."""

    __slots__ = ("cond", "writer")

    def __init__(
        self,
        key: int,
        channel: Channel,
        peer: Peer | None,
        core: LinkCore,
        codec: Codec,
        lock: threading.Lock,
    ) -> None:
        super().__init__(key, channel, peer, core, codec)
        self.cond = threading.Condition(lock)
        self.writer: threading.Thread | None = None

    def wake_writer(self) -> None:
        self.cond.notify_all()

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


class Node(NodeBase[Link]):
    """What Req, Rep, Pub, Sub, Push and Pull share: endpoint, links, lifecycle.

    Subclasses set ``role`` and implement the hooks of :class:`~.base.NodeBase`;
    ``_lock`` is held where the hook says so.
    """

    _lock: threading.Lock
    _server: Server | None

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
        ep = self._configure(
            endpoint,
            codec=codec,
            liveness=liveness,
            backoff=backoff,
            connect_timeout=connect_timeout,
            max_size=max_size,
            grace=grace,
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
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

    # ---- the driver's part of NodeBase

    def _notify(self) -> None:
        self._changed.notify_all()

    def _now(self) -> float:
        return time.monotonic()

    def _kick(self, links: list[Link]) -> None:
        for link in links:
            link.channel.close()

    # ---- hooks (subclasses)

    def _handle(self, link: Link, msg: Msg) -> None:
        """One message from the peer (lock NOT held: may run user code or block)."""
        raise self._unexpected(msg)

    def _datagram(self, payload: bytes, peer: Peer) -> bytes | None:
        raise self._no_datagrams()

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
            self._check_waiting(what)
            if deadline is None:
                cond.wait()
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._expired(what)
            cond.wait(left)

    # ---- links

    def _serve_link(self, channel: Channel, peer: Peer) -> None:
        """The server's handler: one bound link, read in the server's thread."""
        refused = self._run_link(channel, peer)
        if refused is not None:
            self._link_refused(peer, refused)

    def _run_link(self, channel: Channel, peer: Peer | None) -> BaseException | None:
        """Read one link until it ends: greeting, messages, heartbeat deadline.

        Returns why a link that never got past its greeting ended (else None).
        """
        greet = not self._dgram
        codec = self._link_codec(channel, peer)
        if isinstance(codec, PermissionDenied):
            return codec
        core = LinkCore(self.role, self.liveness, time.monotonic(), greet=greet)
        with self._lock:
            if self._closing:
                return None
            link = Link(self._new_key(), channel, peer, core, codec, self._lock)
            opening = self._link_opened(link, greet)
        error: BaseException | None = None
        try:
            if opening:
                link.send_many(opening)
            if greet and (self.liveness is not None or self.needs_writer):
                link.writer = threading.Thread(
                    target=self._write_loop,
                    args=(link,),
                    name=f"sockwire {self.role.name} writer {link.key}",
                    daemon=True,
                )
                link.writer.start()
            self._read_loop(link)
        except (ConnectionLost, ProtocolError, ClosedError, TimeoutError, ConnectError) as exc:
            error = exc
            self._link_error(peer, exc)
        finally:
            with self._lock:
                self._link_ended(link, error)
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
                    payload = recv(max(MIN_WAIT, deadline - monotonic()))
            except TimeoutError:
                if core.expired(monotonic()):
                    raise self._silent(link) from None
                continue
            except ConnectError as exc:
                if self._dgram:
                    self._unreachable(exc)
                    continue
                raise
            msg = core.receive(payload, monotonic())
            if msg is None:
                continue
            if isinstance(msg, Hello):
                with self._lock:
                    self._greeted(link)
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
        except SockwireError as exc:
            self._writer_stopped(link, exc)

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
                self._connect_failed(exc)
                if self._stop.wait(next(pauses)):
                    return
                continue
            with self._lock:
                if not self._connected(channel):
                    channel.close()
                    return
            pauses = self.backoff.delays()
            try:
                refused = self._run_link(channel, None)
                if refused is not None:
                    self._refused(refused)
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
            if not self._begin_close():
                return
            channel = self._channel
        self._stop.set()
        if channel is not None:
            channel.close()
        if self._supervisor is not None:
            self._supervisor.join()
        if self._server is not None:
            self._server.shutdown(self.grace if timeout is None else timeout)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
