"""Channel: whole messages over any socket type, as a sans-IO core and one blocking driver.

The same API (``send``, ``send_many``, ``recv``, iteration, ``flush``,
``close``) over three kinds of transport:

* **stream** (unix, tcp, socketpair): frames of :mod:`sockwire.framing`
  (``len32`` unless the endpoint says ``?framing=``);
* **seqpacket**: the kernel keeps boundaries; each packet carries a one-byte
  header so an empty message is not EOF, and messages larger than one packet
  are split with a continuation flag;
* **dgram** (unix+dgram, udp): one datagram per message with a 5-byte header
  (version/flags, sequence number), so the receiver counts what it knows was
  lost; truncation (MSG_TRUNC) is counted too. The wire format is in
  ``docs/PROTOCOL.md``.

A stream over TLS (``tls+tcp``, an ``ssl.SSLSocket``) is framed like any
stream; :meth:`Channel.from_socket` gives it the :class:`TLSSocketIO` seam
instead of the plain-socket hot path (see that class for why).

State rules of a Channel (the core enforces them; every driver shares them)::

    state        event                          next         the caller sees
    -----------  -----------------------------  -----------  ---------------------------------
    OPEN         send(msg)                      OPEN         frame queued; flushed at 64 KiB,
                                                             on flush(), before a blocking
                                                             recv and on close()
    OPEN         data arrives                   OPEN         whole messages queued for recv
    OPEN         EOF at a frame boundary        PEER_CLOSED  queued messages, then ConnectionLost
    OPEN         EOF inside a frame             BROKEN       queued messages, then ConnectionLost
                                                             (cause: BadFrame); no partial message
    OPEN         bad frame (FrameTooLarge, ..)  BROKEN       ProtocolError; connection shut down
    OPEN         reset / EPIPE / ECONNRESET     BROKEN       ConnectionLost; connection shut down
    OPEN         read limit: idle time passes   PEER_CLOSED  ConnectionLost (iteration ends);
                 between messages, or the                    sends still allowed; see ReadLimits
                 server stops (drains)
    OPEN         read limit: a message begun    BROKEN       TimeoutError; connection shut down
                 is not whole by its deadline
    PEER_CLOSED  send(msg), flush()             PEER_CLOSED  allowed (half-close); EPIPE -> BROKEN
    PEER_CLOSED  recv, nothing queued           PEER_CLOSED  ConnectionLost again; iteration ends
    BROKEN       send / recv / flush            BROKEN       the same error again
    any          close()                        CLOSED       queued frames flushed (best effort,
                                                             bounded by close_timeout), fd closed
    CLOSED       send / recv / flush            CLOSED       ClosedError
    CLOSED       close()                        CLOSED       nothing: close is idempotent

"Shut down" is shutdown(SHUT_RDWR): the peer sees the end at once; the
descriptor itself is released by close(). Datagram channels have no EOF: a
datagram that breaks the protocol is counted (``stats.invalid``) and
dropped, not fatal, since anyone may send to a bound address.

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

Fork: after ``fork()`` the child's copy of every Channel drops what the
parent had buffered (unsent frames, unread messages: they belong to the
parent) and gets fresh locks. Create a :func:`pipe`, fork, and let each side
close the end it does not use.

Performance notes, the reasons behind the shape: per-message Python work is
the limit, so the hot paths are a few lines. ``send`` appends to one
``bytearray``; ``recv`` reads up to 256 KiB per system call into one reused
buffer, takes one ``bytes`` snapshot and slices every complete frame out of
it (slicing ``bytes`` is the cheapest way to make a ``bytes`` in CPython);
without a deadline, a big body is read with one ``recv(n, MSG_WAITALL)``
whose result *is* the message; big sends go out with ``sendmsg`` gathering
header and payload (no copy). ``Socket.raw`` is used on these paths and
``OSError`` is translated here, at the Channel boundary. ``send`` and
``recv`` of a bytes channel are per-instance closures built by the core
(:meth:`ChannelCore.fast_sender`) and the driver (``_fast_receiver``): one
Python call per message, no attribute lookups; the methods of the class are
the general path they fall back to (codecs, deadlines, packets).
Measured side by side with its peers by ``sockwire bench`` (latency, throughput).
"""

from __future__ import annotations

import collections
import errno
import functools
import logging
import os
import select
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from . import framing as _framing
from . import trace
from .address import PACKET_FRAMINGS, Endpoint, parse
from .codecs import Codec, get_codec
from .errors import (
    ClosedError,
    ConnectionLost,
    InvalidOperation,
    MessageTooLarge,
    ProtocolError,
    SockwireError,
    TimeoutError,
    errno_name,
    translate,
)
from .flags import MsgFlag
from .framing import BIG, DEFAULT_MAX_SIZE, READ_SIZE, BytesLike
from .packet import (
    MAX_PACKET,
    DatagramCodec,
    DatagramStats,
    PacketCodec,
    make_packet_codec,
)
from .sock import Address, Socket
from .trace import Event, preview

__all__ = [
    "CLOSE_TIMEOUT",
    "FLUSH_AT",
    "MAX_PACKET",
    "Channel",
    "ChannelCore",
    "ChannelIO",
    "DatagramStats",
    "Kind",
    "ReadLimits",
    "SocketIO",
    "State",
    "pipe",
]

log = logging.getLogger("sockwire")

#: send() buffers small frames until this many bytes are waiting.
FLUSH_AT = 64 * 1024
#: How long close() may spend flushing frames a slow peer does not read.
CLOSE_TIMEOUT = 5.0

Kind: TypeAlias = Literal["stream", "seqpacket", "dgram"]

#: True where the GIL makes one ``bytearray +=`` atomic (every build before
#: PEP 703's free-threaded one): the fast send path relies on it.
_GIL = getattr(sys, "_is_gil_enabled", lambda: True)()


@functools.cache
def _small_headers(pack: Callable[[int], bytes]) -> tuple[bytes, ...]:
    """len32 headers of sizes 0-255, made once: indexing beats struct.pack."""
    return tuple(pack(size) for size in range(256))


def _not_bytes(msg: object) -> InvalidOperation:
    return InvalidOperation(
        f"send of a {type(msg).__name__} on a bytes channel",
        "send bytes, or open the channel with codec='json' (or msgpack)",
    )


