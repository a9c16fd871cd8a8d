"""zmtp.py: handshakes, frames under any chunking, hostile input, bounds before allocation."""

from __future__ import annotations

import ast
import contextlib
import random
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockwire import zmtp
from sockwire.errors import (
    BadFrame,
    FrameTooLarge,
    InvalidOperation,
    PermissionDenied,
    ProtocolError,
)
from sockwire.zmtp import (
    Cancel,
    Closed,
    Connection,
    Message,
    Ping,
    PlainClient,
    PlainServer,
    Pong,
    Ready,
    Subscribe,
)

USERS = {b"admin": b"secret"}


def _check(user: bytes, password: bytes) -> bool:
    return USERS.get(user) == password


def _pump(a: Connection, b: Connection, rounds: int = 6) -> tuple[list[object], list[object]]:
    """Exchange queued bytes both ways until both are quiet (bounded)."""
    ea: list[object] = []
    eb: list[object] = []
    for _ in range(rounds):
        to_b, to_a = a.data_to_send(), b.data_to_send()
        if not to_a and not to_b:
            break
        if to_b:
            eb += b.feed(to_b)
        if to_a:
            ea += a.feed(to_a)
    return ea, eb


def _pair(
    ta: str = "PUSH", tb: str = "PULL", plain: bool = False, **kw: object
) -> tuple[Connection, Connection]:
    if plain:
        a = Connection(ta, PlainClient(b"admin", b"secret"), **kw)  # type: ignore[arg-type]
        b = Connection(tb, PlainServer(_check), **kw)  # type: ignore[arg-type]
    else:
        a, b = Connection(ta, **kw), Connection(tb, **kw)  # type: ignore[arg-type]
    ea, eb = _pump(a, b)
    assert a.state == b.state == "READY"
    assert isinstance(ea[-1], Ready)
    assert isinstance(eb[-1], Ready)
    return a, b


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return [p for p in pieces if p]


def test_greeting_is_64_bytes_with_signature_version_mechanism() -> None:
    c = Connection("DEALER")
    g = c.data_to_send()
    assert len(g) == 64
    assert g[0] == 0xFF and g[9] == 0x7F and g[10:12] == b"\x03\x01"
    assert g[12:32] == b"NULL".ljust(20, b"\0") and g[32] == 0 and g[33:] == bytes(31)
    assert c.data_to_send() == b""


def test_null_handshake_exchanges_socket_type_and_identity() -> None:
    a = Connection("DEALER", identity=b"worker-1")
    b = Connection("ROUTER")
    ea, eb = _pump(a, b)
    (ready_b,) = eb
    assert isinstance(ready_b, Ready)
    assert ready_b.socket_type == "DEALER" and ready_b.identity == b"worker-1"
    assert ea == [Ready("ROUTER", b"", {"socket-type": b"ROUTER", "identity": b""}, None, 1)]


def test_plain_handshake_and_user() -> None:
    a, b = _pair("REQ", "REP", plain=True)
    assert b.peer is not None and b.peer.user == "admin"
    a.send([b"", b"hi"])
    assert b.feed(a.data_to_send()) == [Message([b"", b"hi"])]


def test_plain_wrong_password_refused_both_sides() -> None:
    a = Connection("REQ", PlainClient(b"admin", b"nope"))
    b = Connection("REP", PlainServer(_check))
    b.feed(a.data_to_send())
    a.feed(b.data_to_send())  # greeting in, HELLO queued
    with pytest.raises(PermissionDenied, match="admin"):
        b.feed(a.data_to_send())
    error = b.data_to_send()  # the ERROR command is still queued for the client
    assert b"ERROR" in error
    with pytest.raises(PermissionDenied, match="refused the handshake"):
        a.feed(error)
    with pytest.raises(PermissionDenied):  # stays broken
        a.feed(b"x")


def test_plain_both_clients_refused() -> None:
    a = Connection("REQ", PlainClient(b"a", b"b"))
    b = Connection("REP", PlainClient(b"a", b"b"))
    b.feed(a.data_to_send())
    with pytest.raises(ProtocolError, match="unexpected ZMTP 'HELLO'"):
        a.feed(b.data_to_send())  # b's greeting and HELLO: a client never gets a HELLO


def test_hello_trace_hides_password() -> None:
    lines: list[str] = []
    a = Connection("REQ", PlainClient(b"admin", b"secret"), log=lambda d, t: lines.append(t))
    b = Connection("REP", PlainServer(_check), log=lambda d, t: lines.append(t))
    _pump(a, b)
    assert any("HELLO user=admin password=(hidden)" in line for line in lines)
    assert not any("secret" in line for line in lines)


@given(
    st.lists(st.lists(st.binary(max_size=300), min_size=1, max_size=4), max_size=6),
    st.lists(st.integers(min_value=0), max_size=20),
)
def test_messages_survive_any_split(messages: list[list[bytes]], cuts: list[int]) -> None:
    a, b = _pair("PAIR", "PAIR")
    for frames in messages:
        a.send(frames)
    wire = a.data_to_send()
    got: list[object] = []
    for piece in _chunks(wire, cuts):
        got += b.feed(piece)
    assert got == [Message(f) for f in messages]
    assert b.feed(b"") == [Closed(clean=True)]


