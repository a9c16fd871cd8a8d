"""icmp.py: checksums, echo requests, replies with and without an IP header, fuzzed."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockwire import Socket, icmp
from sockwire.errors import BadFrame, ProtocolError
from tests.helpers import need_root


def _ipv4(payload: bytes, src: str = "127.0.0.1", dst: str = "127.0.0.1", proto: int = 1) -> bytes:
    """An IPv4 header (checksum filled in) followed by ``payload``, as a raw socket delivers."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0x1234,
        0x4000,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    header = header[:10] + struct.pack("!H", icmp.checksum(header)) + header[12:]
    return header + payload


def _reply_for(request: bytes) -> bytes:
    """What the kernel answers: type 0, same id/seq/payload, checksum recomputed."""
    body = b"\0" + request[1:2] + b"\0\0" + request[4:]
    return body[:2] + struct.pack("!H", icmp.checksum(body)) + body[4:]


def test_checksum_matches_rfc_1071_example() -> None:
    # RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2, so the checksum is 220d
    assert icmp.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_of_odd_length_pads_with_zero() -> None:
    assert icmp.checksum(b"\x01") == icmp.checksum(b"\x01\x00")


def test_echo_request_layout() -> None:
    packet = icmp.echo_request(0x1234, 7, b"ping")
    assert packet[:2] == b"\x08\x00"
    assert struct.unpack("!HH", packet[4:8]) == (0x1234, 7)
    assert packet[8:] == b"ping"
    assert icmp.checksum(packet) == 0


def test_echo_request_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="16-bit"):
        icmp.echo_request(70000, 1)
    with pytest.raises(ValueError, match="16-bit"):
        icmp.echo_request(1, -1)


def test_parse_a_reply_with_its_ip_header() -> None:
    reply = _ipv4(_reply_for(icmp.echo_request(99, 3, b"payload")))
    packet = icmp.parse(reply)
    assert packet.is_echo_reply
    assert (packet.ident, packet.seq, packet.payload) == (99, 3, b"payload")
    assert packet.checksum_ok
    assert packet.ip is not None
    assert (packet.ip.src, packet.ip.dst, packet.ip.ttl, packet.ip.protocol) == (
        "127.0.0.1",
        "127.0.0.1",
        64,
        1,
    )
    assert packet.ip.checksum_ok
    assert packet.ip.header_length == 20
    assert packet.type_name == "echo reply"


def test_parse_without_ip_header_as_a_ping_socket_delivers() -> None:
    packet = icmp.parse(_reply_for(icmp.echo_request(1, 2, b"x")))
    assert packet.ip is None
    assert packet.is_echo_reply and packet.payload == b"x"
    forced = icmp.parse(icmp.echo_request(1, 2), ip_header=False)
    assert forced.is_echo_request


def test_a_bad_checksum_is_reported_not_raised() -> None:
    request = bytearray(icmp.echo_request(5, 5, b"abc"))
    request[-1] ^= 0xFF
    assert not icmp.parse(bytes(request)).checksum_ok


@pytest.mark.parametrize(
    ("data", "ip_header", "match"),
    [
        (b"", None, "ICMP message of 0 bytes"),
        (b"\x08\x00\x00", False, "ICMP message of 3 bytes"),
        (b"\x45" + b"\0" * 10, True, "IPv4 header of 11 bytes"),
        (b"\x60" + b"\0" * 40, True, "IP version 6"),
        (b"\x4f" + b"\0" * 30, True, "IPv4 header length 60"),
        (_ipv4(b"\0" * 8, proto=17), None, "IPv4 protocol 17"),
        (_ipv4(b"\0" * 4), None, "ICMP message of 4 bytes"),
    ],
)
def test_malformed_input_raises_bad_frame(data: bytes, ip_header: bool | None, match: str) -> None:
    with pytest.raises(BadFrame, match=match):
        icmp.parse(data, ip_header=ip_header)


@given(st.binary(max_size=200), st.sampled_from([None, True, False]))
def test_any_bytes_decode_or_raise_a_protocol_error(data: bytes, ip_header: bool | None) -> None:
    try:
        packet = icmp.parse(data, ip_header=ip_header)
    except ProtocolError:
        return
    assert isinstance(packet, icmp.IcmpPacket)


@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(max_size=100),
    st.booleans(),
)
def test_echo_round_trip(ident: int, seq: int, payload: bytes, with_ip: bool) -> None:
    reply = _reply_for(icmp.echo_request(ident, seq, payload))
    packet = icmp.parse(_ipv4(reply) if with_ip else reply, ip_header=with_ip)
    assert (packet.ident, packet.seq, packet.payload) == (ident, seq, payload)
    assert packet.checksum_ok and packet.is_echo_reply


@given(st.binary(max_size=64))
def test_checksum_of_data_with_its_checksum_is_zero(data: bytes) -> None:
    if len(data) % 2:
        data += b"\0"
    total = icmp.checksum(data)
    assert icmp.checksum(data + struct.pack("!H", total)) == 0


@pytest.mark.timeout(10)
def test_echo_round_trip_over_a_real_raw_socket() -> None:
    need_root()
    ident, payload = os.getpid() & 0xFFFF, b"sockwire test"
    with Socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(icmp.echo_request(ident, 1, payload), ("127.0.0.1", 0))
        seen = []
        for _ in range(50):  # bounded; other ICMP on the host may interleave
            assert sock.wait_readable(2.0), "no ICMP within 2 s"
            data, _ = sock.recvfrom(65535)
            packet = icmp.parse(data)
            if packet.ident != ident:
                continue
            seen.append(packet.type)
            if packet.is_echo_reply:
                break
    assert seen == [icmp.ECHO_REQUEST, icmp.ECHO_REPLY]  # our own request comes back first
    assert packet.payload == payload and packet.checksum_ok
    assert packet.ip is not None and packet.ip.checksum_ok