class State:
    """The states of the table at the top of this module."""

    OPEN = "OPEN"
    PEER_CLOSED = "PEER_CLOSED"
    BROKEN = "BROKEN"
    CLOSED = "CLOSED"


_OPEN = State.OPEN


@dataclass(frozen=True)
class ReadLimits:
    """Limits a server puts on a Channel's reads (:meth:`Channel.set_read_limits`).

    ``idle``: the longest a ``recv`` waits for the first byte of the next
    message, counted from the last byte that arrived; then reading ends
    (ConnectionLost, iteration stops). ``frame``: once a message has begun to
    arrive, the longest until it is whole (a slow-loris defence); then the
    connection breaks with TimeoutError. ``stop_fd``: a descriptor that
    becomes readable when the server drains: a ``recv`` waiting *between*
    messages then ends like an idle one, while a message already arriving
    is still read whole. None means no limit of that kind.
    """

    idle: float | None = None
    frame: float | None = None
    stop_fd: int | None = None


# --------------------------------------------------------------------------
# The sans-IO core: state, framing, buffers. No system call below this line
# until the driver.
# --------------------------------------------------------------------------


class ChannelCore:
    """Everything a Channel decides, for any driver (blocking here, asyncio later).

    Outgoing: :meth:`queue` returns None (buffered) or a list of *writes*; a
    write is a list of buffers that must reach the kernel as one unit (a
    stream write sent in full, or one packet). After the driver wrote them it
    calls :meth:`sent`. Incoming: the driver asks :meth:`read_size`, reads,
    and calls :meth:`receive` (streams) or :meth:`receive_packet`; complete
    messages appear in :attr:`pending`.
    """

    def __init__(
        self,
        kind: Kind,
        *,
        framing: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        packet_limit: int = MAX_PACKET,
    ) -> None:
        self.kind = kind
        self.state = State.OPEN
        self.error: SockwireError | None = None
        self.max_size = max_size
        self.pending: collections.deque[bytes] = collections.deque()
        self.out = bytearray()
        self.packets: PacketCodec | None = None
        if kind == "stream":
            fc = _framing.make_codec(framing or "len32", max_size=max_size)
            self.framing = fc.name
            self.encoder = fc.encoder
            self.decoder: _framing.Decoder | None = fc.decoder
            self.stats = DatagramStats()
            enc = fc.encoder
            if isinstance(enc, _framing.LengthPrefixEncoder):
                self._pack = enc._pack
                # len16 goes the checked way: 65535 is its limit, not ours
                self._fast_limit = BIG if enc.width > 2 else 0
            else:
                self._pack = _framing._STRUCTS[4].pack  # unused: _fast_limit is 0
                self._fast_limit = 0
        else:
            framing = framing or "none"
            if framing not in PACKET_FRAMINGS:
                raise InvalidOperation(
                    f"framing={framing} on a {kind} socket",
                    f"{kind} sockets keep message boundaries themselves: framing is none "
                    "(the default) or sockwire (the sockwire packet header)",
                )
            self.packets = make_packet_codec(
                kind, framing, max_size=max_size, packet_limit=packet_limit
            )
            self.framing = framing
            self.decoder = None
            self.stats = self.packets.stats
            self._pack = _framing._STRUCTS[4].pack
            self._fast_limit = 0
        self.sendable = True  # OPEN or PEER_CLOSED: the hot path tests one attribute
        #: payload bytes per packet (seqpacket, dgram)
        self.packet_payload = self.packets.payload if self.packets is not None else 0

    @property
    def zero_is_eof(self) -> bool:
        """A zero-length read is EOF (streams, framed seqpacket); else ask the driver."""
        packets = self.packets
        return packets is None or packets.zero_is_eof

    # ---- state

    def check(self, op: str) -> None:
        """Raise what ``op`` meets in a state other than OPEN (the table's last rows)."""
        state = self.state
        if state is State.OPEN or (state is State.PEER_CLOSED and op in ("send", "flush")):
            return
        if state is State.CLOSED:
            raise ClosedError(f"{op} on a closed channel", "it was closed earlier; a caller bug")
        if state is State.PEER_CLOSED:
            raise ConnectionLost(
                f"{op} on a channel the peer closed",
                "every message the peer sent was delivered; it sends no more",
            )
        assert self.error is not None
        raise self.error

    def fail(self, error: SockwireError) -> SockwireError:
        """OPEN/PEER_CLOSED -> BROKEN with ``error`` (returned, for ``raise``)."""
        if self.state in (State.OPEN, State.PEER_CLOSED):
            self.state = State.BROKEN
            self.sendable = False
            self.error = error
        return error

    def mark_closed(self) -> None:
        """any -> CLOSED, before the driver has the locks: nothing is cleared yet."""
        self.state = State.CLOSED
        self.sendable = False

    def closed(self) -> None:
        """any -> CLOSED: drop what is buffered either way."""
        self.mark_closed()
        # CLOSED answers ClosedError from now on. The old error's traceback holds
        # the driver's frames (and so the Channel and its 256 KiB buffer), and the
        # decoder keeps the error too: cut the traceback, so a broken channel is
        # freed at once instead of by a later GC pass
        if self.error is not None:
            self.error.__traceback__ = None
            self.error = None
        self.out = bytearray()  # not clear(): a failed write may still hold a view of it
        self.pending.clear()
        if self.packets is not None:
            self.packets.reset()

    def forget_buffers(self) -> None:
        """After fork, in the child: the parent owns what was buffered."""
        self.out = bytearray()
        self.pending.clear()

    def in_message(self) -> bool:
        """True while part of a message has arrived and the rest has not (EOF now breaks)."""
        if self.decoder is not None:
            return self.decoder.in_frame
        packets = self.packets
        return packets is not None and packets.in_message

    def stop_reading(self, error: ConnectionLost) -> ConnectionLost:
        """OPEN -> PEER_CLOSED on our side's decision (a read limit); returns ``error``."""
        if self.state is State.OPEN:
            self.state = State.PEER_CLOSED
        return error

    def datagram_to(self, msg: BytesLike, address: Address) -> list[BytesLike]:
        """One datagram for ``address``, in that destination's own sequence (a server's reply)."""
        packets = self.packets
        assert isinstance(packets, DatagramCodec)
        return packets.encode_to(msg, address)

    # ---- outgoing

    def queue(self, msg: BytesLike) -> list[list[BytesLike]] | None:
        """Frame ``msg``; None while it only sits in the buffer, else the writes to make."""
        if not self.sendable:
            self.check("send")
        kind = self.kind
        size = len(msg)
        if kind == "stream":
            out = self.out
            if size < self._fast_limit:
                out += self._pack(size) + msg  # one append: atomic, and all or nothing
                return [[self.take()]] if len(out) >= FLUSH_AT else None
            return self._queue_stream_slow(msg, size)
        packets = self.packets
        assert packets is not None
        return packets.encode(msg)

    def _queue_stream_slow(self, msg: BytesLike, size: int) -> list[list[BytesLike]] | None:
        out = self.out
        if size > self.max_size:
            raise MessageTooLarge(
                f"a {size}-byte message",
                f"over max_size ({self.max_size} bytes), which the receiver enforces too; "
                "raise max_size on both ends",
            )
        if size < BIG:
            frame = bytearray()
            self.encoder.append(frame, msg)
            out += frame  # one append: atomic, and all or nothing
            return [[self.take()]] if len(out) >= FLUSH_AT else None
        head, trailer = self.encoder.head(msg)
        write: list[BytesLike] = [self.take()] if out else []
        if head:
            write.append(head)
        write.append(msg)
        if trailer:
            write.append(trailer)
        return [write]

    def fast_sender(
        self,
        flush: Callable[[], None],
        write: Callable[[list[list[BytesLike]]], None],
        lock: threading.Lock,
    ) -> Callable[[BytesLike], None] | None:
        """``send`` for small frames of a length-prefix stream, as one closure.

        The same steps as :meth:`queue` (which stays the reference and takes
        every other case), minus the method calls, attribute lookups and the
        lock that dominate at 64-byte messages. A frame is appended with one
        ``bytearray +=``, which the GIL makes atomic, so frames of several
        threads never interleave; writes to the socket (``flush``, and
        ``write`` of what :meth:`queue` returns) are serialized by ``lock``
        and take the bytes out with :meth:`take`. Without a GIL (PEP 703
        builds) every send takes the lock instead. None when this channel has
        no fast path (other framings, packets).
        """
        if self._fast_limit == 0:
            return None
        core = self
        pack = self._pack
        limit = self._fast_limit
        queue = self.queue
        acquire = lock.acquire
        release = lock.release

        flush_at = FLUSH_AT
        heads = _small_headers(self._pack) if limit == BIG and self.framing == "len32" else None

        def send(msg: BytesLike) -> None:
            size = len(msg)
            if size < limit and core.sendable:
                try:
                    out = core.out
                    out += (heads[size] if heads and size < 256 else pack(size)) + msg
                except TypeError:
                    raise _not_bytes(msg) from None
                if len(out) >= flush_at:
                    flush()
                return
            acquire()
            try:
                writes = queue(msg)
                if writes is not None:
                    write(writes)
            except TypeError:
                raise _not_bytes(msg) from None
            finally:
                release()

        def send_locked(msg: BytesLike) -> None:
            acquire()
            try:
                writes = queue(msg)
                if writes is not None:
                    write(writes)
            except TypeError:
                raise _not_bytes(msg) from None
            finally:
                release()

        return send if _GIL else send_locked

    def fast_batch_sender(
        self,
        flush: Callable[[], None],
        write: Callable[[list[list[BytesLike]]], None],
        lock: threading.Lock,
    ) -> Callable[[Iterable[BytesLike]], None] | None:
        """``send_many`` for a length-prefix stream: the frames of a batch in one append."""
        if self._fast_limit == 0:
            return None
        core = self
        pack = self._pack
        limit = self._fast_limit
        queue = self.queue
        acquire = lock.acquire
        release = lock.release

        def send_many(msgs: Iterable[BytesLike]) -> None:
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
                raise _not_bytes(msg) from None

        return send_many

    def fast_stream_receiver(
        self,
        *,
        recv_into: Callable[[memoryview, int], int],
        view: memoryview,
        sendall: Callable[[bytes, int], object],
        send_flags: int,
        recv_lock: threading.Lock,
        send_lock: threading.Lock,
        general: Callable[[float | None], bytes],
        general_read: Callable[[], bytes],
        on_error: Callable[[OSError, str], SockwireError],
        broken: Callable[[], None],
    ) -> Callable[[float | None], Any] | None:
        """``recv`` for a length-prefix stream read into ``view``, as one closure.

        The round-trip path: flush what ``send`` buffered, one ``recv_into``,
        whole frames sliced out inline (the decoder's loop, without its call
        layers). Anything else (a partial frame at the end, a big body, EOF,
        a length over max_size) goes to :meth:`receive`, i.e. the decoder,
        which is the reference for every byte it is given. ``sendall`` and
        ``recv_into`` are the driver's; the core still does no I/O itself.
        """
        decoder = self.decoder
        if not isinstance(decoder, _framing.LengthPrefixDecoder):
            return None
        core = self
        width = decoder.width
        unpack_from = decoder._unpack_from
        max_size = decoder.max_size
        pending = self.pending
        popleft = pending.popleft
        append = pending.append
        receive = self.receive
        size_limit = min(READ_SIZE, len(view))

        def recv(timeout: float | None = None) -> Any:
            if pending:
                try:
                    return popleft()
                except IndexError:  # another thread took the last one
                    pass
            if timeout is not None:
                return general(timeout)
            recv_lock.acquire()
            try:
                while not pending:
                    if core.state is not _OPEN:
                        core.check("recv")
                    # flush before blocking: the peer may wait for it (not if another
                    # thread is writing: see "Thread contract" in the module docstring)
                    out = core.out
                    if out and send_lock.acquire(False):
                        try:
                            # take() inlined: one snapshot, appends after it stay
                            data = bytes(out)
                            del out[: len(data)]
                            sendall(data, send_flags)
                        except OSError as exc:
                            raise on_error(exc, "send") from exc
                        finally:
                            send_lock.release()
                    try:
                        # the decoder mid-frame (tail, big body, header-only read):
                        # its own read sizes and its own parsing
                        if decoder._tail or decoder._need or decoder._header_only:
                            general_read()
                            continue
                        count = recv_into(view, size_limit)
                        if not count:
                            receive(b"")
                            continue
                        data = view[:count].tobytes()
                        start = 0
                        while count - start >= width:
                            (size,) = unpack_from(data, start)
                            stop = start + width + size
                            if stop > count or size > max_size:
                                break
                            append(data[start + width : stop])
                            start = stop
                        if start < count:
                            receive(data[start:] if start else data)
                    except OSError as exc:
                        raise on_error(exc, "recv") from exc
                    except (ProtocolError, ConnectionLost):
                        broken()
                        raise
                return popleft()
            finally:
                recv_lock.release()

        return recv

    def take(self) -> bytes:
        """Take every buffered byte out (for a write), leaving later appends in place.

        ``bytes(out)`` and ``del out[:n]`` are one C call each; an append by
        another thread between them lands after the first n bytes and stays.
        The writer holds the send lock, so two writers never reorder frames.
        """
        out = self.out
        data = bytes(out)
        del out[: len(data)]
        return data

    def flush_writes(self) -> list[list[BytesLike]]:
        """The writes flush() must make (buffered stream frames), maybe none."""
        return [[self.take()]] if self.out else []

    # ---- incoming

    def read_size(self) -> tuple[int, bool]:
        """``(bytes to ask for, exact)``; exact: all of them are one body (MSG_WAITALL ok)."""
        decoder = self.decoder
        assert decoder is not None
        return decoder.read_size(), decoder.exact

    def receive(self, data: bytes) -> None:
        """Stream bytes from the kernel (``b""`` = EOF) -> messages in :attr:`pending`."""
        if self.state is State.CLOSED:
            return  # close() woke a reader with shutdown(): its EOF means nothing
        decoder = self.decoder
        assert decoder is not None
        try:
            messages = decoder.feed(data)
        except ProtocolError as exc:
            if not data:
                lost = ConnectionLost(
                    "the peer closed the channel in the middle of a message",
                    f"{exc.hint}; the partial message was dropped",
                )
                lost.__cause__ = exc
                raise self.fail(lost) from exc
            raise self.fail(exc) from None
        if messages:
            self.pending.extend(messages)
        elif not data and self.state is State.OPEN:
            self.state = State.PEER_CLOSED

    def receive_packet(
        self, buf: memoryview, size: int, address: Address | None, *, eof: bool = False
    ) -> None:
        """One packet of ``size`` bytes (its real length: > len(buf) means truncated).

        ``eof``: the driver decided this zero-length read is the end (see
        :attr:`zero_is_eof`; otherwise it asked whether the peer hung up).
        """
        if self.state is State.CLOSED:
            return  # close() woke a reader with shutdown(): that empty read is no packet
        packets = self.packets
        assert packets is not None
        if eof:
            try:
                packets.end()
            except ConnectionLost as exc:
                raise self.fail(exc) from None
            if self.state is State.OPEN:
                self.state = State.PEER_CLOSED
            return
        try:
            msg = packets.decode(buf, size, address)
        except ProtocolError as exc:
            raise self.fail(exc) from None
        if msg is not None:
            self.pending.append(msg)


