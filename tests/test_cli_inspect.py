"""``sockwire inspect``: listing sockets over sock_diag, and what holds a socket file.

The regression tests run the real peers that showed each defect: a one-shot
``nc -lU`` (a probe connect was its one client), socat on an abstract name,
and hostile names bound by uid 65534.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from sockwire import sock_diag
from sockwire.cli.exitcodes import Exit
from tests.cli_helpers import program, run, short_dir, sockwire
from tests.helpers import SYSTEM_PYTHON, as_nobody, need, need_root, need_tool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def wait_listening(name: str, timeout: float = 15.0) -> None:
    """Until the kernel lists a listener bound to ``name`` (bounded; not a sleep)."""
    deadline = time.monotonic() + timeout
    while not any(e.local == name and e.state == "LISTEN" for e in sock_diag.unix_sockets()):
        assert time.monotonic() < deadline, f"nothing listens on {name!r}"
        select.select([], [], [], 0.02)


# ---- one socket file: the kernel's view, no connect


def test_path_verdicts(d: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram:
        dgram.bind(f"{d}/g.sock")
        proc = sockwire("inspect", f"{d}/g.sock", "--json")
        assert proc.returncode == Exit.OK
        doc = json.loads(proc.stdout)
        assert doc["live"] and doc["type"] == "dgram" and doc["source"] == "sock_diag"
        assert "probes" not in doc  # the kernel said it: nothing was sent to the socket
        assert os.getpid() in {p["pid"] for e in doc["holders"] for p in e["processes"]}
    # the socket is closed, the file stays: the kernel sees no holder, the probes confirm
    proc = sockwire("inspect", f"{d}/g.sock")
    assert proc.returncode == Exit.REFUSED
    text = proc.stdout.decode()
    assert "stale: nobody listens" in text and "no socket of this network namespace" in text
    assert "stream: ECONNREFUSED" in text
    with open(f"{d}/plain", "w"):
        pass
    os.mkfifo(f"{d}/fifo")
    for name, kind in (("plain", "a regular file"), ("fifo", "a FIFO"), ("", "a directory")):
        proc = sockwire("inspect", f"{d}/{name}")
        assert proc.returncode == Exit.IO
        assert f"{kind}, not a socket" in proc.stdout.decode()
    missing = sockwire("inspect", f"{d}/missing")
    assert missing.returncode == Exit.REFUSED and "No such file" in missing.stdout.decode()


def test_seqpacket_listener_is_found_by_its_type(d: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
        server.bind(f"{d}/q.sock")
        server.listen(4)
        proc = sockwire("inspect", f"{d}/q.sock")
        assert proc.returncode == Exit.OK
        text = proc.stdout.decode()
        assert "live seqpacket socket" in text and "0 of 4 pending" in text
        assert f"pid {os.getpid()}" in text


def test_bound_but_not_listening_is_held_not_stale(d: str) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(f"{d}/b.sock")
        proc = sockwire("inspect", f"{d}/b.sock", "--json")
        assert proc.returncode == Exit.REFUSED
        doc = json.loads(proc.stdout)
        assert not doc["live"] and doc["holders"][0]["state"] == "UNCONN"
        assert "probes" not in doc


def test_full_backlog_is_reported(d: str) -> None:
    path = f"{d}/f.sock"
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as c1:
        server.bind(path)
        server.listen(0)  # the kernel queues backlog + 1 before refusing
        c1.connect(path)
        with socket.socket(socket.AF_UNIX) as c2:
            c2.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c2.connect(path)
            proc = sockwire("inspect", path)
            assert proc.returncode == Exit.OK
            assert "its backlog is full" in proc.stdout.decode()


def test_one_shot_nc_keeps_its_client_through_inspect_and_listen(d: str) -> None:
    """Issue 14 defect 2: the liveness probe was nc's one client (nc sent it stdin, exited)."""
    nc = need_tool("nc")
    path = f"{d}/nc.sock"
    with program(nc, "-lU", path) as server:
        server.send(b"for the real client\n")
        wait_listening(path)
        seen = sockwire("inspect", path, "--json")
        assert seen.returncode == Exit.OK, seen.stdout
        doc = json.loads(seen.stdout)
        assert doc["live"] and doc["type"] == "stream"
        assert server.p.pid in {p["pid"] for e in doc["holders"] for p in e["processes"]}
        taken = sockwire("listen", f"unix:{path}")
        assert taken.returncode == Exit.IO
        err = taken.stderr.decode()
        assert "(EADDRINUSE)" in err and f"pid {server.p.pid}" in err
        assert err.count("\n") == 1
        assert server.p.poll() is None  # nothing connected: nc still waits
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(15)
            client.connect(path)
            got = b""
            while not got.endswith(b"\n"):
                chunk = client.recv(100)
                assert chunk, got
                got += chunk
            assert got == b"for the real client\n"
            client.sendall(b"thanks\n")
            server.wait_out(b"thanks\n")


