"""``sockwire send`` / ``recv`` / ``echo``: message boundaries, senders, truncation."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.cli_helpers import connect_when_ready, host_port, run, short_dir, sockwire

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def test_send_recv_unix_dgram_shows_sender_and_length(d: str) -> None:
    path = f"{d}/r.sock"
    with run("recv", f"unix+dgram:{path}", "--count", "3", "--trace") as receiver:
        receiver.address()
        assert sockwire("send", f"unix+dgram:{path}", "one", "two").returncode == 0
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed:
            unnamed.sendto(b"from nobody", path)  # never bound: unnamed, not an error
        assert receiver.finish() == 0
    lines = receiver.out.decode().splitlines()
    assert lines[0].startswith("#1 from @") and lines[0].endswith("3 bytes: one")
    assert lines[1].endswith("3 bytes: two")
    assert lines[2].startswith("#3 from unnamed (pid=") and lines[2].endswith(": from nobody")


def test_truncation_is_shown(d: str) -> None:
    path = f"{d}/t.sock"
    with run("recv", f"unix+dgram:{path}", "--count", "1", "--bufsize", "4", "--trace") as r:
        r.address()
        assert sockwire("send", f"unix+dgram:{path}", "0123456789").returncode == 0
        assert r.finish() == 0
    assert "10 bytes, TRUNCATED to 4 (MSG_TRUNC" in r.out.decode()
    assert r.out.decode().rstrip().endswith(": 0123")


def test_recv_json_and_stdin_lines_over_udp() -> None:
    with run("recv", "udp://127.0.0.1:0", "--count", "2", "--format", "json", "--trace") as r:
        address = r.address()
        assert sockwire("send", address, input=b"first\nsecond\n").returncode == 0
        assert r.finish() == 0
    docs = [json.loads(line) for line in r.out.decode().splitlines()]
    assert [doc["data"] for doc in docs] == ["first\n", "second\n"]
    assert docs[0]["from"].startswith("127.0.0.1:") and docs[0]["truncated"] is False


def test_seqpacket_recv_until_eof_and_peek(d: str) -> None:
    path = f"{d}/q.sock"
    with run("recv", f"unix+seqpacket:{path}", "--trace") as r:
        r.address()
        assert sockwire("send", f"unix+seqpacket:{path}", "a", "bb", "ccc").returncode == 0
        assert r.finish() == 0  # the sender's EOF ends it
    assert [line.split(": ", 1)[1] for line in r.out.decode().splitlines()] == ["a", "bb", "ccc"]
    assert r.out.decode().startswith("#1 from unnamed (pid=")  # SO_PEERCRED of the sender
    with run("recv", f"unix+seqpacket:{path}", "--peek", "--trace") as r:
        r.address()
        assert sockwire("send", f"unix+seqpacket:{path}", "kept").returncode == 0
        assert r.finish() == 0
    assert "peeked (left queued): kept" in r.out.decode()
    assert "MSG_PEEK" in r.text


def test_recv_raw_payloads_only(d: str) -> None:
    path = f"{d}/w.sock"
    with run("recv", f"unix+dgram:{path}", "--count", "2", "--format", "raw", "--trace") as r:
        r.address()
        assert sockwire("send", f"unix+dgram:{path}", "ab", "cd").returncode == 0
        assert r.finish() == 0
    assert r.out == b"abcd"


@pytest.mark.parametrize("scheme", ["unix", "tcp"])
def test_send_on_a_byte_stream_is_a_usage_error(scheme: str) -> None:
    target = "unix:/tmp/x.sock" if scheme == "unix" else "tcp://127.0.0.1:9"
    proc = sockwire("send", target, "x")
    assert proc.returncode == 2
    assert (
        proc.stderr.decode().startswith("sockwire: send to ") and b"Traceback" not in proc.stderr
    )


def test_echo_stream_seqpacket_udp(d: str) -> None:
    with run("echo", f"unix:{d}/s.sock", "--count", "1", "--trace") as echo:
        echo.address()
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, f"{d}/s.sock") as c:
            c.sendall(b"bytes back")
            c.shutdown(socket.SHUT_WR)
            c.settimeout(10)
            got = b""
            while chunk := c.recv(100):
                got += chunk
            assert got == b"bytes back"  # and then EOF: echo half-closed after ours
        assert echo.finish() == 0
    with run("echo", f"unix+seqpacket:{d}/q.sock", "--count", "1", "--trace") as echo:
        echo.address()
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_SEQPACKET, f"{d}/q.sock") as c:
            c.settimeout(10)
            c.send(b"m1")
            c.send(b"message two")
            assert c.recv(100) == b"m1"
            assert c.recv(100) == b"message two"
        assert echo.finish() == 0
    with run("echo", "udp://127.0.0.1:0", "--count", "1", "--trace") as echo:
        host, port = host_port(echo.address())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(10)
            c.sendto(b"dgram", (host, port))
            assert c.recv(100) == b"dgram"
        assert echo.finish() == 0


def test_echo_unnamed_sender_is_dropped_not_fatal(d: str) -> None:
    path = f"{d}/e.sock"
    with run("echo", f"unix+dgram:{path}", "--count", "2", "--trace") as echo:
        echo.address()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed:
            unnamed.sendto(b"no reply possible", path)
        echo.wait_err("cannot reply")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as named:
            named.bind(f"{d}/c.sock")
            named.settimeout(10)
            named.sendto(b"hello", path)
            assert named.recv(100) == b"hello"
        assert echo.finish() == 0


def test_connect_udp_to_echo_prints_replies() -> None:
    with run("echo", "udp://127.0.0.1:0", "--trace") as echo:
        address = echo.address()
        proc = sockwire("connect", address, "--linger", "1", input=b"x\ny\n")
        assert proc.returncode == 0
        assert proc.stdout == b"x\ny\n"
        assert echo.stop() == 143