# --------------------------------------------------------------------------
# The I/O seam: what the blocking driver needs from a socket. SocketIO is the
# real one; tests use a fake with the same methods.
# --------------------------------------------------------------------------


class ChannelIO(Protocol):
    """The system calls a blocking Channel makes; OSError is translated by the Channel."""

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

    def send_packet(self, buffers: Sequence[BytesLike]) -> None:
        """Send ``buffers`` as one packet (seqpacket/datagram)."""
        ...

    def wait(self, readable: bool, timeout: float | None) -> bool:
        """Wait for readability (or writability); False when ``timeout`` passed first."""
        ...

    def shutdown(self, how: int) -> None: ...

    def close(self) -> None: ...


_CREDS_SPACE = socket.CMSG_SPACE(12)  # one struct ucred


class SocketIO:
    """The seam over a real socket (blocking mode; deadlines by poll).

    ``empty_messages``: the socket is a UNIX seqpacket connection whose
    packets carry no header, where a zero-length read is EOF *or* an empty
    message. SO_PASSCRED tells them apart without a doubt (measured on Linux
    6.x): every queued packet, an empty one included, comes with an
    SCM_CREDENTIALS message, and EOF comes with none. (poll's
    POLLRDHUP/POLLHUP only say the peer has closed, not whether an empty
    message is still queued.) Descriptors a peer passes are discarded by the
    kernel (the control buffer has room for the credentials only: MSG_CTRUNC).
    """

    def __init__(self, sock: Socket, *, empty_messages: bool = False) -> None:
        self.socket = sock
        raw = sock.raw
        raw.settimeout(None)
        self.raw = raw
        self.family = sock.family
        self.type = sock.type
        self._recv = raw.recv
        self._recv_into = raw.recv_into
        self._buf = bytearray(_framing.READ_SIZE)
        self._view = memoryview(self._buf)
        self._poller = select.poll()
        self._poller.register(raw.fileno(), select.POLLIN)
        self._empty_messages = empty_messages
        if empty_messages:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def recv(self, size: int, waitall: bool) -> bytes:
        if waitall:
            # One big body: the kernel keeps filling this one bytes object
            # until all `size` bytes are there (a signal or EOF can end it
            # short); the result is the message itself, no copy.
            return self._recv(size, socket.MSG_WAITALL)
        # Everything else lands in one reused buffer and leaves as one bytes
        # snapshot per read, which the decoder slices messages out of.
        # (recv(256 KiB) instead would malloc 256 KiB per call, which glibc
        # serves with mmap/munmap: 4x the round-trip time, measured.)
        view = self._view
        size = min(size, READ_SIZE)  # a big body read under a deadline: piece by piece
        return view[: self._recv_into(view, size)].tobytes()

    def recv_packet(self, buf: memoryview) -> tuple[int, Address | None]:
        # MSG_TRUNC makes recvfrom return the packet's real length even when
        # it did not fit; never pass it to recv(), which would return the
        # padding as data (see sock.py).
        if self._empty_messages:
            return self._recv_packet_or_eof(buf)
        size, address = self.raw.recvfrom_into(buf, 0, socket.MSG_TRUNC)
        return size, address if address not in (None, "", b"") else None

    def _recv_packet_or_eof(self, buf: memoryview) -> tuple[int, Address | None]:
        size, ancdata, _, address = self.raw.recvmsg_into([buf], _CREDS_SPACE, socket.MSG_TRUNC)
        if not size and not ancdata:
            return -1, None  # no packet came with it: the end, not an empty message
        return size, address if address not in (None, "", b"") else None

    def send_all(self, buffers: Sequence[BytesLike]) -> None:
        raw = self.raw
        if len(buffers) == 1:
            raw.sendall(buffers[0], socket.MSG_NOSIGNAL)
            return
        bufs = list(buffers)
        while bufs:
            sent = raw.sendmsg(bufs, (), socket.MSG_NOSIGNAL)
            while bufs and sent >= len(bufs[0]):
                sent -= len(bufs[0])
                bufs.pop(0)
            if sent:
                bufs[0] = memoryview(bufs[0]).cast("B")[sent:]

    def send_packet(self, buffers: Sequence[BytesLike]) -> None:
        self.raw.sendmsg(buffers, (), socket.MSG_NOSIGNAL)

    def wait(self, readable: bool, timeout: float | None) -> bool:
        if readable:
            return bool(self._poller.poll(None if timeout is None else max(0.0, timeout) * 1000))
        return self.socket.wait_writable(timeout)

    def shutdown(self, how: int) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        self.socket.close()


