"""``relay`` with ``file:PATH`` and ``-``: record a stream to a file, replay it, stdio sides."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator

import pytest

from tests.cli_helpers import connect_when_ready, program, recv_all, run, short_dir, sockwire
from tests.helpers import need_tool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


@pytest.mark.tool
def test_record_a_stream_from_nc_clients(d: str) -> None:
    need_tool("nc")
    log = f"{d}/log"
    with run("relay", f"unix:{d}/r.sock", f"file:{log}", "--count", "2", "--trace") as relay:
        relay.address()
        for line in (b"first line\n", b"second line\n"):
            with program("nc", "-N", "-U", f"{d}/r.sock") as nc:
                nc.send(line)
                assert nc.finish() == 0  # our close after its EOF ended it
        assert relay.finish() == 0
    with open(log, "rb") as recorded:
        assert recorded.read() == b"first line\nsecond line\n"
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert "client->file 23 bytes" in relay.text.splitlines()[-1]


def test_replay_a_file_into_a_service(d: str) -> None:
    log = f"{d}/log"
    with open(log, "wb") as recording:
        recording.write(b"recorded bytes\n" * 1000)
    with run("echo", f"unix:{d}/e.sock", "--trace") as echo:
        echo.address()
        proc = sockwire("relay", f"file:{log}", f"unix:{d}/e.sock")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"recorded bytes\n" * 1000  # the service's answer on stdout
        assert echo.stop() == 143
    assert b"file->target 15000 bytes" in proc.stderr


def test_stdin_as_listen_side(d: str) -> None:
    with run("echo", "tcp://127.0.0.1:0", "--trace") as echo:
        target = echo.address()
        proc = sockwire("relay", "-", target, input=b"through stdin\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"through stdin\n"
        assert echo.stop() == 143


def test_stdout_as_target_side(d: str) -> None:
    with run("relay", f"unix:{d}/r.sock", "-", "--count", "1", "--trace") as relay:
        relay.address()
        relay.send(b"to the client\n")
        relay.close_stdin()
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, f"{d}/r.sock") as client:
            client.sendall(b"from the client\n")
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"to the client\n"
        assert relay.finish() == 0
    assert relay.out == b"from the client\n"


def test_a_symlink_is_refused_not_followed(d: str) -> None:
    os.symlink("/etc/passwd", f"{d}/link")
    proc = sockwire("relay", f"unix:{d}/r.sock", f"file:{d}/link")
    assert proc.returncode == 5
    assert proc.stderr.decode().startswith(f"sockwire: open file:{d}/link (ELOOP): ")
    assert proc.stderr.count(b"\n") == 1
    assert not os.path.exists(f"{d}/r.sock")


@pytest.mark.parametrize(
    ("listen", "target", "words"),
    [
        ("unix+seqpacket:{d}/q.sock", "file:{d}/log", "lose its boundaries"),
        ("file:{d}/a", "-", "one side must be a socket"),
        ("file:", "unix:{d}/x.sock", "give file:PATH"),
        ("unix:{d}/r.sock", "file:{d}/fifo", "regular file or a character device"),
    ],
)
def test_file_side_usage_errors(d: str, listen: str, target: str, words: str) -> None:
    os.mkfifo(f"{d}/fifo")
    proc = sockwire("relay", listen.format(d=d), target.format(d=d))
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr


def test_a_missing_listen_file_is_not_found(d: str) -> None:
    proc = sockwire("relay", f"file:{d}/none", "unix:/tmp/x.sock")
    assert proc.returncode == 3
    assert "(ENOENT): no such file" in proc.stderr.decode()
