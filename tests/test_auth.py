"""auth.py: the HMAC challenge handshake as sans-IO machines, fuzzed, and over real sockets."""

from __future__ import annotations

import hmac
import os
import socket
import threading
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockwire import auth, trace
from sockwire.auth import ClientHandshake, ServerHandshake, State
from sockwire.errors import (
    AddressError,
    ConnectionLost,
    InvalidOperation,
    NotFound,
    PermissionDenied,
    ProtocolError,
    TimeoutError,
)
from sockwire.sock import Socket, socketpair
from tests.tls_helpers import write_key

KEY = b"0123456789abcdef0123456789abcdef"
OTHER = b"fedcba9876543210fedcba9876543210"
CC = bytes(range(32))  # a known client challenge
SC = bytes(range(100, 132))  # a known server challenge


def run(client: ClientHandshake, server: ServerHandshake) -> list[bytes]:
    """Drive both machines to the end in memory; the transcript, message by message."""
    transcript = []
    out = client.start()
    sender: ClientHandshake | ServerHandshake = client
    while out:
        transcript.append(out)
        receiver = server if sender is client else client
        out = receiver.receive(out)
        sender = receiver
    return transcript


# ---- the happy path and the exact bytes


def test_the_transcript_is_exactly_what_protocol_md_says() -> None:
    client = ClientHandshake(KEY, challenge=CC)
    server = ServerHandshake(KEY, challenge=SC)
    hello, challenge, client_proof, verdict = run(client, server)
    assert hello == b"SWAH\x01" + CC
    server_proof = hmac.new(KEY, b"sockwire-auth v1 server" + CC + SC, sha256).digest()
    assert challenge == b"SWAH\x01" + SC + server_proof
    assert client_proof == hmac.new(KEY, b"sockwire-auth v1 client" + CC + SC, sha256).digest()
    assert verdict == b"\x00"
    assert client.done and server.done
    assert [len(m) for m in (hello, challenge, client_proof, verdict)] == [37, 69, 32, 1]
    assert server.consumed == 69 <= auth.SERVER_READ_LIMIT
    assert client.consumed == 70


def test_bytes_fed_one_at_a_time() -> None:
    client = ClientHandshake(KEY)
    server = ServerHandshake(KEY)
    out = client.start()
    for side in (server, client, server, client):
        replies = [side.receive(out[i : i + 1]) for i in range(len(out))]
        assert all(r == b"" for r in replies[:-1])
        out = replies[-1]
    assert client.done and server.done
    assert out == b""


def test_challenges_are_fresh_each_time() -> None:
    seen = {ClientHandshake(KEY).challenge for _ in range(50)}
    seen |= {ServerHandshake(KEY).challenge for _ in range(50)}
    assert len(seen) == 100


def test_the_key_never_shows_in_repr() -> None:
    for machine in (ClientHandshake(KEY), ServerHandshake(KEY)):
        assert KEY.decode() not in repr(machine)


def test_a_short_or_missing_key_is_refused_without_showing_it() -> None:
    with pytest.raises(InvalidOperation) as info:
        ServerHandshake(b"short-secret")
    assert "short-secret" not in str(info.value)


# ---- wrong keys, replay, reflection


def test_a_wrong_key_is_refused_by_the_client_before_it_proves_anything() -> None:
    client = ClientHandshake(KEY)
    server = ServerHandshake(OTHER)
    challenge = server.receive(client.start())
    with pytest.raises(PermissionDenied, match="key files differ"):
        client.receive(challenge)
    assert client.state == State.FAILED
    assert client.farewell == b""  # nothing about our key goes to an unproven server
    with pytest.raises(PermissionDenied):  # and it stays failed
        client.receive(b"x")


def test_a_wrong_proof_is_refused_by_the_server_which_says_so() -> None:
    server = ServerHandshake(KEY)
    server.receive(b"SWAH\x01" + CC)
    with pytest.raises(PermissionDenied, match="key files differ"):
        server.receive(bytes(32))
    assert server.farewell == auth.REFUSED
    client = ClientHandshake(KEY, challenge=CC)
    client.start()
    server_proof = auth.proof(KEY, auth.SERVER_LABEL, CC, server.challenge)
    client.receive(b"SWAH\x01" + server.challenge + server_proof)
    with pytest.raises(PermissionDenied, match="refused our auth proof"):
        client.receive(server.farewell)


