"""What a Channel decides, for every driver: state, queues, framing, deadlines (pure).

State rules of a Channel (the core enforces them; every driver shares them)::

    state        event                          next         the caller sees
    -----------  -----------------------------  -----------  ---------------------------------
    OPEN         send(msg)                      OPEN         frame queued; flushed at 64 KiB,
                                                             on flush(), before a blocking
                                                             recv and on close()
    OPEN         send(msg, timeout) runs out    OPEN         TimeoutError; nothing of msg was
                 before any of msg is written                written (send it again if you like)
    OPEN         send(msg, timeout) runs out    BROKEN       TimeoutError; part of msg was
                 with part of msg written                    written: the connection is shut down
    OPEN         flush(timeout) runs out        OPEN         TimeoutError; what is not written
                                                             stays queued, in order
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

The bytes are :mod:`sockwire.framing`'s (streams) and :mod:`sockwire.packet`'s
(seqpacket, datagrams); this module keeps the state around them: the send
buffer, the queue of whole messages, and the read deadlines as arithmetic on
a ``now`` the driver passes in (:class:`ReadTimer`). It makes no system call,
reads no clock and takes no lock: the blocking driver (``blocking.py``) and
the asyncio one share it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from .. import framing as _framing
from ..address import PACKET_FRAMINGS
from ..codecs import Codec, get_codec
from ..errors import (
    ClosedError,
    ConnectionLost,
    InvalidOperation,
    MessageTooLarge,
    ProtocolError,
    SockwireError,
    TimeoutError,
)
from ..framing import BIG, DEFAULT_MAX_SIZE, BytesLike
from ..packet import MAX_PACKET, DatagramCodec, DatagramStats, PacketCodec, make_packet_codec

__all__ = [
    "CLOSE_TIMEOUT",
    "FLUSH_AT",
    "MAX_PACKET",
    "ChannelCore",
    "CoreView",
    "DatagramStats",
    "Kind",
    "ReadLimits",
    "ReadTimer",
    "State",
    "Writes",
    "not_bytes",
]

#: send() buffers small frames until this many bytes are waiting.
FLUSH_AT = 64 * 1024
#: How long close() may spend flushing frames a slow peer does not read.
CLOSE_TIMEOUT = 5.0

Kind: TypeAlias = Literal["stream", "seqpacket", "dgram"]
#: What the driver must write: each inner list is one unit (a whole stream
#: write, or one packet).
Writes: TypeAlias = list[list[BytesLike]]


class State:
    """The states of the table at the top of this module."""

    OPEN = "OPEN"
    PEER_CLOSED = "PEER_CLOSED"
    BROKEN = "BROKEN"
    CLOSED = "CLOSED"


def not_bytes(msg: object, codec: str = "bytes") -> InvalidOperation:
    """The error for a send of something the channel cannot carry."""
    shown = type(msg).__name__ if msg is not None else "non-bytes object"
    return InvalidOperation(
        f"send of a {shown} on a {codec} channel",
        "send bytes, or open the channel with codec='json' (or msgpack)",
    )


@dataclass(frozen=True)
class ReadLimits:
    """Limits a server puts on a Channel's reads (``Channel.set_read_limits``).

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


class ReadTimer:
    """The read limits as arithmetic: which instant a waiting recv must give up at, and why.

    ``now`` always comes from the driver's clock; nothing here reads one.
    Causes: ``"caller"`` (the recv's own timeout: TimeoutError, the channel
    stays usable), ``"frame"`` (a message begun is not whole in time:
    BROKEN), ``"idle"`` (nothing began for ``limits.idle``: PEER_CLOSED).
    """

    __slots__ = ("frame_started", "last_rx", "limits")

    def __init__(self, limits: ReadLimits, now: float) -> None:
        self.limits = limits
        self.last_rx = now
        self.frame_started: float | None = None

    def until(self, now: float, deadline: float | None, mid: bool) -> tuple[float | None, str]:
        """The nearest instant to wait until and its cause; ``mid``: a message has begun."""
        limits = self.limits
        if mid:
            if self.frame_started is None:
                self.frame_started = now
            limit = None if limits.frame is None else self.frame_started + limits.frame
            cause = "frame"
        else:
            self.frame_started = None
            limit = None if limits.idle is None else self.last_rx + limits.idle
            cause = "idle"
        if limit is None or (deadline is not None and deadline <= limit):
            return deadline, "caller"
        return limit, cause

    def received(self, now: float, mid_before: bool, mid_after: bool, delivered: bool) -> None:
        """Bytes arrived at ``now``; a new message's clock starts when one began with them."""
        self.last_rx = now
        if mid_after and (not mid_before or delivered):
            self.frame_started = now


