"""sockwire.zmq against libzmq (a pyzmq process): every pair, either side, tcp and ipc, NULL/PLAIN.

10,000 messages per pair; reliable patterns lose none and keep order. CURVE
(PyNaCl here, libsodium in libzmq) over tcp for every pair too. The
pyzmq side runs in a process per test (tests/zmq_peer.py) driven by JSON
lines; the sockwire side runs here. PUB/SUB pairs warm up until the
subscription is known to have arrived (the "slow joiner" of every ZeroMQ
tutorial), then count exactly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sockwire import zmq as swz
from tests.helpers import need

N = 10_000
HERE = Path(__file__).parent
PAIRS = [  # (connecting role, binding role)
    ("REQ", "REP"),
    ("DEALER", "ROUTER"),
    ("SUB", "PUB"),
    ("XSUB", "XPUB"),
    ("PUSH", "PULL"),
    ("PAIR", "PAIR"),
]


class Peer:
    """The pyzmq process: send a job, read its JSON lines (bounded waits)."""

    def __init__(self) -> None:
        need(importlib.util.find_spec("zmq") is not None, "needs pyzmq (pip install -e '.[dev]')")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "zmq_peer.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.fd = self.proc.stdout.fileno()
        self.buf = b""

    def job(self, **job: Any) -> None:
        self.stdin.write(json.dumps(job).encode() + b"\n")
        self.stdin.flush()

    def say(self, line: str) -> None:
        self.stdin.write(line.encode() + b"\n")
        self.stdin.flush()

    def line(self, timeout: float = 30.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([self.fd], [], [], left)
            if readable:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise AssertionError("the pyzmq peer exited")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(raw)
        if "error" in reply:
            raise AssertionError(f"pyzmq peer: {reply['error']}")
        return reply

    def expect(self, key: str, timeout: float = 30.0) -> Any:
        reply = self.line(timeout)
        assert reply is not None, f"no {key!r} from the pyzmq peer within {timeout} s"
        assert key in reply, reply
        return reply[key]

    def close(self) -> None:
        self.stdin.close()
        try:
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            assert self.proc.stdout is not None
            self.proc.stdout.close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


@pytest.fixture
def plainfile(tmp_path: Path) -> str:
    path = tmp_path / "plain"
    path.write_text("admin:secret\n")
    path.chmod(0o600)
    return str(path)


def _endpoints(transport: str, tmp_path: Path) -> tuple[str, str]:
    """(sockwire form, libzmq form) of an address to bind (port 0 for tcp)."""
    if transport == "tcp":
        return "zmq+tcp://127.0.0.1:0", "tcp://127.0.0.1:0"
    path = tmp_path / "z.sock"
    return f"zmq+ipc://{path}", f"ipc://{path}"


def _libzmq_form(sw: str) -> str:
    return sw.removeprefix("zmq+")


def _sockwire_side(
    kind: str, endpoint: str, bind: bool, peer: Peer, opts: str, n: int = N
) -> dict[str, Any]:
    """Play ``kind`` against the peer; returns what we observed."""
    sep = "&" if "?" in endpoint else "?"
    ep = f"{endpoint}{sep}type={kind}{opts}" + ("&bind=1" if bind else "")
    if kind == "SUB":
        ep += "&subscribe=t"
    with swz.Socket(ep) as sock:
        if bind:
            bound = sock.endpoints[0]
            peer_ep = _libzmq_form(bound)
            return {"bound": peer_ep, "sock": sock, "run": lambda: _play(kind, sock, peer, n)}
        return {"sock": sock, "result": _play(kind, sock, peer, n)}


def _play(kind: str, sock: swz.Socket, peer: Peer, n: int) -> dict[str, Any]:
    result = _play_role(kind, sock, peer, n)
    assert sock.flush(timeout=20), "queued output did not leave within 20 s"
    return result


def _play_role(kind: str, sock: swz.Socket, peer: Peer, n: int) -> dict[str, Any]:
    if kind == "PUSH":
        for i in range(n):
            sock.send(b"%d" % i, timeout=20)
        return {"sent": n}
    if kind in ("PULL",):
        got = [sock.recv(timeout=20)[0] for _ in range(n)]
        return {"ordered": [int(g) for g in got] == list(range(n))}
    if kind == "REQ":
        ok = 0
        for i in range(n):
            sock.send(b"%d" % i, timeout=20)
            if sock.recv(timeout=20) == [b"re:%d" % i]:
                ok += 1
        return {"ok": ok}
    if kind == "REP":
        for _ in range(n):
            (msg,) = sock.recv(timeout=20)
            sock.send(b"re:" + msg)
        return {"served": n}
    if kind == "DEALER":
        got = []
        for start in range(0, n, 500):
            for i in range(start, min(n, start + 500)):
                sock.send([b"", b"%d" % i], timeout=20)
            for _ in range(start, min(n, start + 500)):
                got.append(sock.recv(timeout=20))
        return {"ordered": got == [[b"", b"re:%d" % i] for i in range(n)]}
    if kind == "ROUTER":
        ids = set()
        for _ in range(n):
            frames = sock.recv(timeout=20)
            ids.add(frames[0])
            sock.send([*frames[:-1], b"re:" + frames[-1]])
        return {"served": n, "ids": len(ids)}
    if kind == "PAIR":
        ok = 0
        for start in range(0, n, 500):
            stop = min(n, start + 500)
            for i in range(start, stop):
                sock.send(b"%d" % i, timeout=20)
            for i in range(start, stop):
                ok += sock.recv(timeout=20) == [b"re:%d" % i]
        return {"ok": ok}
    if kind == "SUB":
        while True:  # warm-up messages until the subscription is in force
            frames = sock.recv(timeout=20)
            if frames[-1] == b"warm":
                break
        peer.say("go")
        got = []
        while len(got) < n:
            frames = sock.recv(timeout=20)
            if frames[-1] != b"warm":
                got.append(frames[-1])
        return {"ordered": [int(g) for g in got] == list(range(n))}
    if kind == "PUB":
        for _ in range(2000):  # bounded warm-up: until the pyzmq SUB saw one
            sock.send([b"twarm", b"warm"])
            if peer.line(timeout=0.01) is not None:
                break
        else:
            raise AssertionError("the pyzmq SUB never saw a warm-up message")
        for i in range(n):
            sock.send([b"t", b"%d" % i])
        return {"sent": n, "dropped": sock.dropped}
    if kind == "XPUB":
        assert sock.recv(timeout=20) == [b"\x01t"]
        for i in range(n):
            sock.send([b"t", b"%d" % i])
        return {"sent": n, "dropped": sock.dropped}
    if kind == "XSUB":
        sock.send(b"\x01t")
        got = [sock.recv(timeout=20)[-1] for _ in range(n)]
        return {"ordered": [int(g) for g in got] == list(range(n))}
    raise AssertionError(kind)


def _check(kind: str, ours: dict[str, Any], theirs: dict[str, Any], n: int = N) -> None:
    """Both sides' observations: nothing lost, order kept."""
    for side in (ours, theirs):
        if "ordered" in side:
            assert side["ordered"], side
        if "count" in side:
            assert side["count"] == n, side
        if "ok" in side:
            assert side["ok"] == n, side
        if "dropped" in side:
            assert side["dropped"] == 0, side
    if kind == "XPUB":
        assert theirs.get("subscription") in (None, "\x01t")