def test_a_recorded_client_transcript_cannot_be_replayed() -> None:
    client = ClientHandshake(KEY)
    hello, _, client_proof, _ = run(client, ServerHandshake(KEY))
    replay = ServerHandshake(KEY)  # a new connection: a new server challenge
    replay.receive(hello)
    with pytest.raises(PermissionDenied):
        replay.receive(client_proof)


def test_a_server_proof_reflected_as_the_client_proof_is_refused() -> None:
    # The attacker has no key: it sends a hello, and hands the server's own
    # proof (over the very same two challenges) back as its answer.
    server = ServerHandshake(KEY)
    challenge = server.receive(b"SWAH\x01" + CC)
    server_proof = challenge[-32:]
    with pytest.raises(PermissionDenied):
        server.receive(server_proof)


def test_a_proof_from_a_second_server_connection_does_not_help_either() -> None:
    # Open two connections with the same client challenge; each server proof
    # covers its own fresh server challenge and the server label, never a
    # client proof for the other connection.
    first = ServerHandshake(KEY)
    second = ServerHandshake(KEY)
    first.receive(b"SWAH\x01" + CC)
    other = second.receive(b"SWAH\x01" + CC)
    with pytest.raises(PermissionDenied):
        first.receive(other[-32:])


def test_labels_make_the_two_proofs_differ_for_the_same_challenges() -> None:
    assert auth.proof(KEY, auth.SERVER_LABEL, CC, SC) != auth.proof(KEY, auth.CLIENT_LABEL, CC, SC)


# ---- bad bytes


def test_garbage_is_refused_at_the_first_wrong_byte() -> None:
    server = ServerHandshake(KEY)
    with pytest.raises(ProtocolError, match="not speaking the sockwire auth"):
        server.receive(b"G")
    assert server.consumed == 1


def test_an_http_request_is_refused_without_reading_it_all() -> None:
    server = ServerHandshake(KEY)
    with pytest.raises(ProtocolError):
        server.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[: server.wanted()])
    assert server.consumed <= auth.HELLO_SIZE


def test_more_bytes_than_the_step_allows_are_refused() -> None:
    server = ServerHandshake(KEY)
    with pytest.raises(ProtocolError, match="allows 37 more"):
        server.receive(b"SWAH\x01" + CC + b"x")
    assert server.consumed == 0


def test_a_newer_client_learns_the_server_version() -> None:
    server = ServerHandshake(KEY)
    with pytest.raises(ProtocolError, match="client speaks sockwire auth version 2"):
        server.receive(b"SWAH\x02")
    assert server.farewell == b"SWAH\x01"
    client = ClientHandshake(KEY)
    client.start()
    with pytest.raises(ProtocolError, match="server speaks sockwire auth version 7"):
        client.receive(b"SWAH\x07")


def test_an_unknown_verdict_byte_is_a_protocol_error() -> None:
    client = ClientHandshake(KEY, challenge=CC)
    client.start()
    client.receive(b"SWAH\x01" + SC + auth.proof(KEY, auth.SERVER_LABEL, CC, SC))
    with pytest.raises(ProtocolError, match="verdict byte 0x07"):
        client.receive(b"\x07")


def test_eof_during_the_handshake_is_connection_lost() -> None:
    server = ServerHandshake(KEY)
    server.receive(b"SWA")
    with pytest.raises(ConnectionLost, match="during the server auth handshake"):
        server.receive(b"")


def test_after_done_bytes_belong_to_the_application() -> None:
    client, server = ClientHandshake(KEY), ServerHandshake(KEY)
    run(client, server)
    assert server.wanted() == client.wanted() == 0
    with pytest.raises(InvalidOperation):
        server.receive(b"app data")


# ---- fuzz: any bytes -> waiting, a verdict or the documented errors


_ALLOWED = (ProtocolError, PermissionDenied, ConnectionLost)


def _fuzz(machine: ClientHandshake | ServerHandshake, chunks: list[bytes]) -> None:
    for chunk in chunks:
        if machine.done:
            break
        try:
            machine.receive(chunk)
        except _ALLOWED as exc:
            assert machine.state == State.FAILED
            assert machine.error is exc
            with pytest.raises(type(exc)):
                machine.receive(b"x")
            if isinstance(exc, ConnectionLost):
                assert chunk == b""
            break
        assert machine.consumed <= auth.SERVER_READ_LIMIT


