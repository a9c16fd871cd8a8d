"""sockwire.aio.zmq against libzmq (a pyzmq process): every pair, either side, tcp/ipc, NULL/PLAIN.

The matrix of tests/test_zmq_interop.py at 1,000 messages per pair, with the
sockwire side awaiting: reliable patterns lose none and keep order; CURVE
over tcp for every pair. The pyzmq process is the same (tests/zmq_peer.py);
its JSON lines are read with a readiness wait on the loop, so the sockwire
side is served while the test waits for the peer. Every case runs on the
default loop and on uvloop (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sockwire.aio import zmq as az
from sockwire.aio.loops import wait_fd
from tests.test_zmq_interop import PAIRS, SECURITY, Curve, Peer, _check, _endpoints, _mech_opts

N = 1_000


class AsyncPeer(Peer):
    """The pyzmq process, its lines awaited (the loop keeps serving meanwhile)."""

    async def aline(self, timeout: float = 30.0) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while b"\n" not in self.buf:
            if not await wait_fd(self.fd, deadline=deadline):
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError("the pyzmq peer exited")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(raw)
        if "error" in reply:
            raise AssertionError(f"pyzmq peer: {reply['error']}")
        return reply

    async def aexpect(self, key: str, timeout: float = 30.0) -> Any:
        reply = await self.aline(timeout)
        assert reply is not None, f"no {key!r} from the pyzmq peer within {timeout} s"
        assert key in reply, reply
        return reply[key]


@pytest.fixture
def peer() -> Iterator[AsyncPeer]:
    p = AsyncPeer()
    yield p
    p.close()


@pytest.fixture
def plainfile(tmp_path: Path) -> str:
    path = tmp_path / "plain"
    path.write_text("admin:secret\n")
    path.chmod(0o600)
    return str(path)


async def play(kind: str, sock: az.Socket, peer: AsyncPeer, n: int) -> dict[str, Any]:
    """Play ``kind`` against the peer (as tests/test_zmq_interop.py's _play_role)."""
    result = await _role(kind, sock, peer, n)
    assert await sock.flush(timeout=20), "queued output did not leave within 20 s"
    return result


async def _role(kind: str, sock: az.Socket, peer: AsyncPeer, n: int) -> dict[str, Any]:
    if kind == "PUSH":
        for i in range(n):
            await sock.send(b"%d" % i, timeout=20)
        return {"sent": n}
    if kind == "PULL":
        got = [(await sock.recv(timeout=20))[0] for _ in range(n)]
        return {"ordered": [int(g) for g in got] == list(range(n))}
    if kind == "REQ":
        ok = 0
        for i in range(n):
            await sock.send(b"%d" % i, timeout=20)
            ok += await sock.recv(timeout=20) == [b"re:%d" % i]
        return {"ok": ok}
    if kind == "REP":
        for _ in range(n):
            (msg,) = await sock.recv(timeout=20)
            await sock.send(b"re:" + msg)
        return {"served": n}
    if kind in ("DEALER", "PAIR"):
        got = []
        for start in range(0, n, 250):
            stop = min(n, start + 250)
            for i in range(start, stop):
                await sock.send([b"", b"%d" % i] if kind == "DEALER" else b"%d" % i, timeout=20)
            for _ in range(start, stop):
                got.append((await sock.recv(timeout=20))[-1])
        return {"ordered": got == [b"re:%d" % i for i in range(n)]}
    if kind == "ROUTER":
        ids = set()
        for _ in range(n):
            frames = await sock.recv(timeout=20)
            ids.add(frames[0])
            await sock.send([*frames[:-1], b"re:" + frames[-1]])
        return {"served": n, "ids": len(ids)}
    if kind == "SUB":
        while (await sock.recv(timeout=20))[-1] != b"warm":
            pass  # warm-up messages until the subscription is in force
        peer.say("go")
        got = []
        while len(got) < n:
            frames = await sock.recv(timeout=20)
            if frames[-1] != b"warm":
                got.append(frames[-1])
        return {"ordered": [int(g) for g in got] == list(range(n))}
    if kind == "PUB":
        for _ in range(2000):  # bounded warm-up: until the pyzmq SUB saw one
            await sock.send([b"twarm", b"warm"])
            if await peer.aline(timeout=0.01) is not None:
                break
        else:
            raise AssertionError("the pyzmq SUB never saw a warm-up message")
        for i in range(n):
            await sock.send([b"t", b"%d" % i])
        return {"sent": n, "dropped": sock.dropped}
    if kind == "XPUB":
        assert await sock.recv(timeout=20) == [b"\x01t"]
        for i in range(n):
            await sock.send([b"t", b"%d" % i])
        return {"sent": n, "dropped": sock.dropped}
    if kind == "XSUB":
        await sock.send(b"\x01t")
        got = [(await sock.recv(timeout=20))[-1] for _ in range(n)]
        return {"ordered": [int(g) for g in got] == list(range(n))}
    raise AssertionError(kind)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("transport", "mech"), SECURITY, ids=lambda v: v)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-{p[1]}")
