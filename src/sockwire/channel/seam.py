"""The I/O seams under a blocking Channel: plain, traced and TLS sockets, waiting, the clock.

A driver talks to the kernel only through a seam (:class:`ChannelIO`), waits
only through :func:`wait`, and reads time only from :func:`clock`, so it never
reaches into a socket's ``.raw`` and tests can hand it a fake. OSError passes
through untranslated: the Channel translates at its own boundary.

Platform notes, where the decisions are made:

* ``recv(n, MSG_WAITALL)`` on a big body lets the kernel fill one ``bytes``
  object that *is* the message (no copy); a signal or EOF can end it short,
  and the decoder copes. Everything else reads into one reused 256 KiB
  buffer: ``recv(256 KiB)`` would malloc 256 KiB per call, which glibc serves
  with mmap/munmap (4x the round trip, measured).
* ``MSG_TRUNC`` on recvfrom/recvmsg returns a packet's real length even when
  it did not fit, so truncation is counted, never silent.
* A UNIX seqpacket read of 0 bytes is EOF or an empty message: with
  SO_PASSCRED every packet, an empty one too, carries SCM_CREDENTIALS and
  EOF none (measured on Linux 6.x), so :class:`SocketIO` returns -1 for EOF.
* Writes with a deadline use ``MSG_DONTWAIT`` on the blocking socket and poll
  for room, so the socket's own mode never changes under another thread.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from .. import trace
from ..errors import InvalidOperation, errno_name
from ..flags import MsgFlag
from ..framing import READ_SIZE, BytesLike
from ..packet import MAX_PACKET
from ..sock import Address, Socket
from ..trace import Event, preview
from .core import FLUSH_AT, Kind

__all__ = [
    "ChannelIO",
    "SocketIO",
    "TLSSocketIO",
    "TracedSocketIO",
    "clock",
    "make_seam",
    "prepare",
    "wait",
]

log = logging.getLogger("sockwire")

#: The clock every driver reads deadlines from.
clock = time.monotonic

_CREDS_SPACE = socket.CMSG_SPACE(12)  # one struct ucred
_NOSIGNAL = socket.MSG_NOSIGNAL
_DONTWAIT = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT


def wait(fds: Sequence[tuple[int, int]], deadline: float | None) -> set[int]:
    """poll(2) ``(fd, events)`` pairs until one is ready or ``deadline`` passes; the ready fds.

    An empty set means the deadline passed. EINTR is retried by Python
    itself with the time left (PEP 475).
    """
    poller = select.poll()
    for fd, events in fds:
        poller.register(fd, events)
    if deadline is None:
        return {fd for fd, _ in poller.poll(None)}
    return {fd for fd, _ in poller.poll(max(0.0, deadline - clock()) * 1000)}


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - clock()


class ChannelIO(Protocol):
    """The system calls a blocking Channel makes; OSError is translated by the Channel."""

    #: True when the seam may hold received bytes that poll() cannot see (TLS)
    buffers: bool

    def fileno(self) -> int: ...

    def recv(self, size: int, waitall: bool) -> bytes:
        """Up to ``size`` stream bytes (all of them with ``waitall``); ``b""`` is EOF."""
        ...

    def recv_packet(self, buf: memoryview) -> tuple[int, Address | None]:
        """One packet into ``buf``: its *real* size (larger than buf: truncated), sender.

        -1 is EOF, when the seam can tell it from an empty message (see
        :class:`SocketIO`); otherwise a zero-length read is 0.
        """
        ...

    def send_all(self, buffers: Sequence[BytesLike]) -> None:
        """Write every byte of ``buffers`` to the stream, in order."""
        ...

    def write(self, buffers: Sequence[BytesLike], deadline: float | None) -> int:
        """Write ``buffers`` in order until done or ``deadline``; the bytes written."""
        ...

    def send_packet(self, buffers: Sequence[BytesLike], deadline: float | None = None) -> bool:
        """Send ``buffers`` as one packet; False when ``deadline`` passed first (nothing sent)."""
        ...

    def wait(self, readable: bool, timeout: float | None) -> bool:
        """Wait for readability (or writability); False when ``timeout`` passed first."""
        ...

    def shutdown(self, how: int) -> None: ...

    def close(self) -> None: ...


class SocketIO:
    """The seam over a real socket (blocking mode; deadlines by poll).

    ``empty_messages``: the socket is a UNIX seqpacket connection whose
    packets carry no header, where a zero-length read is EOF *or* an empty
    message: SO_PASSCRED tells them apart (see the module's notes). Fds a
    peer passes are discarded by the kernel (the control buffer has room for
    the credentials only: MSG_CTRUNC), never leaked. ``buffer``: the read
    buffer (at least READ_SIZE bytes); an asyncio driver shares one among the
    thousands of connections of one loop, since each read is copied out
    before the next (None: a buffer of its own).
    """

    buffers = False

    def __init__(
        self, sock: Socket, *, empty_messages: bool = False, buffer: bytearray | None = None
    ) -> None:
        self.socket = sock
        raw = sock.raw
        raw.settimeout(None)
        self.raw = raw
        self.family = sock.family
        self.type = sock.type
        self._recv = raw.recv
        #: the C-level fast path a driver may call directly: read into :attr:`view`
        #: (a subclass that must see every call sets it to None)
        self.recv_into: Callable[[memoryview, int], int] | None = raw.recv_into
        #: the same for writing a whole bytes object: ``sendall(data, flags)``
        self.sendall: Callable[[bytes, int], None] | None = raw.sendall
        self._buf = bytearray(READ_SIZE) if buffer is None else buffer
        self.view = memoryview(self._buf)
        self._fd = raw.fileno()
        self._poller = select.poll()
        self._poller.register(self._fd, select.POLLIN)
        self._empty_messages = empty_messages
        if empty_messages:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def fileno(self) -> int:
        return self._fd

    def recv(self, size: int, waitall: bool) -> bytes:
        if waitall:
            return self._recv(size, socket.MSG_WAITALL)
        view = self.view
        count = self.raw.recv_into(view, size if size < READ_SIZE else READ_SIZE)
        return view[:count].tobytes()

    def recv_packet(self, buf: memoryview) -> tuple[int, Address | None]:
        # never MSG_TRUNC with recv(): it would return the padding as data (see sock.py)
        if self._empty_messages:
            size, ancdata, _, address = self.raw.recvmsg_into(
                [buf], _CREDS_SPACE, socket.MSG_TRUNC
            )
            if not size and not ancdata:
                return -1, None  # no packet came with it: the end, not an empty message
        else:
            size, address = self.raw.recvfrom_into(buf, 0, socket.MSG_TRUNC)
        return size, address if address not in (None, "", b"") else None

    def send_all(self, buffers: Sequence[BytesLike]) -> None:
        raw = self.raw
        if len(buffers) == 1:
            raw.sendall(buffers[0], _NOSIGNAL)
            return
        bufs = list(buffers)
        while bufs:
            sent = raw.sendmsg(bufs, (), _NOSIGNAL)
            _advance(bufs, sent)

    def write(self, buffers: Sequence[BytesLike], deadline: float | None) -> int:
        bufs = [b for b in buffers if len(b)]
        total = 0
        while bufs:
            try:
                sent = self._send_some(bufs)
            except BlockingIOError:
                if not self.wait(False, _left(deadline)):
                    break
                continue
            total += sent
            _advance(bufs, sent)
        return total

    def _send_some(self, bufs: list[BytesLike]) -> int:
        """One non-blocking send(2) (one buffer) or sendmsg(2) (several); BlockingIOError."""
        if len(bufs) == 1:
            return self.raw.send(bufs[0], _DONTWAIT)
        return self.raw.sendmsg(bufs, (), _DONTWAIT)

    def send_packet(self, buffers: Sequence[BytesLike], deadline: float | None = None) -> bool:
        if deadline is None:
            self.raw.sendmsg(buffers, (), _NOSIGNAL)
            return True
        while True:
            try:
                self.raw.sendmsg(buffers, (), _DONTWAIT)
            except BlockingIOError:
                if not self.wait(False, _left(deadline)):
                    return False
                continue
            return True

    def wait(self, readable: bool, timeout: float | None) -> bool:
        if readable:
            return bool(self._poller.poll(None if timeout is None else max(0.0, timeout) * 1000))
        deadline = None if timeout is None else clock() + timeout
        return bool(wait([(self._fd, select.POLLOUT)], deadline))

    def shutdown(self, how: int) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        self.socket.close()


def _advance(bufs: list[BytesLike], sent: int) -> None:
    """Drop ``sent`` bytes from the front of ``bufs`` (a partial sendmsg)."""
    while bufs and sent >= len(bufs[0]):
        sent -= len(bufs[0])
        bufs.pop(0)
    if sent:
        bufs[0] = memoryview(bufs[0]).cast("B")[sent:]


class TracedSocketIO(SocketIO):
    """SocketIO that reports every call to :mod:`sockwire.trace` (chosen when hooks exist).

    A Channel built while a trace hook is installed (the tour, ``--trace``)
    uses this seam, so the frames beneath the messages are visible as
    strace-like lines. Errors stay ``OSError`` here: the Channel translates.
    """

    def __init__(
        self, sock: Socket, *, empty_messages: bool = False, buffer: bytearray | None = None
    ) -> None:
        super().__init__(sock, empty_messages=empty_messages, buffer=buffer)
        self.recv_into = None  # every read goes through recv(), every write
        self.sendall = None  # through send_all(): both report each call

    def _emit(
        self, call: str, args: tuple[str, ...], result: str, data: bytes | None = None
    ) -> None:
        fd = self._fd
        trace.emit(Event(call, (str(fd), *args), result, fd=fd, data=data))

    def _failed(self, call: str, args: tuple[str, ...], exc: OSError) -> None:
        fd = self._fd
        name = errno_name(exc.errno) if exc.errno is not None else type(exc).__name__
        trace.emit(Event(call, (str(fd), *args), "-1", name, fd=fd))

    def recv(self, size: int, waitall: bool) -> bytes:
        flags = socket.MSG_WAITALL if waitall else 0
        args = (str(min(size, READ_SIZE) if not waitall else size), str(MsgFlag(flags)))
        try:
            data = super().recv(size, waitall)
        except OSError as exc:
            self._failed("recv", args, exc)
            raise
        self._emit("recv", args, str(len(data)), data)
        return data

    def recv_packet(self, buf: memoryview) -> tuple[int, Address | None]:
        call = "recvmsg" if self._empty_messages else "recvfrom"
        args = (str(len(buf)), str(MsgFlag(socket.MSG_TRUNC)))
        try:
            size, address = super().recv_packet(buf)
        except OSError as exc:
            self._failed(call, args, exc)
            raise
        shown = "0 (EOF: no credentials came with it)" if size < 0 else str(size)
        self._emit(call, args, shown, buf[: max(0, min(size, len(buf)))].tobytes())
        return size, address

    def send_all(self, buffers: Sequence[BytesLike]) -> None:
        for item in buffers:  # one send per call made, partial sends shown as they happen
            view = memoryview(item).cast("B")
            while view:
                args = (preview(bytes(view[:64])), str(len(view)), "MSG_NOSIGNAL")
                try:
                    sent = self.raw.send(view, _NOSIGNAL)
                except OSError as exc:
                    self._failed("send", args, exc)
                    raise
                self._emit("send", args, str(sent))
                view = view[sent:]

    def _send_some(self, bufs: list[BytesLike]) -> int:
        total = str(sum(len(b) for b in bufs))
        flags = "MSG_DONTWAIT|MSG_NOSIGNAL"
        if len(bufs) == 1:
            call, args = "send", (preview(bytes(bufs[0][:64])), total, flags)
        else:
            shown = "[" + ", ".join(preview(bytes(b[:64])) for b in bufs) + "]"
            call, args = "sendmsg", (shown, total, flags)
        try:
            sent = super()._send_some(bufs)
        except OSError as exc:
            self._failed(call, args, exc)
            raise
        self._emit(call, args, str(sent))
        return sent

    def send_packet(self, buffers: Sequence[BytesLike], deadline: float | None = None) -> bool:
        data = b"".join(bytes(b) for b in buffers)
        args = ("[" + ", ".join(preview(bytes(b)) for b in buffers) + "]", str(len(data)))
        try:
            sent = super().send_packet(buffers, deadline)
        except OSError as exc:
            self._failed("sendmsg", args, exc)
            raise
        self._emit("sendmsg", args, str(len(data)) if sent else "-1 EAGAIN (deadline)")
        return sent


def _is_tls(sock: Socket) -> bool:
    """Is ``sock`` an ``ssl.SSLSocket``? (None exists unless ssl was imported: no import.)"""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(sock.raw, ssl.SSLSocket)


class TLSSocketIO:
    """The seam over a TLS connection (an ``ssl.SSLSocket``); chosen by :func:`make_seam`.

    Why not SocketIO: an SSLSocket refuses recv/send flags (no MSG_WAITALL,
    no MSG_NOSIGNAL), has no sendmsg, and may hold decrypted bytes that
    poll() cannot see. And OpenSSL allows one call at a time on a connection,
    while a Channel reads in one thread and writes in another. So the
    socket is non-blocking, every ssl call is made under one lock, and the
    waiting (poll) happens outside it: full duplex without two threads ever
    inside OpenSSL at once. ``wait()`` decrypts a record into a small stash
    before saying "readable", so a deadline holds even when a peer stalls in
    the middle of a TLS record. ``close()`` sends close_notify (best effort,
    never waiting), so the peer tells a clean end from a cut-off one.
    A TLS session cannot be shared across fork(): both copies would use the
    same sequence numbers; only one process may use the Channel afterwards.
    """

    buffers = True

    def __init__(self, sock: Socket, *, buffer: bytearray | None = None) -> None:
        import ssl

        self.socket = sock
        raw = sock.raw
        assert isinstance(raw, ssl.SSLSocket)
        raw.setblocking(False)
        self.raw = raw
        self.family = sock.family
        self.type = sock.type
        self._fd = raw.fileno()
        self._want_read = ssl.SSLWantReadError
        self._want_write = ssl.SSLWantWriteError
        self._lock = threading.Lock()
        self._buf = bytearray(READ_SIZE) if buffer is None else buffer
        self._view = memoryview(self._buf)
        self._stash = b""  # decrypted by wait(), not yet returned by recv()
        self._stash_eof = False
        self._stash_error: OSError | None = None
        self._shut = False

    def fileno(self) -> int:
        return self._fd

    def _read(self, size: int, deadline: float | None) -> bytes | None:
        """Decrypt up to ``size`` bytes; None when ``deadline`` passed first."""
        raw = self.raw
        view = self._view
        lock = self._lock
        while True:
            lock.acquire()
            try:
                count = raw.recv_into(view, min(size, READ_SIZE))
                return view[:count].tobytes()
            except self._want_read:
                events = select.POLLIN
            except self._want_write:  # a TLS 1.2 renegotiation may need to write
                events = select.POLLOUT
            finally:
                lock.release()
            if not wait([(self._fd, events)], deadline):
                return None

    def recv(self, size: int, waitall: bool) -> bytes:
        # waitall is a plain-socket optimisation (MSG_WAITALL); the decoder
        # collects a big body from several reads just as well.
        if self._stash_error is not None:
            error, self._stash_error = self._stash_error, None
            raise error
        if self._stash:
            data = self._stash
            if len(data) > size:
                self._stash = data[size:]
                return data[:size]
            self._stash = b""
            return data
        if self._stash_eof:
            return b""
        read = self._read(size, None)
        assert read is not None  # no deadline: it waited until there was something
        return read

    def recv_packet(self, buf: memoryview) -> tuple[int, Address | None]:
        raise InvalidOperation("recv_packet on TLS", "TLS carries streams only")

    def send_all(self, buffers: Sequence[BytesLike]) -> None:
        total = sum(len(b) for b in buffers)
        if self.write(buffers, None) < total:  # pragma: no cover - no deadline: all or OSError
            raise OSError(errno.EIO, "TLS send ended early")

    def write(self, buffers: Sequence[BytesLike], deadline: float | None) -> int:
        if len(buffers) > 1 and sum(len(b) for b in buffers) <= FLUSH_AT:
            buffers = (b"".join(buffers),)  # one TLS record, not one per piece
        raw = self.raw
        lock = self._lock
        total = 0
        for item in buffers:
            view = memoryview(item).cast("B")
            while view:
                lock.acquire()
                try:
                    sent = raw.send(view)
                    view = view[sent:]
                    total += sent
                    continue
                except self._want_write:
                    events = select.POLLOUT
                except self._want_read:
                    events = select.POLLIN
                finally:
                    lock.release()
                if not wait([(self._fd, events)], deadline):
                    return total
        return total

    def send_packet(self, buffers: Sequence[BytesLike], deadline: float | None = None) -> bool:
        raise InvalidOperation("send_packet on TLS", "TLS carries streams only")

    def wait(self, readable: bool, timeout: float | None) -> bool:
        deadline = None if timeout is None else clock() + timeout
        if not readable:
            return bool(wait([(self._fd, select.POLLOUT)], deadline))
        if self._stash or self._stash_eof or self._stash_error or self.raw.pending():
            return True
        try:
            data = self._read(READ_SIZE, deadline)
        except OSError as exc:
            # the Channel translates errors of recv(), not of wait(): hand it over
            self._stash_error = exc
            return True
        if data is None:
            return False
        if data:
            self._stash = data
        else:
            self._stash_eof = True
        return True

    def shutdown(self, how: int) -> None:
        # socket.socket's own shutdown: SSLSocket.shutdown() also drops the
        # TLS state, after which a recv would hand out raw ciphertext.
        self._shut = True
        socket.socket.shutdown(self.raw, how)

    def close(self) -> None:
        if not self._shut and not self.socket.closed:
            with self._lock:
                try:
                    self.raw.unwrap()  # sends close_notify; non-blocking: never waits
                except (OSError, ValueError) as exc:
                    # SSLWantReadError: the peer's close_notify is not there
                    # yet (the usual case; we do not wait for it); others: gone
                    log.debug("close_notify on %s: %r", self.socket.label, exc)
        self.socket.close()


def make_seam(
    sock: Socket, *, empty_messages: bool = False, buffer: bytearray | None = None
) -> ChannelIO:
    """The seam for ``sock``: TLS, traced (a trace hook is installed) or plain.

    ``buffer``: a read buffer to share (see :class:`SocketIO`).
    """
    if _is_tls(sock):
        return TLSSocketIO(sock, buffer=buffer)
    seam = TracedSocketIO if trace.installed else SocketIO
    return seam(sock, empty_messages=empty_messages, buffer=buffer)


_KINDS: dict[int, Kind] = {
    socket.SOCK_STREAM: "stream",
    socket.SOCK_SEQPACKET: "seqpacket",
    socket.SOCK_DGRAM: "dgram",
}


def prepare(sock: Socket, framing: str | None) -> tuple[Kind, int, bool]:
    """What a Channel over ``sock`` is, for every driver: ``(kind, packet limit, empty_messages)``.

    The kind follows SO_TYPE. TCP gets TCP_NODELAY, since a Channel
    coalesces small messages itself. The packet limit is the socket's own
    (capped at MAX_PACKET, the receive buffer). ``empty_messages``: a UNIX
    seqpacket socket without the sockwire header, where SO_PASSCRED tells an
    empty message from EOF (pass it to :func:`make_seam`).
    """
    kind = _KINDS.get(sock.type)
    if kind is None:
        raise InvalidOperation(
            f"a Channel over {sock!r}",
            "a Channel needs a stream, seqpacket or datagram socket",
        )
    packet_limit = MAX_PACKET
    if kind == "stream" and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    elif kind != "stream":
        packet_limit = min(MAX_PACKET, sock.packet_limit() or MAX_PACKET)
    plain = (framing or "none") == "none"
    empty = plain and kind == "seqpacket" and sock.family == socket.AF_UNIX
    return kind, packet_limit, empty
