"""``sockwire relay``: real clients and servers on both sides, half-close propagated."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from tests.cli_helpers import connect_when_ready, host_port, recv_all, run, short_dir

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def _listener(family: int, sock_type: int, address: object) -> socket.socket:
    sock = socket.socket(family, sock_type)
    sock.bind(address)
    if sock_type != socket.SOCK_DGRAM:
        sock.listen(4)
    sock.settimeout(15)
    return sock


@pytest.mark.parametrize("fast", [True, False], ids=["splice", "recv_into"])
def test_unix_to_tcp_half_close_both_ways(d: str, fast: bool) -> None:
    front = f"{d}/front.sock"
    with _listener(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0)) as backend:
        port = backend.getsockname()[1]
        extra = [] if fast else ["--send-flags", "NOSIGNAL"]  # any flag leaves splice
        args = ["relay", f"unix:{front}", f"tcp://127.0.0.1:{port}", "--count", "1"]
        with run(*args, *extra, "--trace" if not fast else "--bufsize=65536") as relay:
            client = connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, front)
            payload = os.urandom(3 * 1024 * 1024)
            with client:
                conn, _ = backend.accept()
                with conn:
                    client.sendall(payload)
                    client.shutdown(socket.SHUT_WR)  # client's EOF ...
                    assert recv_all(conn) == payload  # ... reaches the backend as EOF
                    conn.sendall(b"answer after your EOF")  # backend still writes
                    conn.shutdown(socket.SHUT_WR)
                    assert recv_all(client) == b"answer after your EOF"
            assert relay.finish() == 0
    summary = relay.text.strip().splitlines()[-1]
    assert f"client->target {len(payload)} bytes" in summary
    assert "target->client 21 bytes" in summary


def test_seqpacket_boundaries_survive(d: str) -> None:
    front, back = f"{d}/f.sock", f"{d}/b.sock"
    with _listener(socket.AF_UNIX, socket.SOCK_SEQPACKET, back) as backend:
        args = ["relay", f"unix+seqpacket:{front}", f"unix+seqpacket:{back}", "--count", "1"]
        with run(*args) as relay:
            client = connect_when_ready(socket.AF_UNIX, socket.SOCK_SEQPACKET, front)
            with client:
                conn, _ = backend.accept()
                with conn:
                    for msg in (b"one", b"two", b"three"):
                        client.send(msg)
                    assert [conn.recv(100) for _ in range(3)] == [b"one", b"two", b"three"]
                    conn.send(b"back")
                    conn.close()
                    client.settimeout(10)
                    assert client.recv(100) == b"back"
                    assert client.recv(100) == b""
            assert relay.finish() == 0
    assert "in 3 messages" in relay.text


def test_udp_to_unix_dgram_and_back(d: str) -> None:
    back = f"{d}/b.sock"
    with (
        _listener(socket.AF_UNIX, socket.SOCK_DGRAM, back) as backend,
        run("relay", "udp://127.0.0.1:0", f"unix+dgram:{back}", "--trace") as relay,
    ):
        host, port = host_port(relay.address())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            client.sendto(b"query", (host, port))
            data, sender = backend.recvfrom(100)
            assert data == b"query"
            assert sender.startswith(b"\0")  # the relay's session socket is autobound
            backend.sendto(b"reply", sender)
            assert client.recv(100) == b"reply"
        relay.p.send_signal(signal.SIGUSR1)
        line = relay.wait_err("sockwire: relay: 1 connections")
        assert "client->target 5 bytes in 1 messages" in line
        assert relay.stop() == 143


def test_sigusr1_counts_then_clean_exit(d: str) -> None:
    with run("echo", f"unix:{d}/e.sock", "--trace") as echo:
        echo.address()
        with run("relay", f"unix:{d}/r.sock", f"unix:{d}/e.sock", "--trace") as relay:
            relay.address()
            with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, f"{d}/r.sock") as c:
                c.sendall(b"ping")
                c.settimeout(10)
                assert c.recv(4) == b"ping"
                relay.p.send_signal(signal.SIGUSR1)
                assert "(1 open)" in relay.wait_err("connections (")
            assert relay.stop() == 143
        assert echo.stop() == 143
    assert not os.path.exists(f"{d}/r.sock")


def test_target_refused_is_reported_and_relay_goes_on(d: str) -> None:
    with run("relay", f"unix:{d}/r.sock", f"unix:{d}/none.sock", "--count", "1") as relay:
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, f"{d}/r.sock") as c:
            c.settimeout(10)
            assert c.recv(10) == b""  # closed: the target is not there
        assert relay.finish() == 0
    assert "NotFound" not in relay.text and "(ENOENT)" in relay.text
    assert "Traceback" not in relay.text


def test_stream_to_messages_needs_framing(d: str) -> None:
    with run("relay", f"unix:{d}/r.sock", f"unix+seqpacket:{d}/q.sock") as relay:
        assert relay.finish() == 2
    assert relay.text.count("\n") == 1 and "--framing" in relay.text


def test_concurrent_connections_are_relayed_independently(d: str) -> None:
    with run("echo", f"unix+seqpacket:{d}/e.sock", "--trace") as echo:
        echo.address()
        args = ["relay", f"unix+seqpacket:{d}/r.sock", f"unix+seqpacket:{d}/e.sock"]
        with run(*args, "--count", "3", "--trace") as relay:
            relay.address()
            clients = [
                connect_when_ready(socket.AF_UNIX, socket.SOCK_SEQPACKET, f"{d}/r.sock")
                for _ in range(3)
            ]
            try:
                for n, client in enumerate(clients):  # all three open at once
                    client.settimeout(10)
                    client.send(f"client {n}".encode())
                for n, client in reversed(list(enumerate(clients))):
                    assert client.recv(100) == f"client {n}".encode()
            finally:
                for client in clients:
                    client.close()
            assert relay.finish() == 0
        assert "3 connections (0 open)" in relay.text
        assert echo.stop() == 143


def test_unnamed_datagram_sender_is_relayed_and_replies_dropped(d: str) -> None:
    with (
        _listener(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0)) as backend,
        run(
            "relay",
            f"unix+dgram:{d}/r.sock",
            f"udp://127.0.0.1:{backend.getsockname()[1]}",
            "--trace",
        ) as relay,
    ):
        relay.address()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed:
            unnamed.sendto(b"fire and forget", f"{d}/r.sock")
        data, sender = backend.recvfrom(100)
        assert data == b"fire and forget"
        backend.sendto(b"reply to nobody", sender)
        relay.wait_err("message #1 15 bytes")  # the reply arrived at the relay ...
        relay.p.send_signal(signal.SIGUSR1)
        assert "1 dropped" in relay.wait_err("sockwire: relay:")  # ... counted, not sent
        assert relay.stop() == 143


def _full_target(kind: str, d: str) -> tuple[socket.socket, str, object]:
    """A listener with backlog 0 that the test accepts from by hand: one queued
    connection fills it (Linux admits backlog + 1), so the next connect waits."""
    if kind == "unix":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(f"{d}/t.sock")
        endpoint, address = f"unix:{d}/t.sock", f"{d}/t.sock"
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        endpoint, address = f"tcp://127.0.0.1:{port}", ("127.0.0.1", port)
    listener.listen(0)
    listener.settimeout(15)
    return listener, endpoint, address


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_a_pending_connect_does_not_freeze_the_relay(d: str, kind: str) -> None:
    """Issue 14 defect 1: client B's connect to a TARGET with a full backlog used to
    block the loop, so client A's echo waited until B's connect timed out."""
    listener, target, address = _full_target(kind, d)
    family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
    with listener, run("relay", f"unix:{d}/r.sock", f"{target}?timeout=4", "--trace") as relay:
        relay.address()
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, f"{d}/r.sock") as a:
            a.settimeout(10)
            server_a, _ = listener.accept()  # A's connection, served by the test
            with server_a, socket.socket(family, socket.SOCK_STREAM) as filler:
                filler.connect(address)  # now the backlog is full, and nobody accepts
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as b:
                    b.connect(f"{d}/r.sock")
                    relay.wait_err("connect(")  # B's connect to TARGET is under way ...
                    started = time.monotonic()
                    a.sendall(b"ping")  # ... and A is still served at once
                    server_a.settimeout(10)
                    assert server_a.recv(10) == b"ping"
                    server_a.sendall(b"pong")
                    assert a.recv(10) == b"pong"
                    assert time.monotonic() - started < 2.0  # B's connect has 4 s to go
                    b.settimeout(15)
                    assert b.recv(10) == b""  # B: closed when its connect timed out
                    assert time.monotonic() - started < 3 * 4
                line = relay.wait_err("no connection within 4 s")
                assert line.count(target) == 1  # said once, not "A -> B: A -> B:"
                a.sendall(b"still here")  # A outlived B's failure
                assert server_a.recv(20) == b"still here"
        relay.p.send_signal(signal.SIGUSR1)
        assert "2 connections" not in relay.wait_err("sockwire: relay: ")
        assert relay.stop() == 143
    assert "Traceback" not in relay.text


def test_idle_timeout_is_reported_once_per_connection(d: str) -> None:
    with run("echo", f"unix:{d}/e.sock", "--trace") as echo:
        echo.address()
        with run("relay", f"unix:{d}/r.sock", f"unix:{d}/e.sock", "--timeout", "1") as relay:
            with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, f"{d}/r.sock") as c:
                c.settimeout(10)
                assert c.recv(10) == b""  # closed after 1 s without data
            line = relay.wait_err("no data either way")
            assert line.count(f"-> unix:{d}/e.sock") == 1, line
            assert relay.stop() == 143
        assert echo.stop() == 143
