"""Peer credentials on every UNIX socket type, peer filters, unnamed datagram peers.

The wrong-uid trials run a real client as uid 65534 (setpriv). The venv's
python is not reachable for that uid, so the client is a small stdlib-only
script run by /usr/bin/python3 from a temporary directory; each client
process makes all 100 connects of a trial set, so the 300+ trials cost a
handful of process starts.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import socket
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import sockwire
from sockwire import Creds, Peer, dial, socketpair, trace, unix
from tests.helpers import need, need_root, need_tool

NOBODY = 65534
TRIALS = 100
SYSTEM_PYTHON = "/usr/bin/python3"

CLIENT = textwrap.dedent(
    """
    import errno, json, socket, sys

    target, kind, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    address = "\\0" + target[1:] if target.startswith("@") else target
    types = {"stream": socket.SOCK_STREAM, "seqpacket": socket.SOCK_SEQPACKET}
    tally = {}
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, types[kind])
        try:
            try:
                sock.connect(address)
            except OSError as exc:
                outcome = "connect " + errno.errorcode[exc.errno]
            else:
                try:
                    sock.sendall(b"hello")
                    data = sock.recv(100)
                    outcome = "read data" if data else "read EOF"
                except OSError as exc:
                    outcome = "io " + errno.errorcode[exc.errno]
        finally:
            sock.close()
        tally[outcome] = tally.get(outcome, 0) + 1
    print(json.dumps({"uid": __import__("os").getuid(), "tally": tally}))
    """
)


# ---- credentials on both ends -------------------------------------------------------


@pytest.mark.parametrize("scheme", ["unix", "unix+seqpacket"])
@pytest.mark.parametrize("where", ["path", "abstract"])
def test_both_ends_of_a_connection_know_each_other(
    tmp_path: Path, scheme: str, where: str
) -> None:
    name = f"{tmp_path}/s.sock" if where == "path" else f"@sockwire-test-{os.getpid()}"
    with dial.listen(f"{scheme}:{name}") as server, dial.connect(f"{scheme}:{name}") as client:
        conn, accepted = server.accept()
        with conn:
            assert (accepted.pid, accepted.uid, accepted.gid) == (
                os.getpid(),
                os.getuid(),
                os.getgid(),
            )
            assert accepted.unnamed
            seen = client.peer()
            assert seen.creds == Creds(os.getpid(), os.getuid(), os.getgid())
            assert seen.address is not None
            assert conn.peer().creds == accepted.creds


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_SEQPACKET, socket.SOCK_DGRAM])
def test_socketpair_for_every_type(kind: int) -> None:
    a, b = socketpair(kind)
    with a, b:
        assert a.type == b.type == kind
        for end in (a, b):
            peer = end.peer()
            assert peer.unnamed and peer.pid == os.getpid()
        a.send(b"one")
        a.send(b"two")
        if kind == socket.SOCK_STREAM:
            assert b.recv(100) in (b"onetwo", b"one")
        else:
            assert [b.recv(100), b.recv(100)] == [b"one", b"two"]  # boundaries kept


def test_per_message_credentials_and_unnamed_senders(tmp_path: Path) -> None:
    path = f"{tmp_path}/d.sock"
    with dial.bind(f"unix+dgram:{path}") as receiver:
        unix.enable_passcred(receiver)
        with sockwire.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as anon:
            anon.sendto(b"anon", path)
            data, peer = unix.recvfrom_peer(receiver)
            assert data == b"anon" and peer.unnamed and peer.address is None
            assert peer.pid == os.getpid()
            with pytest.raises(sockwire.InvalidOperation, match="unnamed sender"):
                unix.reply(receiver, peer, b"x")
        with dial.connect(f"unix+dgram:{path}") as client:  # autobinds a return address
            name = client.getsockname()
            assert isinstance(name, bytes) and name.startswith(b"\0")
            client.send(b"ask")
            data, peer = unix.recvfrom_peer(receiver)
            assert peer.address == name and peer.uid == os.getuid()
            unix.reply(receiver, peer, b"answer")
            assert client.recv(100) == b"answer"


def test_credentials_enabled_too_late_read_as_none(tmp_path: Path) -> None:
    """A message queued before SO_PASSCRED reads pid 0 / uid 65534: not trusted."""
    with (
        dial.bind(f"unix+dgram:{tmp_path}/d.sock") as receiver,
        sockwire.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender,
    ):
        sender.sendto(b"early", f"{tmp_path}/d.sock")
        unix.enable_passcred(receiver)
        _, peer = unix.recvfrom_peer(receiver)
        assert peer.creds is None


def test_autobind_gives_an_abstract_name() -> None:
    with sockwire.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        name = unix.autobind(sock)
        assert name.startswith("@") and len(name) == 6


def test_recv_checked_drops_refused_senders(tmp_path: Path) -> None:
    path = f"{tmp_path}/d.sock"
    with dial.bind(f"unix+dgram:{path}") as receiver:
        unix.enable_passcred(receiver)
        gate = unix.PeerFilter(predicate=lambda p: p.address is not None)
        with (
            sockwire.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as anon,
            dial.connect(f"unix+dgram:{path}") as named,
        ):
            anon.sendto(b"dropped", path)
            named.send(b"kept")
            data, peer = unix.recv_checked(receiver, gate)
            assert data == b"kept" and not peer.unnamed
            assert (gate.refused, gate.allowed) == (1, 1)


# ---- the peer filter ----------------------------------------------------------------


def _peer(uid: int | None, gid: int = 100) -> Peer:
    creds = None if uid is None else Creds(4242, uid, gid)
    return Peer(None, socket.AF_UNIX, creds)


def test_peer_filter_rules(caplog: pytest.LogCaptureFixture) -> None:
    by_uid = unix.PeerFilter(uids=[0, "1000"])
    assert by_uid(_peer(0)) and by_uid(_peer(1000))
    with caplog.at_level(logging.WARNING, logger="sockwire"):
        assert not by_uid(_peer(1001))
        assert not by_uid(_peer(None))  # no credentials: fail closed
    assert "pid=4242 uid=1001 gid=100" in caplog.text
    assert "no peer credentials" in caplog.text
    assert (by_uid.allowed, by_uid.refused) == (2, 2)
    either = unix.PeerFilter(uids=[0], gids=[100])
    assert either(_peer(5, gid=100)) and either(_peer(0, gid=5)) and not either(_peer(5, 5))
    both = unix.PeerFilter(uids=[5], predicate=lambda p: p.gid == 7)
    assert both(_peer(5, 7)) and not both(_peer(5, 8))

    def broken(peer: Peer) -> bool:
        raise RuntimeError("bug")

    assert not unix.PeerFilter(predicate=broken)(_peer(0))
    by_name = unix.PeerFilter(uids=["root", "nobody"], gids=["root"])
    assert by_name.uids == frozenset({0, NOBODY}) and by_name.gids == frozenset({0})
    with pytest.raises(sockwire.AddressError, match="unknown user"):
        unix.PeerFilter(uids=["no-such-user-here"])


def test_peer_filter_from_endpoint_options() -> None:
    assert unix.peer_filter_from("unix:@x") is None
    made = unix.peer_filter_from("unix:@x?allowed_uids=1000,root&allowed_gids=0")
    assert made is not None and made.uids == frozenset({0, 1000}) and made.gids == {0}
    ep = sockwire.parse("unix+seqpacket:/run/a.sock?allowed_uids=1000,0,1000")
    assert str(ep) == "unix+seqpacket:/run/a.sock?allowed_uids=0,1000"
    with pytest.raises(sockwire.AddressError, match="allowed_uids"):
        sockwire.parse("unix+dgram:/x?allowed_uids=0")  # datagrams: recv_checked instead


def test_accept_checked_closes_refused_peers_unread(tmp_path: Path) -> None:
    path = f"{tmp_path}/s.sock"
    with dial.listen(f"unix:{path}") as listener:
        listener.setblocking(False)
        refuse_all = unix.PeerFilter(predicate=lambda p: False)
        with dial.connect(f"unix:{path}") as client, trace.recording() as events:
            client_fd = client.fd
            client.send(b"never read")
            with pytest.raises(sockwire.WouldBlock):
                unix.accept_checked(listener, refuse_all)
            with pytest.raises(sockwire.ConnectionLost, match="reset"):
                client.recv(100)  # ECONNRESET: closed with our bytes unread
        assert refuse_all.refused == 1
        assert not [
            e
            for e in events
            if e.call in ("recv", "recvmsg", "read", "recv_into") and e.fd != client_fd
        ]


def test_accept_checked_bounds_its_wait_by_the_listener_timeout(tmp_path: Path) -> None:
    with dial.listen(f"unix:{tmp_path}/s.sock") as listener:
        listener.settimeout(0.05)
        with pytest.raises(sockwire.TimeoutError):
            unix.accept_checked(listener, unix.PeerFilter(uids=[0]))
        assert listener.gettimeout() == 0.05


# ---- wrong uid refused: 100 trials each, a real client as uid 65534 -----------------


@pytest.fixture
def client_dir() -> Iterator[Path]:
    """A directory uid 65534 can traverse, holding the stdlib-only client script."""
    path = Path(tempfile.mkdtemp(prefix="sockwire-test-"))
    path.chmod(0o755)
    script = path / "client.py"
    script.write_text(CLIENT)
    script.chmod(0o644)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _as_nobody(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            SYSTEM_PYTHON,
            *argv,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )


def _wrong_uid_prereqs() -> None:
    need_root()
    need_tool("setpriv")
    need(os.access(SYSTEM_PYTHON, os.X_OK), f"needs {SYSTEM_PYTHON} for the uid-65534 client")


def _run_client(client_dir: Path, target: str, kind: str) -> dict[str, int]:
    proc = _as_nobody([str(client_dir / "client.py"), target, kind, str(TRIALS)])
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    report = json.loads(out)
    assert report["uid"] == NOBODY
    return dict(report["tally"])


def _serve_until_client_exits(
    listener: sockwire.Socket, proc: subprocess.Popen[str]
) -> tuple[int, str]:
    """accept() (with the listener's own filter) until the client process ends.

    Waits on the listener and the client's pidfd together: no polling, no
    sleeps. Returns how many connections reached the handler, and the
    client's output.
    """
    listener.setblocking(False)
    handled = 0
    pidfd = os.pidfd_open(proc.pid)
    try:
        poller = select.poll()
        poller.register(listener.fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        for _ in range(10 * TRIALS):  # bounded: each round has an event behind it
            ready = {fd for fd, _ in poller.poll(30_000)}
            assert ready, "neither a connection nor the client's exit within 30 s"
            if listener.fd in ready:
                try:
                    conn, _peer = listener.accept()
                except sockwire.WouldBlock:
                    pass
                else:
                    handled += 1  # the handler: it would read here
                    conn.close()
            if pidfd in ready:
                break
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(pidfd)
    return handled, out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("scheme", "kind", "where"),
    [
        ("unix", "stream", "path"),
        ("unix", "stream", "abstract"),
        ("unix+seqpacket", "seqpacket", "path"),
    ],
)
def test_wrong_uid_is_refused(client_dir: Path, scheme: str, kind: str, where: str) -> None:
    _wrong_uid_prereqs()
    if where == "path":
        private = Path(tempfile.mkdtemp(prefix="sockwire-private-"))  # 0700
        try:
            # 1. a 0600 socket file in a 0700 directory: EACCES, 100 of 100
            with dial.listen(f"{scheme}:{private}/s.sock?mode=0600"):
                tally = _run_client(client_dir, f"{private}/s.sock", kind)
                assert tally == {"connect EACCES": TRIALS}
            # 1b. the file mode alone (directory open to all): EACCES again
            private.chmod(0o755)
            with dial.listen(f"{scheme}:{private}/s.sock?mode=0600"):
                tally = _run_client(client_dir, f"{private}/s.sock", kind)
                assert tally == {"connect EACCES": TRIALS}
        finally:
            shutil.rmtree(private)
        target = f"{client_dir}/open.sock"
        endpoint = f"{scheme}:{target}?mode=0666&allowed_uids=0"
    else:
        target = f"@sockwire-test-{os.getpid()}-refuse"
        endpoint = f"{scheme}:{target}?allowed_uids=0"
    # 2. the kernel lets it connect; the filter closes it before a byte is read
    with dial.listen(endpoint) as listener, trace.recording() as events:
        assert isinstance(listener, unix.UnixSocket) and listener.peer_filter is not None
        gate = listener.peer_filter
        assert isinstance(gate, unix.PeerFilter)
        proc = _as_nobody([str(client_dir / "client.py"), target, kind, str(TRIALS)])
        handled, out = _serve_until_client_exits(listener, proc)
    report = json.loads(out)
    tally = report["tally"]
    assert report["uid"] == NOBODY
    assert handled == 0, "no refused peer may reach the handler"
    assert gate.refused == TRIALS and gate.allowed == 0
    # ECONNRESET: closed with the client's bytes still queued (never read);
    # EPIPE: closed before the client even sent. Never "read EOF"/"read data".
    assert set(tally) <= {"io ECONNRESET", "io EPIPE"}, tally
    assert sum(tally.values()) == TRIALS
    reads = [e for e in events if e.call in ("recv", "recvmsg", "recvfrom", "recv_into", "read")]
    assert not reads, "the server never read from a refused connection"
    refusals = [e for e in events if e.call == "refuse"]
    assert len(refusals) == TRIALS
