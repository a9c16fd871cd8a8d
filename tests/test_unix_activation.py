"""Activation: fd:N and systemd:[NAME] in a real child process, as systemd starts one.

The child is started the way systemd does it: a small trampoline moves the
sockets to fds 3, 4, ..., sets LISTEN_PID to its own pid and execs the
service, which keeps that pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

import sockwire
from sockwire import dial, socketpair, unix

CHILD = textwrap.dedent(
    """
    import fcntl, json, os, sys
    from sockwire import SockwireError, dial, unix

    def attempt(call):
        try:
            call()
        except SockwireError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "ok"

    mode = sys.argv[1]
    report = {}
    if mode == "serve":
        passed = unix.listen_fds()
        report["passed"] = [[p.fd, p.name] for p in passed]
        report["env"] = sorted(k for k in os.environ if k.startswith("LISTEN_"))
        report["cloexec"] = [
            bool(fcntl.fcntl(p.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC) for p in passed
        ]
        web = dial.listen("systemd:web?allowed_uids=0")
        logs = dial.bind("systemd:logs?type=dgram")
        report["types"] = [web.type, logs.type]
        report["listening"] = [unix.is_listening(web), unix.is_listening(logs)]
        report["filter"] = repr(web.peer_filter)
        report["again"] = attempt(lambda: dial.listen("systemd:web"))
        print(json.dumps(report), flush=True)
        conn, peer = web.accept()
        conn.send(f"activated, you are pid {peer.pid}".encode())
        conn.close()
        print(json.dumps({"datagram": logs.recv(100).decode()}), flush=True)
        web.close()
        logs.close()
    elif mode == "first":
        report["first"] = dial.listen("systemd:").fd
        report["second"] = dial.bind("systemd:").fd
        report["none_left"] = attempt(lambda: dial.bind("systemd:"))
        print(json.dumps(report), flush=True)
    elif mode == "checks":
        report["idle"] = attempt(lambda: dial.listen("systemd:idle"))
        report["pipe"] = attempt(lambda: dial.adopt("systemd:pipe"))
        report["dg"] = attempt(lambda: dial.bind("systemd:dg?type=stream"))
        print(json.dumps(report), flush=True)
    elif mode == "fd":
        with dial.listen("fd:3") as listener:
            report["fd"] = [listener.fd, unix.is_listening(listener)]
        report["passed"] = [[p.fd, p.name] for p in unix.listen_fds()]
        print(json.dumps(report), flush=True)
    else:
        report["nothing"] = attempt(lambda: dial.listen("systemd:"))
        print(json.dumps(report), flush=True)
    """
)

# What systemd does between fork and exec: move the sockets to 3, 4, ..., set
# LISTEN_PID to the process's own pid, exec the service (the pid stays).
TRAMPOLINE = (
    "import os, sys\n"
    "n = int(sys.argv[1]); own_pid = sys.argv[2] == '1'\n"
    "fds = [int(x) for x in sys.argv[3 : 3 + n]]\n"
    "for i, fd in enumerate(fds):\n"
    "    os.dup2(fd, 3 + i)\n"
    "for fd in fds:\n"
    "    if fd >= 3 + n:\n"
    "        os.close(fd)\n"
    "if own_pid:\n"
    "    os.environ['LISTEN_PID'] = str(os.getpid())\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[3 + n :]])\n"
)


@contextmanager
def _child(
    tmp_path: Path, mode: str, socks: list[int], env: dict[str, str], *, own_pid: bool = True
) -> Iterator[subprocess.Popen[str]]:
    """Start the child script with ``socks`` at fds 3, 4, ... and ``env``."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    with ExitStack() as stack:
        high = []
        for fd in socks:  # inheritable copies above 10, away from 3, 4, ...
            copy = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
            stack.callback(os.close, copy)
            high.append(copy)
        argv = [str(len(high)), "1" if own_pid else "0", *map(str, high), str(script), mode]
        proc = subprocess.Popen(
            [sys.executable, "-c", TRAMPOLINE, *argv],
            pass_fds=high,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        for copy in high:  # the child has them now
            os.close(copy)
        stack.pop_all()
        try:
            yield proc
        finally:
            proc.kill()
            proc.communicate(timeout=30)


def _line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the child printed nothing"
    return dict(json.loads(line))


@pytest.mark.timeout(60)
def test_systemd_activation_by_name_in_a_real_child(tmp_path: Path) -> None:
    web_path = f"{tmp_path}/web.sock"
    logs_path = f"{tmp_path}/logs.sock"
    with dial.listen(f"unix:{web_path}") as web, dial.bind(f"unix+dgram:{logs_path}") as logs:
        env = {"LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:logs"}
        with _child(tmp_path, "serve", [web.fd, logs.fd], env) as proc:
            report = _line(proc)
            assert report["passed"] == [[3, "web"], [4, "logs"]]
            assert report["env"] == [], "LISTEN_* removed so grandchildren do not take them"
            assert report["cloexec"] == [True, True]
            assert report["types"] == [socket.SOCK_STREAM, socket.SOCK_DGRAM]
            assert report["listening"] == [True, False]
            assert "allowed_uids=0" in report["filter"]
            assert report["again"].startswith("NotFound") and "web (fd 3)" in report["again"]
            with dial.connect(f"unix:{web_path}") as client:
                assert client.recv(100) == f"activated, you are pid {os.getpid()}".encode()
            with dial.connect(f"unix+dgram:{logs_path}") as sender:
                sender.send(b"to the activated child")
            assert _line(proc) == {"datagram": "to the activated child"}
            proc.wait(timeout=30)
            assert proc.returncode == 0
        assert os.path.exists(web_path), "the child's close never removes the parent's file"


@pytest.mark.timeout(60)
def test_systemd_without_a_name_takes_the_next_socket(tmp_path: Path) -> None:
    a, b = socketpair(socket.SOCK_SEQPACKET)
    with dial.listen(f"unix:{tmp_path}/s.sock") as listener, a, b:
        with _child(tmp_path, "first", [listener.fd, a.fd], {"LISTEN_FDS": "2"}) as proc:
            report = _line(proc)
        assert report["first"] == 3 and report["second"] == 4
        assert "no unclaimed passed socket left" in report["none_left"]
        assert "unknown (fd 3)" in report["none_left"]


@pytest.mark.timeout(60)
def test_passed_fds_are_checked(tmp_path: Path) -> None:
    idle = sockwire.Socket(socket.AF_UNIX, socket.SOCK_STREAM)
    read_end, write_end = os.pipe()
    dg = sockwire.Socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        env = {"LISTEN_FDS": "3", "LISTEN_FDNAMES": "idle:pipe:dg"}
        with _child(tmp_path, "checks", [idle.fd, read_end, dg.fd], env) as proc:
            report = _line(proc)
    finally:
        idle.close()
        dg.close()
        os.close(read_end)
        os.close(write_end)
    assert report["idle"].startswith("InvalidOperation") and "not a listening" in report["idle"]
    assert "not a socket but a pipe" in report["pipe"]
    assert "SOCK_DGRAM socket, of another type" in report["dg"]


@pytest.mark.timeout(60)
def test_listen_pid_of_another_process_means_nothing_was_passed(tmp_path: Path) -> None:
    with dial.listen(f"unix:{tmp_path}/s.sock") as listener:
        env = {"LISTEN_FDS": "1", "LISTEN_PID": "1"}
        with _child(tmp_path, "other", [listener.fd], env, own_pid=False) as proc:
            report = _line(proc)
    assert report["nothing"].startswith("NotFound")
    assert "for another process" in report["nothing"]


@pytest.mark.timeout(60)
def test_fd_n_in_a_real_child(tmp_path: Path) -> None:
    with (
        dial.listen(f"unix:{tmp_path}/s.sock") as listener,
        _child(tmp_path, "fd", [listener.fd], {}, own_pid=False) as proc,
    ):
        report = _line(proc)
    assert report == {"fd": [3, True], "passed": []}


def test_fd_listen_and_bind_in_process() -> None:
    with dial.listen(f"unix:@sockwire-test-{os.getpid()}") as listener:
        dup = os.dup(listener.fd)
        with dial.listen(f"fd:{dup}?allowed_uids=0") as adopted:
            assert isinstance(adopted, unix.UnixSocket) and adopted.peer_filter is not None
    a, b = socketpair(socket.SOCK_DGRAM)
    with a, b:
        dup = os.dup(a.fd)
        with pytest.raises(sockwire.InvalidOperation, match="not a listening"):
            dial.listen(f"fd:{dup}")
        with dial.bind(f"fd:{dup}?type=dgram") as adopted:
            b.send(b"x")
            assert adopted.recv(10) == b"x"
    with socket.socket(socket.AF_INET) as inet:
        inet.bind(("127.0.0.1", 0))
        inet.listen(1)
        dup = os.dup(inet.fileno())
        with pytest.raises(sockwire.InvalidOperation, match="need a UNIX socket"):
            dial.listen(f"fd:{dup}?allowed_uids=0")
        os.close(dup)
