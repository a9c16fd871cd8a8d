"""serve(endpoint, handler) for asyncio: thousands of connections in one thread.

The blocking :func:`sockwire.serve`, awaitable, with the same endpoints,
options, statistics and errors (the socket is opened, the codec and the
security files checked by the blocking server's own code). A connection
costs a task and a Channel, not a thread, so ``max_connections`` defaults to
10,000; the process's descriptor limit is the real bound (accept then
reports EMFILE, and the server backs off as the blocking one does).

What happens to a new connection, in order (nothing is read before step 3)::

    1. accept(2)                        in the listener's reader callback, up to 64 per
                                        wake-up; at max_connections the callback is
                                        removed and new clients wait in the backlog
    2. peer filter                      ?allowed_uids=/?allowed_gids= and peer_filter=:
                                        a refused peer is closed unread (SO_PEERCRED)
    3. aio.secure.secure_server()       TLS, the HMAC handshake; bounded by
                                        handshake_timeout, in the connection's own task
    4. aio.Channel                      codec, framing, max_size; read limits: idle
                                        timeout, frame deadline; drained at shutdown
    5. await handler(channel, peer)     then channel.close()

accept(2) errors: :mod:`sockwire.accepting` decides, as for the blocking
server and the CLI (its table lists the errnos and why): skip the
connection that died, back off ``ACCEPT_BACKOFF`` on EMFILE/ENFILE/ENOBUFS/
ENOMEM (or until one of our connections closes), end ``serve_forever``
with anything else.

Datagram endpoints (``unix+dgram:``, ``udp://``) call ``handler(message,
peer)`` per datagram (a coroutine function or a plain one) and send back
what it returns (None: nothing), one datagram at a time, as the blocking
server does; a reply the sender's queue cannot take is dropped and counted.

**Limits**, with the blocking server's defaults (:mod:`sockwire.admission`):
a connection with no whole message ``first_message_timeout`` (10 s) after
accept is closed (``stats.no_first_message``), one silent ``idle_timeout``
(300 s) between messages ends, one whose message does not finish within
``frame_deadline`` (60 s) breaks. With 10,000 slots there is no eviction
at the limit: new clients wait in the backlog.

**Shutdown** (:meth:`Server.shutdown`): the listener is closed (a UNIX socket
file removed); a ``recv`` waiting between messages ends (ConnectionLost,
``async for`` stops) while one in the middle of a message still gets it
whole; handlers get ``grace`` seconds, then their tasks are cancelled and
their Channels closed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..accepting import ACCEPT_BACKOFF, on_accept_error
from ..address import Endpoint
from ..admission import DEFAULT_IDLE_TIMEOUT, FIRST_MESSAGE_TIMEOUT
from ..channel import ReadLimits
from ..codecs import get_codec
from ..errors import ClosedError, InvalidOperation, SockwireError
from ..framing import DEFAULT_MAX_SIZE
from ..packet import MAX_PACKET
from ..serving import (
    ABORT_WAIT,
    DEFAULT_GRACE,
    DROPPED,
    ServerBase,
    datagram_ancillary,
    datagram_core,
    recv_datagram,
)
from ..sock import Peer, Socket
from .channel import Channel
from .client import Opening
from .loops import read_buffer
from .secure import secure_server

__all__ = ["DEFAULT_MAX_CONNECTIONS", "Server", "serve"]

log = logging.getLogger("sockwire")

#: Connections one asyncio server holds at once unless told otherwise.
DEFAULT_MAX_CONNECTIONS = 10_000
#: accept(2) calls per readiness callback (the loop's other work goes on between).
ACCEPT_BATCH = 64
#: Datagrams read per readiness before the loop's other work gets a turn.
DATAGRAM_BATCH = 64

Handler = Callable[[Any, Peer], Any]


class _Conn:
    """One accepted connection: its task, and its socket/Channel for shutdown."""

    __slots__ = ("channel", "peer", "sock", "task")

    def __init__(self, sock: Socket, peer: Peer) -> None:
        self.sock = sock
        self.peer = peer
        self.channel: Channel | None = None
        self.task: asyncio.Task[None] | None = None


class Server(ServerBase):
    """A listening (or bound) endpoint and its handler tasks; build it with :func:`serve`.

    Accepting starts with :meth:`start` (``serve()`` calls it);
    ``await server.serve_forever()`` waits until :meth:`shutdown`;
    ``async with`` shuts down (grace period ``grace``) on exit.
    """

    _KIND_NAME = "aio.Server"
    _DEFAULT_NAME = "sockwire-aio-server"

    def __init__(
        self,
        endpoint: Endpoint | str,
        handler: Handler,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        frame_deadline: float | None = 60.0,
        peer_filter: Callable[[Peer], bool] | None = None,
        codec: str | Any = "bytes",
        framing: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        handshake_timeout: float = 10.0,
        backlog: int | None = None,
        grace: float = DEFAULT_GRACE,
        name: str | None = None,
        first_message_timeout: float | None = FIRST_MESSAGE_TIMEOUT,
    ) -> None:
        self._configure(
            endpoint,
            handler,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            frame_deadline=frame_deadline,
            first_message_timeout=first_message_timeout,
            codec=codec,
            framing=framing,
            max_size=max_size,
            handshake_timeout=handshake_timeout,
            grace=grace,
        )
        self._conns: dict[int, _Conn] = {}
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._backoff: asyncio.TimerHandle | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._error: SockwireError | None = None
        self._datagram_task: asyncio.Task[None] | None = None
        self._datagram_ready = asyncio.Event()
        self._open(backlog, name, peer_filter)

    def _opened(self) -> None:
        self._sock.setblocking(False)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown(self.grace)

    # ---- running

    def start(self) -> Server:
        """Start accepting (or receiving datagrams) on the running loop; returns self."""
        loop = asyncio.get_running_loop()
        if self._stopping:
            raise ClosedError(f"start {self.name}", "the server was shut down")
        if self._loop is not None:
            raise InvalidOperation(f"start {self.name}", "it is already running")
        self._loop = loop
        self._stopped = loop.create_future()
        if self.kind == "dgram":
            self._datagram_task = loop.create_task(self._datagram_loop(), name=self.name)
        else:
            self._resume_accepting()
        return self

    async def serve_forever(self) -> None:
        """Wait until :meth:`shutdown` (raises what ended the accept loop, if anything)."""
        if self._loop is None:
            self.start()
        assert self._stopped is not None
        await asyncio.shield(self._stopped)
        if self._error is not None:
            raise self._error

    def _resume_accepting(self) -> None:
        if not self._accepting and not self._stopping and self._loop is not None:
            self._loop.add_reader(self._sock.fd, self._on_acceptable)
            self._accepting = True

    def _pause_accepting(self) -> None:
        if self._accepting:
            assert self._loop is not None
            self._loop.remove_reader(self._sock.fd)
            self._accepting = False

    def _on_acceptable(self) -> None:
        listener = self._sock
        stats = self.stats
        for _ in range(ACCEPT_BATCH):
            if stats.active >= self.max_connections:
                self._pause_accepting()  # the bound, before accept(): the backlog waits
                return
            stats.accept_attempts += 1
            try:
                conn, peer = self._accept(listener)
            except SockwireError as exc:
                action = on_accept_error(exc)
                if action == "again" or self._stopping:
                    return  # taken by another process, or a refused peer was the only one
                if action == "backoff":
                    self._accept_backoff(exc)
                    return
                if action == "skip":
                    log.debug("%s: a connection died before accept: %s", self.name, exc)
                    continue
                log.exception("%s: accept failed, the server stops", self.name)
                self._error = exc
                self._pause_accepting()
                if self._stopped is not None and not self._stopped.done():
                    self._stopped.set_result(None)
                return
            stats.accepted += 1
            self._start_connection(conn, peer)

    def _accept_backoff(self, exc: SockwireError) -> None:
        self._count_backoff(exc)
        self._pause_accepting()
        assert self._loop is not None
        self._backoff = self._loop.call_later(ACCEPT_BACKOFF, self._end_backoff)

    def _end_backoff(self) -> None:
        self._backoff = None
        self._resume_accepting()

    def _start_connection(self, conn: Socket, peer: Peer) -> None:
        assert self._loop is not None
        record = _Conn(conn, peer)
        key = self._next_id
        self._next_id += 1
        self._conns[key] = record
        self._started()
        record.task = self._loop.create_task(self._run_connection(key, record))
        if self.first_message_timeout is not None and self.kind != "dgram":
            self._loop.call_later(self.first_message_timeout, self._first_message_due, key)

    def _first_message_due(self, key: int) -> None:
        """The first-message deadline: a connection without a whole message by now goes."""
        record = self._conns.get(key)
        if record is None or (record.channel is not None and not record.channel.fresh):
            return
        self.stats.no_first_message += 1
        log.info(
            "%s: %s sent no whole message within %g s (first-message deadline); closed",
            self.name,
            record.peer,
            self.first_message_timeout,
        )
        if record.task is not None:
            record.task.cancel()

    async def _run_connection(self, key: int, record: _Conn) -> None:
        channel: Channel | None = None
        try:
            try:
                sock, authenticated = await secure_server(
                    record.sock, self._ep, timeout=self.handshake_timeout
                )
            except SockwireError as exc:
                self._handshake_failed(record.peer, exc)
                return
            record.sock = sock
            try:
                channel = Channel.from_socket(
                    sock,
                    framing=self.framing,
                    codec=self.codec,
                    authenticated=authenticated,
                    max_size=self.max_size,
                    label=self._label(record.peer),
                )
            except SockwireError as exc:
                self._channel_refused(record.peer, exc)
                return
            channel.set_read_limits(ReadLimits(self.idle_timeout, self.frame_deadline))
            record.channel = channel
            if self._stopping:
                channel.drain()
            result = self.handler(channel, record.peer)
            if inspect.isawaitable(result):
                await result
            self.stats.handled += 1
        except ClosedError as exc:
            self._handler_stopped(record.peer, exc)
        except DROPPED as exc:
            self._dropped(record.peer, exc)
        except asyncio.CancelledError:
            log.debug("%s: handler for %s cancelled", self.name, record.peer)
            raise
        except Exception:  # noqa: BLE001  # counted, logged with its traceback
            self._handler_failed(record.peer)
        finally:
            if channel is not None:
                await channel.close()  # closes the socket even when cancelled
            else:
                record.sock.close()
            self._finished(key)

    def _finished(self, key: int) -> None:
        if self._conns.pop(key, None) is not None:
            self.stats.active -= 1
        if self._backoff is not None:  # a descriptor came free: try again now
            self._backoff.cancel()
            self._backoff = None
        if not self._stopping:
            self._resume_accepting()

    # ---- datagrams

    async def _datagram_loop(self) -> None:
        """Receive, filter, decode, call the handler, reply: one datagram at a time."""
        sock = self._sock
        raw = sock.raw
        loop = asyncio.get_running_loop()
        codec = get_codec(self.codec, authenticated=False)
        core = self._datagram_core = datagram_core(sock, self.framing, self.max_size)
        anc_size = datagram_ancillary(sock)  # SO_PASSCRED: on since the socket was opened
        view = memoryview(read_buffer())[:MAX_PACKET]
        ready = self._datagram_ready
        loop.add_reader(sock.fd, ready.set)
        try:
            while True:
                await ready.wait()
                ready.clear()
                for _ in range(DATAGRAM_BATCH):
                    if self._stopping:
                        return
                    try:
                        # credentials, and every fd a sender passed closed before
                        # anything else happens
                        size, flags, creds, address = recv_datagram(raw, view, anc_size)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        self._receive_failed(exc)
                        continue
                    received = self._datagram_in(core, codec, view, size, flags, creds, address)
                    if received is not None:
                        peer, msg = received
                        try:
                            reply = self.handler(msg, peer)
                            if inspect.isawaitable(reply):
                                reply = await reply
                        except Exception:  # noqa: BLE001  # counted, logged with its traceback
                            self._datagram_failed(peer)
                        else:
                            self._datagram_out(core, codec, reply, peer)
                    ready.set()  # read on until EAGAIN
        finally:
            if not sock.closed:
                loop.remove_reader(sock.fd)

    # ---- stopping

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Stop accepting; give handlers ``timeout`` s (default ``grace``) to finish; close.

        Returns True when every handler returned within the grace period.
        Idempotent; safe from a handler's own task.
        """
        grace = self.grace if timeout is None else timeout
        if self._closed:
            return self.stats.active == 0
        self._stopping = True
        self._pause_accepting()
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        me = asyncio.current_task()
        dgram = self._datagram_task
        if dgram is not None and dgram is not me:
            # the loop leaves after the handler call in progress, which gets the
            # grace period like any handler
            self._datagram_ready.set()
            _, late = await asyncio.wait({dgram}, timeout=max(0.0, grace) + ABORT_WAIT)
            if late:
                log.error("%s: the datagram handler did not return in time", self.name)
                dgram.cancel()
                await asyncio.wait({dgram})
        self._sock.close()  # no new connections; the socket file is removed
        for record in list(self._conns.values()):
            if record.channel is not None:
                record.channel.drain()
        clean = await self._wait_handlers(grace, me)
        if not clean:
            left = [c for c in self._conns.values() if c.task is not me]
            self._aborting([record.peer for record in left], grace)
            for record in left:
                if record.channel is not None:
                    record.channel.abort()
                if record.task is not None:
                    record.task.cancel()
            if not await self._wait_handlers(ABORT_WAIT, me):
                self._stuck([c.peer for c in self._conns.values() if c.task is not me])
        self._closed = True
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)
        return clean

    async def _wait_handlers(self, timeout: float, me: asyncio.Task[Any] | None) -> bool:
        tasks = [c.task for c in self._conns.values() if c.task is not None and c.task is not me]
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, timeout))
        return not pending

    async def close(self) -> None:
        """Shut down at once: no grace period for handlers."""
        await self.shutdown(0)