class TracedSocketIO(SocketIO):
    """SocketIO that reports every call to :mod:`sockwire.trace` (chosen when hooks exist).

    A Channel built while a trace hook is installed (the tour, ``--trace``)
    uses this seam, so the frames beneath the messages are visible as
    strace-like lines. Errors stay ``OSError`` here: the Channel translates.
    """

    def _emit(
        self, call: str, args: tuple[str, ...], result: str, data: bytes | None = None
    ) -> None:
        fd = self.raw.fileno()
        trace.emit(Event(call, (str(fd), *args), result, fd=fd, data=data))

    def _failed(self, call: str, args: tuple[str, ...], exc: OSError) -> None:
        fd = self.raw.fileno()
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
        args = (str(len(buf)), str(MsgFlag(socket.MSG_TRUNC)))
        try:
            size, address = super().recv_packet(buf)
        except OSError as exc:
            self._failed("recvfrom", args, exc)
            raise
        self._emit("recvfrom", args, str(size), buf[: min(size, len(buf))].tobytes())
        return size, address

    def send_all(self, buffers: Sequence[BytesLike]) -> None:
        for item in buffers:  # one send per call made, partial sends shown as they happen
            view = memoryview(item).cast("B")
            while view:
                args = (preview(bytes(view[:64])), str(len(view)), "MSG_NOSIGNAL")
                try:
                    sent = self.raw.send(view, socket.MSG_NOSIGNAL)
                except OSError as exc:
                    self._failed("send", args, exc)
                    raise
                self._emit("send", args, str(sent))
                view = view[sent:]

    def send_packet(self, buffers: Sequence[BytesLike]) -> None:
        data = b"".join(bytes(b) for b in buffers)
        args = ("[" + ", ".join(preview(bytes(b)) for b in buffers) + "]", str(len(data)))
        try:
            super().send_packet(buffers)
        except OSError as exc:
            self._failed("sendmsg", args, exc)
            raise
        self._emit("sendmsg", args, str(len(data)))