class Curve:
    """Server and client key pairs; sockwire reads its keys from 0600 files."""

    def __init__(self, tmp_path: Path) -> None:
        from sockwire.zmtp_curve import generate_keypair  # PyNaCl: only where CURVE runs

        self.server_public, self.server_secret = generate_keypair()
        self.client_public, self.client_secret = generate_keypair()
        self.dir = tmp_path

    def file(self, name: str, key: bytes) -> str:
        path = self.dir / name
        path.write_bytes(key + b"\n")
        path.chmod(0o600)
        return str(path)

    def sockwire_opts(self, server: bool) -> str:
        if server:
            return f"&curve_secret={self.file('server.key', self.server_secret)}"
        return (
            f"&curve_secret={self.file('client.key', self.client_secret)}"
            f"&curve_server={self.file('server.pub', self.server_public)}"
        )

    def peer_keys(self, server: bool) -> dict[str, str]:
        if server:
            return {"secret": self.server_secret.decode(), "public": self.server_public.decode()}
        return {
            "secret": self.client_secret.decode(),
            "public": self.client_public.decode(),
            "server": self.server_public.decode(),
        }


def _mech_opts(mech: str, plainfile: str, curve: Curve | None, server: bool) -> str:
    if mech == "PLAIN":
        return f"&plain={plainfile}"
    if curve is not None:
        return curve.sockwire_opts(server)
    return ""