class ChannelCore:
    """Everything a Channel decides, for any driver.

    Outgoing: :meth:`queue` returns None (buffered in :attr:`out`) or the
    :data:`Writes` to make now. Incoming: the driver asks :meth:`read_size`,
    reads, and calls :meth:`receive` (streams) or :meth:`receive_packet`;
    whole messages appear in :attr:`pending`.
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
        self.decoder: _framing.Decoder | None = None
        #: the length-prefix encoder whose small frames the drivers append inline
        self.prefix: _framing.LengthPrefixEncoder | None = None
        #: frames smaller than this go the inline way (0: none do)
        self.fast_limit = 0
        if kind == "stream":
            fc = _framing.make_codec(framing or "len32", max_size=max_size)
            self.framing = fc.name
            self.encoder = fc.encoder
            self.decoder = fc.decoder
            self.stats = DatagramStats()
            if isinstance(fc.encoder, _framing.LengthPrefixEncoder) and fc.encoder.width > 2:
                # len16 goes the checked way: 65535 is its limit, not ours
                self.prefix = fc.encoder
                self.fast_limit = BIG
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
            self.stats = self.packets.stats
        self.sendable = True  # OPEN or PEER_CLOSED: the hot path tests one attribute
        #: payload bytes per packet (seqpacket, dgram)
        self.packet_payload = self.packets.payload if self.packets is not None else 0

    @property
    def zero_is_eof(self) -> bool:
        """A zero-length read is EOF (streams, framed seqpacket); else the seam says (-1)."""
        packets = self.packets
        return packets is None or packets.zero_is_eof

    @property
    def max_message(self) -> int:
        """The largest message :meth:`queue` accepts (one packet, unless a header splits)."""
        if self.kind == "stream" or (self.kind == "seqpacket" and self.framing == "sockwire"):
            return self.max_size
        return self.packet_payload

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

    def read_expired(
        self, cause: str, label: str, timeout: float | None, limits: ReadLimits | None
    ) -> SockwireError:
        """The error a waiting recv raises when its :meth:`ReadTimer.until` instant passed.

        ``"frame"`` breaks the channel (the driver then shuts the socket
        down), ``"idle"`` ends reading (PEER_CLOSED), ``"caller"`` changes
        nothing.
        """
        what = f"recv on {label}"
        if cause == "caller":
            return TimeoutError(what, f"no message within {timeout or 0:g} s")
        assert limits is not None
        if cause == "frame":
            return self.fail(
                TimeoutError(
                    what,
                    f"a message began to arrive but was not whole within {limits.frame:g} s "
                    "(frame deadline); the connection is closed",
                )
            )
        return self.stop_reading(
            ConnectionLost(
                what,
                f"nothing arrived for {limits.idle:g} s (idle timeout); the connection is closed",
            )
        )

    def draining(self, label: str) -> ConnectionLost:
        """The server drains: a recv waiting between messages ends like an idle one."""
        return self.stop_reading(
            ConnectionLost(
                f"recv on {label}", "the server is shutting down; no new message is read"
            )
        )

    # ---- outgoing

    def queue(self, msg: BytesLike) -> Writes | None:
        """Frame ``msg``; None while it only sits in the buffer, else the writes to make."""
        if not self.sendable:
            self.check("send")
        size = len(msg)
        if self.kind == "stream":
            out = self.out
            prefix = self.prefix
            if prefix is not None and size < self.fast_limit:
                out += prefix.pack(size) + msg  # one append: atomic, and all or nothing
                return [[self.take()]] if len(out) >= FLUSH_AT else None
            return self._queue_stream_slow(msg, size)
        packets = self.packets
        assert packets is not None
        return packets.encode(msg)

    def frame(self, msg: BytesLike) -> Writes:
        """``msg`` as the writes that carry it, bypassing the buffer (a send with a deadline)."""
        if not self.sendable:
            self.check("send")
        if self.kind != "stream":
            packets = self.packets
            assert packets is not None
            return packets.encode(msg)
        size = len(msg)
        self._check_size(size)
        head, trailer = self.encoder.head(msg)
        write: list[BytesLike] = [head] if head else []
        write.append(msg)
        if trailer:
            write.append(trailer)
        return [write]

    def encode_batch(self, msgs: Iterable[BytesLike]) -> bytearray:
        """The stream frames of ``msgs`` in one buffer (a batch written under one deadline)."""
        batch = bytearray()
        append = self.encoder.append
        for msg in msgs:
            self._check_size(len(msg))
            append(batch, msg)
        return batch

    def _check_size(self, size: int) -> None:
        if size > self.max_size:
            raise MessageTooLarge(
                f"a {size}-byte message",
                f"over max_size ({self.max_size} bytes), which the receiver enforces too; "
                "raise max_size on both ends",
            )

    def _queue_stream_slow(self, msg: BytesLike, size: int) -> Writes | None:
        out = self.out
        self._check_size(size)
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

    def datagram_to(self, msg: BytesLike, address: Hashable) -> list[BytesLike]:
        """One datagram for ``address``, in that destination's own sequence (a server's reply)."""
        packets = self.packets
        assert isinstance(packets, DatagramCodec)
        return packets.encode_to(msg, address)

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

    def put_back(self, data: BytesLike) -> None:
        """Bytes taken for a write that did not go out: first in the buffer again, in order.

        Appends made since :meth:`take` are newer, so they stay behind.
        """
        self.out[0:0] = data

    def flush_writes(self) -> Writes:
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
        self, buf: memoryview, size: int, address: Hashable, *, eof: bool = False
    ) -> None:
        """One packet of ``size`` bytes (its real length: > len(buf) means truncated).

        ``eof``: the driver decided this read is the end (see
        :attr:`zero_is_eof`; a seam that can tell says -1).
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


