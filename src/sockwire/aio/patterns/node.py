"""The asyncio driver every pattern shares: links, their tasks, binding and reconnecting.

The asyncio twin of :mod:`sockwire.patterns.driver`: the decisions stay in
the sans-IO cores (``ReqCore``, ``PubCore``, ... in ``sockwire/patterns/``
and :class:`~sockwire.patterns.link.LinkCore` for greeting and liveness),
so the bytes, the state tables and the counts are the blocking patterns';
what a node does with them that never waits is shared too
(:class:`~sockwire.patterns.base.NodeBase` and the ``*Base`` class of each
pattern). This module only moves bytes and time between those cores and
asyncio Channels. Tasks instead of threads, and why each exists:

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
from collections.abc import Callable
from typing import Any

from ...address import Endpoint
from ...codecs import Codec
from ...connecting import DEFAULT_BACKOFF, Backoff
from ...errors import (
    ClosedError,
    ConnectError,
    ConnectionLost,
    PermissionDenied,
    ProtocolError,
    SockwireError,
    TimeoutError,
)
from ...framing import DEFAULT_MAX_SIZE
from ...patterns.base import DEFAULT_LIVENESS, MIN_WAIT, NO_LOCK, LinkBase, NodeBase
from ...patterns.link import LinkCore, Liveness
from ...patterns.wire import Hello, Msg
from ...serving import DEFAULT_GRACE
from ...sock import Peer
from ..channel import Channel
from ..client import connect_once
from ..server import Server

__all__ = ["Changes", "Link", "Node"]

log = logging.getLogger("sockwire")

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


class Link(LinkBase[Channel]):
    """One live connection of a node: its Channel, LinkCore and writer task."""

    __slots__ = ("wake", "writer")

    _KIND_NAME = "aio Link"

    def __init__(
        self, key: int, channel: Channel, peer: Peer | None, core: LinkCore, codec: Codec
    ) -> None:
        super().__init__(key, channel, peer, core, codec)
        self.wake = Changes()  # the writer's: something to send
        self.writer: asyncio.Task[None] | None = None

    def wake_writer(self) -> None:
        self.wake.notify()

    async def send(self, payload: bytes, timeout: float | None = None) -> None:
        """Queue one message (waits for room in the Channel, up to ``timeout``)."""
        await self.channel.send(payload, timeout)
        self.core.sent(asyncio.get_running_loop().time())

    def send_nowait(self, payload: bytes) -> None:
        """Queue a small control message that must not wait (credit, READY)."""
        self.channel.send_nowait(payload)
        self.core.sent(asyncio.get_running_loop().time())


class Node(NodeBase[Link]):
    """What the asyncio Req, Rep, Pub, Sub, Push and Pull share (see the module docstring).

    Made inside a running loop (it starts its server or supervisor at
    once); ``await node.close()`` or ``async with node:`` stops it.
    """

    _KIND_PREFIX = "aio."
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
        max_connections: int = 10_000,
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
        self._loop = asyncio.get_running_loop()
        self._lock = NO_LOCK
        self._changes = Changes()
        self._supervisor: asyncio.Task[None] | None = None
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

    # ---- the driver's part of NodeBase

    def _notify(self) -> None:
        self._changes.notify()

    def _now(self) -> float:
        return self._loop.time()

    def _kick(self, links: list[Link]) -> None:
        for link in links:
            link.channel.abort()

    # ---- hooks (subclasses)

    async def _handle(self, link: Link, msg: Msg) -> None:
        """One message from the peer (may run user code)."""
        raise self._unexpected(msg)

    async def _datagram(self, payload: bytes, peer: Peer) -> bytes | None:
        raise self._no_datagrams()

    # ---- waiting

    async def wait_for(
        self, predicate: Callable[[Any], bool], timeout: float | None = None
    ) -> bool:
        """Until ``predicate(self)`` is true (re-checked on every state change).

        Returns False if ``timeout`` passed first. Meant for tests and
        embedding (``await pub.wait_for(lambda p: p.stats.subscribers == 3, 5)``).
        """
        deadline = self._deadline(timeout)
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
            self._check_waiting(what)
            if not await changes.wait(deadline):
                if ready():
                    return
                raise self._expired(what)

    # ---- links

    async def _serve_link(self, channel: Channel, peer: Peer) -> None:
        """The server's handler: one bound link, read in the connection's task."""
        refused = await self._run_link(channel, peer)
        if refused is not None:
            self._link_refused(peer, refused)

    async def _run_link(self, channel: Channel, peer: Peer | None) -> BaseException | None:
        """Read one link until it ends: greeting, messages, heartbeat deadline.

        Returns why a link that never got past its greeting ended (else None).
        """
        greet = not self._dgram
        codec = self._link_codec(channel, peer)
        if isinstance(codec, PermissionDenied):
            return codec
        if self._closing:
            return None
        core = LinkCore(self.role, self.liveness, self._loop.time(), greet=greet)
        link = Link(self._new_key(), channel, peer, core, codec)
        opening = self._link_opened(link, greet)
        error: BaseException | None = None
        try:
            for payload in opening:
                await link.send(payload)
            if greet and (self.liveness is not None or self.needs_writer):
                link.writer = self._loop.create_task(self._write_loop(link))
            await self._read_loop(link)
        except (ConnectionLost, ProtocolError, ClosedError, TimeoutError, ConnectError) as exc:
            error = exc
            self._link_error(peer, exc)
        finally:
            self._link_ended(link, error)
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
                    payload = await channel.recv(max(MIN_WAIT, deadline - loop.time()))
            except TimeoutError:
                if core.expired(loop.time()):
                    raise self._silent(link) from None
                continue
            except ConnectError as exc:
                if self._dgram:
                    self._unreachable(exc)
                    continue
                raise
            msg = core.receive(payload, loop.time())
            if msg is None:
                continue
            if isinstance(msg, Hello):
                self._greeted(link)
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
        except SockwireError as exc:
            self._writer_stopped(link, exc)

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
                self._connect_failed(exc)
                await asyncio.sleep(next(pauses))  # a bounded pause between attempts
                continue
            if not self._connected(channel):  # close() came during the connect
                await channel.close()
                return
            pauses = self.backoff.delays()
            try:
                refused = await self._run_link(channel, None)
                if refused is not None:
                    self._refused(refused)
            finally:
                self._channel = None
                channel.abort()
            await asyncio.sleep(next(pauses))  # a server that accepts and drops is not hammered

    # ---- lifecycle

    async def close(self, timeout: float | None = None) -> None:
        """Stop: links are closed (a bound node lets handlers finish within ``timeout``)."""
        if not self._begin_close():
            return
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        if self._server is not None:
            await self._server.shutdown(self.grace if timeout is None else timeout)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