SECURITY = [("tcp", "NULL"), ("tcp", "PLAIN"), ("ipc", "NULL"), ("ipc", "PLAIN"), ("tcp", "CURVE")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("transport", "mech"), SECURITY, ids=lambda v: v)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-{p[1]}")
@pytest.mark.parametrize("ours", ["connects", "binds"])
def test_interop(
    peer: Peer,
    tmp_path: Path,
    plainfile: str,
    pair: tuple[str, str],
    transport: str,
    mech: str,
    ours: str,
) -> None:
    connecting, binding = pair
    sw_bind_ep, lib_bind_ep = _endpoints(transport, tmp_path)
    curve = Curve(tmp_path) if mech == "CURVE" else None
    opts = _mech_opts(mech, plainfile, curve, server=ours == "binds")
    if ours == "connects":
        # libzmq binds the second role; sockwire connects with the first
        peer.job(
            type=binding,
            endpoint=lib_bind_ep,
            bind=True,
            n=N,
            mech=mech,
            **(curve.peer_keys(server=True) if curve else {}),
        )
        bound = peer.expect("ready")
        result = _sockwire_side(connecting, "zmq+" + bound, False, peer, opts)["result"]
        _check(connecting, result, peer.expect("done"))
        return
    # sockwire binds the second role; libzmq connects with the first
    sep = "&" if "?" in sw_bind_ep else "?"
    ep = f"{sw_bind_ep}{sep}type={binding}&bind=1{opts}"
    if binding in ("PUB", "XPUB", "ROUTER"):
        ep += f"&sndhwm={2 * N}"  # these drop at their HWM (as libzmq's); here they must not
    with swz.Socket(ep) as sock:
        peer.job(
            type=connecting,
            endpoint=_libzmq_form(sock.endpoints[0]),
            bind=False,
            n=N,
            mech=mech,
            **(curve.peer_keys(server=False) if curve else {}),
        )
        peer.expect("ready")
        result = _play(binding, sock, peer, N)
    _check(binding, result, peer.expect("done"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_bind_and_connect_swap_roles(peer: Peer, tmp_path: Path, transport: str) -> None:
    """The usual binder connects and the usual connecter binds: PULL connects to a bound PUSH."""
    sw_ep, _ = _endpoints(transport, tmp_path)
    sep = "&" if "?" in sw_ep else "?"
    with swz.Socket(f"{sw_ep}{sep}type=PUSH&bind=1") as push:
        peer.job(type="PULL", endpoint=_libzmq_form(push.endpoints[0]), bind=False, n=N)
        peer.expect("ready")
        _play("PUSH", push, peer, N)
        push.flush(timeout=20)
        done = peer.expect("done")
    assert done == {"count": N, "ordered": True}
    peer.job(type="PUSH", endpoint="tcp://127.0.0.1:0", bind=True, n=N)
    bound = peer.expect("ready")
    with swz.Socket("PULL", "zmq+" + bound) as pull:
        assert _play("PULL", pull, peer, N) == {"ordered": True}
    assert peer.expect("done") == {"sent": N}


@pytest.mark.timeout(60)
def test_plain_wrong_password_is_refused(peer: Peer, tmp_path: Path, plainfile: str) -> None:
    """A libzmq client with a wrong password never reaches a sockwire PLAIN server."""
    with swz.Socket(f"zmq+tcp://127.0.0.1:0?type=PULL&bind=1&plain={plainfile}") as pull:
        peer.job(
            type="PUSH",
            endpoint=_libzmq_form(pull.endpoints[0]),
            bind=False,
            n=1,
            mech="PLAIN",
            password="wrong",
        )
        peer.expect("ready")
        assert not pull.poll(1.0)
        assert pull.peers == 0
        # libzmq either queues the send in a pipe it made at connect (it reports
        # "sent") or, when a refused handshake tore that pipe down first, waits for
        # one until its send timeout (EAGAIN): both mean nothing reached us
        try:
            reply = peer.line(timeout=30)
        except AssertionError as exc:
            assert "Resource temporarily unavailable" in str(exc) or "Again" in str(exc), exc
        else:
            assert reply == {"done": {"sent": 1}}, reply
        assert pull.peers == 0
