"""Messages on packet sockets (seqpacket, datagram), sans-IO: packets in, messages out.

A packet socket keeps message boundaries itself, so by default a message is
one packet and nothing more (framing ``none``): what socat, logger, systemd
and every other peer put on the wire. The sockwire packet header is opt-in
(framing ``sockwire``, the endpoint option ``?framing=sockwire``) and adds
what the kernel does not give (docs/PROTOCOL.md sections 2 and 3):

* **seqpacket**: one header byte per packet, so messages larger than one
  packet travel as fragments (the MORE flag) and an empty message is not a
  zero-length read;
* **datagram**: a 5-byte header with a sequence number per sender, so the
  receiver counts what was lost, reordered or duplicated (:class:`DatagramStats`).

Codecs (one per kind and framing, made by :func:`make_packet_codec`)::

    kind       framing   encode(msg)                       decode(packet)
    ---------  --------  --------------------------------  ----------------------------------
    seqpacket  none      [[msg]]; over the packet limit:    the packet; a zero-length one is
                         MessageTooLarge                     a message unless the driver saw
                                                            the peer hang up (then EOF)
    seqpacket  sockwire  [[0x10, msg]], or fragments        header checked (BadFrame),
                         [[0x11, piece], ..., [0x10, end]]   fragments joined; zero bytes = EOF
    dgram      none      [[msg]]; over the limit: MTL       the datagram; MSG_TRUNC counted
    dgram      sockwire  [[0x10 seq, msg]] per destination  header checked (invalid counted),
                                                            lost/late counted per sender

Bounds, stated once: a message's fragments are appended to one buffer and
each packet counts its full size (header included) toward ``max_size``, so
neither a large message nor a flood of empty fragments costs more than
``max_size`` plus one packet; at most :data:`MAX_TRACKED_SENDERS` senders
(and destinations) are remembered, the oldest forgotten first.

Errors that escape: :class:`~sockwire.errors.BadFrame`,
:class:`~sockwire.errors.FrameTooLarge`, :class:`~sockwire.errors.ConnectionLost`
(EOF inside a fragmented message) on decoding, and
:class:`~sockwire.errors.MessageTooLarge` on encoding. Nothing here touches
a socket or a clock.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from .address import PACKET_FRAMINGS
from .errors import BadFrame, ConnectionLost, FrameTooLarge, MessageTooLarge
from .framing import DEFAULT_MAX_SIZE, BytesLike

__all__ = [
    "DGRAM_HEADER",
    "FLAG_MORE",
    "FRAMINGS",
    "MAX_PACKET",
    "MAX_TRACKED_SENDERS",
    "VERSION",
    "DatagramCodec",
    "DatagramStats",
    "PacketCodec",
    "PacketKind",
    "SeqpacketCodec",
    "make_packet_codec",
]

log = logging.getLogger("sockwire")

PacketKind: TypeAlias = Literal["seqpacket", "dgram"]

#: The packet framings: the kernel's boundaries alone, or with the sockwire header.
FRAMINGS = PACKET_FRAMINGS
#: Largest packet a Channel sends or expects, header included (the receive buffer).
MAX_PACKET = 256 * 1024
#: Senders (and destinations) whose sequence numbers are remembered.
MAX_TRACKED_SENDERS = 1024

VERSION = 1
FLAG_MORE = 0x01  # seqpacket: another fragment of this message follows
_V = VERSION << 4
_RESERVED = 0x0E
_ONE = bytes([_V])
_MORE = bytes([_V | FLAG_MORE])
#: The datagram header: version/flags byte, then the sequence number.
DGRAM_HEADER = struct.Struct("!BI")
_SEQ_MASK = 0xFFFFFFFF
_SEQ_WINDOW = 1 << 31


@dataclass
class DatagramStats:
    """What a datagram channel knows went wrong (all counts since it opened).

    ``lost``: sequence numbers skipped and not (yet) filled by a late arrival;
    ``late``: datagrams older than one already seen (reordered or duplicated);
    ``truncated``: datagrams larger than the receive buffer (MSG_TRUNC), dropped;
    ``invalid``: datagrams without a valid sockwire header, dropped.
    ``lost`` and ``late`` are None when nothing numbers the datagrams (the
    default framing ``none``): loss is then not counted, not zero; open the
    endpoint with ``?framing=sockwire`` on both ends to count it.
    """

    lost: int | None = 0
    late: int | None = 0
    truncated: int = 0
    invalid: int = 0

    @property
    def counting(self) -> bool:
        """True when loss is counted (the sockwire framing numbers the datagrams)."""
        return self.lost is not None


def _too_large(size: int, limit: int, kind: str, *, framed: bool) -> MessageTooLarge:
    if framed:
        return MessageTooLarge(
            f"a {size}-byte {kind} message",
            f"this {kind} channel carries at most {limit} bytes per message (one datagram, "
            "after the 5-byte header); use a stream or seqpacket channel for larger messages",
        )
    what = "packet" if kind == "seqpacket" else "datagram"
    hint = f"one {what} carries at most {limit} bytes here"
    if kind == "seqpacket":
        hint += (
            "; add ?framing=sockwire on both ends to split larger messages into fragments "
            "(docs/PROTOCOL.md section 2)"
        )
    else:
        hint += (
            "; send smaller messages, or use a stream (?framing=sockwire on datagrams adds a "
            "sequence number, not fragmentation)"
        )
    return MessageTooLarge(f"a {size}-byte {kind} message", hint)


class _Codec:
    """What both packet codecs offer a driver (see the table in the module docstring)."""

    kind: PacketKind
    #: payload bytes per packet
    payload: int
    #: a zero-length read is EOF only when every packet has a header byte
    zero_is_eof: bool
    stats: DatagramStats

    def __init__(self, framing: str, max_size: int, packet_limit: int) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"packet framing must be one of {FRAMINGS}, not {framing!r}")
        self.framing = framing
        self.framed = framing == "sockwire"
        self.max_size = max_size
        #: the largest packet, header included
        self.limit = max(1, min(packet_limit, MAX_PACKET))

    @property
    def in_message(self) -> bool:
        """True while part of a message is held (EOF now would cut it)."""
        return False

    def encode(self, msg: BytesLike) -> list[list[BytesLike]]:
        """The packets that carry ``msg``, each a list of buffers for one sendmsg."""
        raise NotImplementedError

    def decode(self, buf: memoryview, size: int, sender: Hashable = None) -> bytes | None:
        """One packet of real length ``size`` (read into ``buf``) from ``sender``: the
        message it completes, or None."""
        raise NotImplementedError

    def end(self) -> None:
        """EOF: raise ConnectionLost when it cuts a message short."""

    def reset(self) -> None:
        """Forget a message half received (the channel was closed)."""


class SeqpacketCodec(_Codec):
    """Messages on a SOCK_SEQPACKET connection (framing ``none`` or ``sockwire``).

    ``packet_limit`` is the largest packet the kernel takes from us (the
    driver measures it: SO_SNDBUF - 32 on Linux), header included.
    """

    kind: PacketKind = "seqpacket"

    def __init__(
        self,
        framing: str = "none",
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        packet_limit: int = MAX_PACKET,
    ) -> None:
        super().__init__(framing, max_size, packet_limit)
        self.payload = max(1, self.limit - 1) if self.framed else self.limit
        self.zero_is_eof = self.framed
        self.stats = DatagramStats(lost=None, late=None)  # nothing is lost on a connection
        self._acc: bytearray | None = None  # fragments of the message arriving
        self._cost = 0  # what they counted toward max_size (packet sizes, headers included)
        self._fragments = 0

    # ---- outgoing

    def encode(self, msg: BytesLike) -> list[list[BytesLike]]:
        size = len(msg)
        limit = self.payload
        if not self.framed:
            if size > limit:
                raise _too_large(size, limit, "seqpacket", framed=False)
            return [[msg]]
        if size <= limit:
            return [[_ONE, msg]]
        if size > self.max_size:
            raise MessageTooLarge(
                f"a {size}-byte message",
                f"over max_size ({self.max_size} bytes), which the receiver enforces too",
            )
        view = memoryview(msg).cast("B")
        return [
            [_ONE if start + limit >= size else _MORE, view[start : start + limit]]
            for start in range(0, size, limit)
        ]

    # ---- incoming

    @property
    def in_message(self) -> bool:
        return self._acc is not None

    def decode(self, buf: memoryview, size: int, sender: Hashable = None) -> bytes | None:
        """One packet; the message it completes (``sender`` is the connected peer: unused).

        ``size`` larger than ``len(buf)`` means the kernel truncated it
        (MSG_TRUNC): a protocol error on a connection. A zero-length packet
        must be told from EOF by the driver first (:attr:`zero_is_eof`,
        :meth:`end`).
        """
        if size > len(buf):
            raise BadFrame(
                f"a {size}-byte seqpacket packet",
                f"over this receiver's {len(buf)}-byte packet limit (MSG_TRUNC)",
            )
        if not self.framed:
            return buf[:size].tobytes()
        if size == 0:
            raise BadFrame("an empty seqpacket packet", "every sockwire packet has a header byte")
        head = buf[0]
        if head & 0xF0 != _V or head & _RESERVED:
            raise BadFrame(
                f"a seqpacket packet with header byte 0x{head:02x}",
                f"expected 0x{_V:02x} or 0x{_V | FLAG_MORE:02x} (sockwire protocol "
                f"version {VERSION}, ?framing=sockwire); is the peer a sockwire Channel "
                "with the same framing?",
            )
        acc = self._acc
        if acc is None and not head & FLAG_MORE:
            return buf[1:size].tobytes()
        self._cost += size
        self._fragments += 1
        if self._cost > self.max_size:
            raise FrameTooLarge(
                f"a fragmented message of more than {self.max_size} bytes "
                f"({self._fragments} packets)",
                "over this receiver's max_size (every packet counts, header included)",
            )
        if acc is None:
            acc = self._acc = bytearray()
        acc += buf[1:size]
        if head & FLAG_MORE:
            return None
        self._acc = None
        self._cost = self._fragments = 0
        return bytes(acc)

    def end(self) -> None:
        """EOF: raise ConnectionLost when it cuts a fragmented message (dropped)."""
        if self._acc is not None:
            fragments = self._fragments
            self._acc = None
            self._cost = self._fragments = 0
            raise ConnectionLost(
                "the peer closed the channel in the middle of a message",
                f"{fragments} fragments of it arrived; they were dropped",
            )

    def reset(self) -> None:
        """Forget a message half received (the channel was closed)."""
        self._acc = None
        self._cost = self._fragments = 0


class DatagramCodec(_Codec):
    """Messages as datagrams (framing ``none`` or ``sockwire``), with loss accounting.

    ``packet_limit``: the largest datagram, header included (65,507 bytes of
    UDP payload over IPv4, 65,527 over IPv6; SO_SNDBUF - 32 on AF_UNIX).
    """

    kind: PacketKind = "dgram"
    zero_is_eof = False  # datagram sockets have no EOF

    def __init__(
        self,
        framing: str = "none",
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        packet_limit: int = MAX_PACKET,
    ) -> None:
        super().__init__(framing, max_size, packet_limit)
        header = DGRAM_HEADER.size if self.framed else 0
        self.payload = max(1, min(self.limit - header, max_size))
        self.stats = DatagramStats() if self.framed else DatagramStats(lost=None, late=None)
        self._seq = 0
        self._seq_to: dict[Hashable, int] = {}
        self._expect: dict[Hashable, int] = {}

    def _check(self, size: int) -> None:
        if size > self.payload:
            raise _too_large(size, self.payload, "datagram", framed=self.framed)

    # ---- outgoing

    def encode(self, msg: BytesLike) -> list[list[BytesLike]]:
        """The one datagram for ``msg`` (numbered from this sender's one sequence)."""
        self._check(len(msg))
        if not self.framed:
            return [[msg]]
        header = DGRAM_HEADER.pack(_V, self._seq)
        self._seq = (self._seq + 1) & _SEQ_MASK
        return [[header, msg]]

    def encode_to(self, msg: BytesLike, address: Hashable) -> list[BytesLike]:
        """One datagram for ``address``, numbered in that destination's own sequence.

        A socket that answers many senders (a datagram server) numbers each
        destination separately, so every receiver sees 0, 1, 2, ... and counts
        no false losses.
        """
        self._check(len(msg))
        if not self.framed:
            return [msg]
        seqs = self._seq_to
        seq = seqs.pop(address, 0)
        if len(seqs) >= MAX_TRACKED_SENDERS:
            del seqs[next(iter(seqs))]
        seqs[address] = (seq + 1) & _SEQ_MASK
        return [DGRAM_HEADER.pack(_V, seq), msg]

    # ---- incoming

    def decode(self, buf: memoryview, size: int, sender: Hashable = None) -> bytes | None:
        """One datagram from ``sender``: its message, or None (truncated or invalid: dropped)."""
        stats = self.stats
        if size > len(buf):
            stats.truncated += 1
            log.warning("dropped a truncated %d-byte datagram (MSG_TRUNC)", size)
            return None
        if not self.framed:
            return buf[:size].tobytes()
        hsize = DGRAM_HEADER.size
        if size < hsize or buf[0] != _V:
            stats.invalid += 1
            log.debug("dropped a %d-byte datagram without a sockwire header", size)
            return None
        (_, seq) = DGRAM_HEADER.unpack_from(buf)
        expect = self._expect
        want = expect.get(sender)
        if want is None:
            if len(expect) >= MAX_TRACKED_SENDERS:
                del expect[next(iter(expect))]
            expect[sender] = (seq + 1) & _SEQ_MASK
        else:
            gap = (seq - want) & _SEQ_MASK
            lost = stats.lost
            assert lost is not None
            assert stats.late is not None
            if gap == 0:
                expect[sender] = (seq + 1) & _SEQ_MASK
            elif gap < _SEQ_WINDOW:
                stats.lost = lost + gap
                expect[sender] = (seq + 1) & _SEQ_MASK
            else:  # older than expected: reordered or duplicated
                stats.late += 1
                if lost:
                    stats.lost = lost - 1
        return buf[hsize:size].tobytes()


PacketCodec: TypeAlias = SeqpacketCodec | DatagramCodec


def make_packet_codec(
    kind: PacketKind,
    framing: str = "none",
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    packet_limit: int = MAX_PACKET,
) -> PacketCodec:
    """The codec of ``kind`` in ``framing`` (one of :data:`FRAMINGS`)."""
    if kind == "seqpacket":
        return SeqpacketCodec(framing, max_size=max_size, packet_limit=packet_limit)
    return DatagramCodec(framing, max_size=max_size, packet_limit=packet_limit)
