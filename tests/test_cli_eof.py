"""EOF policy of listen/connect: --quit-after (socat -t, nc -q), --no-shutdown, -C/--crlf."""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Iterator

import pytest

from sockwire.cli.pump import to_crlf
from tests.cli_helpers import program, recv_all, run, short_dir, sockwire
from tests.helpers import need_tool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def _listener(path: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    server.settimeout(15)
    return server


@pytest.mark.tool
def test_quit_after_ends_a_connection_the_peer_keeps_open(d: str) -> None:
    """An nc server that never closes: without --quit-after connect would wait forever."""
    need_tool("nc")
    path = f"{d}/n.sock"
    with program("nc", "-lU", path) as nc:  # its stdin stays open: it never ends by itself
        _wait_listening(path)
        started = time.monotonic()
        proc = sockwire("connect", f"unix:{path}", "--quit-after", "0.5", input=b"hi\n")
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        nc.wait_out(b"hi\n")
        assert elapsed < 3 * 0.5 + 5  # start-up, then at most 3x the 0.5 s


def _wait_listening(path: str) -> None:
    """Until the kernel lists ``path`` as a listening UNIX socket (no probe connect:
    that would be nc's one client). Bounded in count and time."""
    from sockwire import sock_diag

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        # the kernel's own list (sock_diag): other processes' socket names, whatever
        # bytes they hold, are no text to decode here
        if os.path.exists(path):
            holders = sock_diag.bound_to(os.lstat(path), sock_diag.unix_sockets())
            if any(entry.state == "LISTEN" for entry in holders):
                return
        select.select([], [], [], 0.02)
    raise AssertionError(f"nothing listens on {path}")


def test_quit_after_zero_is_close_on_eof(d: str) -> None:
    path = f"{d}/q.sock"
    with _listener(path) as server, run("connect", f"unix:{path}", "--quit-after", "0") as c:
        conn, _ = server.accept()
        with conn:
            c.send(b"bye\n")
            c.close_stdin()
            assert recv_all(conn) == b"bye\n"  # our close, without waiting for the server
            assert c.finish() == 0


def test_no_shutdown_keeps_the_write_side_open(d: str) -> None:
    path = f"{d}/s.sock"
    with _listener(path) as server:
        with run("connect", f"unix:{path}", "--no-shutdown", "--trace") as c:
            conn, _ = server.accept()
            with conn:
                c.send(b"request\n")
                c.close_stdin()
                conn.settimeout(15)
                assert conn.recv(100) == b"request\n"
                c.wait_err("eof stdin")  # stdin ended, and still no EOF for the server:
                conn.setblocking(False)
                with pytest.raises(BlockingIOError):
                    conn.recv(100)
                conn.sendall(b"answer\n")
                c.wait_out(b"answer\n")
            assert c.finish() == 0  # the server's close ends it
        assert "shutdown(" not in c.text
        with run("connect", f"unix:{path}", "--trace") as c:  # the default, for contrast
            conn, _ = server.accept()
            with conn:
                c.close_stdin()
                assert recv_all(conn) == b""
            assert c.finish() == 0
        assert "shutdown(" in c.text


@pytest.mark.tool
def test_crlf_line_ends_reach_socat(d: str) -> None:
    need_tool("socat")
    path = f"{d}/c.sock"
    with program("socat", "-d", "-d", "-u", f"UNIX-LISTEN:{path}", "-") as socat:
        socat.wait_err("listening on")
        proc = sockwire("connect", f"unix:{path}", "-C", input=b"HELO x\nQUIT\r\n")
        assert proc.returncode == 0, proc.stderr
        assert socat.finish() == 0
    assert socat.out == b"HELO x\r\nQUIT\r\n"


def test_to_crlf_across_reads() -> None:
    assert to_crlf(b"a\nb\r\nc\r", False) == b"a\r\nb\r\nc\r"
    assert to_crlf(b"\nx\n", True) == b"\nx\r\n"  # its CR ended the previous read
    assert to_crlf(b"\nx", False) == b"\r\nx"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--close-on-eof", "--no-shutdown"], "--close-on-eof with --no-shutdown"),
        (["--close-on-eof", "--quit-after", "1"], "--close-on-eof with --quit-after"),
        (["--quit-after=-1"], "seconds must be"),
    ],
)
def test_eof_policy_usage_errors(extra: list[str], words: str) -> None:
    proc = sockwire("connect", "unix:/tmp/none.sock", *extra)
    assert proc.returncode == 2
    assert words in proc.stderr.decode()