class CoreView:
    """What a Channel is, read from its core: the same properties on both drivers,
    and the construction they share (:meth:`_init_core`)."""

    # the aio Channel has slots (a server holds thousands); these are the shared ones
    __slots__ = (
        "_core",
        "_dumps",
        "_family",
        "_loads",
        "_packets",
        "_pending",
        "_sock_type",
        "authenticated",
        "close_timeout",
        "codec",
        "kind",
        "label",
    )
    _core: ChannelCore
    codec: Codec
    authenticated: bool
    kind: Kind
    label: str
    close_timeout: float
    _family: int | None
    _sock_type: int | None
    _dumps: Callable[[Any], bytes] | None
    _loads: Callable[[bytes], Any] | None
    _pending: collections.deque[bytes]
    _packets: bool

    def _init_core(
        self,
        kind: Kind,
        framing: str | None,
        codec: str | Codec,
        authenticated: bool,
        max_size: int,
        packet_limit: int,
        label: str,
        family: int | None,
        sock_type: int | None,
    ) -> ChannelCore:
        """The codec (refusing pickle unless ``authenticated``), the core, and the
        names both drivers keep; returns the core."""
        self.codec = codec_ = get_codec(codec, authenticated=authenticated)
        self.authenticated = authenticated
        self._core = core = ChannelCore(
            kind, framing=framing, max_size=max_size, packet_limit=packet_limit
        )
        self.kind = kind
        self.label = label
        self.close_timeout = CLOSE_TIMEOUT
        self._family = family
        self._sock_type = sock_type
        self._dumps = codec_.encode if codec_.dumps is not None else None
        self._loads = codec_.decode if codec_.loads is not None else None
        self._pending = core.pending
        self._packets = kind != "stream"
        return core

    @property
    def state(self) -> str:
        return self._core.state

    @property
    def closed(self) -> bool:
        return self._core.state is State.CLOSED

    @property
    def framing(self) -> str:
        """The framing: a stream's mode, or ``none``/``sockwire`` on packet sockets."""
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
        return self._core.max_message