@pytest.mark.parametrize("ours", ["connects", "binds"])
async def test_interop(
    peer: AsyncPeer,
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
    keys = curve.peer_keys(server=ours == "connects") if curve else {}
    if ours == "connects":
        # libzmq binds the second role; sockwire connects with the first
        peer.job(type=binding, endpoint=lib_bind_ep, bind=True, n=N, mech=mech, **keys)
        bound = await peer.aexpect("ready")
        ep = f"zmq+{bound}?type={connecting}{opts}"
        if connecting == "SUB":
            ep += "&subscribe=t"
        async with az.Socket(ep) as sock:
            result = await play(connecting, sock, peer, N)
        _check(connecting, result, await peer.aexpect("done"), N)
        return
    # sockwire binds the second role; libzmq connects with the first
    sep = "&" if "?" in sw_bind_ep else "?"
    ep = f"{sw_bind_ep}{sep}type={binding}&bind=1{opts}"
    async with az.Socket(ep) as sock:
        lib_ep = sock.endpoints[0].removeprefix("zmq+")
        peer.job(type=connecting, endpoint=lib_ep, bind=False, n=N, mech=mech, **keys)
        await peer.aexpect("ready")
        result = await play(binding, sock, peer, N)
    _check(binding, result, await peer.aexpect("done"), N)


@pytest.mark.timeout(60)
async def test_push_resumes_after_libzmq_pull_killed_and_restarted(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path / 'k.sock'}"
    first = AsyncPeer()
    try:
        first.job(type="PULL", endpoint=endpoint, bind=True, n=1000, progress=100)
        await first.aexpect("ready")
        async with az.Socket("PUSH", "zmq+" + endpoint) as push:
            for i in range(100):
                await push.send(b"%d" % i, timeout=10)
            assert await first.aexpect("progress") == 100  # acknowledged: all 100, in order
            first.proc.kill()
            first.proc.wait()
            for _ in range(200):  # bounded: until the dead connection is noticed
                if not push.peers:
                    break
                await push.poll(0.05)
            assert push.peers == 0
            second = AsyncPeer()
            try:
                second.job(type="PULL", endpoint=endpoint, bind=True, n=100, start=100)
                await second.aexpect("ready")
                for i in range(100, 200):
                    await push.send(b"%d" % i, timeout=10)
                assert await second.aexpect("done") == {"count": 100, "ordered": True}
            finally:
                second.close()
    finally:
        first.close()


@pytest.mark.timeout(60)
async def test_sub_resubscribes_after_libzmq_pub_restarted(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path / 'p.sock'}"
    async with az.Socket("SUB", f"zmq+{endpoint}?subscribe=t") as sub:
        for round_ in range(2):
            pub = AsyncPeer()
            try:
                pub.job(type="PUB", endpoint=endpoint, bind=True, n=300)
                await pub.aexpect("ready")
                assert await play("SUB", sub, pub, 300) == {"ordered": True}, round_
                await pub.aexpect("done")
            finally:
                pub.proc.kill()  # killed, not closed: the SUB must notice by itself
                pub.close()


@pytest.mark.timeout(30)
async def test_heartbeats_with_libzmq_keep_an_idle_connection(tmp_path: Path) -> None:
    """Both sides PING every 0.1 s (each answers the other's): 1 s idle, no drop."""
    endpoint = f"ipc://{tmp_path / 'hb.sock'}"
    notes: list[str] = []
    peer = AsyncPeer()
    try:
        peer.job(type="ROUTER", endpoint=endpoint, bind=True, n=1, heartbeat=0.1)
        await peer.aexpect("ready")
        async with az.Socket("DEALER", f"zmq+{endpoint}?heartbeat=0.1", trace=notes.append) as d:
            await d.wait_peers()
            assert not await d.poll(1.0)  # idle: the loop serves PINGs and PONGs meanwhile
            assert d.peers == 1
            # the idle time is over and the link held: what follows is the one
            # request and the peer's close right after its reply, which races our
            # next PING or PONG (a "drop" into a closed peer is not this test's)
            idle_notes = len(notes)
            await d.send([b"", b"0"])
            assert await d.recv(timeout=10) == [b"", b"re:0"]
        assert (await peer.aexpect("done"))["served"] == 1
    finally:
        peer.close()
    assert not [n for n in notes[:idle_notes] if " drop " in n], notes
    assert sum(" > PING" in n for n in notes) >= 5
    assert sum(" < PONG" in n for n in notes) >= 5
    assert sum(" < PING" in n for n in notes) >= 5  # libzmq's, answered
