"""packet.py: messages on seqpacket and datagram sockets, sans-IO, fuzzed like framing.py."""

from __future__ import annotations

import ast
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockwire import packet
from sockwire.errors import (
    BadFrame,
    ConnectionLost,
    FrameTooLarge,
    MessageTooLarge,
    ProtocolError,
)
from sockwire.packet import (
    MAX_PACKET,
    DatagramCodec,
    SeqpacketCodec,
    make_packet_codec,
)


def _wire(packets: list[list[object]]) -> list[bytes]:
    return [b"".join(bytes(part) for part in p) for p in packets]  # type: ignore[arg-type]


def _decode_all(codec: SeqpacketCodec | DatagramCodec, packets: list[bytes]) -> list[bytes]:
    out = []
    buf = memoryview(bytearray(MAX_PACKET))
    for pkt in packets:
        buf[: len(pkt)] = pkt
        msg = codec.decode(buf, len(pkt), "peer")
        if msg is not None:
            out.append(msg)
    return out


def test_sans_io_imports_no_socket_thread_select_or_time() -> None:
    source = Path(packet.__file__).read_text()
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"socket", "threading", "select", "time"}


# ---- seqpacket


@settings(max_examples=2000)
@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.integers(min_value=2, max_value=64),
)
def test_sockwire_seqpacket_round_trips_at_any_packet_limit(
    messages: list[bytes], limit: int
) -> None:
    tx = SeqpacketCodec("sockwire", packet_limit=limit)
    rx = SeqpacketCodec("sockwire")
    packets = [pkt for msg in messages for pkt in _wire(tx.encode(msg))]  # type: ignore[arg-type]
    assert all(1 <= len(pkt) <= limit for pkt in packets)
    assert _decode_all(rx, packets) == messages
    assert not rx.in_message
    rx.end()  # a clean end between messages


@settings(max_examples=2000)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_plain_seqpacket_is_the_message_itself(messages: list[bytes]) -> None:
    tx = SeqpacketCodec("none", packet_limit=64)
    assert [_wire(tx.encode(m)) for m in messages] == [[m] for m in messages]
    assert _decode_all(SeqpacketCodec("none"), messages) == messages


@settings(max_examples=2000)
@given(st.lists(st.binary(max_size=20), max_size=20))
def test_random_packets_give_messages_or_a_documented_error(packets: list[bytes]) -> None:
    rx = SeqpacketCodec("sockwire", max_size=100)
    try:
        _decode_all(rx, packets)
        rx.end()
    except (ProtocolError, ConnectionLost):
        pass


def test_eof_inside_a_fragmented_message_is_connection_lost() -> None:
    rx = SeqpacketCodec("sockwire")
    assert _decode_all(rx, [b"\x11part one, "]) == []
    assert rx.in_message
    with pytest.raises(ConnectionLost, match="1 fragments"):
        rx.end()
    assert not rx.in_message


@pytest.mark.parametrize("head", [0x00, 0x20, 0x12, 0x1E, 0xFF])
def test_foreign_header_bytes_are_bad_frames(head: int) -> None:
    with pytest.raises(BadFrame, match=f"0x{head:02x}"):
        _decode_all(SeqpacketCodec("sockwire"), [bytes([head]) + b"x"])


def test_an_empty_sockwire_packet_and_a_truncated_one_are_bad_frames() -> None:
    rx = SeqpacketCodec("sockwire")
    with pytest.raises(BadFrame, match="header byte"):
        rx.decode(memoryview(bytearray(8)), 0)
    with pytest.raises(BadFrame, match="MSG_TRUNC"):
        rx.decode(memoryview(bytearray(8)), 9)


def test_plain_seqpacket_over_the_limit_names_the_sockwire_framing() -> None:
    tx = SeqpacketCodec("none", packet_limit=100)
    with pytest.raises(MessageTooLarge, match=r"\?framing=sockwire"):
        tx.encode(b"x" * 101)
    assert _wire(tx.encode(b"x" * 100)) == [b"x" * 100]  # type: ignore[arg-type]


def test_every_fragment_counts_toward_max_size_even_an_empty_one() -> None:
    rx = SeqpacketCodec("sockwire", max_size=1000)
    buf = memoryview(bytearray(b"\x11"))
    for _ in range(1000):
        assert rx.decode(buf, 1) is None
    with pytest.raises(FrameTooLarge, match="1001 packets"):
        rx.decode(buf, 1)


