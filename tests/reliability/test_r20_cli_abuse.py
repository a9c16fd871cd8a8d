"""R20: the command line under abuse.

* 1,000 connections from uid 65534 refused by ``?allowed_uids=0`` on
  ``sockwire echo``: its descriptor count is the same after as before, and
  it still serves root. Each refusal is accounted for on stderr: the first
  10 as lines, the rest in "N more lines like this" counts (one a second),
  and with stderr a pipe nobody reads the server goes on serving (one
  line per refusal used to fill the pipe and stop it in write(2)).
* Hostile names (newlines, ESC sequences) and 10 KB arguments: exactly one
  line on stderr, ``sockwire: ...``, no traceback, no raw control character,
  and the documented exit code (2 for a bad argument).
* SIGTERM and SIGHUP to ``sockwire listen -k --exec cat`` holding 100
  clients (100 children): it exits with 143 / 129 after cleaning up, the
  socket file is gone, and every child is gone too (no zombie, no orphan).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from tests.cli_helpers import run, sockwire, wait_path
from tests.helpers import need_root
from tests.reliability.support import WAIT, short_tmp

NOBODY = 65534


@pytest.fixture
def tmp() -> Iterator[str]:
    with short_tmp("sw-r20-") as path:
        os.chmod(path, 0o755)  # uid 65534 may reach the socket file
        yield path


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _settled_fds(pid: int, expected: int | None) -> int:
    """The fd count of ``pid`` once the connections it is closing are closed.

    It closes a finished client asynchronously, so look again (bounded: 5 s
    in 20 ms steps) until the count is ``expected``, or stops changing.
    """
    deadline = time.monotonic() + 5.0
    last = _fds(pid)
    while time.monotonic() < deadline:
        select.select([], [], [], 0.02)
        now = _fds(pid)
        if now == expected or (expected is None and now == last):
            return now
        last = now
    return last


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            kids += [int(k) for k in handle.read().split()]
    return kids


def _refused_as_nobody(path: str, count: int) -> int:
    """Fork, become uid 65534, connect ``count`` times; how many were refused unread."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            refused = 0
            for _ in range(count):
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(WAIT)
                    sock.connect(path)
                    try:
                        sock.sendall(b"let me in")
                        refused += sock.recv(64) == b""
                    except (ConnectionResetError, BrokenPipeError):
                        refused += 1
            os.write(write_end, str(refused).encode())
            code = 0
        except BaseException as exc:
            os.write(write_end, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        said = reader.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, said
    return int(said)


@pytest.mark.timeout(120)
def test_r20_1000_refused_peers_leave_the_fd_count_alone(
    tmp: str, report: Callable[..., None]
) -> None:
    need_root()
    path = f"{tmp}/e.sock"
    # stderr to a file: one line per refused peer, 1,000 lines nobody reads meanwhile
    with (
        open(f"{tmp}/err", "wb") as log,
        run("echo", f"unix:{path}?mode=0666&allowed_uids=0", stderr=log.fileno()) as echo,
    ):
        wait_path(path)
        pid = echo.p.pid
        with socket.socket(socket.AF_UNIX) as root:  # warm: one admitted client first
            root.connect(path)
            root.sendall(b"warm")
            assert root.recv(64) == b"warm"
        before = _settled_fds(pid, None)
        refused = _refused_as_nobody(path, 1000)
        after = _settled_fds(pid, before)
        with socket.socket(socket.AF_UNIX) as root:
            root.connect(path)
            root.sendall(b"still served")
            assert root.recv(64) == b"still served"
        assert echo.stop() == 143
    with open(f"{tmp}/err") as logged:
        lines = logged.read().splitlines()
    shown, counted = _refusals(lines)
    assert shown + counted == 1000, lines[-3:]
    assert shown <= 10 + 30, "the first 10, then one line a second (the flood takes seconds)"
    assert refused == 1000
    assert after == before, f"fds {before} -> {after}"
    report("R20", refused_by_filter=refused, fd_growth=after - before, refusal_lines=len(lines))


def _refusals(lines: list[str]) -> tuple[int, int]:
    """Refusals said one per line, and those said in "N more lines like this" counts."""
    shown = counted = 0
    for line in lines:
        more = re.match(r"sockwire: (\d+) more lines? like this .*the last: refused peer", line)
        if more:
            counted += int(more.group(1))
        elif line.startswith("sockwire: refused peer"):
            shown += 1
    return shown, counted


@pytest.mark.timeout(120)
def test_r20_refused_peers_flooding_a_stderr_nobody_reads_do_not_stop_the_server(
    tmp: str, report: Callable[..., None]
) -> None:
    """stderr a pipe that is never read: 1,000 refusals (about 100 KB of lines at one
    each) used to fill it, and the server stopped in write(2) for everyone."""
    need_root()
    path = f"{tmp}/e.sock"
    with run("echo", f"unix:{path}?mode=0666&allowed_uids=0") as echo:  # stderr: a pipe
        wait_path(path)
        refused = _refused_as_nobody(path, 1000)
        with socket.socket(socket.AF_UNIX) as root:
            root.settimeout(WAIT)
            root.connect(path)
            root.sendall(b"still served")
            assert root.recv(64) == b"still served"
        assert echo.stop() == 143
    shown, counted = _refusals(echo.text.splitlines())
    assert refused == 1000
    assert shown + counted <= 1000 and shown <= 10 + 30
    report("R20", refused_with_stderr_unread=refused)


HOSTILE = [
    ("connect", "unix:/tmp/" + "A" * 10_000),  # 10 KB
    ("send", "udp://127.0.0.1:" + "9" * 10_000, "x"),
    ("listen", "unix:/tmp/x.sock?owner=99999999999999999999"),
    ("connect", "tcp://[::1:80"),
    ("connect", "unix:/tmp/x.sock?mode=\n\x1b[31mred"),
    ("connect", "nosuchscheme://a\nforged line"),
    ("listen", "unix:/tmp/x.sock?" + "&".join(f"o{i}=1" for i in range(2000))),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv", HOSTILE, ids=lambda a: f"{a[0]}-{len(''.join(a))}")
def test_r20_hostile_arguments_get_one_line_and_exit_2(
    argv: tuple[str, ...], report: Callable[..., None]
) -> None:
    done = sockwire(*argv)
    err = done.stderr.decode("utf-8", "replace")
    lines = err.splitlines()
    assert done.returncode == 2, err[-500:]
    assert len(lines) == 1 and lines[0].startswith("sockwire: "), err[-500:]
    assert "Traceback" not in err
    assert not any(ch in lines[0] for ch in "\x1b\r\x00"), repr(lines[0][:200])
    report("R20", hostile_arguments=1, one_line_exit_2=1)


@pytest.mark.timeout(120)
def test_r20_hostile_peer_names_are_printed_escaped(tmp: str, report: Callable[..., None]) -> None:
    """A datagram sender that bound a name with a newline and ESC: recv prints one line."""
    path = f"{tmp}/r.sock"
    with run("recv", f"unix+dgram:{path}", "--count", "1") as recv:
        recv.address()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as evil:
            evil.bind(b"\0evil\n#2 from @root 5 bytes: forged\x1b[2J")
            evil.sendto(b"hello", path)
        assert recv.finish() == 0
    out = recv.out.decode("utf-8", "replace")
    assert len(out.splitlines()) == 1 and "\x1b" not in out, repr(out)
    report("R20", hostile_names_escaped=1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_r20_signal_with_100_clients_cleans_up(
    sig: int, code: int, tmp: str, report: Callable[..., None]
) -> None:
    """``listen -k --exec cat``: 100 clients, each with its own child process."""
    path = f"{tmp}/s.sock"
    clients: list[socket.socket] = []
    try:
        with run(
            "listen", "-k", "--max-clients", "200", f"unix:{path}", "--exec", "cat"
        ) as server:
            server.address()
            for i in range(100):
                sock = socket.socket(socket.AF_UNIX)
                clients.append(sock)
                sock.settimeout(WAIT)
                sock.connect(path)
                sock.sendall(struct.pack("!I", i))
            for i, sock in enumerate(clients):  # every one is served by its own cat
                assert sock.recv(4) == struct.pack("!I", i)
            children = _children(server.p.pid)
            assert len(children) == 100
            assert server.stop(sig) == code
            assert not os.path.lexists(path), "the socket file is removed"
            left = []
            for child in children:  # reaped by it, not left to init: gone, not zombies
                try:
                    os.kill(child, 0)
                    left.append(child)
                except ProcessLookupError:
                    pass
            assert left == []
    finally:
        for sock in clients:
            sock.close()
    report("R20", signals_with_100_clients=1, children_reaped=100, zombies=0, socket_files_left=0)


def test_r20_json_errors_are_one_object(report: Callable[..., None]) -> None:
    done = sockwire("--json", "connect", "unix:/tmp/" + "B" * 10_000)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 2 and len(lines) == 1
    assert json.loads(lines[0])
    report("R20", json_error_lines=1)
