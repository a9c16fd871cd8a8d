"""The asyncio Channel: whole messages over any socket, awaitable, on the shared core.

What the bytes mean and which state follows is decided by
:class:`~sockwire.channel.core.ChannelCore` (its state table is at the top of
``channel/core.py``); the system calls go through the same seams as the
blocking Channel's (``channel/seam.py``: plain, traced, TLS). This driver owns
only readiness, the loop's clock and the buffers between the socket and the
awaiting tasks:

* **Reading** happens in the loop's reader callback, never inside ``recv``:
  every read is parsed at once (every whole message of one read in one go)
  and the messages wait in ``core.pending``; ``recv`` takes the next one or
  awaits a Future that the callback resolves. Cancelling a ``recv``
  (``task.cancel()``, ``asyncio.timeout``) therefore never loses, splits or
  duplicates a message: it stays queued for the next ``recv``.
* **Writing**: ``send`` appends the frame to the core's buffer, and the
  buffer goes to the socket before a ``recv`` that has to wait, when it
  reaches 64 KiB, or else once per loop iteration (one ``call_soon`` per
  loop and iteration flushes every channel with something buffered). A
  write the kernel does not take whole waits for writability
  (``add_writer``). ``send`` awaits room *before* it queues, never after: a
  cancelled or timed-out ``send`` queued nothing, and one that returned
  queued the whole message (it goes out in order, in the background).

Bounds, stated once (per Channel):

* outgoing: ``write_limit`` bytes (default 256 KiB) queued for the socket;
  ``send`` waits while that much is queued, so at most ``write_limit`` plus
  one message (``max_size``) plus 64 KiB of coalescing buffer;
* incoming: once ``read_limit`` bytes (default 256 KiB) were read while
  messages wait that no ``recv`` took, reading stops until they are taken, and
  the kernel's buffers hold the peer back (at most ``read_limit`` plus one
  read plus one message of ``max_size`` is held);
* the read buffer itself is one per thread (:func:`~.loops.read_buffer`),
  whatever the number of channels.

Time: ``recv(timeout=)`` and the server's read limits (idle timeout, frame
deadline: :class:`~sockwire.channel.core.ReadTimer` arithmetic) use
``loop.time()``; the read-limit timer is armed lazily (one timer per channel
that may fire early and re-arm, not one per message). Like the blocking
Channel's, the limits apply while a ``recv`` waits.

A Channel binds to the running loop on first use, so it may be made outside
one (``pipe()`` before ``fork()``); it must then stay on that loop and its
thread (asyncio objects are not thread-safe; the blocking Channel is).
Tasks may share a Channel: frames never interleave (a frame is queued in
one step), and each task's messages keep their order.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from ..channel.core import (
    FLUSH_AT,
    CoreView,
    Kind,
    ReadLimits,
    ReadTimer,
    State,
    Writes,
    not_bytes,
)
from ..channel.seam import ChannelIO, SocketIO, make_seam, prepare
from ..codecs import Codec
from ..errors import (
    ClosedError,
    ConnectionLost,
    InvalidOperation,
    ProtocolError,
    SockwireError,
    TimeoutError,
    translate,
)
from ..framing import DEFAULT_MAX_SIZE, READ_SIZE, BytesLike
from ..packet import MAX_PACKET
from ..sock import Socket
from .loops import read_buffer

__all__ = ["READ_LIMIT", "WRITE_LIMIT", "Channel"]

log = logging.getLogger("sockwire")

#: Bytes a Channel may hold queued for the socket before ``send`` waits.
WRITE_LIMIT = 256 * 1024
#: Bytes read ahead of ``recv`` before the Channel stops reading.
READ_LIMIT = 256 * 1024
#: Reads per readiness callback: one connection cannot starve the others.
_READS_PER_WAKEUP = 16
#: A limit timer that fires this close to its instant counts as on time (the
#: loop may run a timer up to its clock resolution early; uvloop's is 1 ms).
_SLACK = 0.002
#: The buffer is written once it holds this much (as the core's own FLUSH_AT).
_FLUSH_AT = FLUSH_AT
_OPEN = State.OPEN
_TIMED_OUT = 1
_DONTWAIT = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL


def _set(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _size(unit: list[BytesLike]) -> int:
    return sum(len(b) for b in unit)


def _after(unit: list[BytesLike], sent: int) -> list[BytesLike]:
    """What is left of ``unit`` after its first ``sent`` bytes went out."""
    rest = list(unit)
    while rest and sent >= len(rest[0]):
        sent -= len(rest[0])
        rest.pop(0)
    if sent:
        rest[0] = memoryview(rest[0]).cast("B")[sent:]
    return rest


class _Flusher:
    """Once per loop iteration, write what every Channel of the loop buffered.

    One ``call_soon`` per iteration for all channels (not one per send), and
    only when a ``send`` left bytes that no waiting ``recv`` flushed first.
    """

    __slots__ = ("dirty", "handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[Channel] = []
        self.handle: asyncio.Handle | None = None

    def add(self, channel: Channel) -> None:
        self.dirty.append(channel)
        if self.handle is None:
            self.handle = self.loop.call_soon(self.run)

    def run(self) -> None:
        self.handle = None
        dirty, self.dirty = self.dirty, []
        for channel in dirty:
            channel._dirty = False
            if channel._core.out:
                channel._flush_soon()


_flushers = threading.local()


def _flusher(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher: _Flusher | None = getattr(_flushers, "flusher", None)
    if flusher is None or flusher.loop is not loop:
        flusher = _flushers.flusher = _Flusher(loop)
    return flusher


class Channel(CoreView):
    """Whole messages over a socket, awaitable: ``send``, ``recv``, ``async for``, ``close``.

    Build one with :func:`sockwire.aio.connect`, :meth:`from_socket` or
    :func:`sockwire.aio.pipe`; servers hand one to their handler. The API is
    the blocking Channel's with ``await`` (see the module docstring for the
    bounds, cancellation and deadlines).
    """

    # slots: a server holds thousands of these (CoreView has the shared ones)
    __slots__ = (
        "__weakref__",
        "_dirty",
        "_draining",
        "_fast_limit",
        "_fd",
        "_flushed",
        "_flusher",
        "_heads",
        "_idle",
        "_io",
        "_limits_at",
        "_limits_handle",
        "_loop",
        "_mid",
        "_pack_size",
        "_paused",
        "_queued",
        "_raw_recv_into",
        "_raw_send",
        "_reading",
        "_recv_error",
        "_room",
        "_send_error",
        "_timer",
        "_tls",
        "_units",
        "_unread",
        "_view",
        "_waiters",
        "_writing",
        "fresh",
        "read_limit",
        "write_limit",
    )

    def __init__(
        self,
        io: ChannelIO,
        *,
        kind: Kind = "stream",
        framing: str | None = None,
        codec: str | Codec = "bytes",
        authenticated: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
        packet_limit: int = MAX_PACKET,
        label: str = "channel",
        family: int | None = None,
        sock_type: int | None = None,
        write_limit: int = WRITE_LIMIT,
        read_limit: int = READ_LIMIT,
    ) -> None:
        self._io = io
        core = self._init_core(
            kind, framing, codec, authenticated, max_size, packet_limit, label, family, sock_type
        )
        self.write_limit = write_limit
        self.read_limit = read_limit
        self._tls = io.buffers
        self._fd = io.fileno()
        # the seam's C-level calls where it offers them (a plain socket; a traced
        # or TLS seam goes through its methods, which report or decrypt)
        self._raw_recv_into: Callable[[memoryview, int], int] | None = getattr(
            io, "recv_into", None
        )
        raw = io.raw if isinstance(io, SocketIO) and self._raw_recv_into is not None else None
        self._raw_send = raw.send if raw is not None else None
        # small frames of a length-prefix stream are appended inline (as the core does)
        prefix = core.prefix
        self._fast_limit = core.fast_limit if self._dumps is None else 0
        self._heads = prefix.headers if prefix is not None else ()
        self._pack_size = prefix.pack if prefix is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: _Flusher | None = None
        self._view = memoryview(b"")  # the loop's thread's read buffer, once bound
        # reading
        self._reading = False  # the reader callback is registered
        self._paused = False  # stopped at read_limit; resumes when recv takes the messages
        self._unread = 0  # bytes read since recv last emptied the queue
        self._waiters: list[asyncio.Future[Any]] = []
        self._recv_error: SockwireError | None = None  # raised once, by the next recv
        self._timer: ReadTimer | None = None
        self._mid = False  # (with read limits) part of a message has arrived
        self._idle = False  # (with read limits) an idle limit is set
        self._limits_at = 0.0
        self._limits_handle: asyncio.TimerHandle | None = None
        self._draining = False
        #: True until a whole message has arrived (a server's first-message deadline)
        self.fresh = True
        # writing
        self._units: deque[list[BytesLike]] = deque()  # writes the kernel has not taken
        self._queued = 0  # their bytes
        self._writing = False  # the writer callback is registered
        self._dirty = False  # in the flusher's list
        self._room: list[asyncio.Future[Any]] = []  # sends waiting for room
        self._flushed: list[asyncio.Future[Any]] = []  # flushes waiting for an empty queue
        self._send_error: SockwireError | None = None  # raised once, by the next send/flush

    # ---- construction

    @classmethod
    def from_socket(
        cls,
        sock: Socket | socket.socket,
        *,
        framing: str | None = None,
        codec: str | Codec = "bytes",
        authenticated: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
        label: str | None = None,
    ) -> Channel:
        """A Channel that owns ``sock`` (connected, or a bound datagram socket).

        As :meth:`sockwire.Channel.from_socket` (the same kinds, framings and
        socket options); the socket becomes non-blocking.
        """
        if isinstance(sock, socket.socket):
            sock = Socket.adopt(sock, label=label)
        try:
            kind, packet_limit, empty_messages = prepare(sock, framing)
            io = make_seam(sock, empty_messages=empty_messages, buffer=read_buffer())
            sock.raw.setblocking(False)
            return cls(
                io,
                kind=kind,
                framing=framing,
                codec=codec,
                authenticated=authenticated,
                max_size=max_size,
                packet_limit=packet_limit,
                label=label or sock.label or f"channel fd {sock.fd}",
                family=sock.family,
                sock_type=sock.type,
            )
        except BaseException:
            sock.close()  # the Channel owned it from the start
            raise

    # ---- what it is

    @property
    def queued(self) -> int:
        """Bytes accepted by ``send`` that the kernel has not taken yet."""
        return self._queued + len(self._core.out)

    def fileno(self) -> int:
        return self._fd

    def __repr__(self) -> str:
        return f"<aio.Channel {self.label} {self.kind} {self.framing} {self._core.state}>"

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        """Messages until the peer closes cleanly (EOF inside a message raises)."""
        while True:
            try:
                msg = await self.recv()
            except ConnectionLost:
                if self._core.state is State.PEER_CLOSED:
                    return
                raise
            yield msg

    # ---- the loop

    def _bind(self) -> asyncio.AbstractEventLoop:
        """Attach to the running loop (first use) and start reading; later, check it is
        the same loop (on every wait: a send that queues without waiting does not)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return loop
        if self._loop is None:
            self._loop = loop
            self._flusher = _flusher(loop)
            self._view = memoryview(read_buffer())
            if self._core.state is _OPEN:
                self._start_reading()
        elif self._loop is not loop:
            raise InvalidOperation(
                f"{self.label} used from another event loop",
                "a Channel stays on the loop that first used it",
            )
        return loop

    def _start_reading(self) -> None:
        loop = self._loop
        if loop is not None and not self._reading and self._fd >= 0:
            loop.add_reader(self._fd, self._on_packets if self._packets else self._on_stream)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            assert self._loop is not None
            self._loop.remove_reader(self._fd)
            self._reading = False

    # ---- send

    async def send(self, msg: Any, timeout: float | None = None) -> None:
        """Queue one message for the peer; waits while ``write_limit`` bytes are queued.

        Returns once the whole message is queued (it then goes out in order,
        in the background). On ``timeout`` (TimeoutError) or cancellation
        nothing of it was queued and the channel is usable.
        """
        if self._dumps is not None:
            msg = self._dumps(msg)
        flusher = self._flusher
        if flusher is None:
            self._bind()
            flusher = self._flusher
            assert flusher is not None
        if self._send_error is not None:
            self._raise_send_error()
        if self._queued >= self.write_limit:
            await self._wait_room(timeout, "send")
        core = self._core
        writes: Writes | None
        try:
            size = len(msg)
            if size < self._fast_limit and core.sendable:
                # the core's own inline path (ChannelCore.queue), minus its calls
                out = core.out
                out += (self._heads[size] if size < 256 else self._pack_size(size)) + msg  # type: ignore[misc]
                if len(out) < _FLUSH_AT:
                    if not self._dirty:
                        self._dirty = True
                        flusher.dirty.append(self)  # flusher.add(self), inline
                        if flusher.handle is None:
                            flusher.handle = flusher.loop.call_soon(flusher.run)
                    return
                writes = [[core.take()]]
            else:
                writes = core.queue(msg)
        except TypeError:
            raise not_bytes(msg, self.codec.name) from None
        if writes is not None:
            self._push(writes)
        elif not self._dirty:
            self._dirty = True
            flusher.add(self)

    def send_nowait(self, msg: Any) -> None:
        """Queue one message now, without waiting and without the ``write_limit``.

        For small control messages a protocol must not hold back (a puller's
        credit, a heartbeat): their number is the caller's bound.
        """
        if self._dumps is not None:
            msg = self._dumps(msg)
        if self._flusher is None:
            self._bind()
        if self._send_error is not None:
            self._raise_send_error()
        try:
            writes = self._core.queue(msg)
        except TypeError:
            raise not_bytes(msg, self.codec.name) from None
        if writes is not None:
            self._push(writes)
        elif not self._dirty:
            self._dirty = True
            assert self._flusher is not None
            self._flusher.add(self)

    async def send_many(self, msgs: Iterable[Any], timeout: float | None = None) -> None:
        """Send each message of ``msgs`` in order (``timeout`` bounds each wait for room)."""
        for msg in msgs:
            await self.send(msg, timeout)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the kernel has taken every queued byte.

        On ``timeout`` (TimeoutError) or cancellation what is not written
        stays queued, in order, and keeps going out.
        """
        loop = self._bind()
        core = self._core
        deadline = None if timeout is None else loop.time() + timeout
        core.check("flush")
        if self._send_error is not None:
            self._raise_send_error()
        self._write_out()
        while self._units:
            if not await self._wait(self._flushed, deadline):
                raise TimeoutError(
                    f"flush on {self.label}",
                    f"the peer took not all within {timeout:g} s; "
                    f"{self.queued} bytes stay queued, in order",
                )
            if not core.sendable:
                core.check("flush")
            if self._send_error is not None:
                self._raise_send_error()

    async def _wait_room(self, timeout: float | None, op: str) -> None:
        loop = self._bind()
        deadline = None if timeout is None else loop.time() + timeout
        while self._queued >= self.write_limit:
            if not self._core.sendable:
                self._core.check(op)
            if not await self._wait(self._room, deadline):
                raise TimeoutError(
                    f"{op} on {self.label}",
                    f"the peer did not take {self.queued} queued bytes within {timeout:g} s; "
                    "this message was not sent (the channel is still usable)",
                )
            if self._send_error is not None:
                self._raise_send_error()

    async def _wait(self, waiters: list[asyncio.Future[Any]], deadline: float | None) -> bool:
        """Await a wake-up on ``waiters``; False when ``deadline`` passed first."""
        loop = self._loop
        assert loop is not None
        fut: asyncio.Future[Any] = loop.create_future()
        waiters.append(fut)
        timer = None if deadline is None else loop.call_at(deadline, _set, fut, _TIMED_OUT)
        try:
            return await fut is not _TIMED_OUT
        finally:
            if timer is not None:
                timer.cancel()
            if fut in waiters:
                waiters.remove(fut)

    def _raise_send_error(self) -> None:
        error, self._send_error = self._send_error, None
        assert error is not None
        raise error

    def _push(self, writes: Writes) -> None:
        """Writes the core says to make now: queued behind what waits, then written."""
        units = self._units
        for unit in writes:
            units.append(unit)
            self._queued += _size(unit)
        self._write_out()

    def _flush_soon(self) -> None:
        """The flusher's call: what ``send`` buffered goes to the socket."""
        if not self._core.sendable:
            return
        try:
            self._write_out()
        except SockwireError as exc:
            # a broken channel raises core.error everywhere; a one-off error
            # (a datagram refused) is kept for the next send or flush
            if self._core.sendable:
                self._send_error = exc

    def _write_out(self) -> None:
        """Write what is queued, without waiting; the rest waits for writability."""
        core = self._core
        units = self._units
        out = core.out
        if out:
            data = bytes(out)  # core.take(), inline: one thread, no append in between
            del out[:]
            if not units:
                send = self._raw_send
                try:
                    if send is not None:
                        sent = send(data, _DONTWAIT)
                    else:
                        sent = self._io.write((data,), 0.0)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    raise self._write_failed(exc) from exc
                if sent == len(data):
                    return
                units.append([memoryview(data)[sent:]])
                self._queued += len(data) - sent
            else:
                units.append([data])
                self._queued += len(data)
        try:
            self._write_units()
        finally:
            self._after_write()

    def _write_units(self) -> None:
        core = self._core
        units = self._units
        io = self._io
        while units:
            unit = units[0]
            size = _size(unit)
            if self._packets:
                try:
                    if not io.send_packet(unit, 0.0):
                        return
                except OSError as exc:
                    error = self._write_failed(exc)
                    if core.sendable:
                        units.popleft()  # a refused datagram: not sent, reported once
                        self._queued -= size
                    raise error from exc
                units.popleft()
                self._queued -= size
                continue
            try:
                sent = io.write(unit, 0.0)
            except OSError as exc:
                raise self._write_failed(exc) from exc
            self._queued -= sent
            if sent < size:
                units[0] = _after(unit, sent)
                return
            units.popleft()

    def _after_write(self) -> None:
        """Writability wanted only while something waits; wake who waits for room."""
        loop = self._loop
        assert loop is not None
        if self._units:
            if not self._writing and self._core.sendable:
                loop.add_writer(self._fd, self._on_writable)
                self._writing = True
        else:
            if self._writing:
                loop.remove_writer(self._fd)
                self._writing = False
            for fut in self._flushed:
                _set(fut, None)
        if self._queued < self.write_limit:
            for fut in self._room:
                _set(fut, None)

    def _on_writable(self) -> None:
        try:
            self._write_out()
        except SockwireError as exc:
            if self._core.sendable:
                self._send_error = exc
            self._wake_writers()

    def _write_failed(self, exc: OSError) -> SockwireError:
        error = self._translate(exc, "send")
        if not self._core.sendable:
            self._units.clear()
            self._queued = 0
            self._wake_writers()
        return error

    def _wake_writers(self) -> None:
        for fut in (*self._room, *self._flushed):
            _set(fut, None)

    # ---- recv

    async def recv(self, timeout: float | None = None) -> Any:
        """The next message; awaits until one is whole (or ``timeout`` seconds pass).

        Raises ConnectionLost when the peer is gone (after every whole
        message it sent was returned), TimeoutError (the channel stays
        usable), ClosedError after close(). Cancelling it loses nothing.
        """
        pending = self._pending
        if not pending:
            # wait for the reader callback (one coroutine frame: the hot path)
            loop = self._bind()
            core = self._core
            deadline = None if timeout is None else loop.time() + timeout
            while not pending:
                if self._recv_error is not None:
                    error, self._recv_error = self._recv_error, None
                    raise error
                if core.state is not _OPEN:
                    core.check("recv")
                if self._draining and not core.in_message():
                    raise core.draining(self.label)
                out = core.out
                if out or self._units:  # the peer may wait for it before it answers
                    send = self._raw_send
                    if send is not None and not self._units:
                        # _write_out()'s common case, inline: the round trip's one write
                        data = bytes(out)
                        del out[:]
                        try:
                            sent = send(data, _DONTWAIT)
                        except BlockingIOError:
                            sent = 0
                        except OSError as exc:
                            raise self._write_failed(exc) from exc
                        if sent < len(data):
                            self._units.append([memoryview(data)[sent:]])
                            self._queued += len(data) - sent
                            self._after_write()
                    else:
                        self._write_out()
                timer = self._timer
                if timer is not None and (
                    self._mid or (self._idle and self._limits_handle is None)
                ):
                    # lazily: an armed timer fires by the (only ever later) idle
                    # instant and re-arms; a message begun may bring it forward
                    self._arm_limits(loop)
                fut = loop.create_future()
                self._waiters.append(fut)
                handle = (
                    None if deadline is None else loop.call_at(deadline, _set, fut, _TIMED_OUT)
                )
                try:
                    woken = await fut
                except BaseException:  # cancelled: the message (if any) stays queued
                    if fut in self._waiters:
                        self._waiters.remove(fut)
                    raise
                finally:
                    if handle is not None:
                        handle.cancel()
                if woken is _TIMED_OUT:
                    if fut in self._waiters:
                        self._waiters.remove(fut)
                    if not pending:
                        raise core.read_expired("caller", self.label, timeout, None)
        msg = pending.popleft()
        if not pending:
            self._unread = 0
            if self._paused:
                self._resume()
        if self._loads is not None:
            return self._loads(msg)
        return msg

    def _resume(self) -> None:
        self._paused = False
        if self._core.state is _OPEN:
            self._start_reading()

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def _on_stream(self) -> None:
        """The reader callback of a stream: read, parse every whole frame, wake a recv."""
        core = self._core
        decoder = core.decoder
        assert decoder is not None
        feed_into = decoder.feed_into
        recv_into = self._raw_recv_into
        view = self._view
        io = self._io
        tls = self._tls
        pending = self._pending
        got = 0
        try:
            for _ in range(_READS_PER_WAKEUP):
                want = decoder.want
                if want > READ_SIZE:  # noqa: PLR1730  # min() costs a call
                    want = READ_SIZE
                if recv_into is not None:
                    data = view[: recv_into(view, want)].tobytes()
                elif tls and not io.wait(True, 0):
                    break  # no whole TLS record yet
                else:
                    data = io.recv(want, False)
                if not data:
                    core.receive(data)  # EOF: the core decides (PEER_CLOSED, or raises)
                    break
                # the decoder's public API, straight into the queue (as the blocking
                # Channel does); a protocol error breaks the channel through the core
                try:
                    feed_into(data, pending.append)
                except ProtocolError as exc:
                    raise core.fail(exc) from None
                got += len(data)
                if (len(data) < want and not tls) or (
                    pending and self._unread + got >= self.read_limit
                ):
                    break  # drained, or enough is waiting for recv
        except BlockingIOError:
            pass
        except OSError as exc:
            self._read_failed(exc)
            return
        except (ProtocolError, ConnectionLost):  # the core is BROKEN with it
            self._read_broken()
            return
        if got:
            timer = self._timer
            if timer is not None:
                mid = decoder.in_frame
                if mid or self._mid:
                    self._received(mid)
                elif self._idle:
                    # ReadTimer.received() between whole messages: only the idle clock
                    assert self._loop is not None
                    timer.last_rx = self._loop.time()
            self._unread += got
            if pending and self._unread >= self.read_limit:
                self._stop_reading()
                self._paused = True
        if pending or core.state is not _OPEN:
            if core.state is not _OPEN:
                self._stop_reading()
            elif pending:
                self.fresh = False
            waiters = self._waiters  # _wake(), inline
            if waiters:
                self._waiters = []
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)

    def _on_packets(self) -> None:
        """The reader callback of a packet socket: one message per packet."""
        core = self._core
        io = self._io
        buf = self._view[:MAX_PACKET]
        pending = self._pending
        got = 0
        try:
            for _ in range(_READS_PER_WAKEUP):
                size, address = io.recv_packet(buf)
                eof = size < 0 or (not size and core.zero_is_eof)
                core.receive_packet(buf, size, address, eof=eof)
                if eof:
                    break
                got += size + 1  # an empty message counts, so it wakes a recv
                if pending and self._unread + got >= self.read_limit:
                    break
        except BlockingIOError:
            pass
        except OSError as exc:
            self._read_failed(exc)
            return
        except ProtocolError:  # the core is BROKEN with it
            self._read_broken()
            return
        self._after_read(got)

    def _after_read(self, got: int) -> None:
        core = self._core
        pending = self._pending
        if got:
            if self._timer is not None:
                self._received(core.in_message())
            self._unread += got
            if pending and self._unread >= self.read_limit:
                self._stop_reading()
                self._paused = True
        if core.state is not _OPEN:
            self._stop_reading()
            self._wake()
        elif pending:
            self.fresh = False
            self._wake()

    def _received(self, mid: bool) -> None:
        """Bytes came (read limits): the idle clock restarts, a new message's clock starts.

        Nothing to do between whole messages without an idle limit (the
        callers test that first: the hot path).
        """
        timer = self._timer
        assert timer is not None
        if mid or self._mid or self._idle:
            loop = self._loop
            assert loop is not None
            timer.received(loop.time(), self._mid, mid, bool(self._pending))
            self._mid = mid
            if mid and self._waiters:
                self._arm_limits(loop)  # a message began under a waiting recv: its deadline

    def _read_failed(self, exc: OSError) -> None:
        error = self._translate(exc, "recv")
        core = self._core
        if core.state is State.CLOSED:
            return
        if core.state is _OPEN:
            self._recv_error = error  # one-off (a datagram's ICMP error): keep reading
        else:
            self._stop_reading()
        self._wake()

    def _read_broken(self) -> None:
        self._stop_reading()
        self._break()
        self._wake()

    # ---- read limits (servers): idle timeout, frame deadline, draining

    def set_read_limits(self, limits: ReadLimits | None) -> None:
        """Put ``limits`` (idle, frame; ``stop_fd`` is ignored) on every later ``recv``."""
        now = self._loop.time() if self._loop is not None else asyncio.get_running_loop().time()
        self._timer = None if limits is None else ReadTimer(limits, now)
        self._idle = limits is not None and limits.idle is not None
        self._mid = self._core.in_message()
        if self._limits_handle is not None:
            self._limits_handle.cancel()
            self._limits_handle = None

    def _arm_limits(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make sure a timer fires by the nearest read limit (lazily: it may fire early)."""
        timer = self._timer
        assert timer is not None
        until, _ = timer.until(loop.time(), None, self._mid)
        if until is None:
            return
        handle = self._limits_handle
        if handle is not None:
            if self._limits_at <= until:
                return  # it fires first, then re-arms for this one
            handle.cancel()
        self._limits_at = until
        self._limits_handle = loop.call_at(until, self._on_limits)

    def _on_limits(self) -> None:
        self._limits_handle = None
        timer = self._timer
        loop = self._loop
        core = self._core
        if timer is None or loop is None or not self._waiters or core.state is not _OPEN:
            return  # as in the blocking Channel, the limits bind a waiting recv
        now = loop.time()
        until, cause = timer.until(now, None, core.in_message())
        if until is None:
            return
        if until > now + _SLACK:
            self._limits_at = until
            self._limits_handle = loop.call_at(until, self._on_limits)
            return
        self._recv_error = core.read_expired(cause, self.label, None, timer.limits)
        if cause == "frame":
            self._stop_reading()
            self._break()
        self._wake()

    def drain(self) -> None:
        """The server stops: a recv waiting between messages ends (ConnectionLost), and
        so does every later one; a message already arriving is still delivered whole."""
        self._draining = True
        if self._waiters and not self._core.in_message() and not self._pending:
            self._recv_error = self._core.draining(self.label)
            self._wake()

    # ---- errors, close

    def _translate(self, exc: OSError, op: str) -> SockwireError:
        if self._core.state is State.CLOSED:
            return ClosedError(f"{op} on {self.label}", "the channel was closed during the call")
        error = translate(exc, op, self.label, family=self._family, sock_type=self._sock_type)
        # on TLS every failed call is fatal: OpenSSL cannot go on after one
        if isinstance(error, ConnectionLost | ProtocolError) or self._tls:
            self._core.fail(error)
            self._break()
        return error

    def _break(self) -> None:
        """BROKEN: the peer sees the connection end now; the fd is released by close()."""
        if self._core.state is State.BROKEN:
            log.debug("channel %s broken: %s", self.label, self._core.error)
            self._stop_reading()
            try:
                self._io.shutdown(socket.SHUT_RDWR)
            except OSError:
                log.debug("shutdown of %s failed", self.label, exc_info=True)
            self._wake()
            self._wake_writers()

    async def close(self) -> None:
        """Flush what is queued (bounded by ``close_timeout``), then close the socket.

        Tasks waiting in this channel's recv, send or flush raise
        ClosedError. Cancelled while flushing, it still closes the socket.
        """
        core = self._core
        if core.state is State.CLOSED:
            return
        try:
            if core.sendable and (core.out or self._units) and self._loop is not None:
                size = self.queued
                try:
                    await self.flush(self.close_timeout)
                except SockwireError as exc:
                    log.warning(
                        "close %s: %d of %d queued bytes not delivered (%s)",
                        self.label,
                        self.queued,
                        size,
                        exc,
                    )
        finally:
            self.abort()

    aclose = close

    def abort(self) -> None:
        """Close at once: what is queued is dropped; waiting tasks raise ClosedError."""
        core = self._core
        if core.state is State.CLOSED:
            return
        core.mark_closed()
        self._stop_reading()
        loop = self._loop
        if self._writing and loop is not None:
            loop.remove_writer(self._fd)
            self._writing = False
        if self._limits_handle is not None:
            self._limits_handle.cancel()
            self._limits_handle = None
        self._units.clear()
        self._queued = 0
        self._wake()
        self._wake_writers()
        core.closed()
        self._io.close()