def _is_tls(sock: Socket) -> bool:
    """Is ``sock`` an ``ssl.SSLSocket``? (None exists unless ssl was imported: no import.)"""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(sock.raw, ssl.SSLSocket)


class TLSSocketIO:
    """The seam over a TLS connection (an ``ssl.SSLSocket``); chosen by ``from_socket``.

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

    def __init__(self, sock: Socket) -> None:
        import ssl

        self.socket = sock
        raw = sock.raw
        assert isinstance(raw, ssl.SSLSocket)
        raw.setblocking(False)
        self.raw = raw
        self.family = sock.family
        self.type = sock.type
        self.send_timeout: float | None = None  # close() bounds its flush with it
        self._want_read = ssl.SSLWantReadError
        self._want_write = ssl.SSLWantWriteError
        self._lock = threading.Lock()
        self._buf = bytearray(_framing.READ_SIZE)
        self._view = memoryview(self._buf)
        self._stash = b""  # decrypted by wait(), not yet returned by recv()
        self._stash_eof = False
        self._stash_error: OSError | None = None
        self._shut = False

    def _poll(self, events: int, deadline: float | None) -> bool:
        poller = select.poll()
        poller.register(self.raw.fileno(), events)
        if deadline is None:
            return bool(poller.poll(None))
        return bool(poller.poll(max(0.0, deadline - time.monotonic()) * 1000))

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
            if not self._poll(events, deadline):
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
        if len(buffers) > 1 and sum(len(b) for b in buffers) <= FLUSH_AT:
            buffers = (b"".join(buffers),)  # one TLS record, not one per piece
        deadline = None if self.send_timeout is None else time.monotonic() + self.send_timeout
        raw = self.raw
        lock = self._lock
        for item in buffers:
            view = memoryview(item).cast("B")
            while view:
                lock.acquire()
                try:
                    sent = raw.send(view)
                    view = view[sent:]
                    continue
                except self._want_write:
                    events = select.POLLOUT
                except self._want_read:
                    events = select.POLLIN
                finally:
                    lock.release()
                if not self._poll(events, deadline):
                    raise OSError(errno.ETIMEDOUT, "TLS send did not finish in time")

    def send_packet(self, buffers: Sequence[BytesLike]) -> None:
        raise InvalidOperation("send_packet on TLS", "TLS carries streams only")

    def wait(self, readable: bool, timeout: float | None) -> bool:
        if not readable:
            return self.socket.wait_writable(timeout)
        if self._stash or self._stash_eof or self._stash_error or self.raw.pending():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
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


# --------------------------------------------------------------------------
# The blocking driver
# --------------------------------------------------------------------------

_CHANNELS: weakref.WeakSet[Channel] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for channel in list(_CHANNELS):
        channel._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Channel:
    """Whole messages over a socket: ``send``, ``recv``, iteration, ``close``.

    Build one with :meth:`connect`, :meth:`from_socket` or :func:`pipe`. The
    constructor takes an I/O seam (:class:`SocketIO` or a test fake).
    ``recv`` returns ``bytes`` (or the codec's objects); ``send`` may buffer
    up to 64 KiB of small frames until ``flush()``, a blocking ``recv``,
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
        self.codec = get_codec(codec, authenticated=authenticated)
        self.authenticated = authenticated
        self._io = io
        self._core = core = ChannelCore(
            kind, framing=framing, max_size=max_size, packet_limit=packet_limit
        )
        self.kind = kind
        self.label = label
        self.close_timeout = CLOSE_TIMEOUT
        self._family = family
        self._sock_type = sock_type
        self._dumps = self.codec.encode if self.codec.dumps is not None else None
        self._loads = self.codec.decode if self.codec.loads is not None else None
        self._queue = core.queue
        self._pending = core.pending
        self._popleft = core.pending.popleft
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._packet_buf = memoryview(bytearray(MAX_PACKET)) if kind != "stream" else None
        self._packets = kind != "stream"
        self._limits: ReadLimits | None = None
        self._install_fast_paths()
        _CHANNELS.add(self)

    def _install_fast_paths(self) -> None:
        """Per-instance closures for send/recv of raw bytes: one Python call per message."""
        if self._dumps is None:
            fast = self._core.fast_sender(self._flush, self._write, self._send_lock)
            if fast is not None:
                self.send = fast  # type: ignore[method-assign,assignment]
            batch = self._core.fast_batch_sender(self._flush, self._write, self._send_lock)
            if batch is not None:
                self.send_many = batch  # type: ignore[method-assign,assignment]
        if self._limits is not None:
            self._install_limited()
        elif self._loads is None:
            self.recv = self._fast_receiver()  # type: ignore[method-assign,assignment]

    def _fast_receiver(self) -> Callable[[float | None], Any]:
        """recv() as one closure; for streams it holds _recv_general's loop, lean.

        Every name the loop needs is a closure cell (no attribute lookups):
        this is the round-trip path, where per-call Python work shows.
        """
        pending = self._pending
        popleft = self._popleft
        general = self._recv_general
        if self._packets:

            def recv_packets(timeout: float | None = None) -> Any:
                if pending:
                    try:
                        return popleft()
                    except IndexError:  # another thread took the last one
                        pass
                return general(timeout)

            return recv_packets
        core = self._core
        decoder = core.decoder
        assert decoder is not None
        io = self._io
        if isinstance(io, SocketIO) and not isinstance(io, TracedSocketIO):
            raw = io.raw
            fast = core.fast_stream_receiver(
                recv_into=raw.recv_into,
                view=io._view,
                sendall=raw.sendall,
                send_flags=socket.MSG_NOSIGNAL,
                recv_lock=self._recv_lock,
                send_lock=self._send_lock,
                general=general,
                general_read=self._read_once,
                on_error=self._recv_error,
                broken=self._break,
            )
            if fast is not None:
                return fast
        read_size = decoder.read_size
        receive = core.receive
        io_recv = self._io.recv
        io_send_all = self._io.send_all
        take = core.take
        recv_lock = self._recv_lock
        send_lock = self._send_lock
        recv_error = self._recv_error
        broken = self._break

        def recv(timeout: float | None = None) -> Any:
            if pending:
                try:
                    return popleft()
                except IndexError:  # another thread took the last one
                    pass
            if timeout is not None:
                return general(timeout)
            recv_lock.acquire()
            try:
                while not pending:
                    if core.state is not _OPEN:
                        core.check("recv")
                    # flush before blocking (unless another thread is writing)
                    if core.out and send_lock.acquire(False):
                        try:
                            io_send_all((take(),))
                        except OSError as exc:
                            raise recv_error(exc, "send") from exc
                        finally:
                            send_lock.release()
                    try:
                        data = io_recv(read_size(), decoder.exact)
                    except OSError as exc:
                        raise recv_error(exc, "recv") from exc
                    try:
                        receive(data)
                    except (ProtocolError, ConnectionLost):
                        broken()
                        raise
                return popleft()
            finally:
                recv_lock.release()

        return recv

    # ---- construction helpers

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

        The kind follows SO_TYPE. The socket is put in blocking mode (the
        Channel waits with poll for deadlines); TCP gets TCP_NODELAY, since
        the Channel coalesces small messages itself.
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
        kind: Kind
        if sock.type == socket.SOCK_STREAM:
            kind = "stream"
        elif sock.type == socket.SOCK_SEQPACKET:
            kind = "seqpacket"
        elif sock.type == socket.SOCK_DGRAM:
            kind = "dgram"
        else:
            raise InvalidOperation(
                f"a Channel over {sock!r}",
                "a Channel needs a stream, seqpacket or datagram socket",
            )
        packet_limit = MAX_PACKET
        if kind == "stream" and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif kind != "stream":
            packet_limit = min(MAX_PACKET, sock.packet_limit() or MAX_PACKET)
        io: ChannelIO
        if _is_tls(sock):
            io = TLSSocketIO(sock)
        else:
            seam = TracedSocketIO if trace.installed else SocketIO
            empty = kind == "seqpacket" and sock.family == socket.AF_UNIX
            io = seam(sock, empty_messages=empty and (framing or "none") == "none")
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
        """Connect to ``endpoint`` and wrap the socket (``?framing=`` picks the framing).

        ``tls+tcp://`` endpoints get TLS and ``?authfile=`` the HMAC handshake
        (:mod:`sockwire.secure`) before the Channel exists; ``timeout`` (or
        ``?timeout=``, else 10 s) bounds each of connect and those handshakes.
        The Channel is authenticated when they proved the peer (or when you
        say so with ``authenticated=True``).
        """
        from . import dial, secure

        ep = parse(endpoint)
        # a bad key file or certificate, or pickle without any way to
        # authenticate, fails before connecting
        get_codec(codec, authenticated=authenticated or secure.can_authenticate(ep))
        secure.check_client(ep)
        sock = dial.connect(ep, timeout=timeout)
        limit = timeout if timeout is not None else ep.float_option("timeout", None)
        sock, proven = secure.secure_client(sock, ep, timeout=10.0 if limit is None else limit)
        return cls.from_socket(
            sock,
            framing=ep.option("framing"),
            codec=codec,
            authenticated=authenticated or proven,
            max_size=max_size,
            label=ep.display(),
        )

    # ---- what it is

    @property
    def state(self) -> str:
        return self._core.state

    @property
    def closed(self) -> bool:
        return self._core.state is State.CLOSED

    @property
    def framing(self) -> str:
        """The framing mode on a stream; "seqpacket"/"dgram" for native boundaries."""
        return self._core.framing

    @property
    def stats(self) -> DatagramStats:
        """Loss, lateness, truncation and invalid counts (datagram channels)."""
        return self._core.stats

    @property
    def max_size(self) -> int:
        return self._core.max_size

    @property
    def max_message(self) -> int:
        """The largest message ``send`` accepts here (one packet, unless the
        stream or the sockwire packet header can split it)."""
        core = self._core
        if self.kind == "stream" or (self.kind == "seqpacket" and self.framing == "sockwire"):
            return core.max_size
        return core.packet_payload

    def fileno(self) -> int:
        io = self._io
        return io.raw.fileno() if isinstance(io, SocketIO | TLSSocketIO) else -1

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

    def send(self, msg: Any) -> None:
        """Send one message (buffered up to 64 KiB; see the class docstring)."""
        if self._dumps is not None:
            msg = self._dumps(msg)
        lock = self._send_lock
        lock.acquire()
        try:
            writes = self._queue(msg)
            if writes is not None:
                self._write(writes)
        except TypeError:
            raise self._type_error(msg) from None
        finally:
            lock.release()

    def send_many(self, msgs: Iterable[Any]) -> None:
        """Send every message of ``msgs`` under one lock (the batch path)."""
        dumps = self._dumps
        queue = self._queue
        lock = self._send_lock
        lock.acquire()
        try:
            for msg in msgs:
                writes = queue(msg if dumps is None else dumps(msg))
                if writes is not None:
                    self._write(writes)
        except TypeError:
            raise self._type_error(None) from None
        finally:
            lock.release()

    def flush(self) -> None:
        """Write every buffered frame now."""
        with self._send_lock:
            self._core.check("flush")
            self._flush_locked()

    def _flush_locked(self) -> None:
        core = self._core
        if core.out:
            data = core.take()
            try:
                self._io.send_all((data,))
            except OSError as exc:
                raise self._translate(exc, "send") from exc

    def _flush(self) -> None:
        """Write what is buffered (the fast sender's call when the buffer is full)."""
        lock = self._send_lock
        lock.acquire()
        try:
            self._flush_locked()
        finally:
            lock.release()

    def _write(self, writes: list[list[BytesLike]]) -> None:
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

    def _type_error(self, msg: Any) -> InvalidOperation:
        shown = type(msg).__name__ if msg is not None else "non-bytes object"
        return InvalidOperation(
            f"send of a {shown} on a {self.codec.name} channel",
            "send bytes, or open the channel with codec='json' (or msgpack)",
        )

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
            msg = self._recv_slow(timeout)
        if self._loads is not None:
            return self._loads(msg)
        return msg

    def _recv_slow(self, timeout: float | None) -> bytes:
        return self._recv_general(timeout)

    def _read_once(self) -> bytes:
        """One read as the decoder asks for it (recv lock held); messages go to pending."""
        core = self._core
        decoder = core.decoder
        assert decoder is not None
        data = self._io.recv(decoder.read_size(), decoder.exact)
        core.receive(data)
        return data

    def _recv_error(self, exc: OSError, op: str = "recv") -> SockwireError:
        if self._core.state is State.CLOSED:
            return ClosedError(f"recv on {self.label}", "the channel was closed during the call")
        return self._translate(exc, op)

    def _recv_general(self, timeout: float | None) -> bytes:
        if timeout is None:
            deadline = None
            self._recv_lock.acquire()
        else:
            deadline = time.monotonic() + timeout
            if not self._recv_lock.acquire(timeout=max(0.0, timeout)):
                raise TimeoutError(f"recv on {self.label}", f"no message within {timeout:g} s")
        try:
            core = self._core
            pending = self._pending
            io = self._io
            while not pending:
                if core.state is not State.OPEN:
                    core.check("recv")
                if core.out and self._send_lock.acquire(blocking=False):
                    try:  # flush before blocking, unless another thread is writing
                        self._flush_locked()
                    finally:
                        self._send_lock.release()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0 or not io.wait(True, left):
                        raise TimeoutError(
                            f"recv on {self.label}", f"no message within {timeout:g} s"
                        )
                try:
                    if self._packets:
                        buf = self._packet_buf
                        assert buf is not None
                        size, address = io.recv_packet(buf)
                        eof = size < 0 or (not size and core.zero_is_eof)
                        core.receive_packet(buf, size, address, eof=eof)
                    else:
                        want, exact = core.read_size()
                        data = io.recv(want, exact and deadline is None)
                        core.receive(data)
                except OSError as exc:
                    raise self._recv_error(exc) from exc
                except ProtocolError:
                    self._break()
                    raise
                except ConnectionLost:
                    self._break()
                    raise
                if core.state is State.CLOSED:
                    raise ClosedError(
                        f"recv on {self.label}", "the channel was closed during the call"
                    )
            return pending.popleft()
        finally:
            self._recv_lock.release()

    # ---- read limits (servers): idle timeout, frame deadline, draining

    def set_read_limits(self, limits: ReadLimits | None) -> None:
        """Put ``limits`` on every later ``recv`` (None removes them); see :class:`ReadLimits`.

        Reads then wait with poll() on the socket (and the stop fd) before
        each read instead of blocking in recv(): one more system call per
        blocking wait, nothing more per message. Only a Channel over a real
        socket can have limits.
        """
        raw = getattr(self._io, "raw", None)
        if limits is not None and raw is None:
            raise InvalidOperation(
                f"read limits on {self.label}", "they need a Channel over a real socket"
            )
        with self._recv_lock:
            self._limits = limits
            self._last_rx = time.monotonic()
            self._frame_started: float | None = None
            # a seam that buffers bytes poll() cannot see (TLS) is asked first
            self._io_buffers = not isinstance(self._io, SocketIO)
            if limits is not None and limits.stop_fd is not None:
                assert raw is not None
                self._stop_poller = select.poll()
                self._stop_poller.register(raw.fileno(), select.POLLIN)
                self._stop_poller.register(limits.stop_fd, select.POLLIN)
            if self._core.state is not State.CLOSED:
                self.__dict__.pop("recv", None)
                self.__dict__.pop("_recv_slow", None)
                self._install_fast_paths()

    def _install_limited(self) -> None:
        self._recv_slow = self._recv_limited  # type: ignore[method-assign]
        if self._loads is not None:
            return  # the class's recv() calls _recv_slow
        pending = self._pending
        popleft = self._popleft
        limited = self._recv_limited

        def recv(timeout: float | None = None) -> Any:
            if pending:
                try:
                    return popleft()
                except IndexError:  # another thread took the last one
                    pass
            return limited(timeout)

        self.recv = recv  # type: ignore[method-assign]

    def _recv_limited(self, timeout: float | None) -> bytes:
        """_recv_general with the read limits: poll to the nearest deadline, then read."""
        limits = self._limits
        assert limits is not None
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        if timeout is None:
            self._recv_lock.acquire()
        elif not self._recv_lock.acquire(timeout=max(0.0, timeout)):
            raise TimeoutError(f"recv on {self.label}", f"no message within {timeout:g} s")
        try:
            core = self._core
            pending = self._pending
            io = self._io
            buffers = self._io_buffers
            stop = self._stop_poller if limits.stop_fd is not None else None
            while not pending:
                if core.state is not State.OPEN:
                    core.check("recv")
                if core.out and self._send_lock.acquire(blocking=False):
                    try:  # flush before blocking, unless another thread is writing
                        self._flush_locked()
                    finally:
                        self._send_lock.release()
                now = time.monotonic()
                mid = core.in_message()
                # the nearest deadline: the caller's, or the limit that applies now
                if mid:
                    started = self._frame_started
                    if started is None:
                        started = self._frame_started = now
                    limit = None if limits.frame is None else started + limits.frame
                else:
                    self._frame_started = None
                    limit = None if limits.idle is None else self._last_rx + limits.idle
                until = deadline if limit is None else limit
                if deadline is not None and limit is not None:
                    until = min(limit, deadline)
                wait_ms = None if until is None else max(0.0, until - now) * 1000
                if stop is not None and not mid:
                    if buffers and io.wait(True, 0):
                        readable = True  # whole TLS records already decrypted
                    else:
                        ready = {fd for fd, _ in stop.poll(wait_ms)}
                        if limits.stop_fd in ready:
                            raise core.stop_reading(
                                ConnectionLost(
                                    f"recv on {self.label}",
                                    "the server is shutting down; no new message is read",
                                )
                            )
                        if ready and buffers:
                            continue  # bytes came; the seam decides if a record is whole
                        readable = bool(ready)
                else:
                    readable = io.wait(True, None if wait_ms is None else wait_ms / 1000)
                if not readable:
                    if deadline is not None and (limit is None or deadline <= limit):
                        raise TimeoutError(
                            f"recv on {self.label}", f"no message within {timeout:g} s"
                        )
                    if mid:
                        error = TimeoutError(
                            f"recv on {self.label}",
                            f"a message began to arrive but was not whole within "
                            f"{limits.frame:g} s (frame deadline); the connection is closed",
                        )
                        core.fail(error)
                        self._break()
                        raise error
                    raise core.stop_reading(
                        ConnectionLost(
                            f"recv on {self.label}",
                            f"nothing arrived for {limits.idle:g} s (idle timeout); "
                            "the connection is closed",
                        )
                    )
                try:
                    if self._packets:
                        buf = self._packet_buf
                        assert buf is not None
                        size, address = io.recv_packet(buf)
                        eof = size < 0 or (not size and core.zero_is_eof)
                        core.receive_packet(buf, size, address, eof=eof)
                    else:
                        want, _ = core.read_size()
                        core.receive(io.recv(want, False))  # no MSG_WAITALL: deadlines hold
                except OSError as exc:
                    raise self._recv_error(exc) from exc
                except (ProtocolError, ConnectionLost):
                    self._break()
                    raise
                self._last_rx = time.monotonic()
                if core.in_message() and (not mid or pending):
                    self._frame_started = self._last_rx
                if core.state is State.CLOSED:
                    raise ClosedError(
                        f"recv on {self.label}", "the channel was closed during the call"
                    )
            return pending.popleft()
        finally:
            self._recv_lock.release()

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
        for name in ("send", "send_many", "recv", "_recv_slow"):
            self.__dict__.pop(name, None)

    def _flush_on_close(self) -> None:
        writes = self._core.flush_writes()
        if not writes:
            return
        io = self._io
        if isinstance(io, SocketIO):
            # Bound the flush: a peer that never reads must not hang close().
            try:
                io.raw.settimeout(self.close_timeout)
                for write in writes:
                    io.send_all(write)
            except OSError as exc:
                log.warning(
                    "close %s: %d buffered bytes not delivered (%s)",
                    self.label,
                    sum(len(part) for write in writes for part in write),
                    exc,
                )
            finally:
                io.raw.settimeout(None)
            return
        if isinstance(io, TLSSocketIO):
            io.send_timeout = self.close_timeout  # bounded, as above
        try:
            for write in writes:
                io.send_all(write)
        except OSError as exc:
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


def pipe(
    type: int | str = "stream",  # the socketpair's type, as the issue names it
    *,
    framing: str | None = None,
    codec: str | Codec = "bytes",
    max_size: int = DEFAULT_MAX_SIZE,
    authenticated: bool = False,
) -> tuple[Channel, Channel]:
    """Two connected Channels over ``socketpair()``: multiprocessing.Pipe for sockets.

    ``type`` is "stream" (framed), "seqpacket" or "dgram" (or a SOCK_*
    constant). Fork, then let each process close the end it does not use.
    A socketpair's only peer is a process you forked, so you may declare the
    pair ``authenticated`` (which is what the pickle codec asks for).
    """
    from .sock import socketpair

    kinds = {"stream": socket.SOCK_STREAM, "seqpacket": socket.SOCK_SEQPACKET}
    kinds["dgram"] = socket.SOCK_DGRAM
    if isinstance(type, str):
        if type not in kinds:
            raise InvalidOperation(
                f"pipe(type={type!r})", "type is one of: stream, seqpacket, dgram"
            )
        sock_type: int = kinds[type]
    else:
        sock_type = int(type)
    a, b = socketpair(sock_type)
    frame = framing
    try:
        left = Channel.from_socket(
            a,
            framing=frame,
            codec=codec,
            authenticated=authenticated,
            max_size=max_size,
            label="pipe",
        )
    except BaseException:
        b.close()
        raise
    try:
        right = Channel.from_socket(
            b,
            framing=frame,
            codec=codec,
            authenticated=authenticated,
            max_size=max_size,
            label="pipe",
        )
    except BaseException:
        left.close()
        raise
    return left, right