def serve(
    endpoint: Endpoint | str,
    handler: Callable[[Any, Peer], Awaitable[Any] | Any],
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    frame_deadline: float | None = 60.0,
    peer_filter: Callable[[Peer], bool] | None = None,
    codec: str | Any = "bytes",
    framing: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    handshake_timeout: float = 10.0,
    backlog: int | None = None,
    grace: float = DEFAULT_GRACE,
    first_message_timeout: float | None = FIRST_MESSAGE_TIMEOUT,
) -> Opening[Server]:
    """Listen on (or bind) ``endpoint`` and start serving; :func:`sockwire.serve`, awaitable.

    ``await handler(channel, peer)`` per connection; for ``unix+dgram:`` /
    ``udp://`` ``handler(message, peer)`` per datagram, its (awaited) return
    value sent back unless None. ``server = await aio.serve(...)``, or
    ``async with aio.serve(...) as server:`` (shut down on the way out).
    """

    async def start() -> Server:
        server = Server(
            endpoint,
            handler,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            frame_deadline=frame_deadline,
            peer_filter=peer_filter,
            codec=codec,
            framing=framing,
            max_size=max_size,
            handshake_timeout=handshake_timeout,
            backlog=backlog,
            grace=grace,
            first_message_timeout=first_message_timeout,
        )
        try:
            return server.start()
        except BaseException:
            await server.close()
            raise

    return Opening(start())
