"""framing.py: round trips under any chunking, hostile input, bounds before allocation."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockwire import address
from sockwire.errors import (
    AddressError,
    BadFrame,
    FrameTooLarge,
    InvalidOperation,
    ProtocolError,
)
from sockwire.framing import (
    BIG,
    MODES,
    READ_SIZE,
    LengthPrefixDecoder,
    decode_all,
    encode_all,
    make_codec,
)

FRAMED = ["len16", "len32", "len64", "netstring", "line", "nul"]
_DELIM = {"line": b"\n", "nul": b"\0"}


def _messages(mode: str) -> st.SearchStrategy[list[bytes]]:
    msg = st.binary(max_size=40)
    if mode in _DELIM:
        delim = _DELIM[mode]
        msg = msg.map(lambda b: b.replace(delim, b""))
    return st.lists(msg, max_size=8)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return [p for p in pieces if p]


def _roundtrip(mode: str, messages: list[bytes], cuts: list[int]) -> list[bytes]:
    fc = make_codec(mode)
    wire = encode_all(fc.encoder, messages)
    got: list[bytes] = []
    for piece in _chunks(wire, cuts):
        got += fc.decoder.feed(piece)
    got += fc.decoder.feed(b"")
    return got


def test_modes_are_the_endpoint_framings() -> None:
    assert MODES is address.STREAM_FRAMINGS  # one list of names
    assert list(MODES) == [*FRAMED, "none"]
    assert (*MODES, "sockwire") == address.FRAMINGS


@pytest.mark.parametrize("mode", FRAMED)
def test_any_chunking_round_trips(mode: str) -> None:
    @settings(max_examples=2000)
    @given(_messages(mode), st.lists(st.integers(min_value=0), max_size=8))
    def check(messages: list[bytes], cuts: list[int]) -> None:
        assert _roundtrip(mode, messages, cuts) == messages

    check()


@pytest.mark.parametrize("mode", FRAMED)
def test_byte_by_byte_and_zero_length(mode: str) -> None:
    messages = [b"", b"a", b"", b"hello world", b"", b"x" * 1000, b""]
    fc = make_codec(mode)
    wire = encode_all(fc.encoder, messages)
    got: list[bytes] = []
    for i in range(len(wire)):
        got += fc.decoder.feed(wire[i : i + 1])
    assert fc.decoder.feed(b"") == []
    assert got == messages


@pytest.mark.parametrize("mode", ["len32", "len64", "netstring", "line", "nul"])
def test_big_frames_under_random_chunking(mode: str) -> None:
    rng = random.Random(5)
    messages = [
        bytes([65 + i]) * size for i, size in enumerate((BIG, 3, BIG * 5 + 7, 0, 1 << 20, 9))
    ]
    fc = make_codec(mode)
    wire = encode_all(fc.encoder, messages)
    got: list[bytes] = []
    pos = 0
    while pos < len(wire):
        step = rng.choice((1, 7, 4096, 70000, READ_SIZE))
        got += fc.decoder.feed(wire[pos : pos + step])
        pos += step
    got += fc.decoder.feed(b"")
    assert got == messages


@pytest.mark.parametrize("mode", ["len32", "netstring"])
def test_a_big_body_read_whole_is_the_message_itself(mode: str) -> None:
    """The driver's zero-copy contract: exact read after a header -> same object."""
    fc = make_codec(mode)
    dec = fc.decoder
    body = b"z" * (BIG * 3)
    head = fc.encoder.head(body)[0]
    assert dec.feed(head) == []
    assert dec.exact
    want = dec.read_size()
    tail = b"," if mode == "netstring" else b""
    assert want == len(body) + len(tail)
    got = dec.feed(body + tail) if tail else dec.feed(body)
    assert got == [body]
    if not tail:
        assert got[0] is body
    assert not dec.exact
    assert dec.read_size() < 8, "after a big frame, read one header first"


@pytest.mark.parametrize("mode", [*FRAMED, "none"])
def test_random_bytes_give_messages_or_a_protocol_error(mode: str) -> None:
    @settings(max_examples=500)
    @given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=4))
    def check(data: bytes, cuts: list[int]) -> None:
        dec = make_codec(mode, max_size=100).decoder
        try:
            for piece in _chunks(data, cuts):
                for msg in dec.feed(piece):
                    assert isinstance(msg, bytes)
                    assert len(msg) <= 100 or mode == "none"
            dec.feed(b"")
        except ProtocolError:
            with pytest.raises(ProtocolError):
                dec.feed(b"x")  # a broken decoder stays broken

    check()


def _oversize_headers(rng: random.Random, mode: str, max_size: int) -> list[bytes]:
    if mode == "netstring":
        lengths = [max_size + 1, 2**31 - 1, 2**32 - 1, 2**63 - 1]
        lengths += [rng.randrange(max_size + 1, 2**64) for _ in range(996)]
        return [b"%d:" % n for n in lengths]
    width = {"len16": 2, "len32": 4, "len64": 8}[mode]
    top = (1 << (8 * width)) - 1
    fixed = [n for n in (max_size + 1, 2**31 - 1, 2**32 - 1, 2**63 - 1) if n <= top]
    lengths = fixed + [rng.randrange(max_size + 1, top + 1) for _ in range(1000 - len(fixed))]
    return [n.to_bytes(width, "big") for n in lengths]


