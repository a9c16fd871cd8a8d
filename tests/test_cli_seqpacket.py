"""A zero-length SEQPACKET message is a message, not EOF (issue 14, defect 10).

With SO_PASSCRED every packet, an empty one too, carries SCM_CREDENTIALS and
the end carries none (``Socket.tell_empty_from_eof``), so the commands tell
them apart even when the peer has closed with empty messages still queued.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.cli_helpers import SOCKWIRE, program, run, short_dir, sockwire
from tests.helpers import need_tool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def _inherited(messages: list[bytes], *, close: bool) -> tuple[socket.socket, socket.socket]:
    """A seqpacket pair with ``messages`` queued for the right end, the left maybe closed."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for message in messages:
        left.send(message)
    if close:
        left.close()
    return left, right


def _run_with_fd(argv: list[str], sock: socket.socket) -> subprocess.CompletedProcess[bytes]:
    fd = sock.fileno()
    return subprocess.run(
        [*SOCKWIRE, *[a.replace("{fd}", str(fd)) for a in argv]],
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_recv_delivers_empty_messages_of_a_closed_peer() -> None:
    left, right = _inherited([b"a", b"", b"", b"b"], close=True)
    with left, right:
        proc = _run_with_fd(["recv", "fd:{fd}", "--format", "json"], right)
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [(doc["data"], doc["size"]) for doc in docs] == [("a", 1), ("", 0), ("", 0), ("b", 1)]


def test_trailing_empty_message_of_a_closed_peer_is_still_a_message() -> None:
    """Queued last, the peer gone: poll's POLLRDHUP alone could not tell it from the end."""
    left, right = _inherited([b"a", b""], close=True)
    with left, right:
        proc = _run_with_fd(["recv", "fd:{fd}", "--format", "json"], right)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["size"] for line in proc.stdout.decode().splitlines()] == [1, 0]


def test_connect_prints_empty_messages_as_empty_lines() -> None:
    left, right = _inherited([b"one", b"", b"two"], close=True)
    with left, right:
        proc = _run_with_fd(["connect", "fd:{fd}", "--format", "line"], right)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"one\n\ntwo\n"


def test_recv_connect_while_the_peer_stays_open(d: str) -> None:
    path = f"{d}/q.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
        server.bind(path)
        server.listen()
        server.settimeout(15)
        with run("recv", "--connect", f"unix+seqpacket:{path}", "--format", "json") as r:
            conn, _ = server.accept()
            with conn:
                for message in (b"x", b"", b"y"):
                    conn.send(message)
                r.wait_out(b'"data": "y"')  # all three read with the peer still open
            assert r.finish() == 0  # the close is the end
    docs = [json.loads(line) for line in r.out.decode().splitlines()]
    assert [doc["size"] for doc in docs] == [1, 0, 1]


def test_relay_forwards_empty_messages(d: str) -> None:
    back = f"{d}/b.sock"
    left, right = _inherited([b"first", b"", b"last"], close=False)
    with left, right, socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as backend:
        backend.bind(back)
        backend.listen()
        backend.settimeout(15)
        fd = right.fileno()
        relay = subprocess.Popen(
            [*SOCKWIRE, "relay", f"fd:{fd}", f"unix+seqpacket:{back}"],
            pass_fds=(fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            conn, _ = backend.accept()
            with conn:
                conn.settimeout(15)
                assert [conn.recv(100) for _ in range(3)] == [b"first", b"", b"last"]
                left.close()  # the client's end: the relay passes it on
                assert conn.recv(100) == b""
            _, err = relay.communicate(timeout=30)
        finally:
            if relay.poll() is None:
                relay.kill()
                relay.communicate()
    assert relay.returncode == 0, err
    assert b"in 3 messages" in err


def test_send_and_recv_an_empty_message(d: str) -> None:
    path = f"{d}/e.sock"
    with run("recv", f"unix+seqpacket:{path}", "--format", "json", "--trace") as r:
        r.address()
        assert sockwire("send", f"unix+seqpacket:{path}", "a", "", "b").returncode == 0
        assert r.finish() == 0
    assert [json.loads(line)["size"] for line in r.out.decode().splitlines()] == [1, 0, 1]


@pytest.mark.tool
def test_socat_type5_echo_ends_cleanly(d: str) -> None:
    """socat's seqpacket peer: its EOF is still the end (exit 0, every byte back)."""
    need_tool("socat")
    path = f"{d}/s.sock"
    with program("socat", "-d", "-d", f"UNIX-LISTEN:{path},type=5", "EXEC:cat") as socat:
        socat.wait_err("listening on")
        proc = sockwire("connect", f"unix+seqpacket:{path}", input=b"hi\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"hi\n"
        assert socat.finish() == 0


@pytest.mark.tool
def test_socat_type5_sender_to_recv(d: str) -> None:
    need_tool("socat")
    path = f"{d}/r.sock"
    with run("recv", f"unix+seqpacket:{path}", "--format", "raw", "--trace") as r:
        r.address()
        with program("socat", "-", f"UNIX-CONNECT:{path},type=5") as socat:
            socat.send(b"from socat\n")
            assert socat.finish() == 0
        assert r.finish() == 0  # socat's shutdown and close: the end
    assert r.out == b"from socat\n"