def test_a_flood_of_empty_fragments_costs_no_memory() -> None:
    """Today's defect: 8M empty fragments cost 711 MB. Now: a count, no objects."""
    rx = SeqpacketCodec("sockwire")  # max_size 16 MiB: 200,000 one-byte packets fit
    buf = memoryview(bytearray(b"\x11"))
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(200_000):
            rx.decode(buf, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 64 * 1024, f"{peak - base} bytes for 200,000 empty fragments"
    assert rx.decode(memoryview(bytearray(b"\x10end")), 4) == b"end"


def test_fragments_cost_max_size_plus_one_packet() -> None:
    size = 4 << 20
    tx = SeqpacketCodec("sockwire", packet_limit=1000)
    rx = SeqpacketCodec("sockwire", max_size=size + size // 999 + 1)
    packets = tx.encode(b"m" * size)
    buf = memoryview(bytearray(1000))
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        result = None
        for pkt in packets:
            data = b"".join(bytes(p) for p in pkt)  # type: ignore[arg-type]
            buf[: len(data)] = data
            result = rx.decode(buf, len(data)) or result
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == b"m" * size
    # the accumulator (bytearray growth: up to 1/8 over) plus the message it becomes
    assert peak - base < 2.3 * size, f"{peak - base} bytes for a {size}-byte message"


# ---- datagrams


def test_sockwire_datagrams_count_loss_lateness_and_garbage() -> None:
    tx = DatagramCodec("sockwire")
    rx = DatagramCodec("sockwire")
    wire = [_wire(tx.encode(b"%d" % i))[0] for i in range(10)]  # type: ignore[arg-type]
    assert _decode_all(rx, [wire[i] for i in (0, 1, 4, 5, 2, 9)]) == [
        b"0",
        b"1",
        b"4",
        b"5",
        b"2",
        b"9",
    ]
    assert (rx.stats.lost, rx.stats.late) == (4, 1)
    assert _decode_all(rx, [b"junk", b"\x20\0\0\0\0x"]) == []
    assert rx.stats.invalid == 2
    assert rx.decode(memoryview(bytearray(8)), 9) is None
    assert rx.stats.truncated == 1


def test_plain_datagrams_are_not_numbered_and_loss_is_not_counted() -> None:
    tx = DatagramCodec("none", packet_limit=100)
    rx = DatagramCodec("none")
    assert _wire(tx.encode(b"as is")) == [b"as is"]  # type: ignore[arg-type]
    assert _decode_all(rx, [b"", b"anything", b"\x10\0\0\0\0x"]) == [
        b"",
        b"anything",
        b"\x10\0\0\0\0x",
    ]
    assert rx.stats.lost is None
    assert rx.stats.late is None
    assert not rx.stats.counting
    with pytest.raises(MessageTooLarge, match="at most 100 bytes"):
        tx.encode(b"x" * 101)


def test_each_destination_has_its_own_sequence() -> None:
    tx = DatagramCodec("sockwire")
    seqs = [struct.unpack("!BI", bytes(tx.encode_to(b"m", to)[0]))[1] for to in "abaab"]
    assert seqs == [0, 0, 1, 2, 1]
    assert DatagramCodec("none").encode_to(b"m", "a") == [b"m"]


@settings(max_examples=2000)
@given(st.lists(st.tuples(st.binary(max_size=12), st.integers(0, 3)), max_size=30))
def test_random_datagrams_never_raise(datagrams: list[tuple[bytes, int]]) -> None:
    rx = DatagramCodec("sockwire")
    buf = memoryview(bytearray(16))
    for data, sender in datagrams:
        buf[: len(data)] = data
        rx.decode(buf, len(data), sender)
    stats = rx.stats
    assert stats.lost is not None
    assert stats.lost >= 0
    assert stats.invalid + stats.truncated <= len(datagrams)


def test_the_factory_and_its_names() -> None:
    assert packet.FRAMINGS == ("none", "sockwire")
    assert isinstance(make_packet_codec("seqpacket"), SeqpacketCodec)
    assert isinstance(make_packet_codec("dgram", "sockwire"), DatagramCodec)
    with pytest.raises(ValueError, match="framing"):
        make_packet_codec("dgram", "len32")