def test_abstract_one_shot_socat_is_not_probed() -> None:
    """An abstract name needs no probe: EADDRINUSE says live; the pid comes from sock_diag."""
    socat = need_tool("socat")
    name = f"sockwire-test-{os.getpid()}-oneshot"
    with program(socat, "-u", "-", f"ABSTRACT-LISTEN:{name}") as server:
        server.send(b"for the real client\n")
        wait_listening(f"@{name}")
        taken = sockwire("listen", f"unix:@{name}")
        assert taken.returncode == Exit.IO
        assert f"pid {server.p.pid}" in taken.stderr.decode()
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(15)
            client.connect(b"\0" + name.encode())
            server.close_stdin()
            got = b""
            while chunk := client.recv(100):
                got += chunk
            assert got == b"for the real client\n"


# ---- the listing


def test_listing_tcp_with_owner_and_queues() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(7)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            proc = sockwire("inspect", "--listening", "--kind", "tcp,udp", "--json")
            assert proc.returncode == 0
            sockets = json.loads(proc.stdout)["sockets"]
            mine = [s for s in sockets if s["local"] == f"127.0.0.1:{port}"]
            assert len(mine) == 1 and mine[0]["state"] == "LISTEN"
            assert (mine[0]["recv_q"], mine[0]["send_q"]) == (1, 7)  # 1 pending of 7
            assert [p["pid"] for p in mine[0]["processes"]] == [os.getpid()]
            assert all(s["kind"] in ("tcp", "udp") for s in sockets)
            by_port = sockwire("inspect", "--port", str(port), "--json")
            states = sorted(s["state"] for s in json.loads(by_port.stdout)["sockets"])
            assert states == ["ESTAB", "ESTAB", "LISTEN"]  # the listener and both ends


def test_pairs_are_matched_by_peer_inode(d: str) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with left, right, socket.socket(socket.AF_UNIX) as server:
        right.send(b"queued")
        server.bind(f"{d}/p.sock")
        server.listen(1)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(f"{d}/p.sock")
            accepted, _ = server.accept()
            with accepted:
                proc = sockwire("inspect", "--pairs", "--pid", str(os.getpid()), "--json")
                assert proc.returncode == 0
                pairs = json.loads(proc.stdout)["pairs"]
                inodes = {frozenset((p["a"]["inode"], p["b"]["inode"])) for p in pairs}
                fd_inode = {s: os.fstat(s.fileno()).st_ino for s in (left, right)}
                assert frozenset(fd_inode.values()) in inodes
                ends = {os.fstat(s.fileno()).st_ino for s in (client, accepted)}
                assert frozenset(ends) in inodes
                seq = next(p for p in pairs if p["netid"] == "u_seq")
                queued = {
                    seq["a"]["inode"]: seq["a"]["recv_q"],
                    seq["b"]["inode"]: seq["b"]["recv_q"],
                }
                assert queued[fd_inode[left]] == 6  # "queued" waits in left's receive queue
                text = sockwire("inspect", "--pairs", "--pid", str(os.getpid()))
                line = next(x for x in text.stdout.decode().splitlines() if "u_seq" in x)
                assert "<->" in line and str(fd_inode[left]) in line


def test_filters_by_pid_and_path(d: str) -> None:
    with socket.socket(socket.AF_UNIX) as one, socket.socket(socket.AF_UNIX) as two:
        one.bind(f"{d}/one.sock")
        two.bind(f"{d}/two.sock")
        proc = sockwire("inspect", "--path", f"{d}/o*", "--pid", str(os.getpid()), "--json")
        names = [s["local"] for s in json.loads(proc.stdout)["sockets"]]
        assert names == [f"{d}/one.sock"]


def test_watch_prints_a_bounded_number_of_snapshots() -> None:
    proc = sockwire("inspect", "--kind", "tcp", "--watch", "0.1", "--count", "3", "--json")
    assert proc.returncode == 0
    docs = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(docs) == 3 and all("time" in doc and "sockets" in doc for doc in docs)
    assert docs[0]["time"] <= docs[1]["time"] <= docs[2]["time"]
    text = sockwire("inspect", "--kind", "tcp", "--watch", "0.1", "--count", "2")
    assert text.stdout.decode().count("sockets (every 0.1 s)") == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--watch", "0"],
        ["--watch", "nan"],
        ["--count", "2"],
        ["/tmp/x.sock", "--pairs"],
        ["--port", "70000"],
        ["--pid", "-3"],
    ],
)
def test_bad_listing_options_are_one_line_usage_errors(argv: list[str]) -> None:
    proc = sockwire("inspect", *argv)
    assert proc.returncode == Exit.USAGE
    assert proc.stderr.decode().splitlines()[-1].startswith("sockwire: ")
    assert b"Traceback" not in proc.stderr