chunks = st.lists(st.binary(max_size=300), max_size=12)


@settings(max_examples=2000)
@given(chunks)
def test_fuzz_the_server(data: list[bytes]) -> None:
    server = ServerHandshake(KEY)
    _fuzz(server, data)
    # nothing random ever authenticates: it would need a proof under KEY
    assert not server.done
    assert server.consumed <= auth.HELLO_SIZE + auth.PROOF_SIZE <= auth.SERVER_READ_LIMIT


@settings(max_examples=1000)
@given(chunks)
def test_fuzz_the_server_past_a_valid_hello(data: list[bytes]) -> None:
    server = ServerHandshake(KEY)
    server.receive(b"SWAH\x01" + CC)
    _fuzz(server, data)
    assert not server.done


@settings(max_examples=1000)
@given(chunks)
def test_fuzz_the_client(data: list[bytes]) -> None:
    client = ClientHandshake(KEY)
    client.start()
    _fuzz(client, data)
    assert not client.done


@settings(max_examples=300)
@given(st.data())
def test_any_chunking_of_an_honest_exchange_succeeds(data: st.DataObject) -> None:
    client, server = ClientHandshake(KEY), ServerHandshake(KEY)
    out = client.start()
    for side in (server, client, server, client):
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(out) - 1)), max_size=5)))
        pieces = [out[a:b] for a, b in zip([0, *cuts], [*cuts, len(out)], strict=True)]
        replies = [side.receive(piece) for piece in pieces if piece]
        out = replies[-1]
    assert client.done and server.done


# ---- key files


def test_load_key_reads_a_private_file_and_drops_the_line_end(tmp_path: Path) -> None:
    path = write_key(tmp_path / "key", KEY + b"\n")
    assert auth.load_key(path) == KEY
    assert auth.load_key(Path(path)) == KEY


def test_load_key_follows_a_symlink_and_checks_the_file(tmp_path: Path) -> None:
    target = write_key(tmp_path / "key", KEY)
    (tmp_path / "link").symlink_to(target)
    assert auth.load_key(tmp_path / "link") == KEY


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660])
def test_load_key_refuses_a_file_others_may_read_or_change(tmp_path: Path, mode: int) -> None:
    path = write_key(tmp_path / "key", KEY, mode)
    with pytest.raises(PermissionDenied) as info:
        auth.load_key(path)
    text = str(info.value)
    assert f"chmod 600 {path}" in text
    assert f"{mode:04o}" in text
    assert KEY.decode() not in text


def test_load_key_refuses_a_file_of_another_user(tmp_path: Path) -> None:
    path = write_key(tmp_path / "key", KEY)
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    os.chown(path, 65534, 65534)
    with pytest.raises(PermissionDenied, match="belongs to uid 65534"):
        auth.load_key(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"s3cr3t\n", "shorter than 16 bytes"),
        (b"x" * 5000, "more than 4096 bytes"),
    ],
)
def test_load_key_refuses_empty_short_and_huge_files(
    tmp_path: Path, content: bytes, match: str
) -> None:
    path = write_key(tmp_path / "key", content)
    with pytest.raises(AddressError, match=match) as info:
        auth.load_key(path)
    if content.strip():
        assert content.strip()[:16].decode() not in str(info.value)


def test_load_key_names_a_missing_file_and_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="head -c 32 /dev/urandom"):
        auth.load_key(tmp_path / "missing")


def test_load_key_refuses_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(AddressError, match="not a regular file"):
        auth.load_key(directory)


# ---- the blocking driver over real sockets


def _both(
    client_sock: Socket,
    server_sock: Socket,
    client_key: bytes,
    server_key: bytes,
    timeout: float = 5.0,
) -> tuple[BaseException | None, BaseException | None]:
    errors: dict[str, BaseException | None] = {"server": None}

    def serve() -> None:
        try:
            auth.server_handshake(server_sock, server_key, timeout=timeout)
        except BaseException as exc:
            errors["server"] = exc
            server_sock.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client_error: BaseException | None = None
    try:
        auth.client_handshake(client_sock, client_key, timeout=timeout)
    except BaseException as exc:
        client_error = exc
        client_sock.close()  # what secure_client does: the server sees the end
    thread.join()
    return client_error, errors["server"]


