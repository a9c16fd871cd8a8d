"""Inherited sockets on the command line: systemd: (socket activation) and fd:N.

systemd-socket-activate plays systemd: it listens, and on the first
connection (or datagram) execs the command with LISTEN_FDS/LISTEN_PID set;
with --accept it forks one child per connection, each handed the connected
socket (inetd style). Readiness is its "Listening on" line, never a sleep.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.cli_helpers import (
    SOCKWIRE,
    connect_when_ready,
    host_port,
    program,
    recv_all,
    run,
    short_dir,
)
from tests.helpers import need_tool


@pytest.fixture
def d() -> object:
    with short_dir() as path:
        yield path


def _activate(*args: str) -> list[str]:
    return [need_tool("systemd-socket-activate"), *args]


@pytest.mark.timeout(60)
def test_systemd_stream_listener_echo(d: str) -> None:
    path = f"{d}/e.sock"
    argv = _activate("-l", path, *SOCKWIRE, "echo", "systemd:", "--count", "1", "--trace")
    with program(*argv) as activator:
        activator.wait_err("Listening on")
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as client:
            client.sendall(b"activated")
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"activated"
        assert activator.finish() == 0, activator.text
    assert f"listening unix:{path} fd=3" in activator.text
    assert os.path.exists(path)  # not ours to remove: the activator (systemd) made it


@pytest.mark.timeout(60)
def test_systemd_seqpacket_keeps_boundaries(d: str) -> None:
    path = f"{d}/s.sock"
    argv = _activate("--seqpacket", "-l", path, *SOCKWIRE, "echo", "systemd:", "--count", "1")
    with program(*argv) as activator:
        activator.wait_err("Listening on")
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_SEQPACKET, path) as client:
            client.settimeout(15)
            client.send(b"one")
            client.send(b"two, longer")
            assert client.recv(100) == b"one"
            assert client.recv(100) == b"two, longer"
            client.shutdown(socket.SHUT_WR)
            assert client.recv(100) == b""
        assert activator.finish() == 0, activator.text


@pytest.mark.timeout(60)
def test_systemd_datagram_socket_recv(d: str) -> None:
    path = f"{d}/d.sock"
    argv = _activate("-d", "-l", path, *SOCKWIRE, "recv", "systemd:", "--count", "2")
    with program(*argv) as activator:
        activator.wait_err("Listening on")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.bind(f"{d}/client.sock")
            client.sendto(b"from afar", path)  # this one starts sockwire
            activator.wait_out(b"\n")
            client.sendto(b"again", path)
            out = activator.wait_out(b"again\n").decode().splitlines()
        assert activator.finish() == 0, activator.text
    sender = f"{d}/client.sock"
    # the first was queued before sockwire set SO_PASSCRED: no credentials, not "pid 0"
    assert out[0] == f"#1 from {sender} 9 bytes: from afar"
    me = f"pid={os.getpid()} uid={os.getuid()} gid={os.getgid()}"
    assert out[1] == f"#2 from {sender} ({me}) 5 bytes: again"


@pytest.mark.timeout(60)
def test_systemd_accept_mode_serves_the_inherited_connection(d: str) -> None:
    path = f"{d}/a.sock"
    argv = _activate("--accept", "-l", path, *SOCKWIRE, "echo", "systemd:")
    with program(*argv) as activator:
        activator.wait_err("Listening on")
        for word in (b"first", b"second"):  # a child per connection, each echoes and exits
            with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as client:
                client.sendall(word)
                client.shutdown(socket.SHUT_WR)
                assert recv_all(client) == word


@pytest.mark.timeout(60)
def test_fd_listening_socket_for_listen() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = server.getsockname()
        fd = server.fileno()
        proc = subprocess.Popen(
            [*SOCKWIRE, "listen", f"fd:{fd}", "--trace"],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            with socket.create_connection(address, timeout=15) as client:
                client.sendall(b"through an inherited listener")
                client.shutdown(socket.SHUT_WR)
                assert recv_all(client) == b""  # stdin was empty: its EOF became SHUT_WR
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert out == b"through an inherited listener"
    assert f"listening tcp://127.0.0.1:{address[1]} fd={fd}".encode() in err


@pytest.mark.timeout(60)
def test_fd_datagram_socket_for_recv() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        left.send(b"queued before the exec")
        proc = subprocess.run(
            [*SOCKWIRE, "recv", f"fd:{right.fileno()}", "--count", "1", "--format", "raw"],
            pass_fds=(right.fileno(),),
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"queued before the exec"


@pytest.mark.timeout(60)
def test_relay_from_an_inherited_listener() -> None:
    with (
        run("echo", "tcp://127.0.0.1:0", "--count", "1", "--trace") as echo,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener,
    ):
        target = echo.address()
        listener.bind("")  # autobind: an abstract name
        listener.listen()
        name = listener.getsockname()
        fd = listener.fileno()
        proc = subprocess.Popen(
            [*SOCKWIRE, "relay", f"fd:{fd}", target, "--count", "1"],
            pass_fds=(fd,),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(15)
                client.connect(name)
                client.sendall(b"relayed")
                client.shutdown(socket.SHUT_WR)
                assert recv_all(client) == b"relayed"
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert b"client->target 7 bytes" in err
        assert echo.finish() == 0
    host_port(target)


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["relay", "unix:@sw-x", "fd:3"], 2, "cannot be connected anew"),
        (["listen", "tls+tcp://127.0.0.1:0"], 2, "a tls+tcp listener needs a certificate"),
        (["listen", "systemd:"], 3, "no sockets were passed to this process"),
    ],
)
def test_refusals_are_one_line(args: list[str], code: int, words: str) -> None:
    proc = subprocess.run(
        [*SOCKWIRE, *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.count("\n") == 1 and words in proc.stderr
    assert proc.stderr.startswith("sockwire: ")


def test_fd_that_is_a_pipe_is_one_line() -> None:
    r, w = os.pipe()
    try:
        proc = subprocess.run(
            [*SOCKWIRE, "echo", f"fd:{r}"],
            pass_fds=(r,),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        os.close(r)
        os.close(w)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("is not a socket but a pipe")
    assert proc.stderr.count("\n") == 1
