"""The blocking Channel: whole messages over any socket, one receive loop, threads allowed.

The same API (``send``, ``send_many``, ``recv``, iteration, ``flush``,
``close``) over three kinds of transport:

* **stream** (unix, tcp, socketpair): frames of :mod:`sockwire.framing`
  (``len32`` unless the endpoint says ``?framing=``);
* **seqpacket** and **dgram** (unix+seqpacket, unix+dgram, udp): one message
  per packet, as the kernel keeps them; ``?framing=sockwire`` adds the
  sockwire packet header of :mod:`sockwire.packet` (fragments, sequence
  numbers). The wire format is in ``docs/PROTOCOL.md``.

What the bytes mean and which state follows is decided by
:class:`~sockwire.channel.core.ChannelCore` (its state table is at the top of
``core.py``); this driver owns the system calls (through a seam of
``seam.py``), the clock and the locks.

Thread contract: a Channel may be shared by threads; frames never
interleave and one thread's messages keep their order. Appending a small
frame to the send buffer is one ``bytearray +=`` of the whole frame, which
the GIL makes atomic, so ``send`` takes no lock for it; every write to the
socket (a flush, a big message, a packet) holds the send lock and takes the
bytes out of the buffer with a copy-then-delete that keeps later appends.
On a free-threaded build (PEP 703, no GIL) ``send`` takes the send lock for
every message instead. Reading from the socket and parsing hold the receive
lock; handing out an already-parsed message is one atomic ``deque.popleft``.
A ``recv`` that must wait flushes what ``send`` buffered first, unless
another thread holds the send lock at that moment: that thread is writing,
and waiting for it could deadlock two peers that both write more than the
socket buffers hold while the other is not reading. So threads that share a
Channel call ``flush()`` after their own ``send``.
``close()`` from another thread wakes a ``recv`` blocked in this Channel
(``shutdown(SHUT_RD)``), which then raises ClosedError.

Deadlines: ``recv(timeout=)`` waits with poll before it reads;
``send(msg, timeout=)`` writes with ``MSG_DONTWAIT`` and polls for room, and
on expiry either nothing of ``msg`` left (TimeoutError, the channel is
usable) or part of it did (TimeoutError, BROKEN: a frame cut in two cannot
be taken back); ``flush(timeout=)`` leaves what it could not write queued.

Fork: after ``fork()`` the child's copy of every Channel drops what the
parent had buffered (unsent frames, unread messages: they belong to the
parent) and gets fresh locks. Create a :func:`~sockwire.channel.pipe`, fork,
and let each side close the end it does not use.

Performance notes, the reasons behind the shape: per-message Python work is
the limit, so the hot paths are few calls. ``send`` appends to one
``bytearray`` (a per-instance closure: one Python call per message, the
length-prefix encoder's own header table); ``recv`` of a bytes channel is a
closure that pops an already-parsed message or enters the one receive loop,
which reads up to 256 KiB per system call into one reused buffer and hands
the read to the decoder (:meth:`sockwire.framing.Decoder.feed`), which slices
every complete frame out of it. Without a deadline a big body is read with
one ``recv(n, MSG_WAITALL)`` whose result *is* the message; big sends go out
with ``sendmsg`` gathering header and payload (no copy). Measured side by
side with its peers by ``sockwire bench`` (latency, throughput).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

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
from .core import (
    FLUSH_AT,
    ChannelCore,
    CoreView,
    Kind,
    ReadLimits,
    ReadTimer,
    State,
    Writes,
    not_bytes,
)
from .seam import ChannelIO, SocketIO, TLSSocketIO, clock, make_seam, prepare, wait

if TYPE_CHECKING:
    from ..address import Endpoint

__all__ = ["Channel"]

log = logging.getLogger("sockwire")

#: True where the GIL makes one ``bytearray +=`` atomic (every build before
#: PEP 703's free-threaded one): the fast send path relies on it.
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()
_OPEN = State.OPEN
_CLOSED = State.CLOSED


def _fast_sender(
    core: ChannelCore,
    flush: Callable[[], None],
    write: Callable[[Writes], None],
    lock: threading.Lock,
    timed: Callable[[BytesLike, float], None],
) -> Callable[..., None] | None:
    """``send`` for small frames of a length-prefix stream, as one closure.

    The same steps as :meth:`ChannelCore.queue` (which stays the reference
    and takes every other case), minus the method calls, attribute lookups
    and the lock that dominate at 64-byte messages: the encoder's header
    table and one ``bytearray +=``, which the GIL makes atomic, so frames of
    several threads never interleave; writes to the socket (``flush``, and
    ``write`` of what ``queue`` returns) are serialized by ``lock``. Without
    a GIL (PEP 703 builds) every send takes the lock instead. None when this
    channel has no such framing.
    """
    prefix = core.prefix
    if prefix is None:
        return None
    pack = prefix.pack
    heads = prefix.headers
    limit = core.fast_limit
    queue = core.queue
    acquire = lock.acquire
    release = lock.release
    flush_at = FLUSH_AT

    def send_locked(msg: BytesLike, timeout: float | None = None) -> None:
        if timeout is not None:
            return timed(msg, timeout)
        acquire()
        try:
            writes = queue(msg)
            if writes is not None:
                write(writes)
        except TypeError:
            raise not_bytes(msg) from None
        finally:
            release()
        return None

    def send(msg: BytesLike, timeout: float | None = None) -> None:
        size = len(msg)
        if size < limit and core.sendable and timeout is None:
            try:
                out = core.out
                out += (heads[size] if size < 256 else pack(size)) + msg
            except TypeError:
                raise not_bytes(msg) from None
            if len(out) >= flush_at:
                flush()
            return None
        return send_locked(msg, timeout)  # big, timed, or refused: the locked way

    return send if _GIL else send_locked


def _fast_batch_sender(
    core: ChannelCore,
    flush: Callable[[], None],
    write: Callable[[Writes], None],
    lock: threading.Lock,
    timed: Callable[[Iterable[BytesLike], float], None],
) -> Callable[..., None] | None:
    """``send_many`` for a length-prefix stream: the frames of a batch in one append."""
    prefix = core.prefix
    if prefix is None:
        return None
    pack = prefix.pack
    limit = core.fast_limit
    queue = core.queue
    acquire = lock.acquire
    release = lock.release

    def send_many(msgs: Iterable[BytesLike], timeout: float | None = None) -> None:
        if timeout is not None:
            return timed(msgs, timeout)
        batch = bytearray()
        msg: object = None
        try:
            for msg in msgs:
                size = len(msg)
                if size < limit:
                    batch += pack(size) + msg
                    if len(batch) < FLUSH_AT:
                        continue
                if not core.sendable:
                    core.check("send")
                acquire()
                try:
                    core.out += batch
                    batch.clear()
                    if size >= limit:
                        writes = queue(msg)
                        if writes is not None:
                            write(writes)
                    else:
                        write([[core.take()]])
                finally:
                    release()
            if batch:
                if not core.sendable:
                    core.check("send")
                out = core.out
                out += batch
                if len(out) >= FLUSH_AT:
                    flush()
        except TypeError:
            if batch:  # the messages before the bad one still go out, in order
                core.out += batch
            raise not_bytes(msg) from None
        return None

    return send_many


_CHANNELS: weakref.WeakSet[Channel] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for channel in list(_CHANNELS):
        channel._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Channel(CoreView):
    """Whole messages over a socket: ``send``, ``recv``, iteration, ``close``.

    Build one with :func:`sockwire.connect`, :meth:`from_socket` or
    :func:`~sockwire.channel.pipe`. The constructor takes an I/O seam
    (:class:`~sockwire.channel.seam.SocketIO` or a test fake). ``recv``
    returns ``bytes`` (or the codec's objects); ``send`` may buffer up to
    64 KiB of small frames until ``flush()``, a blocking ``recv``,
    ``close()``, or the buffer is full.
    """

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
    ) -> None:
        self._io = io
        core = self._init_core(
            kind, framing, codec, authenticated, max_size, packet_limit, label, family, sock_type
        )
        self._popleft = core.pending.popleft
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._packet_buf = memoryview(bytearray(MAX_PACKET)) if self._packets else None
        self._timer: ReadTimer | None = None
        self._install_fast_paths()
        _CHANNELS.add(self)

    def _install_fast_paths(self) -> None:
        """Per-instance closures for send/recv: one Python call per message on the hot path."""
        core = self._core
        self._receive = self._receiver()  # type: ignore[method-assign,assignment]
        if self._dumps is None:
            lock = self._send_lock
            fast = _fast_sender(core, self._flush, self._write, lock, self._send_timed)
            if fast is not None:
                self.send = fast  # type: ignore[method-assign]
            batch = _fast_batch_sender(core, self._flush, self._write, lock, self._send_all_timed)
            if batch is not None:
                self.send_many = batch  # type: ignore[method-assign]
        if self._loads is None:
            self.recv = self._receive  # type: ignore[method-assign]

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

        The kind follows SO_TYPE; ``framing`` is the endpoint's ``?framing=``
        (None: len32 on streams, the kernel's boundaries on packets). The
        socket is put in blocking mode (the Channel waits with poll for
        deadlines); TCP gets TCP_NODELAY, since the Channel coalesces small
        messages itself.
        """
        if isinstance(sock, socket.socket):
            sock = Socket.adopt(sock, label=label)
        try:
            return cls._from_socket(sock, framing, codec, authenticated, max_size, label)
        except BaseException:
            sock.close()  # the Channel owned it from the start
            raise

    @classmethod
    def _from_socket(
        cls,
        sock: Socket,
        framing: str | None,
        codec: str | Codec,
        authenticated: bool,
        max_size: int,
        label: str | None,
    ) -> Channel:
        kind, packet_limit, empty_messages = prepare(sock, framing)
        io = make_seam(sock, empty_messages=empty_messages)
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

    @classmethod
    def connect(
        cls,
        endpoint: Endpoint | str,
        *,
        timeout: float | None = None,
        codec: str | Codec = "bytes",
        authenticated: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> Channel:
        """One connect to ``endpoint``, secured and wrapped: :func:`sockwire.client.connect_once`.

        Kept for the first wave's callers; ``sockwire.connect`` adds retries.
        """
        from ..client import connect_once  # the one connect path (a layer above)

        return connect_once(
            endpoint,
            timeout=timeout,
            codec=codec,
            authenticated=authenticated,
            max_size=max_size,
        )

    # ---- what it is

    def fileno(self) -> int:
        io = self._io
        return io.fileno() if isinstance(io, SocketIO | TLSSocketIO) else -1

    def __repr__(self) -> str:
        return f"<Channel {self.label} {self.kind} {self.framing} {self._core.state}>"

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        """Messages until the peer closes cleanly (EOF inside a message raises)."""
        while True:
            try:
                yield self.recv()
            except ConnectionLost:
                if self._core.state is State.PEER_CLOSED:
                    return
                raise

    # ---- send

    def send(self, msg: Any, timeout: float | None = None) -> None:
        """Send one message (buffered up to 64 KiB; see the class docstring).

        With ``timeout``: the message (and what was buffered before it) is
        written now, within ``timeout`` seconds or TimeoutError (see the
        module docstring for what the channel is then).
        """
        if self._dumps is not None:
            msg = self._dumps(msg)
        if timeout is not None:
            self._send_timed(msg, timeout)
            return
        lock = self._send_lock
        lock.acquire()
        try:
            writes = self._core.queue(msg)
            if writes is not None:
                self._write(writes)
        except TypeError:
            raise not_bytes(msg, self.codec.name) from None
        finally:
            lock.release()

    def send_many(self, msgs: Iterable[Any], timeout: float | None = None) -> None:
        """Send every message of ``msgs`` under one lock (the batch path).

        With ``timeout``: queued, then flushed as :meth:`flush` with that timeout.
        """
        if timeout is not None:
            self._send_all_timed(msgs, timeout)
            return
        dumps = self._dumps
        queue = self._core.queue
        lock = self._send_lock
        lock.acquire()
        try:
            for msg in msgs:
                writes = queue(msg if dumps is None else dumps(msg))
                if writes is not None:
                    self._write(writes)
        except TypeError:
            raise not_bytes(None, self.codec.name) from None
        finally:
            lock.release()

    def flush(self, timeout: float | None = None) -> None:
        """Write every buffered frame now; with ``timeout``, what is left stays queued."""
        deadline = self._acquire_send(timeout, "flush")
        try:
            self._core.check("flush")
            if deadline is None:
                self._flush_locked()
            elif not self._flush_until(deadline):
                raise TimeoutError(
                    f"flush on {self.label}",
                    f"the peer took not all within {timeout:g} s; "
                    f"{len(self._core.out)} bytes stay queued, in order",
                )
        finally:
            self._send_lock.release()

    def _acquire_send(self, timeout: float | None, op: str) -> float | None:
        """Take the send lock within ``timeout``; the deadline (None: no timeout)."""
        if timeout is None:
            self._send_lock.acquire()
            return None
        deadline = clock() + timeout
        if not self._send_lock.acquire(timeout=max(0.0, timeout)):
            raise TimeoutError(
                f"{op} on {self.label}",
                f"another thread was writing for {timeout:g} s; nothing was sent",
            )
        return deadline

    def _send_timed(self, msg: BytesLike, timeout: float) -> None:
        """``msg`` written within ``timeout``: sent, not sent (usable), or cut (BROKEN)."""
        deadline = self._acquire_send(timeout, "send")
        assert deadline is not None
        core = self._core
        io = self._io
        try:
            try:
                writes = core.frame(msg)
            except TypeError:
                raise not_bytes(msg, self.codec.name) from None
            if core.out and not self._flush_until(deadline):
                raise TimeoutError(
                    f"send on {self.label}",
                    f"the peer did not take the messages before it within {timeout:g} s; "
                    "this one was not sent (the channel is still usable)",
                )
            started = False
            try:
                for write in writes:
                    if self._packets:
                        if not io.send_packet(write, deadline):
                            break
                    else:
                        total = sum(len(b) for b in write)
                        written = io.write(write, deadline)
                        if written < total:
                            started = started or written > 0
                            break
                    started = True
                else:
                    return
            except OSError as exc:
                raise self._translate(exc, "send") from exc
            if not started:
                raise TimeoutError(
                    f"send on {self.label}",
                    f"the peer took nothing within {timeout:g} s; the message was not sent "
                    "(the channel is still usable)",
                )
            error = core.fail(
                TimeoutError(
                    f"send on {self.label}",
                    f"the peer stopped taking the message within {timeout:g} s with part of "
                    "it written; the connection is closed",
                )
            )
            self._break()
            raise error
        finally:
            self._send_lock.release()

    def _send_all_timed(self, msgs: Iterable[Any], timeout: float) -> None:
        """send_many with a deadline: packets one by one, stream frames in one flush."""
        deadline = clock() + timeout
        dumps = self._dumps
        if self._packets:
            for msg in msgs:
                self.send(msg, timeout=max(0.0, deadline - clock()))
            return
        try:
            batch = self._core.encode_batch(msgs if dumps is None else map(dumps, msgs))
        except TypeError:
            raise not_bytes(None, self.codec.name) from None
        self._acquire_send(max(0.0, deadline - clock()), "send")
        try:
            core = self._core
            core.check("send")
            core.out += batch
            if not self._flush_until(deadline):
                raise TimeoutError(
                    f"send on {self.label}",
                    f"the peer took not all within {timeout:g} s; "
                    f"{len(core.out)} bytes stay queued, in order",
                )
        finally:
            self._send_lock.release()

    def _flush_locked(self) -> None:
        core = self._core
        if core.out:
            data = core.take()
            try:
                self._io.send_all((data,))
            except OSError as exc:
                raise self._translate(exc, "send") from exc

    def _flush_until(self, deadline: float) -> bool:
        """Write the buffer by ``deadline`` (send lock held); False: the rest is queued again."""
        core = self._core
        data = core.take()
        if not data:
            return True
        try:
            written = self._io.write((data,), deadline)
        except OSError as exc:
            raise self._translate(exc, "send") from exc
        if written < len(data):
            core.put_back(memoryview(data)[written:])
            return False
        return True

    def _flush(self) -> None:
        """Write what is buffered (the fast sender's call when the buffer is full)."""
        lock = self._send_lock
        lock.acquire()
        try:
            self._flush_locked()
        finally:
            lock.release()

    def _write(self, writes: Writes) -> None:
        io = self._io
        try:
            if self._packets:
                for write in writes:
                    io.send_packet(write)
            else:
                for write in writes:
                    io.send_all(write)
        except OSError as exc:
            raise self._translate(exc, "send") from exc

    # ---- recv

    def recv(self, timeout: float | None = None) -> Any:
        """The next message; blocks until one is whole (or ``timeout`` seconds pass).

        Raises ConnectionLost when the peer is gone (after every whole message
        it sent was returned), TimeoutError, ClosedError after close().
        """
        msg = None
        if self._pending:
            try:  # noqa: SIM105  # suppress() costs a call on the hot path
                msg = self._popleft()
            except IndexError:  # another thread took the last one
                pass
        if msg is None:
            msg = self._receive(timeout)
        if self._loads is not None:
            return self._loads(msg)
        return msg

    def _receiver(self) -> Callable[[float | None], bytes]:
        """The one receive loop, as a closure over everything it touches.

        It hands out a message already parsed, or: flushes what ``send``
        buffered, waits (deadlines, read limits: :meth:`_wait_readable`),
        reads, and gives the bytes to the core, until a message is whole.
        Every name it needs is a closure cell (no attribute lookups): this is
        the round-trip path, where per-call Python work shows. On a plain
        socket it reads with the seam's own ``recv_into`` into the seam's
        buffer (one C call, no Python frame of the seam's); everything the
        bytes mean is the core's and the decoder's.
        """
        channel = self
        core = self._core
        pending = core.pending
        popleft = pending.popleft
        io = self._io
        lock = self._recv_lock
        send_lock = self._send_lock
        packets = self._packets
        buf = self._packet_buf
        decoder = core.decoder
        feed_into = decoder.feed_into if decoder is not None else None
        append = pending.append
        receive = core.receive
        receive_packet = core.receive_packet
        fail = core.fail
        translate_error = self._translate
        wait_readable = self._wait_readable
        recv_error = self._recv_error
        broken = self._break
        # the seam's C-level calls where it has them (a plain socket): no Python
        # frame of the seam's on the round trip
        recv_into: Callable[[memoryview, int], int] | None = getattr(io, "recv_into", None)
        view: memoryview | None = getattr(io, "view", None)
        sendall: Callable[[bytes, int], None] | None = getattr(io, "sendall", None)
        send_all = io.send_all
        nosignal = socket.MSG_NOSIGNAL
        label = self.label

        def recv(timeout: float | None = None) -> Any:
            if pending:
                try:
                    return popleft()
                except IndexError:  # another thread took the last one
                    pass
            timer = channel._timer
            timed = timeout is not None or timer is not None
            if timeout is None:
                deadline = None
                lock.acquire()
            else:
                deadline = clock() + timeout
                if not lock.acquire(timeout=max(0.0, timeout)):
                    raise core.read_expired("caller", label, timeout, None)
            try:
                while not pending:
                    if core.state is not _OPEN:
                        core.check("recv")
                    # flush before blocking: the peer may wait for it (not if another
                    # thread is writing: see "Thread contract" in the module docstring)
                    if core.out and send_lock.acquire(False):
                        try:
                            # core.take() inlined (one snapshot; appends made after
                            # it stay): the round trip's one flush
                            out = core.out
                            data = bytes(out)
                            del out[: len(data)]
                            if sendall is not None:
                                sendall(data, nosignal)
                            else:
                                send_all((data,))
                        except OSError as exc:
                            raise translate_error(exc, "send") from exc
                        finally:
                            send_lock.release()
                    mid = False
                    if timed:
                        mid = core.in_message()
                        wait_readable(deadline, timeout, mid)
                    try:
                        if packets:
                            assert buf is not None
                            size, address = io.recv_packet(buf)
                            eof = size < 0 or (not size and core.zero_is_eof)
                            receive_packet(buf, size, address, eof=eof)
                        else:
                            assert decoder is not None
                            assert feed_into is not None
                            want = decoder.want
                            if decoder.exact and not timed:
                                # a big body, no deadline: one recv(n, MSG_WAITALL) is
                                # the message itself (never under a deadline: it would
                                # not return in time)
                                data = io.recv(want, True)
                            elif recv_into is not None and view is not None:
                                # a big body under a deadline: piece by piece
                                size = want if want < READ_SIZE else READ_SIZE
                                data = view[: recv_into(view, size)].tobytes()
                            else:
                                data = io.recv(want, False)
                            if data:
                                # the decoder's public API, straight into the queue; the
                                # core keeps the state (EOF: core.receive, the reference)
                                try:
                                    feed_into(data, append)
                                except ProtocolError as exc:
                                    raise fail(exc) from None
                            else:
                                receive(data)
                    except OSError as exc:
                        raise recv_error(exc) from exc
                    except (ProtocolError, ConnectionLost):
                        broken()
                        raise
                    if timer is not None:
                        timer.received(clock(), mid, core.in_message(), bool(pending))
                    if core.state is _CLOSED:
                        raise ClosedError(
                            f"recv on {label}", "the channel was closed during the call"
                        )
                return popleft()
            finally:
                lock.release()

        return recv

    def _wait_readable(self, deadline: float | None, timeout: float | None, mid: bool) -> None:
        """Wait until a read will not block, or raise what the nearest deadline means."""
        io = self._io
        core = self._core
        timer = self._timer
        if timer is None:
            assert deadline is not None
            left = deadline - clock()
            if left > 0 and io.wait(True, left):
                return
            raise core.read_expired("caller", self.label, timeout, None)
        now = clock()
        until, cause = timer.until(now, deadline, mid)
        limits = timer.limits
        stop_fd = limits.stop_fd
        if stop_fd is not None and not mid:
            while True:
                if io.buffers and io.wait(True, 0):
                    return  # whole TLS records already decrypted
                ready = wait([(io.fileno(), select.POLLIN), (stop_fd, select.POLLIN)], until)
                if stop_fd in ready:
                    raise core.draining(self.label)
                if not ready:
                    break
                if not io.buffers:
                    return
                # TLS: bytes came; the seam decides whether a record is whole
        elif io.wait(True, None if until is None else until - now):
            return
        error = core.read_expired(cause, self.label, timeout, limits)
        if cause == "frame":
            self._break()
        raise error

    def _recv_error(self, exc: OSError) -> SockwireError:
        if self._core.state is State.CLOSED:
            return ClosedError(f"recv on {self.label}", "the channel was closed during the call")
        return self._translate(exc, "recv")

    # ---- read limits (servers): idle timeout, frame deadline, draining

    def set_read_limits(self, limits: ReadLimits | None) -> None:
        """Put ``limits`` on every later ``recv`` (None removes them); see ``ReadLimits``.

        Reads then wait with poll() on the socket (and the stop fd) before
        each read instead of blocking in recv(): one more system call per
        blocking wait, nothing more per message. Only a Channel over a real
        socket can have limits.
        """
        if limits is not None and getattr(self._io, "fileno", None) is None:
            raise InvalidOperation(
                f"read limits on {self.label}", "they need a Channel over a real socket"
            )
        with self._recv_lock:
            self._timer = None if limits is None else ReadTimer(limits, clock())

    # ---- errors, close, fork

    def _translate(self, exc: OSError, op: str) -> SockwireError:
        error = translate(exc, op, self.label, family=self._family, sock_type=self._sock_type)
        # on TLS every failed call is fatal: OpenSSL cannot go on after one
        if isinstance(error, ConnectionLost | ProtocolError) or isinstance(self._io, TLSSocketIO):
            self._core.fail(error)
            self._break()
        return error

    def _break(self) -> None:
        """BROKEN: release the socket now; the peer sees the connection end."""
        if self._core.state is State.BROKEN:
            log.debug("channel %s broken: %s", self.label, self._core.error)
            self._shutdown_quietly(socket.SHUT_RDWR)

    def close(self) -> None:
        """Flush what is buffered (bounded by ``close_timeout``), then close the socket.

        Threads blocked in this channel's recv or send are woken (shutdown)
        and raise ClosedError; close() waits for them, then closes the fd.
        """
        core = self._core
        if core.state is State.CLOSED:
            return
        was_open = core.sendable
        if self._send_lock.acquire(blocking=False):
            try:
                if was_open and core.out:
                    self._flush_on_close()
            finally:
                core.mark_closed()
                self._send_lock.release()
        else:
            core.mark_closed()
        if was_open:
            # wake threads blocked in the kernel on this socket
            if self._recv_lock.locked():
                self._shutdown_quietly(socket.SHUT_RD)
            if self._send_lock.locked():
                self._shutdown_quietly(socket.SHUT_WR)
        with self._recv_lock, self._send_lock:  # the order recv() takes them in
            core.closed()
        self._io.close()
        _CHANNELS.discard(self)
        # the fast-path closures refer back to this channel: drop the cycle;
        # the class's methods answer from now on (with ClosedError)
        for name in ("send", "send_many", "recv", "_receive"):
            self.__dict__.pop(name, None)

    def _receive(self, timeout: float | None = None) -> bytes:
        """Stands in for the receive loop once close() dropped it: ClosedError."""
        self._core.check("recv")
        raise AssertionError("unreachable: a closed channel's check raises")

    def _flush_on_close(self) -> None:
        """Bounded: a peer that never reads must not hang close()."""
        size = len(self._core.out)
        try:
            if self._flush_until(clock() + self.close_timeout):
                return
            log.warning(
                "close %s: %d of %d buffered bytes not delivered within %g s",
                self.label,
                len(self._core.out),
                size,
                self.close_timeout,
            )
        except SockwireError as exc:
            log.warning("close %s: buffered bytes not delivered (%s)", self.label, exc)

    def _shutdown_quietly(self, how: int) -> None:
        try:
            self._io.shutdown(how)
        except OSError:
            log.debug("shutdown during close of %s failed", self.label, exc_info=True)

    def _after_fork(self) -> None:
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._core.forget_buffers()
        if self._core.state is not State.CLOSED:
            self._install_fast_paths()  # the old ones hold the old locks