def _tcp_pair() -> tuple[Socket, Socket]:
    listener = Socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = Socket(socket.AF_INET, socket.SOCK_STREAM)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    finally:
        listener.close()
    return client, server


PAIRS: dict[str, Callable[[], tuple[Socket, Socket]]] = {
    "tcp": _tcp_pair,
    "unix": lambda: socketpair(socket.SOCK_STREAM),
    "seqpacket": lambda: socketpair(socket.SOCK_SEQPACKET),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_the_driver_over_real_sockets_then_application_bytes_follow(kind: str) -> None:
    client, server = PAIRS[kind]()
    with client, server:
        assert _both(client, server, KEY, KEY) == (None, None)
        # nothing was read past the handshake: the next bytes are the application's
        client.sendall(b"after")
        assert server.recv(100) == b"after"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_the_driver_refuses_a_wrong_key_on_both_sides(kind: str) -> None:
    client, server = PAIRS[kind]()
    with client, server:
        client_error, server_error = _both(client, server, KEY, OTHER)
    assert isinstance(client_error, PermissionDenied)
    # the client hangs up without a proof: the server sees it leave mid-handshake
    assert isinstance(server_error, ConnectionLost)
    assert "same key" in str(server_error)
    for error in (client_error, server_error):
        assert KEY.decode() not in str(error) and OTHER.decode() not in str(error)


@pytest.mark.timeout(20)
def test_the_server_driver_refuses_a_forged_proof_and_says_so() -> None:
    client, server = socketpair(socket.SOCK_STREAM)
    with client, server:
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                auth.server_handshake(server, KEY, timeout=5)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        client.sendall(b"SWAH\x01" + CC)
        assert len(client.recv(69, socket.MSG_WAITALL)) == 69
        client.sendall(bytes(32))
        assert client.recv(1) == b"\x01"  # the farewell: refused
        thread.join()
    assert isinstance(errors[0], PermissionDenied)


@pytest.mark.timeout(10)
def test_a_silent_server_times_the_client_out() -> None:
    client, silent = socketpair(socket.SOCK_STREAM)
    with client, silent:
        with pytest.raises(TimeoutError, match=r"within 0\.2 s"):
            auth.client_handshake(client, KEY, timeout=0.2)
        assert silent.recv(100)[:5] == b"SWAH\x01"  # it did say hello


@pytest.mark.timeout(10)
def test_a_client_that_stalls_mid_hello_times_the_server_out() -> None:
    slow, server = socketpair(socket.SOCK_STREAM)
    with slow, server:
        slow.sendall(b"SWAH")
        with pytest.raises(TimeoutError, match="server auth handshake"):
            auth.server_handshake(server, KEY, timeout=0.2)


@pytest.mark.timeout(10)
def test_the_server_reads_no_more_than_the_hello_from_a_flood() -> None:
    flood, server = socketpair(socket.SOCK_STREAM)
    with flood, server:
        flood.sendall(b"A" * 4096)
        with pytest.raises(ProtocolError):
            auth.server_handshake(server, KEY, timeout=2)
        # the driver asked for one hello's worth; the rest is still queued
        assert len(server.recv(8192, socket.MSG_DONTWAIT)) == 4096 - auth.HELLO_SIZE


@pytest.mark.timeout(20)
def test_no_trace_event_shows_the_key() -> None:
    client, server = socketpair(socket.SOCK_STREAM)
    with client, server, trace.recording() as events:
        assert _both(client, server, KEY, KEY) == (None, None)
    shown = " ".join(repr(e) for e in events)
    assert "auth" in shown
    assert KEY.decode() not in shown and KEY.hex() not in shown


def test_the_test_vector_in_protocol_md_is_what_the_code_computes() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "PROTOCOL.md").read_text()
    key = b"0123456789abcdef0123456789abcdef"
    for name, label in (("server_proof", auth.SERVER_LABEL), ("client_proof", auth.CLIENT_LABEL)):
        assert f"{name:<16} = {auth.proof(key, label, CC, SC).hex()}" in doc
    assert f"client_challenge = {CC.hex()}" in doc
    assert f"server_challenge = {SC.hex()}" in doc