@given(st.lists(st.integers(min_value=0), max_size=30), st.booleans())
def test_handshake_survives_any_split(cuts: list[int], plain: bool) -> None:
    if plain:
        a = Connection("DEALER", PlainClient(b"admin", b"secret"), identity=b"id")
        b = Connection("ROUTER", PlainServer(_check))
    else:
        a, b = Connection("DEALER", identity=b"id"), Connection("ROUTER")
    events: list[object] = []
    for _ in range(6):
        data = a.data_to_send()
        for piece in _chunks(data, cuts):
            events += b.feed(piece)
        a.feed(b.data_to_send())
    assert b.state == "READY"
    assert next(e for e in events if isinstance(e, Ready)).identity == b"id"


def test_byte_at_a_time_long_frames_and_commands() -> None:
    a, b = _pair("PUB", "SUB")
    b.subscribe(b"topic")
    sub_wire = b.data_to_send()
    got_sub: list[object] = []
    for byte in sub_wire:
        got_sub += a.feed(bytes((byte,)))
    assert got_sub == [Subscribe(b"topic")]
    a.send([b"t" * 5000, b"", b"x" * 256])
    wire = a.data_to_send()
    got: list[object] = []
    for byte in wire:
        got += b.feed(bytes((byte,)))
    assert got == [Message([b"t" * 5000, b"", b"x" * 256])]


def test_ping_queues_pong_with_context_and_ttl() -> None:
    a, b = _pair("DEALER", "ROUTER")
    a.ping(ttl=3.0, context=b"ctx")
    assert b.feed(a.data_to_send()) == [Ping(3.0, b"ctx")]
    assert a.feed(b.data_to_send()) == [Pong(b"ctx")]
    with pytest.raises(InvalidOperation):
        a.ping(context=b"x" * 17)


def test_subscriptions_both_forms() -> None:
    pub, sub = _pair("XPUB", "XSUB")
    sub.subscribe(b"a")
    sub.cancel(b"a")
    sub.send([b"\x01b"])  # the ZMTP 3.0 form, as an XSUB may send it
    sub.send([b"\x00b"])
    sub.send([b"\x02other"])  # not a subscription: an XPUB passes it on
    assert pub.feed(sub.data_to_send()) == [
        Subscribe(b"a"),
        Cancel(b"a"),
        Subscribe(b"b"),
        Cancel(b"b"),
        Message([b"\x02other"]),
    ]


def test_zmtp30_peer_gets_subscription_messages() -> None:
    sub = Connection("SUB")
    sub.data_to_send()
    peer_greeting = bytearray(zmtp.greeting(b"NULL", False, minor=0))
    ready = zmtp.encode_command(b"READY", zmtp.encode_metadata([("Socket-Type", b"PUB")]))
    assert isinstance(sub.feed(bytes(peer_greeting) + ready)[0], Ready)
    assert sub.peer_minor == 0
    sub.data_to_send()
    sub.subscribe(b"w")
    assert sub.data_to_send() == b"\x00\x02\x01w"
    sub.ping()  # 3.0 has no PING: nothing is sent
    assert sub.data_to_send() == b""


# ---- hostile input


def _after_greeting(kind: str = "PULL") -> Connection:
    c = Connection(kind)
    c.data_to_send()
    c.feed(zmtp.greeting(b"NULL", False))
    return c


def test_bad_signature_refused_at_first_byte() -> None:
    c = Connection("PULL")
    with pytest.raises(ProtocolError, match="not a ZMTP peer"):
        c.feed(b"G")  # "GET / HTTP/1.1" is refused at once
    with pytest.raises(ProtocolError):
        c.feed(b"ET")


def test_bad_signature_byte9_and_old_versions() -> None:
    with pytest.raises(ProtocolError, match="byte 9"):
        Connection("PULL").feed(b"\xff" + bytes(8) + b"\x01")
    with pytest.raises(ProtocolError, match="version 2"):
        Connection("PULL").feed(b"\xff" + bytes(8) + b"\x7f\x02")


def test_unknown_mechanism_refused_with_error_queued() -> None:
    c = Connection("PULL")
    c.data_to_send()
    with pytest.raises(ProtocolError, match="mechanism 'GSSAPI'"):
        c.feed(zmtp.greeting(b"GSSAPI", False)[:32])
    assert b"mechanism mismatch" in c.data_to_send()


def test_incompatible_socket_type_refused() -> None:
    a = Connection("PUSH")
    b = Connection("PUB")
    b.feed(a.data_to_send())
    with pytest.raises(ProtocolError, match="PUSH cannot talk"):
        a.feed(b.data_to_send())
    assert b"Invalid socket type" in a.data_to_send()


