"""zmtp_curve.py: the CURVE handshake and boxes in memory, Z85, key files, hostile boxes."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockwire.errors import AddressError, PermissionDenied, ProtocolError
from sockwire.zmtp import Connection, Message, Ready
from tests.helpers import IN_CI

if importlib.util.find_spec("nacl") is None:  # the optional extra sockwire[curve]
    if IN_CI:
        raise RuntimeError("CI requires PyNaCl for the CURVE tests (pip install -e '.[dev]')")
    pytest.skip("needs PyNaCl (pip install 'sockwire[curve]')", allow_module_level=True)

from sockwire.zmtp_curve import (
    CurveClient,
    CurveServer,
    generate_keypair,
    load_key_file,
    public_from_secret,
    z85_decode,
    z85_encode,
)


def _keys() -> tuple[bytes, bytes]:
    public, secret = generate_keypair()
    return z85_decode(public), z85_decode(secret)


def _pump(a: Connection, b: Connection) -> list[object]:
    events: list[object] = []
    for _ in range(6):
        to_b, to_a = a.data_to_send(), b.data_to_send()
        if to_b:
            events += b.feed(to_b)
        if to_a:
            events += a.feed(to_a)
    return events


def _pair(allowed: set[bytes] | None = None) -> tuple[Connection, Connection, bytes]:
    spub, ssec = _keys()
    cpub, csec = _keys()
    client = Connection("DEALER", CurveClient(cpub, csec, spub), identity=b"me")
    server = Connection(
        "ROUTER", CurveServer(spub, ssec, allowed if allowed is None else allowed | set())
    )
    _pump(client, server)
    return client, server, cpub


def test_z85_rfc32_vector_and_round_trip() -> None:
    raw = bytes([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B])
    assert z85_encode(raw) == b"HelloWorld"
    assert z85_decode("HelloWorld") == raw


@given(st.binary(max_size=64).filter(lambda b: len(b) % 4 == 0))
def test_z85_any_bytes(data: bytes) -> None:
    assert z85_decode(z85_encode(data)) == data


def test_handshake_metadata_and_messages_both_ways() -> None:
    client, server, cpub = _pair()
    assert client.state == server.state == "READY"
    assert server.peer is not None and server.peer.identity == b"me"
    assert server.peer.user == z85_encode(cpub).decode()
    client.send([b"a", b"x" * 5000])
    wire = client.data_to_send()
    assert b"x" * 64 not in wire  # encrypted
    assert server.feed(wire) == [Message([b"a", b"x" * 5000])]
    server.send([b"back"])
    assert client.feed(server.data_to_send()) == [Message([b"back"])]
    client.ping(1.0, b"c")  # commands travel boxed too
    events = server.feed(client.data_to_send())
    assert [type(e).__name__ for e in events] == ["Ping"]


def test_byte_at_a_time() -> None:
    spub, ssec = _keys()
    cpub, csec = _keys()
    client = Connection("PUSH", CurveClient(cpub, csec, spub))
    server = Connection("PULL", CurveServer(spub, ssec))
    events: list[object] = []
    for _ in range(6):
        for byte in client.data_to_send():
            events += server.feed(bytes((byte,)))
        data = server.data_to_send()
        if data:
            client.feed(data)
    client.send([b"hello"])
    for byte in client.data_to_send():
        events += server.feed(bytes((byte,)))
    assert isinstance(events[0], Ready)
    assert events[-1] == Message([b"hello"])


def test_wrong_server_key_refused() -> None:
    spub, ssec = _keys()
    other, _ = _keys()
    cpub, csec = _keys()
    client = Connection("REQ", CurveClient(cpub, csec, other))
    server = Connection("REP", CurveServer(spub, ssec))
    with pytest.raises(PermissionDenied, match="HELLO box"):
        _pump(client, server)


def test_client_key_not_allowed() -> None:
    spub, ssec = _keys()
    cpub, csec = _keys()
    client = Connection("REQ", CurveClient(cpub, csec, spub))
    server = Connection("REP", CurveServer(spub, ssec, allowed={b"\x00" * 32}))
    with pytest.raises(PermissionDenied, match="not allowed"):
        _pump(client, server)
    error = server.data_to_send()
    with pytest.raises(PermissionDenied, match="refused"):
        client.feed(error)


def test_tampered_and_replayed_boxes_close_the_connection() -> None:
    client, server, _ = _pair()
    client.send([b"one"])
    wire = bytearray(client.data_to_send())
    replay = bytes(wire)
    wire[-1] ^= 1
    with pytest.raises(ProtocolError, match="does not open"):
        server.feed(bytes(wire))
    client2, server2, _ = _pair()
    client2.send([b"one"])
    first = client2.data_to_send()
    server2.feed(first)
    with pytest.raises(ProtocolError, match="nonce"):
        server2.feed(first)  # the same box again
    assert replay


def test_key_files_bare_and_zcert() -> None:
    public, secret = generate_keypair()
    zcert = (
        b"#   ZeroMQ CURVE **Secret** Certificate\n\nmetadata\ncurve\n"
        b'    public-key = "' + public + b'"\n    secret-key = "' + secret + b'"\n'
    )
    assert load_key_file(zcert, "k", secret=True) == z85_decode(secret)
    assert load_key_file(zcert, "k", secret=False) == z85_decode(public)
    assert load_key_file(secret + b"\n", "k", secret=True) == z85_decode(secret)
    assert public_from_secret(z85_decode(secret)) == z85_decode(public)
    with pytest.raises(AddressError):
        load_key_file(b"not a key\n", "k", secret=True)
    with pytest.raises(AddressError):
        load_key_file(b"", "k", secret=True)
