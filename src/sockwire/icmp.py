"""ICMP echo (ping) packets: build a request, parse a reply, verify checksums. Sans-IO.

Nothing here touches a socket: the tour's ``raw`` stop and ``sockwire ping``
send the bytes :func:`echo_request` builds and hand what they receive to
:func:`parse`. Malformed input raises :class:`~sockwire.errors.BadFrame`
(a ``ProtocolError``) and nothing else.

Platform knowledge, written where it is used:

* An ``AF_INET, SOCK_RAW, IPPROTO_ICMP`` socket receives the whole IPv4
  datagram, IP header included, and *every* ICMP message of its network
  namespace: your own echo request (type 8) arrives before the reply
  (type 0), and other programs' pings arrive too. Filter on type and ident.
* An ``AF_INET, SOCK_DGRAM, IPPROTO_ICMP`` "ping socket" (no capability,
  ``net.ipv4.ping_group_range``) receives the ICMP message without the IP
  header, and the kernel rewrites the ident to the socket's port.
* The ICMP checksum covers the ICMP header and payload; the IPv4 header has
  its own. A received packet whose checksum does not verify is reported
  (``checksum_ok``), not dropped: the caller decides.
* ICMPv6 (RFC 4443) has the same echo layout with types 128/129, but its
  checksum also covers a pseudo-header (source, destination, length, next
  header 58). A raw ``IPPROTO_ICMPV6`` socket has the kernel fill it in on
  send and drop bad ones on receive (RFC 3542 section 3.1: the checksum
  offset is always 2 there); :func:`checksum_ipv6` verifies it again when
  both addresses are known. Raw ICMPv6 sockets never see the IPv6 header.
* An ICMP error (destination unreachable, time exceeded) quotes the packet
  that caused it: the original IP header and at least its first 8 bytes
  (RFC 792; RFC 4443 quotes as much as fits in 1280 bytes), which for an
  echo request hold its ident and seq: :func:`quoted_echo` reads them.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from .errors import BadFrame

__all__ = [
    "ECHO_REPLY",
    "ECHO_REQUEST",
    "IPV4_MIN_HEADER",
    "IPv4Header",
    "IcmpPacket",
    "Quoted",
    "checksum",
    "checksum_ipv6",
    "echo_request",
    "parse",
    "parse_ipv4_header",
    "quoted_echo",
]

ECHO_REPLY = 0
ECHO_REQUEST = 8
DEST_UNREACHABLE = 3
TIME_EXCEEDED = 11
#: ICMPv6 (RFC 4443): errors are types 1..127, informational 128..255.
ECHO6_REQUEST = 128
ECHO6_REPLY = 129
DEST6_UNREACHABLE = 1
PACKET6_TOO_BIG = 2
TIME6_EXCEEDED = 3
PARAMETER6_PROBLEM = 4
IPV6_HEADER = 40

IPV4_MIN_HEADER = 20
_ICMP_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, ident, sequence
_IPV4 = struct.Struct("!BBHHHBBH4s4s")

#: The names of the ICMP types a ping meets.
TYPE_NAMES = {
    ECHO_REPLY: "echo reply",
    DEST_UNREACHABLE: "destination unreachable",
    ECHO_REQUEST: "echo request",
    TIME_EXCEEDED: "time exceeded",
}
TYPE6_NAMES = {
    DEST6_UNREACHABLE: "destination unreachable",
    PACKET6_TOO_BIG: "packet too big",
    TIME6_EXCEEDED: "time exceeded",
    PARAMETER6_PROBLEM: "parameter problem",
    ECHO6_REQUEST: "echo request",
    ECHO6_REPLY: "echo reply",
}


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): ones' complement of the ones' complement sum.

    Over data that already carries its checksum the result is 0.
    """
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksum_ipv6(src: str, dst: str, message: bytes) -> int:
    """The ICMPv6 checksum of ``message`` between ``src`` and ``dst`` (RFC 4443 2.3).

    Over a message that already carries its checksum the result is 0.
    """
    pseudo = (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!I3xB", len(message), 58)  # upper-layer length, zeros, next header
    )
    return checksum(pseudo + message)


def echo_request(ident: int, seq: int, payload: bytes = b"", *, ipv6: bool = False) -> bytes:
    """An ICMP echo request (type 8), checksum filled in, ready for a raw socket.

    ``ipv6``: an ICMPv6 echo request (type 128) with checksum 0, which the
    kernel fills in (it needs the source address, chosen at send time).
    """
    if not 0 <= ident <= 0xFFFF or not 0 <= seq <= 0xFFFF:
        raise ValueError(f"ident and seq are 16-bit: got ident={ident}, seq={seq}")
    if ipv6:
        return _ICMP_HEADER.pack(ECHO6_REQUEST, 0, 0, ident, seq) + payload
    header = _ICMP_HEADER.pack(ECHO_REQUEST, 0, 0, ident, seq)
    total = checksum(header + payload)
    return _ICMP_HEADER.pack(ECHO_REQUEST, 0, total, ident, seq) + payload


@dataclass(frozen=True, slots=True)
class IPv4Header:
    """The fields of an IPv4 header a ping reports."""

    version: int
    header_length: int  # bytes (IHL x 4)
    total_length: int
    ttl: int
    protocol: int
    src: str
    dst: str
    checksum_ok: bool