def test_message_before_handshake_refused() -> None:
    c = _after_greeting()
    with pytest.raises(ProtocolError, match="before the handshake"):
        c.feed(b"\x00\x01x")


def test_reserved_flags_and_more_on_command_refused() -> None:
    _, b = _pair()
    with pytest.raises(BadFrame, match="reserved"):
        b.feed(b"\x80\x00")
    _a, b = _pair()
    with pytest.raises(BadFrame, match="MORE"):
        b.feed(b"\x05\x01\x00")


def test_oversize_long_frame_refused_from_its_header() -> None:
    _a, b = _pair(max_size=1024)
    header = b"\x02" + struct.pack("!Q", 1 << 40)
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge, match="max_size"):
            b.feed(header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_oversize_command_refused() -> None:
    _, b = _pair()
    with pytest.raises(FrameTooLarge, match="commands"):
        b.feed(b"\x06" + struct.pack("!Q", zmtp.COMMAND_MAX + 1))


def test_empty_more_frames_count_toward_max_size() -> None:
    _, b = _pair(max_size=10_000)
    flood = b"\x01\x00" * (10_000 // zmtp.FRAME_COST + 1)
    with pytest.raises(FrameTooLarge):
        b.feed(flood)


def test_message_split_over_frames_bounded_by_max_size() -> None:
    a, b = _pair(max_size=3000)
    a.send([b"x" * 1000, b"y" * 1000, b"z" * 1000])
    with pytest.raises(FrameTooLarge):
        b.feed(a.data_to_send())


def test_malformed_metadata_and_commands() -> None:
    c = _after_greeting()
    with pytest.raises(BadFrame):
        c.feed(zmtp.encode_command(b"READY", b"\x05Sock"))  # name cut short
    c = _after_greeting()
    with pytest.raises(BadFrame):
        c.feed(b"\x04\x00")  # a command with no name
    c = _after_greeting()
    with pytest.raises(BadFrame):
        c.feed(zmtp.encode_command(b"READY", b"\x01a\xff\xff\xff\xff"))  # value too long


def test_eof_mid_message_is_unclean() -> None:
    _a, b = _pair()
    assert b.feed(b"\x01\x01a") == []
    assert b.feed(b"") == [Closed(clean=False)]
    assert b.feed(b"") == []


@given(st.binary(min_size=1, max_size=400))
def test_random_bytes_after_handshake_raise_only_protocol_errors(junk: bytes) -> None:
    _, b = _pair("PUB", "SUB")
    try:
        for event in b.feed(junk):
            assert isinstance(event, (Message, Subscribe, Cancel, Ping, Pong))
    except (ProtocolError, PermissionDenied):
        pass


@given(st.binary(max_size=200), st.sampled_from(["NULL", "PLAIN"]))
def test_random_bytes_during_handshake_raise_only_protocol_errors(junk: bytes, mech: str) -> None:
    c = Connection("REP", PlainServer(_check) if mech == "PLAIN" else zmtp.Null())
    peer = zmtp.greeting(mech.encode(), False)
    with contextlib.suppress(ProtocolError, PermissionDenied):
        c.feed(peer + junk)


def test_fuzz_mutated_conversations() -> None:
    """Bit flips of a real conversation: only the documented errors escape (bounded)."""
    a = Connection("DEALER", identity=b"me")
    b = Connection("ROUTER")
    sent = bytearray()
    for _ in range(4):
        out = a.data_to_send()
        sent += out
        if out:
            b.feed(out)
        back = b.data_to_send()
        if back:
            a.feed(back)
    assert a.state == "READY"
    a.send([b"hello", b"x" * 300])
    a.ping(1.0, b"c")
    wire = bytes(sent) + a.data_to_send()
    rng = random.Random(1234)
    for _ in range(2000):
        data = bytearray(wire)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        c = Connection("ROUTER")
        try:
            for piece in _chunks(bytes(data), [rng.randrange(len(data)) for _ in range(3)]):
                c.feed(piece)
        except (ProtocolError, PermissionDenied):
            pass


def test_send_before_ready_and_bad_construction() -> None:
    with pytest.raises(InvalidOperation):
        Connection("PUSH").send([b"x"])
    with pytest.raises(InvalidOperation):
        Connection("STREAM")
    with pytest.raises(InvalidOperation):
        Connection("DEALER", identity=b"\x00reserved")
    a, _ = _pair()
    with pytest.raises(InvalidOperation):
        a.send([])


def test_compatible_table() -> None:
    assert zmtp.compatible("REQ", "ROUTER")
    assert not zmtp.compatible("REQ", "REQ")
    assert all(
        zmtp.compatible(t, t) == (t in ("DEALER", "ROUTER", "PAIR")) for t in zmtp.SOCKET_TYPES
    )


def test_core_imports_no_io() -> None:
    tree = ast.parse(Path(zmtp.__file__).read_text())
    names = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not names & {"socket", "threading", "select", "selectors", "time", "asyncio"}
