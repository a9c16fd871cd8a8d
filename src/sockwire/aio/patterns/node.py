"""The asyncio driver every pattern shares: links, their tasks, binding and reconnecting.

The asyncio twin of :mod:`sockwire.patterns.driver`: the decisions stay in
the sans-IO cores (``ReqCore``, ``PubCore``, ... in ``sockwire/patterns/``
and :class:`~sockwire.patterns.link.LinkCore` for greeting and liveness),
so the bytes, the state tables and the counts are the blocking patterns';
this module only moves bytes and time between those cores and asyncio
Channels. Tasks instead of threads, and why each exists:

* A **bound** node (Rep, Pub, Push) runs :func:`sockwire.aio.serve`: each
  connection's handler task is that link's *reader* (heartbeat deadline,
  messages into the core, pattern work such as a Rep handler).
* A **connecting** node (Req, Sub, Pull) has one *supervisor* task that
  connects (backoff with jitter, reset after a success), reads the link as
  a server task does, and reconnects when it ends, until ``close()``.
* Each link with heartbeats or an outgoing queue has a *writer* task: it
  sends queued messages (a Pub's per-subscriber queue) and a HEARTBEAT when
  nothing was sent for ``interval``; a peer that does not read stalls only
  its own writer (the Channel's send waits for room).

Waiting (a request for its reply, a publisher for room, a subscriber for
READY) is a per-waiter Future woken on every state change, so cancelling a
waiter cancels nothing shared. Nothing is taken out of a queue before the
last ``await`` of a call, so a cancelled call loses no message.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, ClassVar

from ... import secure
from ...address import Endpoint, parse
from ...client import DEFAULT_BACKOFF, Backoff, retryable
from ...codecs import Codec, get_codec
from ...errors import (
    ClosedError,
    ConnectError,
    ConnectionLost,
    InvalidOperation,
    PermissionDenied,
    ProtocolError,
    SockwireError,
    TimeoutError,
)
from ...framing import DEFAULT_MAX_SIZE
from ...patterns.driver import DEFAULT_LIVENESS, translate_refusal
from ...patterns.link import LinkCore, Liveness
from ...patterns.wire import Hello, Msg, Role
from ...server import DEFAULT_GRACE
from ...sock import Peer
from ..channel import Channel
from ..client import connect_once
from ..server import Server

__all__ = ["Changes", "Link", "Node"]

log = logging.getLogger("sockwire")

#: A reader whose heartbeat deadline has passed still takes what is already
#: queued before it declares the peer dead (it may have been busy).
_MIN_WAIT = 0.01
_TIMED_OUT = 1


class Changes:
    """Wake-ups for tasks that wait until something is true (each has its own Future)."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[Any]] = []

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self, deadline: float | None) -> bool:
        """Until the next :meth:`notify`; False when ``deadline`` (``loop.time()``) came first."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._waiters.append(fut)
        timer = None
        if deadline is not None:
            timer = loop.call_at(deadline, _expire, fut)
        try:
            return await fut is not _TIMED_OUT
        finally:
            if timer is not None:
                timer.cancel()
            if fut in self._waiters:
                self._waiters.remove(fut)


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(_TIMED_OUT)


class Link:
    """One live connection of a node: its Channel, LinkCore and writer task."""

    __slots__ = ("channel", "closing", "codec", "core", "key", "peer", "ready", "wake", "writer")

    def __init__(
        self, key: int, channel: Channel, peer: Peer | None, core: LinkCore, codec: Codec
    ) -> None:
        self.key = key
        self.channel = channel
        self.peer = peer
        self.core = core
        self.codec = codec
        self.wake = Changes()  # the writer's: something to send
        self.closing = False
        self.ready = False
        self.writer: asyncio.Task[None] | None = None

    async def send(self, payload: bytes, timeout: float | None = None) -> None:
        """Queue one message (waits for room in the Channel, up to ``timeout``)."""
        await self.channel.send(payload, timeout)
        self.core.sent(asyncio.get_running_loop().time())

    def send_nowait(self, payload: bytes) -> None:
        """Queue a small control message that must not wait (credit, READY)."""
        self.channel.send_nowait(payload)
        self.core.sent(asyncio.get_running_loop().time())

    def __repr__(self) -> str:
        return f"<aio Link {self.key} {self.peer} {self.core.state}>"


class Node:
    """What the asyncio Req, Rep, Pub, Sub, Push and Pull share (see the module docstring).

    Made inside a running loop (it starts its server or supervisor at
    once); ``await node.close()`` or ``async with node:`` stops it.
    """

    role: ClassVar[Role]
    #: Links of this pattern need a writer task even without heartbeats (Pub).
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
        max_connections: int = 10_000,
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
        self._loop = asyncio.get_running_loop()
        self._codec_spec = codec
        self.liveness = liveness
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.max_size = max_size
        self.grace = grace
        self._changes = Changes()
        self._links: dict[int, Link] = {}
        self._next_key = 0
        self._closing = False
        self._closed = False
        self.connects = 0
        self.dead = 0
        self._server: Server | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._channel: Channel | None = None
        self._fatal: SockwireError | None = None
        self._connect_error: SockwireError | None = None  # the last failed attempt, for hints
        if bind:
            self._server = Server(
                ep,
                self._datagram if self._dgram else self._serve_link,
                max_connections=max_connections,
                max_size=max_size,
                grace=grace,
                # as the blocking driver: links are live by heartbeat (Liveness), and a
                # subscriber that only listens is not idle: no idle limit. The
                # first-message deadline (HELLO) stays.
                idle_timeout=None,
            )
            self._server.start()
            self.endpoint = self._server.endpoint
        else:
            self.endpoint = str(ep)
            self._supervisor = self._loop.create_task(
                self._supervise(), name=f"sockwire {self.role.name} {ep.display()}"
            )

    # ---- hooks (subclasses)

    def _opening(self, link: Link) -> list[bytes]:
        """Messages to send right after HELLO on a new link."""
        return []

    def _link_ready(self, link: Link) -> None:
        """The peer's HELLO arrived: the link is usable."""

    async def _handle(self, link: Link, msg: Msg) -> None:
        """One message from the peer (may run user code)."""
        raise ProtocolError(
            f"a {type(msg).__name__.upper()} sent to a {self.role.name}",
            f"a {self.role.peer.name} never sends that",
        )

    def _link_lost(self, link: Link, error: BaseException | None) -> None:
        """The link ended."""

    def _outgoing(self, link: Link) -> list[bytes]:
        """Queued messages the writer should send now, taken out."""
        return []

    async def _datagram(self, payload: bytes, peer: Peer) -> bytes | None:
        raise InvalidOperation(f"{self.role.name} over datagrams", "not supported")

    # ---- waiting

    async def wait_for(
        self, predicate: Callable[[Any], bool], timeout: float | None = None
    ) -> bool:
        """Until ``predicate(self)`` is true (re-checked on every state change).

        Returns False if ``timeout`` passed first. Meant for tests and
        embedding (``await pub.wait_for(lambda p: p.stats.subscribers == 3, 5)``).
        """
        deadline = None if timeout is None else self._loop.time() + timeout
        while not predicate(self):
            if not await self._changes.wait(deadline):
                return predicate(self)
        return True

    async def _wait(
        self,
        ready: Callable[[], bool],
        deadline: float | None,
        what: str,
        changes: Changes | None = None,
    ) -> None:
        """Until ``ready()``; TimeoutError at ``deadline``; ClosedError; the fatal error."""
        changes = changes if changes is not None else self._changes
        while not ready():
            if self._closing:
                raise ClosedError(f"{what} on a closed {self.role.name}", "it was closed")
            if self._fatal is not None:
                raise self._fatal
            if not await changes.wait(deadline):
                if ready():
                    return
                hint = "the deadline passed"
                if self._connect_error is not None:
                    hint += f" (not connected: {self._connect_error})"
                raise TimeoutError(f"{what} on {self._ep.display()}", hint)

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else self._loop.time() + timeout

    def _left(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - self._loop.time())

    # ---- links

    async def _serve_link(self, channel: Channel, peer: Peer) -> None:
        """The server's handler: one bound link, read in the connection's task."""
        refused = await self._run_link(channel, peer)
        if refused is not None:
            log.info("%s: link from %s refused: %s", self.role.name, peer, refused)

    async def _run_link(self, channel: Channel, peer: Peer | None) -> BaseException | None:
        """Read one link until it ends: greeting, messages, heartbeat deadline.

        Returns why a link that never got past its greeting ended (else None).
        """
        greet = not self._dgram
        try:
            codec = get_codec(self._codec_spec, authenticated=channel.authenticated)
        except PermissionDenied as exc:
            log.warning("%s: link from %s refused: %s", self.role.name, peer, exc)
            return exc
        if self._closing:
            return None
        core = LinkCore(self.role, self.liveness, self._loop.time(), greet=greet)
        key = self._next_key
        self._next_key += 1
        link = Link(key, channel, peer, core, codec)
        self._links[key] = link
        opening = ([core.hello()] if greet else []) + self._opening(link)
        if not greet:
            link.ready = True
            self._link_ready(link)
        self._changes.notify()
        error: BaseException | None = None
        try:
            for payload in opening:
                await link.send(payload)
            if greet and (self.liveness is not None or self.needs_writer):
                link.writer = self._loop.create_task(self._write_loop(link))
            await self._read_loop(link)
        except (ConnectionLost, ProtocolError, ClosedError, TimeoutError, ConnectError) as exc:
            error = exc
            log.debug("%s: link %s ended: %s", self.role.name, peer, exc)
        finally:
            link.closing = True
            core.close()
            self._links.pop(key, None)
            self._link_lost(link, error)
            link.wake.notify()
            self._changes.notify()
            try:
                if link.writer is not None:
                    link.writer.cancel()
                    await asyncio.wait({link.writer})
            finally:
                await channel.close()  # queued frames go out (bounded by close_timeout)
        return None if link.ready else error

    async def _read_loop(self, link: Link) -> None:
        channel = link.channel
        core = link.core
        loop = self._loop
        while True:
            deadline = core.deadline()
            try:
                if deadline is None:
                    payload = await channel.recv()
                else:
                    payload = await channel.recv(max(_MIN_WAIT, deadline - loop.time()))
            except TimeoutError:
                if core.expired(loop.time()):
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
            msg = core.receive(payload, loop.time())
            if msg is None:
                continue
            if isinstance(msg, Hello):
                link.ready = True
                self._connect_error = None  # connected and greeted: no excuse to show
                self._link_ready(link)
                self._changes.notify()
                continue
            await self._handle(link, msg)

    async def _write_loop(self, link: Link) -> None:
        core = link.core
        loop = self._loop
        try:
            while not link.closing:
                frames = self._outgoing(link)
                if not frames:
                    beat = core.heartbeat(loop.time())
                    if beat is not None:
                        frames = [beat]
                if not frames:
                    await link.wake.wait(core.next_heartbeat())
                    continue
                for frame in frames:
                    await link.send(frame)
                self._sent(link, frames)
        except SockwireError as exc:  # the reader sees the broken channel and ends the link
            log.debug("%s: writer for %s stopped: %s", self.role.name, link.peer, exc)

    def _sent(self, link: Link, frames: list[bytes]) -> None:
        """The writer queued ``frames``: room in its queue now."""

    def _kick(self, links: list[Link]) -> None:
        """Close links: their readers end them."""
        for link in links:
            link.channel.abort()

    def _ready_links(self) -> list[Link]:
        return [link for link in self._links.values() if link.ready and not link.closing]

    # ---- connecting side

    async def _supervise(self) -> None:
        pauses = self.backoff.delays()
        ep = self._ep
        while True:
            if self._closing:
                return
            try:
                channel = await connect_once(
                    ep, timeout=self.connect_timeout, max_size=self.max_size
                )
            except SockwireError as exc:
                fatal = not (retryable(ep, exc) or isinstance(exc, ConnectionLost))
                if fatal:
                    log.warning("%s: cannot connect to %s: %s", self.role.name, ep.display(), exc)
                self._connect_error = exc
                if fatal:
                    self._fatal = exc
                self._changes.notify()
                await asyncio.sleep(next(pauses))  # a bounded pause between attempts
                continue
            if self._is_closing():  # close() came during the connect
                await channel.close()
                return
            self._channel = channel
            self._fatal = None
            self.connects += 1
            pauses = self.backoff.delays()
            try:
                refused = await self._run_link(channel, None)
                if refused is not None:  # e.g. a REQ that reached a PUB: say so in timeouts
                    log.info("%s: link to %s refused: %s", self.role.name, ep.display(), refused)
                    self._connect_error = translate_refusal(refused)
                    self._changes.notify()
            finally:
                self._channel = None
                channel.abort()
            await asyncio.sleep(next(pauses))  # a server that accepts and drops is not hammered

    # ---- lifecycle

    async def close(self, timeout: float | None = None) -> None:
        """Stop: links are closed (a bound node lets handlers finish within ``timeout``)."""
        if self._closed:
            return
        self._closing = True
        self._closed = True
        for link in self._links.values():
            link.wake.notify()
        self._changes.notify()
        self._closing_hook()
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        if self._server is not None:
            await self._server.shutdown(self.grace if timeout is None else timeout)

    def _closing_hook(self) -> None:
        """close() began: wake whatever the pattern has waiting."""

    def _is_closing(self) -> bool:
        return self._closing

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        side = "bound" if self._server is not None else "connecting"
        state = "closed" if self._closed else f"{len(self._links)} links"
        return f"<aio.{type(self).__name__} {side} {self.endpoint} {state}>"