@dataclass(frozen=True, slots=True)
class IcmpPacket:
    """One ICMP message; ``ip`` is its IPv4 header when the socket delivered one.

    ``ident`` and ``seq`` are meaningful for echo request/reply only.
    """

    type: int
    code: int
    checksum: int
    ident: int
    seq: int
    payload: bytes
    checksum_ok: bool
    ip: IPv4Header | None = None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"type {self.type}")

    @property
    def is_echo_reply(self) -> bool:
        return self.type == ECHO_REPLY and self.code == 0

    @property
    def is_echo_request(self) -> bool:
        return self.type == ECHO_REQUEST and self.code == 0


def parse_ipv4_header(packet: bytes) -> IPv4Header:
    """Decode the IPv4 header at the start of ``packet`` (BadFrame if it is not one)."""
    if len(packet) < IPV4_MIN_HEADER:
        raise BadFrame(
            f"IPv4 header of {len(packet)} bytes",
            f"an IPv4 header has at least {IPV4_MIN_HEADER} bytes",
        )
    (vihl, _tos, total, _id, _frag, ttl, proto, _sum, src, dst) = _IPV4.unpack_from(packet)
    version, ihl = vihl >> 4, (vihl & 0x0F) * 4
    if version != 4:
        raise BadFrame(f"IP version {version}", "expected an IPv4 header (version 4)")
    if ihl < IPV4_MIN_HEADER or ihl > len(packet):
        raise BadFrame(
            f"IPv4 header length {ihl}",
            f"IHL must give {IPV4_MIN_HEADER}..{len(packet)} bytes for this packet",
        )
    return IPv4Header(
        version=version,
        header_length=ihl,
        total_length=total,
        ttl=ttl,
        protocol=proto,
        src=str(ipaddress.IPv4Address(src)),
        dst=str(ipaddress.IPv4Address(dst)),
        checksum_ok=checksum(packet[:ihl]) == 0,
    )


def parse(
    packet: bytes, *, ip_header: bool | None = None, ipv6: tuple[str, str] | None = None
) -> IcmpPacket:
    """Decode an ICMP message, with its IPv4 header or without.

    ``ip_header=None`` detects it: a leading byte 0x45..0x4F is an IPv4
    header (no ICMP type lies in 64..79). Raises BadFrame on anything that
    is not a well-formed message; a bad checksum is reported, not raised.
    ``ipv6=(src, dst)``: an ICMPv6 message (never with an IP header), its
    checksum verified with that pseudo-header.
    """
    packet = bytes(packet)
    if ipv6 is not None:
        ip_header = False
    if ip_header is None:
        ip_header = bool(packet) and packet[0] >> 4 == 4 and (packet[0] & 0x0F) >= 5
    ip = None
    if ip_header:
        ip = parse_ipv4_header(packet)
        if ip.protocol != 1:
            raise BadFrame(
                f"IPv4 protocol {ip.protocol}", "expected ICMP (protocol 1) after the IP header"
            )
        packet = packet[ip.header_length :]
    if len(packet) < _ICMP_HEADER.size:
        raise BadFrame(
            f"ICMP message of {len(packet)} bytes",
            f"an ICMP header has {_ICMP_HEADER.size} bytes",
        )
    kind, code, total, ident, seq = _ICMP_HEADER.unpack_from(packet)
    if ipv6 is not None:
        try:
            ok = checksum_ipv6(ipv6[0], ipv6[1], packet) == 0
        except ValueError as exc:
            raise BadFrame(f"ICMPv6 pseudo-header {ipv6}", "expected two IPv6 addresses") from exc
    else:
        ok = checksum(packet) == 0
    return IcmpPacket(
        type=kind,
        code=code,
        checksum=total,
        ident=ident,
        seq=seq,
        payload=packet[_ICMP_HEADER.size :],
        checksum_ok=ok,
        ip=ip,
    )


@dataclass(frozen=True, slots=True)
class Quoted:
    """The echo request an ICMP error quotes: where it went, its ident and seq."""

    dst: str
    ident: int
    seq: int


def quoted_echo(error: IcmpPacket, *, ipv6: bool = False) -> Quoted | None:
    """The echo request an ICMP error message is about, or None if it quotes something else.

    ``error.payload`` is the quoted packet: an IPv4 header (variable length)
    or a 40-byte IPv6 header (extension headers are not followed), then the
    first bytes of the original ICMP message. A quote too short to hold the
    echo header is malformed (BadFrame).
    """
    quote = error.payload
    if ipv6:
        if len(quote) < IPV6_HEADER + _ICMP_HEADER.size:
            raise BadFrame(
                f"ICMPv6 error quoting {len(quote)} bytes",
                f"expected the original IPv6 header and ICMPv6 header "
                f"({IPV6_HEADER + _ICMP_HEADER.size} bytes)",
            )
        if quote[0] >> 4 != 6 or quote[6] != 58:  # version, next header ICMPv6
            return None
        dst = str(ipaddress.IPv6Address(quote[24:40]))
        inner = quote[IPV6_HEADER:]
        request = ECHO6_REQUEST
    else:
        ip = parse_ipv4_header(quote)
        if ip.protocol != 1:
            return None
        inner = quote[ip.header_length :]
        if len(inner) < _ICMP_HEADER.size:
            raise BadFrame(
                f"ICMP error quoting {len(inner)} bytes after the IP header",
                f"RFC 792 quotes at least {_ICMP_HEADER.size}",
            )
        dst = ip.dst
        request = ECHO_REQUEST
    kind, code, _total, ident, seq = _ICMP_HEADER.unpack_from(inner)
    if kind != request or code != 0:
        return None
    return Quoted(dst, ident, seq)