# ---- hostile names (issue 13 defect 7): bound by uid 65534, read by everyone

FORGED = b"0000000000000000: 00000002 00000000 00010000 0001 01 999999 /forged"
HOSTILE = [
    b"\0evil\n" + FORGED + b"\x1b]0;pwned\x07\x1b[2J",
    b"\0bad utf-8 \xff\xfe\n\xc2\x9b31m\xe2\x80\xae",
]

_HOLDER = r"""
import socket, sys
socks = []
for name in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(bytes.fromhex(name))
    s.listen(1)
    socks.append(s)
print("ready", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def hostile_names(*names: bytes) -> Iterator[subprocess.Popen[bytes]]:
    """uid 65534 holds a listener on each name until the block ends."""
    need_root()
    setpriv = need_tool("setpriv")
    need(os.access(SYSTEM_PYTHON, os.X_OK), f"needs {SYSTEM_PYTHON}")
    argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON]
    holder = subprocess.Popen(
        [*argv, "-c", _HOLDER, *(n.hex() for n in names)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd="/",
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"ready\n"
        yield holder
    finally:
        holder.communicate(timeout=15)


def _check_listing(stdout: bytes, stderr: bytes) -> None:
    assert b"Traceback" not in stderr and b"\x1b" not in stdout and b"\x9b" not in stdout
    lines = stdout.decode().splitlines()
    assert lines[0].startswith("Netid")
    assert all(line.startswith(("u_str", "u_dgr", "u_seq")) for line in lines[1:])
    evil = [line for line in lines if "@evil" in line]
    assert len(evil) == 1 and "\\n0000000000000000: 00000002" in evil[0]
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in evil[0]
    bad = next(line for line in lines if "@bad utf-8" in line)
    assert "\\xff\\xfe\\n\\u009b31m\\u202e" in bad


def test_hostile_names_cannot_forge_or_crash_the_listing() -> None:
    with hostile_names(*HOSTILE), as_nobody() as nobody:
        mine = sockwire("inspect", "--kind", "unix")
        assert mine.returncode == 0
        _check_listing(mine.stdout, mine.stderr)
        theirs = subprocess.run(
            [*nobody.argv, "inspect", "--kind", "unix"],
            env=nobody.env,
            cwd=nobody.cwd,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert theirs.returncode == 0, theirs.stderr
        _check_listing(theirs.stdout, theirs.stderr)
        exact = json.loads(sockwire("inspect", "--kind", "unix", "--json").stdout)["sockets"]
        names = {s["local"] for s in exact}
        assert "@" + HOSTILE[0][1:].decode() in names
        assert "@" + HOSTILE[1][1:].decode("utf-8", "surrogateescape") in names
        assert 999999 not in {s["inode"] for s in exact}
        assert "/forged" not in names


def test_hostile_names_in_recv_and_in_the_refused_peer_log(d: str) -> None:
    need_root()
    os.chmod(d, 0o755)
    sender = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(bytes.fromhex(sys.argv[1]))
s.sendto(b"hi\n\x1b[2J", sys.argv[2])
c = socket.socket(socket.AF_UNIX)
c.bind(bytes.fromhex(sys.argv[3]))
c.connect(sys.argv[4])
"""
    name = b"\0sender\n#2 from @forged 3 bytes: hi\x1b[2J"
    need(os.access(SYSTEM_PYTHON, os.X_OK), f"needs {SYSTEM_PYTHON}")
    setpriv = need_tool("setpriv")
    dgram, stream = f"{d}/r.sock", f"{d}/s.sock"
    with (
        run("recv", f"unix+dgram:{dgram}?mode=0666", "--count", "1", "--trace") as receiver,
        run("listen", f"unix:{stream}?mode=0666&allowed_uids=0", "--trace") as listener,
    ):
        receiver.address()
        listener.address()
        nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON]
        subprocess.run(
            [*nobody, "-c", sender, name.hex(), dgram, (name + b"2").hex(), stream],
            check=True,
            timeout=15,
            cwd="/",
        )
        assert receiver.finish() == 0
        out = receiver.out.decode()
        assert out.count("\n") == 1 and "\x1b" not in out
        assert out.startswith("#1 from @sender\\n#2 from @forged 3 bytes: hi\\x1b[2J (pid=")
        assert out.endswith(": hi\\n\\x1b[2J\n")
        line = listener.wait_err("refused peer")
        assert "@sender\\n#2 from @forged" in line and "\x1b" not in listener.text
        listener.stop()
        assert "\x1b" not in listener.text and "\x1b" not in receiver.text
