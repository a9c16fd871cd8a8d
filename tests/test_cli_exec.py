"""``--exec`` / ``--system`` / ``--pty``: a program per connection (socat EXEC:, nc -e)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator

import pytest

from tests.cli_helpers import connect_when_ready, program, recv_all, run, short_dir, sockwire
from tests.helpers import need_tool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def _talk(path: str, data: bytes) -> bytes:
    with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        return recv_all(client)


def test_listen_k_runs_a_program_per_connection_and_reaps_it(d: str) -> None:
    path = f"{d}/x.sock"
    argv = ["listen", "-k", f"unix:{path}", "--exec", "tr a-z A-Z", "--max-clients", "2"]
    with run(*argv, "--trace") as server:
        server.address()
        assert _talk(path, b"first\n") == b"FIRST\n"
        # two at once: each has its own child
        with (
            connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as one,
            connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as two,
        ):
            one.sendall(b"one")
            two.sendall(b"two")
            two.shutdown(socket.SHUT_WR)
            assert recv_all(two) == b"TWO"
            one.shutdown(socket.SHUT_WR)
            assert recv_all(one) == b"ONE"
        server.wait_err("status 0")
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as left_open:
            left_open.sendall(b"x")
            lines = server.wait_err_count(" exec pid=", 4)  # the fourth child, still running
            pids = [int(re.findall(r"exec pid=(\d+)", line)[0]) for line in lines]
            assert server.stop() == 143  # SIGTERM: the running child is ended and reaped
    assert "killed by SIGTERM" in server.text
    assert len(set(pids)) == 4
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    assert not os.path.exists(path)


def test_one_shot_listen_exits_with_the_childs_status(d: str) -> None:
    path = f"{d}/s.sock"
    with run("listen", f"unix:{path}", "--system", "cat; exit 7", "--trace") as server:
        server.address()
        assert _talk(path, b"echoed by cat") == b"echoed by cat"
        assert server.finish() == 7
    assert "exit pid=" in server.text and "status 7" in server.text


def test_the_child_knows_its_peer(d: str) -> None:
    path = f"{d}/p.sock"
    line = 'echo "$SOCKWIRE_PEER_UID $SOCKWIRE_PEER_PID"'
    with run("listen", f"unix:{path}", "--system", line, "--trace") as server:
        server.address()
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as client:
            assert recv_all(client) == f"{os.getuid()} {os.getpid()}\n".encode()
        assert server.finish() == 0


def test_connect_exec_talks_to_the_server_and_returns_its_status(d: str) -> None:
    path = f"{d}/c.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        listener.settimeout(15)
        with run(
            "connect", f"unix:{path}", "--system", 'read line; echo "got $line"; exit 3'
        ) as client:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"hello\n")
                assert recv_all(conn) == b"got hello\n"
            assert client.finish() == 3
    assert client.out == b""  # sockwire's own stdout is not used


@pytest.mark.tool
def test_nc_client_against_listen_exec(d: str) -> None:
    need_tool("nc")
    path = f"{d}/n.sock"
    with run("listen", "-k", f"unix:{path}", "--exec", "rev", "--trace") as server:
        server.address()
        with program("nc", "-N", "-U", path) as nc:
            nc.send(b"abc\n")
            assert nc.finish() == 0
        assert nc.out == b"cba\n"
        assert server.stop() == 143


def test_pty_gives_the_program_a_terminal(d: str) -> None:
    path = f"{d}/t.sock"
    line = 'tty; read x; echo "x=$x"'
    with run("listen", f"unix:{path}", "--system", line, "--pty", "--trace") as server:
        server.address()
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as client:
            client.settimeout(15)
            got = b""
            while b"\n" not in got:  # the tty line comes first
                got += client.recv(100)
            assert got.startswith(b"/dev/pts/"), got
            client.sendall(b"abc\n")
            got += recv_all(client)  # the terminal echoes, then the program answers
        assert b"x=abc\r\n" in got
        assert server.finish() == 0
    assert "(pty)" in server.text


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["connect", "unix:/tmp/x.sock", "--exec", "cat", "--crlf"], "--crlf"),
        (["listen", "udp://127.0.0.1:0", "--exec", "cat"], "needs connections"),
        (["listen", "unix:@sw-pty", "--pty"], "--exec or --system"),
        (["listen", "unix+seqpacket:@sw-q", "--exec", "cat", "--pty"], "stream endpoint"),
        (["connect", "unix:/tmp/x.sock", "--exec", "'unclosed"], "cannot split"),
        (["connect", "unix:/tmp/x.sock", "--exec", "cat", "--system", "cat"], "not allowed"),
    ],
)
def test_exec_usage_errors(argv: list[str], words: str) -> None:
    proc = sockwire(*argv)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr


def test_a_missing_program_is_one_line(d: str) -> None:
    path = f"{d}/m.sock"
    with run("listen", f"unix:{path}", "--exec", "/nonexistent/prog", "--trace") as server:
        server.address()
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as client:
            client.settimeout(15)
            assert client.recv(10) == b""
        assert server.finish() == 3
    assert "sockwire: exec /nonexistent/prog (ENOENT)" in server.text
    assert "Traceback" not in server.text