@pytest.mark.parametrize("mode", ["len16", "len32", "len64", "netstring"])
def test_declared_length_over_max_size_is_refused_before_allocation(mode: str) -> None:
    max_size = 1000 if mode == "len16" else 1 << 20
    rng = random.Random(mode)
    headers = _oversize_headers(rng, mode, max_size)
    assert len(headers) == 1000
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        peak_growth = 0
        for head in headers:
            dec = make_codec(mode, max_size=max_size).decoder
            with pytest.raises(FrameTooLarge):
                dec.feed(head + b"\0" * 16)
            _, peak = tracemalloc.get_traced_memory()
            peak_growth = max(peak_growth, peak - base)
            tracemalloc.reset_peak()
    finally:
        tracemalloc.stop()
    assert peak_growth < 1 << 20


@pytest.mark.parametrize("mode", ["line", "nul"])
def test_delimited_frame_longer_than_max_size_is_refused(mode: str) -> None:
    dec = make_codec(mode, max_size=100).decoder
    dec.feed(b"a" * 60)
    with pytest.raises(FrameTooLarge):
        dec.feed(b"a" * 60)


def test_netstring_digits_beyond_max_size_refused_early() -> None:
    dec = make_codec("netstring", max_size=99).decoder
    assert dec.feed(b"99") == []
    with pytest.raises(FrameTooLarge):
        dec.feed(b"9")


@pytest.mark.parametrize("wire", [b"01:a,", b"x:", b":a,", b"1:ab", b"-1:a,", b"2:ab;"], ids=repr)
def test_bad_netstrings(wire: bytes) -> None:
    with pytest.raises(BadFrame):
        decode_all(make_codec("netstring").decoder, wire)


@pytest.mark.parametrize("mode", FRAMED)
def test_eof_inside_a_frame_is_bad_frame(mode: str) -> None:
    fc = make_codec(mode)
    wire = encode_all(fc.encoder, [b"first", b"second message"])
    assert fc.decoder.feed(wire[:-2]) == [b"first"]
    assert fc.decoder.in_frame
    with pytest.raises(BadFrame, match="EOF inside"):
        fc.decoder.feed(b"")


def test_eof_is_idempotent_and_data_after_it_is_a_caller_bug() -> None:
    dec = LengthPrefixDecoder()
    assert dec.feed(b"") == []
    assert dec.feed(b"") == []
    with pytest.raises(InvalidOperation):
        dec.feed(b"\0")


def test_encoders_refuse_what_they_cannot_carry() -> None:
    with pytest.raises(InvalidOperation, match="len16"):
        make_codec("len16").encoder.encode(b"x" * 65536)
    with pytest.raises(InvalidOperation, match="line"):
        make_codec("line").encoder.encode(b"two\nlines")
    with pytest.raises(InvalidOperation, match="nul"):
        make_codec("nul").encoder.encode(b"a\0b")


def test_big_payloads_are_not_copied_by_the_encoder() -> None:
    body = b"q" * BIG
    parts = make_codec("len32").encoder.encode(body)
    assert isinstance(parts, list)
    assert parts[1] is body
    assert make_codec("len32").encoder.encode(b"ab") == b"\0\0\0\2ab"
    assert make_codec("netstring").encoder.encode(b"ab") == b"2:ab,"


def test_none_framing_passes_chunks_through() -> None:
    fc = make_codec("none")
    assert fc.decoder.feed(b"abc") == [b"abc"]
    assert fc.decoder.feed(b"") == []
    assert fc.encoder.encode(b"xyz") == b"xyz"


def test_unknown_framing_names_the_valid_ones() -> None:
    with pytest.raises(AddressError, match="len32"):
        make_codec("len24")


@pytest.mark.parametrize("mode", ["len32", "netstring", "line"])
def test_a_frame_trickled_two_bytes_at_a_time_costs_its_own_size(mode: str) -> None:
    """Today's defect: a 16 MB len32 frame sent 2 bytes per write peaked at 534 MB."""
    size = 1 << 20
    fc = make_codec(mode)
    wire = encode_all(fc.encoder, [b"t" * size])
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        got: list[bytes] = []
        for pos in range(0, len(wire), 2):
            got += fc.decoder.feed(wire[pos : pos + 2])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == [b"t" * size]
    # one accumulator (bytearray growth: up to 1/8 over) plus the message it becomes
    assert peak - base < 2.3 * size, f"{peak - base} bytes for a {size}-byte frame"


@pytest.mark.parametrize("mode", [*FRAMED, "none"])
def test_want_is_read_size_and_feed_into_is_feed(mode: str) -> None:
    """The driver's hot-path API says what the reference methods say, at every cut."""

    big = b"b" * (BIG + 5 if mode != "len16" else 65535)  # len16 carries 65535 at most

    @settings(max_examples=300)
    @given(
        st.lists(st.binary(max_size=40) | st.just(big), max_size=5),
        st.lists(st.integers(min_value=0), max_size=8),
    )
    def check(messages: list[bytes], cuts: list[int]) -> None:
        if mode in _DELIM:
            messages = [m.replace(_DELIM[mode], b"") for m in messages]
        fc = make_codec(mode)
        other = make_codec(mode).decoder
        wire = encode_all(fc.encoder, messages)
        got: list[bytes] = []
        via_feed: list[bytes] = []
        for piece in _chunks(wire, cuts):
            fc.decoder.feed_into(piece, got.append)
            via_feed += other.feed(piece)
            assert fc.decoder.want == fc.decoder.read_size()
        assert got == via_feed
        if mode != "none":
            assert got == messages

    check()
