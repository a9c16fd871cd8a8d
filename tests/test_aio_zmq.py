"""sockwire.aio.zmq.Socket over real sockets: pairs, several peers, reconnects, heartbeats,
security, hostile peers, backpressure, cancellation at every await point, and the
blocking sockwire.zmq talking to it. Every test runs on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
import builtins
import select
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from sockwire import aio, zmtp
from sockwire import zmq as swz
from sockwire.aio import zmq as az
from sockwire.aio.loops import wait_fd
from sockwire.errors import (
    AddressError,
    ClosedError,
    ConnectionLost,
    InvalidOperation,
    PermissionDenied,
    TimeoutError,
)
from tests.test_aio_cancel import _cancel_after

pytestmark = pytest.mark.timeout(30)


def _ipc(tmp_path: Path, name: str = "z.sock") -> str:
    return f"zmq+ipc://{tmp_path / name}"


def _peer(sock: az.Socket) -> Any:
    (peer,) = sock._core.peers
    return peer


# ---- the module and its rules


def test_the_module_has_the_blocking_layout() -> None:
    assert az.SOCKET_TYPES == swz.SOCKET_TYPES
    assert az.SocketCore is swz.SocketCore  # one core, two drivers
    assert az.parse is swz.parse and az.is_zmq is swz.is_zmq
    with pytest.raises(InvalidOperation, match="inside a coroutine"):
        az.Socket("PUSH", "zmq+tcp://127.0.0.1:9")


async def test_wrong_calls_and_closed_socket(tmp_path: Path) -> None:
    sub = az.Socket("SUB", _ipc(tmp_path))
    with pytest.raises(InvalidOperation):
        await sub.send(b"x")
    waiting = asyncio.create_task(sub.recv())
    await asyncio.sleep(0)  # one loop iteration: the recv is waiting
    await sub.close()
    with pytest.raises(ClosedError):
        await waiting  # a waiting recv learns of the close
    with pytest.raises(ClosedError):
        await sub.recv()
    with pytest.raises(ClosedError):
        sub.subscribe(b"t")
    with pytest.raises(AddressError):
        az.Socket("PUSH", "zmq+tcp://*:5555")  # * is for binding
    with pytest.raises(AddressError, match="give the type once"):
        az.Socket("PUSH", "zmq+tcp://127.0.0.1:5?type=PULL")


async def test_a_socket_stays_on_its_loop(tmp_path: Path) -> None:
    async with az.Socket("PULL", _ipc(tmp_path) + "?bind=1") as pull:

        async def elsewhere() -> None:
            await pull.recv(timeout=1)

        with pytest.raises(InvalidOperation, match="another event loop"):
            await asyncio.to_thread(asyncio.run, elsewhere())


async def test_key_files_follow_the_blocking_rules(tmp_path: Path) -> None:
    loose = tmp_path / "plain"
    loose.write_text("admin:secret\n")
    loose.chmod(0o644)
    with pytest.raises(PermissionDenied, match="chmod 600"):
        az.Socket(f"zmq+tcp://127.0.0.1:0?type=PULL&bind=1&plain={loose}")
    loose.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("admin:guess\n")
    wrong.chmod(0o600)
    async with az.Socket(f"zmq+tcp://127.0.0.1:0?type=PULL&bind=1&plain={loose}") as pull:
        ep = pull.endpoints[0]
        async with az.Socket("PUSH", f"{ep}?plain={wrong}") as bad:
            assert not await pull.poll(0.3)  # refused in the handshake
            assert pull.peers == 0 and bad.peers == 0
        async with az.Socket("PUSH", f"{ep}?plain={loose}") as good:
            await good.send(b"in", timeout=5)
            assert await pull.recv(timeout=5) == [b"in"]


async def test_curve_with_an_allow_list(tmp_path: Path) -> None:
    pytest.importorskip("nacl")
    from sockwire.zmtp_curve import generate_keypair

    def keyfile(name: str, key: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(key + b"\n")
        path.chmod(0o600)
        return str(path)

    server_public, server_secret = generate_keypair()
    client_public, client_secret = generate_keypair()
    _, stranger_secret = generate_keypair()
    allowed = keyfile("clients", client_public)
    server = f"&curve_secret={keyfile('s.key', server_secret)}&curve_clients={allowed}"
    async with az.Socket(f"zmq+tcp://127.0.0.1:0?type=REP&bind=1{server}") as rep:
        ep = rep.endpoints[0]
        spub = keyfile("s.pub", server_public)
        async with az.Socket(
            "REQ", f"{ep}?curve_secret={keyfile('x.key', stranger_secret)}&curve_server={spub}"
        ) as stranger:
            assert not await rep.poll(0.3)
            assert stranger.peers == 0
        async with az.Socket(
            "REQ", f"{ep}?curve_secret={keyfile('c.key', client_secret)}&curve_server={spub}"
        ) as req:
            for i in range(20):
                await req.send(b"%d" % i, timeout=5)
                assert await rep.recv(timeout=5) == [b"%d" % i]
                await rep.send(b"re:%d" % i)
                assert await req.recv(timeout=5) == [b"re:%d" % i]


# ---- sockwire.aio.zmq to itself


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("REQ", "REP"),
        ("DEALER", "ROUTER"),
        ("PUSH", "PULL"),
        ("PAIR", "PAIR"),
        ("DEALER", "DEALER"),
    ],
)
async def test_pairs(tmp_path: Path, a: str, b: str, transport: str) -> None:
    where = _ipc(tmp_path) if transport == "ipc" else "zmq+tcp://127.0.0.1:0"
    async with (
        az.Socket(b, where + "?bind=1") as server,
        az.Socket(a, server.endpoints[0]) as client,
    ):
        for i in range(200):
            await client.send([b"m", b"%d" % i], timeout=5)
            got = await server.recv(timeout=5)
            assert got[-2:] == [b"m", b"%d" % i]
            if b != "PULL":
                await server.send([*got[:-2], b"r%d" % i] if b == "ROUTER" else [b"r%d" % i])
                assert await client.recv(timeout=5) == [b"r%d" % i]


async def test_pub_sub_with_two_subscribers() -> None:
    async with az.Socket("PUB", "zmq+tcp://127.0.0.1:0?bind=1") as pub:
        ep = pub.endpoints[0]
        async with az.Socket("SUB", ep + "?subscribe=a") as sa, az.Socket("SUB", ep) as sall:
            sall.subscribe(b"")
            await sa.wait_peers()
            await sall.wait_peers()
            for _ in range(500):  # until both subscriptions are in force (bounded)
                await pub.send([b"a", b"warm"])
                if await sa.poll(0.01) and await sall.poll(0.01):
                    break
            for got in (sa, sall):
                while await got.poll(0.05):
                    await got.recv()
            await pub.send([b"a", b"1"])
            await pub.send([b"b", b"2"])
            assert await sa.recv(timeout=5) == [b"a", b"1"]
            assert await sall.recv(timeout=5) == [b"a", b"1"]
            assert await sall.recv(timeout=5) == [b"b", b"2"]
            assert not await sa.poll(0.1)
            assert pub.dropped == 0


async def test_xpub_sees_subscriptions_and_xsub_sends_them(tmp_path: Path) -> None:
    async with az.Socket("XPUB", _ipc(tmp_path) + "?bind=1") as xpub:
        async with az.Socket("XSUB", xpub.endpoints[0]) as xsub:
            await xsub.send(b"\x01t")
            assert await xpub.recv(timeout=5) == [b"\x01t"]
            await xpub.send([b"t", b"1"])
            await xpub.send([b"u", b"2"])  # filtered on the publisher's side
            await xpub.send([b"t", b"3"])
            assert await xsub.recv(timeout=5) == [b"t", b"1"]
            assert await xsub.recv(timeout=5) == [b"t", b"3"]
        assert await xpub.recv(timeout=5) == [b"\x00t"]  # its subscriber went


async def test_router_addresses_dealers_by_identity(tmp_path: Path) -> None:
    async with az.Socket("ROUTER", _ipc(tmp_path) + "?bind=1") as router:
        dealers = [az.Socket("DEALER", _ipc(tmp_path) + f"?identity=w{i}") for i in range(3)]
        try:
            for d in dealers:
                await d.send(b"hello", timeout=5)
            ids = sorted([(await router.recv(timeout=5))[0] for _ in dealers])
            assert ids == [b"w0", b"w1", b"w2"]
            for i in (2, 0, 1):
                await router.send([b"w%d" % i, b"for %d" % i])
            for i, d in enumerate(dealers):
                assert await d.recv(timeout=5) == [b"for %d" % i]
            await router.send([b"nobody", b"x"])
            assert router.dropped == 1
        finally:
            for d in dealers:
                await d.close()


async def test_push_round_robins_and_pull_fair_queues(tmp_path: Path) -> None:
    async with az.Socket("PUSH", _ipc(tmp_path) + "?bind=1") as push:
        pulls = [az.Socket("PULL", push.endpoints[0]) for _ in range(3)]
        try:
            await push.wait_peers(3)
            for i in range(30):
                await push.send(b"%d" % i)
            got = [[int((await p.recv(timeout=5))[0]) for _ in range(10)] for p in pulls]
            assert sorted(m for mine in got for m in mine) == list(range(30))
            for mine in got:  # each got every third one, in order
                assert mine == sorted(mine) and {m % 3 for m in mine} == {mine[0] % 3}
        finally:
            for p in pulls:
                await p.close()
    async with az.Socket("PULL", _ipc(tmp_path, "f.sock") + "?bind=1") as pull:
        ep = pull.endpoints[0]
        async with az.Socket("PUSH", ep) as p1, az.Socket("PUSH", ep) as p2:
            await pull.wait_peers(2)
            for i in range(50):
                await p1.send(b"a%d" % i)
                await p2.send(b"b%d" % i)
            got = [(await pull.recv(timeout=5))[0] for _ in range(100)]
            for tag in (b"a", b"b"):
                assert [g for g in got if g[:1] == tag] == [tag + b"%d" % i for i in range(50)]
            assert got[:2] != [b"a0", b"a1"]  # fair-queued, not one peer drained first


async def test_connect_before_bind_and_reconnect_after_restart(tmp_path: Path) -> None:
    """Refused connects back off and retry; a restarted binder is found again."""
    notes: list[str] = []
    async with az.Socket(
        "PUSH", _ipc(tmp_path), reconnect=(0.01, 0.05), trace=notes.append
    ) as push:
        send = asyncio.create_task(push.send(b"0", timeout=10))  # waits for a peer
        for _ in range(100):  # bounded: until a connect was refused and retried
            if sum("again in" in n for n in notes) >= 2:
                break
            await push.poll(0.01)
        for round_ in range(2):
            async with az.Socket("PULL", _ipc(tmp_path) + "?bind=1") as pull:
                if round_ == 0:
                    await send
                else:
                    await push.send(b"0", timeout=10)
                for i in range(1, 50):
                    await push.send(b"%d" % i, timeout=10)
                got = [(await pull.recv(timeout=10))[0] for _ in range(50)]
                assert got == [b"%d" % i for i in range(50)], round_
            for _ in range(200):  # bounded: until the PUSH noticed the PULL went
                if not push.peers:
                    break
                await push.poll(0.01)
    assert sum("again in" in n for n in notes) >= 2  # it was refused, and backed off


async def test_req_timeout_leaves_no_dead_state(tmp_path: Path) -> None:
    async with (
        az.Socket("REP", _ipc(tmp_path) + "?bind=1") as rep,
        az.Socket("REQ", _ipc(tmp_path), reconnect=(0.01, 0.1)) as req,
    ):
        await req.send(b"first")
        assert await rep.recv(timeout=5) == [b"first"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await req.recv(timeout=0.2)
        assert loop.time() - started < 0.6
        await rep.send(b"late")  # the connection it would use is gone
        await req.send(b"second", timeout=10)  # REQ reconnected and may ask again
        assert await rep.recv(timeout=10) == [b"second"]
        await rep.send(b"answer")
        assert await req.recv(timeout=5) == [b"answer"]


async def test_req_learns_that_its_peer_went_away(tmp_path: Path) -> None:
    async with az.Socket("REQ", _ipc(tmp_path), reconnect=(0.01, 0.1)) as req:
        async with az.Socket("REP", _ipc(tmp_path) + "?bind=1") as rep:
            await req.send(b"q", timeout=5)
            assert await rep.recv(timeout=5) == [b"q"]
            waiting = asyncio.create_task(req.recv(timeout=10))
        with pytest.raises(ConnectionLost, match="send the request again"):
            await waiting
        async with az.Socket("REP", _ipc(tmp_path) + "?bind=1") as rep:
            await req.send(b"again", timeout=5)
            assert await rep.recv(timeout=5) == [b"again"]
            await rep.send(b"a")
            assert await req.recv(timeout=5) == [b"a"]


async def test_last_messages_before_eof_are_delivered(tmp_path: Path) -> None:
    """The reader callbacks see a peer's last messages and its EOF before any recv: the
    peer is gone (detached), its messages are still handed out, once and in order."""
    async with az.Socket("PULL", _ipc(tmp_path) + "?bind=1") as pull:
        for round_ in range(3):
            async with az.Socket("PUSH", pull.endpoints[0]) as push:
                await pull.wait_peers()
                for i in range(20):
                    await push.send(b"%d.%d" % (round_, i), timeout=5)
            for _ in range(10_000):  # bounded: loop iterations until the EOF was read
                if not pull.peers:
                    break
                await asyncio.sleep(0)
            assert pull.peers == 0 and not pull._core.peers
            got = [(await pull.recv(timeout=5))[0] for _ in range(20)]
            assert got == [b"%d.%d" % (round_, i) for i in range(20)]
            assert not await pull.poll(0)
    async with (
        az.Socket("REP", _ipc(tmp_path, "r.sock") + "?bind=1") as rep,
        az.Socket("REQ", rep.endpoints[0]) as req,
    ):
        await req.send(b"q", timeout=5)
        assert await rep.recv(timeout=5) == [b"q"]
        await rep.send(b"a")
        await rep.close()  # answered and went away before the REQ looked
        for _ in range(10_000):
            if not req.peers:
                break
            await asyncio.sleep(0)
        assert await req.recv(timeout=5) == [b"a"]


# ---- heartbeats and hostile peers


async def _handshake(sock: aio.Socket, conn: zmtp.Connection) -> bytes:
    """Complete a ZMTP handshake by hand; returns what came after it."""
    await sock.sendall(conn.data_to_send())
    seen = b""
    while conn.state != "READY":
        data = await sock.recv(4096)
        assert data, "closed during the handshake"
        seen += data
        conn.feed(data)
        await sock.sendall(conn.data_to_send())
    return seen


async def test_heartbeat_drops_a_silent_peer_and_reconnects(tmp_path: Path) -> None:
    """A server that completes the handshake and then never answers a PING."""
    path = tmp_path / "hb.sock"
    listener = aio.Socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    accepted: list[aio.Socket] = []
    notes: list[str] = []
    try:
        async with az.Socket(
            "DEALER", f"zmq+ipc://{path}?heartbeat=0.1", reconnect=(0.01, 0.1), trace=notes.append
        ):
            async with asyncio.timeout(10):
                for _ in range(2):
                    conn, _ = await listener.accept()
                    accepted.append(conn)
                    await _handshake(conn, zmtp.Connection("ROUTER"))
                    pings = b""
                    while True:  # read PINGs, answer none, until it gives up on us
                        data = await conn.recv(4096)
                        if not data:
                            break
                        pings += data
                    assert b"PING" in pings
    finally:
        for conn in accepted:
            conn.close()
        listener.close()
    assert len(accepted) == 2  # dropped for silence, then reconnected
    assert any("heartbeat" in n for n in notes if " drop " in n)


async def _closed_by_peer(sock: aio.Socket) -> None:
    while True:
        try:
            if not await sock.recv(65536):
                return
        except ConnectionLost:
            return


async def test_hostile_peers_are_closed_and_others_served(tmp_path: Path) -> None:
    path = tmp_path / "h.sock"
    loop = asyncio.get_running_loop()
    async with az.Socket("PULL", f"zmq+ipc://{path}?bind=1&handshake=0.5&max_size=1000") as pull:
        raws = [aio.Socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(4)]
        try:
            for raw in raws:
                await raw.connect(str(path))
            http, gssapi, half, big = raws
            started = loop.time()
            closed_at: dict[str, float] = {}

            async def watch(name: str, sock: aio.Socket) -> None:
                await _closed_by_peer(sock)
                closed_at[name] = loop.time() - started

            await http.sendall(b"GET / HTTP/1.1\r\n\r\n")
            await gssapi.sendall(zmtp.greeting(b"GSSAPI", False))
            await half.sendall(zmtp.greeting(b"NULL", False)[:30])  # never finishes
            watchers = [
                asyncio.create_task(watch(n, s))
                for n, s in (("http", http), ("gssapi", gssapi), ("half", half))
            ]
            await _handshake(big, zmtp.Connection("PUSH"))
            await big.sendall(b"\x02" + struct.pack("!Q", 1 << 30))  # declares 1 GiB
            watchers.append(asyncio.create_task(watch("oversize", big)))
            async with az.Socket("PUSH", f"zmq+ipc://{path}") as good:
                async with asyncio.timeout(10):
                    served = 0
                    while len(closed_at) < 4 or served < 20:
                        await good.send(b"ok %d" % served, timeout=5)
                        assert await pull.recv(timeout=5) == [b"ok %d" % served]
                        served += 1  # others are served throughout
                        await asyncio.wait(watchers, timeout=0.01)
            await asyncio.gather(*watchers)
        finally:
            for raw in raws:
                raw.close()
    assert set(closed_at) == {"http", "gssapi", "half", "oversize"}, closed_at
    assert closed_at["http"] < 1.5 and closed_at["gssapi"] < 1.5
    assert closed_at["half"] < 0.5 * 3  # the handshake deadline, 3x slack
    assert closed_at["oversize"] < 1.5


# ---- backpressure


async def test_push_awaits_at_the_high_water_mark(tmp_path: Path) -> None:
    """A PULL that does not read: the PUSH's queue stops at sndhwm and send awaits."""
    async with (
        az.Socket("PULL", _ipc(tmp_path) + "?bind=1&rcvhwm=4") as pull,
        az.Socket("PUSH", _ipc(tmp_path) + "?sndhwm=8") as push,
    ):
        await push.wait_peers()
        sent = 0
        refused: TimeoutError | None = None
        for _ in range(2_000):  # bounded: the kernel's buffers hold a few MB
            try:
                await push.send(b"%d." % sent + b"x" * 10_000, timeout=0.2)
            except TimeoutError as exc:
                refused = exc
                break
            sent += 1
            assert _peer(push).queued <= 8
        assert refused is not None and "no peer could take" in str(refused)
        assert sent >= 8
        got = [(await pull.recv(timeout=5))[0] for _ in range(sent)]
        assert [int(g.split(b".")[0]) for g in got] == list(range(sent))
        assert not await pull.poll(0.05)  # the timed-out one was never queued


async def test_pub_drops_for_a_slow_subscriber_and_counts(tmp_path: Path) -> None:
    async with (
        az.Socket("PUB", _ipc(tmp_path) + "?bind=1&sndhwm=4") as pub,
        az.Socket("SUB", _ipc(tmp_path) + "?subscribe=&rcvhwm=4") as sub,
    ):
        for _ in range(500):  # until the subscription is in force (bounded)
            await pub.send(b"warm")
            if await sub.poll(0.01):
                break
        for _ in range(2_000):  # never awaits: a full subscriber costs drops
            await pub.send(b"x" * 10_000)
        assert pub.dropped > 0
        assert _peer(pub).queued <= 4


# ---- cancellation at every await point


async def test_cancelled_recv_loses_nothing(tmp_path: Path) -> None:
    async with (
        az.Socket("PULL", _ipc(tmp_path) + "?bind=1&rcvhwm=5") as pull,
        az.Socket("PUSH", _ipc(tmp_path)) as push,
    ):
        count = 300

        async def produce() -> None:
            for i in range(count):
                await push.send(b"%d" % i, timeout=10)
                if i % 3 == 0:
                    await asyncio.sleep(0)

        producer = asyncio.create_task(produce())
        got: list[bytes] = []
        turns = 0
        while len(got) < count:
            finished, msg = await _cancel_after(pull.recv(timeout=10), turns % 4)
            turns += 1
            if finished:
                got.append(msg[0])
        await producer
        assert got == [b"%d" % i for i in range(count)]
        assert not await pull.poll(0.05)


async def test_recv_under_asyncio_timeout_loses_nothing(tmp_path: Path) -> None:
    async with (
        az.Socket("PULL", _ipc(tmp_path) + "?bind=1") as pull,
        az.Socket("PUSH", _ipc(tmp_path)) as push,
    ):
        await push.wait_peers()
        got: list[bytes] = []
        sent = 0
        for i in range(200):
            if i % 3 == 0:
                await push.send([b"%d" % sent, b"second frame"])
                sent += 1
            try:
                async with asyncio.timeout(0 if i % 2 else 0.001):
                    got.append((await pull.recv())[0])
            except builtins.TimeoutError:
                pass
        while len(got) < sent:
            msg = await pull.recv(timeout=5)
            assert msg[1] == b"second frame"  # never split
            got.append(msg[0])
        assert got == [b"%d" % i for i in range(sent)]


async def test_cancelled_req_recv_keeps_the_reply(tmp_path: Path) -> None:
    async with (
        az.Socket("REP", _ipc(tmp_path) + "?bind=1") as rep,
        az.Socket("REQ", _ipc(tmp_path)) as req,
    ):
        for i in range(20):
            await req.send(b"%d" % i, timeout=5)
            for turns in range(3):  # no reply yet: each cancelled recv took nothing
                finished, _ = await _cancel_after(req.recv(), turns)
                assert not finished
            assert await rep.recv(timeout=5) == [b"%d" % i]
            await rep.send(b"re:%d" % i)
            assert await req.recv(timeout=5) == [b"re:%d" % i]  # the reply, once


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
async def test_cancelled_send_queues_all_or_nothing(tmp_path: Path, transport: str) -> None:
    """A send cancelled while it waits for room sent nothing; one that returned sent all."""
    where = _ipc(tmp_path) if transport == "ipc" else "zmq+tcp://127.0.0.1:0"
    size = 50_000
    async with (
        az.Socket("PULL", where + "?bind=1&rcvhwm=2") as pull,
        az.Socket("PUSH", pull.endpoints[0] + "?sndhwm=2") as push,
    ):
        await push.wait_peers()
        got: list[list[bytes]] = []
        slow = asyncio.Event()

        async def slow_reader() -> None:
            await slow.wait()
            while True:
                got.append(await pull.recv())
                for _ in range(3):
                    await asyncio.sleep(0)

        reader = asyncio.create_task(slow_reader())
        sent: list[int] = []
        for i in range(80):
            if i == 40:
                slow.set()  # until now the kernel's buffers filled up
            finished, _ = await _cancel_after(push.send([bytes([i]) * size, b"t"]), i % 4)
            if finished:
                sent.append(i)
        assert await push.flush(timeout=10)
        async with asyncio.timeout(10):
            while len(got) < len(sent):
                await asyncio.sleep(0.01)  # bounded: until the reader has them all
        reader.cancel()
        await asyncio.wait({reader})
        assert 0 < len(sent) < 80  # some were cancelled while waiting, some went
        assert [m[0][0] for m in got] == sent  # every sent one, once, in order; no other
        assert all(len(m[0]) == size and m[1] == b"t" for m in got)  # none cut


async def test_cancelled_or_timed_out_send_to_no_peer_sends_nothing(tmp_path: Path) -> None:
    async with az.Socket("PUSH", _ipc(tmp_path), reconnect=(0.01, 0.05)) as push:
        for turns in range(4):
            finished, _ = await _cancel_after(push.send(b"cancelled"), turns)
            assert not finished
        with pytest.raises(TimeoutError):
            await push.send(b"timed out", timeout=0.05)
        with pytest.raises(builtins.TimeoutError):
            async with asyncio.timeout(0.01):
                await push.send(b"timed out too")
        async with az.Socket("PULL", _ipc(tmp_path) + "?bind=1") as pull:
            await push.send(b"real", timeout=10)
            assert await pull.recv(timeout=5) == [b"real"]
            assert not await pull.poll(0.1)


async def test_cancelled_flush_and_wait_peers_change_nothing(tmp_path: Path) -> None:
    async with (
        az.Socket("PULL", _ipc(tmp_path) + "?bind=1&rcvhwm=1") as pull,
        az.Socket("PUSH", pull.endpoints[0] + "?sndhwm=1000") as push,
    ):
        for turns in range(3):
            finished, _ = await _cancel_after(push.wait_peers(2), turns)
            assert not finished
        await push.wait_peers()
        for i in range(100):  # 5 MB: more than the kernel takes while nobody reads
            await push.send(b"%d." % i + b"x" * 50_000)
        for turns in range(3):
            finished, _ = await _cancel_after(push.flush(), turns)
            assert not finished
        assert not await push.flush(timeout=0.05)
        got = [(await pull.recv(timeout=10))[0] for _ in range(100)]
        assert [int(g.split(b".")[0]) for g in got] == list(range(100))
        assert await push.flush(timeout=5)


async def test_cancelled_poll_takes_nothing_and_async_for_ends_at_close(tmp_path: Path) -> None:
    async with (
        az.Socket("PULL", _ipc(tmp_path) + "?bind=1") as pull,
        az.Socket("PUSH", pull.endpoints[0]) as push,
    ):
        for turns in range(3):
            finished, _ = await _cancel_after(pull.poll(None), turns)
            assert not finished
        for i in range(5):
            await push.send(b"%d" % i)
        assert await pull.poll(5)
        for turns in range(3):
            await _cancel_after(az.poll([pull], None), turns)
        assert await az.poll([pull], 0) == [pull]
        got: list[bytes] = []

        async def consume() -> None:
            async for msg in pull:
                got.append(msg[0])

        task = asyncio.create_task(consume())
        for _ in range(10_000):  # bounded: loop iterations until all five arrived
            if len(got) == 5:
                break
            await asyncio.sleep(0)
        await pull.close()
        await asyncio.wait_for(task, 5)  # the iteration ends with the socket
        assert got == [b"%d" % i for i in range(5)]


async def test_cancelled_close_still_closes(tmp_path: Path) -> None:
    async with az.Socket("PULL", _ipc(tmp_path) + "?bind=1&rcvhwm=1") as pull:
        push = az.Socket("PUSH", pull.endpoints[0])
        await push.wait_peers()
        for _ in range(100):  # queued output the PULL does not read
            await push.send(b"x" * 50_000)
        finished, _ = await _cancel_after(push.close(linger=10), 2)
        assert not finished and push.closed  # cancelled while lingering, closed anyway
        with pytest.raises(ClosedError):
            await push.send(b"y")


async def test_close_cancels_pending_connects() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
    try:
        port = listener.getsockname()[1]
        for turns in range(4):
            push = az.Socket("PUSH", f"zmq+tcp://127.0.0.1:{port}", reconnect=(0.001, 0.002))
            for _ in range(turns):
                await asyncio.sleep(0)
            await push.close()
    finally:
        listener.close()


# ---- the blocking sockwire.zmq and sockwire.aio.zmq


PAIRS = [
    ("REQ", "REP"),
    ("DEALER", "ROUTER"),
    ("SUB", "PUB"),
    ("XSUB", "XPUB"),
    ("PUSH", "PULL"),
    ("PAIR", "PAIR"),
]
N = 300


class Signal:
    """A socketpair between the blocking side (a thread) and the loop: endpoint and warm-up."""

    def __init__(self) -> None:
        self.mine, self.theirs = socket.socketpair()

    def close(self) -> None:
        self.mine.close()
        self.theirs.close()

    # the blocking side
    def put(self, data: bytes) -> None:
        self.theirs.sendall(data)

    def get(self, timeout: float) -> bytes:
        if not select.select([self.theirs], [], [], timeout)[0]:
            return b""
        return self.theirs.recv(4096)

    # the loop's side
    def aput(self, data: bytes) -> None:
        self.mine.sendall(data)  # a few bytes into an empty socketpair: never blocks

    async def aget(self, timeout: float) -> bytes:
        deadline = asyncio.get_running_loop().time() + timeout
        if not await wait_fd(self.mine.fileno(), deadline=deadline):
            return b""
        return self.mine.recv(4096)


def _blocking_role(kind: str, sock: swz.Socket, sig: Signal, n: int) -> bool:
    """One role, blocking; True when everything arrived once and in order."""
    if kind == "PUSH":
        for i in range(n):
            sock.send(b"%d" % i, timeout=10)
        return True
    if kind == "PULL":
        return [sock.recv(timeout=10) for _ in range(n)] == [[b"%d" % i] for i in range(n)]
    if kind == "REQ":
        ok = True
        for i in range(n):
            sock.send(b"%d" % i, timeout=10)
            ok = ok and sock.recv(timeout=10) == [b"re:%d" % i]
        return ok
    if kind in ("REP", "ROUTER", "PAIR-ECHO"):
        for _ in range(n):
            frames = sock.recv(timeout=10)
            sock.send([*frames[:-1], b"re:" + frames[-1]])
        return True
    if kind in ("DEALER", "PAIR"):
        for i in range(n):
            sock.send([b"", b"%d" % i] if kind == "DEALER" else b"%d" % i, timeout=10)
        got = [sock.recv(timeout=10)[-1] for _ in range(n)]
        return got == [b"re:%d" % i for i in range(n)]
    if kind in ("SUB", "XSUB"):
        if kind == "XSUB":
            sock.send(b"\x01t")
        got = []
        told = False
        while len(got) < n:
            frames = sock.recv(timeout=10)
            if frames[-1] == b"warm":
                if not told:
                    sig.put(b"w")
                    told = True
                continue
            got.append(frames[-1])
        return got == [b"%d" % i for i in range(n)]
    if kind in ("PUB", "XPUB"):
        for _ in range(2000):  # bounded warm-up: until the subscriber saw one
            sock.send([b"t", b"warm"])
            if sig.get(0.01):
                break
        else:
            return False
        for i in range(n):
            sock.send([b"t", b"%d" % i])
        return sock.dropped == 0
    raise AssertionError(kind)


async def _async_role(kind: str, sock: az.Socket, sig: Signal, n: int) -> bool:
    """The same role, awaited."""
    if kind == "PUSH":
        for i in range(n):
            await sock.send(b"%d" % i, timeout=10)
        return True
    if kind == "PULL":
        got = [await sock.recv(timeout=10) for _ in range(n)]
        return got == [[b"%d" % i] for i in range(n)]
    if kind == "REQ":
        ok = True
        for i in range(n):
            await sock.send(b"%d" % i, timeout=10)
            ok = ok and await sock.recv(timeout=10) == [b"re:%d" % i]
        return ok
    if kind in ("REP", "ROUTER", "PAIR-ECHO"):
        for _ in range(n):
            frames = await sock.recv(timeout=10)
            await sock.send([*frames[:-1], b"re:" + frames[-1]])
        return True
    if kind in ("DEALER", "PAIR"):
        for i in range(n):
            await sock.send([b"", b"%d" % i] if kind == "DEALER" else b"%d" % i, timeout=10)
        got = [(await sock.recv(timeout=10))[-1] for _ in range(n)]
        return got == [b"re:%d" % i for i in range(n)]
    if kind in ("SUB", "XSUB"):
        if kind == "XSUB":
            await sock.send(b"\x01t")
        got: list[bytes] = []
        told = False
        while len(got) < n:
            frames = await sock.recv(timeout=10)
            if frames[-1] == b"warm":
                if not told:
                    sig.aput(b"w")
                    told = True
                continue
            got.append(frames[-1])
        return got == [b"%d" % i for i in range(n)]
    if kind in ("PUB", "XPUB"):
        for _ in range(2000):  # bounded warm-up: until the subscriber saw one
            await sock.send([b"t", b"warm"])
            if await sig.aget(0.01):
                break
        else:
            return False
        for i in range(n):
            await sock.send([b"t", b"%d" % i])
        return sock.dropped == 0
    raise AssertionError(kind)


def _role(kind: str, binding: bool) -> str:
    return "PAIR-ECHO" if kind == "PAIR" and binding else kind


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
@pytest.mark.parametrize("blocking", ["connects", "binds"])
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}-{p[1]}")
async def test_blocking_and_async_sockets_talk(
    tmp_path: Path, pair: tuple[str, str], blocking: str, transport: str
) -> None:
    connecting, binding = pair
    where = _ipc(tmp_path) if transport == "ipc" else "zmq+tcp://127.0.0.1:0"
    sig = Signal()
    if binding in ("PUB", "XPUB"):
        where += f"?sndhwm={2 * N}"
    bind_ep = where + ("&" if "?" in where else "?") + "bind=1"
    sub = "&subscribe=t" if connecting == "SUB" else ""

    def blocking_side() -> bool:
        if blocking == "binds":
            with swz.Socket(binding, bind_ep) as sock:
                sig.put(sock.endpoints[0].encode())
                ok = _blocking_role(_role(binding, True), sock, sig, N)
                return ok and sock.flush(timeout=10)
        endpoint = sig.get(10).decode()
        with swz.Socket(connecting, endpoint + "?" + sub[1:] if sub else endpoint) as sock:
            ok = _blocking_role(connecting, sock, sig, N)
            return ok and sock.flush(timeout=10)

    try:
        thread = asyncio.create_task(asyncio.to_thread(blocking_side))
        if blocking == "binds":
            endpoint = (await sig.aget(10)).decode()
            async with az.Socket(connecting, endpoint + ("?" + sub[1:] if sub else "")) as sock:
                ok = await _async_role(connecting, sock, sig, N)
                assert await sock.flush(timeout=10)
        else:
            async with az.Socket(binding, bind_ep) as sock:
                sig.aput(sock.endpoints[0].encode())
                ok = await _async_role(_role(binding, True), sock, sig, N)
                assert await sock.flush(timeout=10)
        assert ok, "the asyncio side"
        assert await thread, "the blocking side"
    finally:
        sig.close()


@pytest.mark.parametrize("mech", ["PLAIN", "CURVE"])
@pytest.mark.parametrize("blocking", ["client", "server"])
async def test_blocking_and_async_sockets_talk_securely(
    tmp_path: Path, mech: str, blocking: str
) -> None:
    def keyfile(name: str, data: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(data + b"\n")
        path.chmod(0o600)
        return str(path)

    if mech == "PLAIN":
        creds = keyfile("plain", b"admin:secret")
        server_opts = client_opts = f"&plain={creds}"
    else:
        pytest.importorskip("nacl")
        from sockwire.zmtp_curve import generate_keypair

        spub, ssec = generate_keypair()
        _, csec = generate_keypair()
        server_opts = f"&curve_secret={keyfile('s.key', ssec)}"
        client_opts = f"&curve_secret={keyfile('c.key', csec)}&curve_server={keyfile('s', spub)}"
    sig = Signal()

    def blocking_side() -> bool:
        if blocking == "server":
            with swz.Socket(f"zmq+tcp://127.0.0.1:0?type=REP&bind=1{server_opts}") as rep:
                sig.put(rep.endpoints[0].encode())
                return _blocking_role("REP", rep, sig, 50) and rep.flush(timeout=10)
        endpoint = sig.get(10).decode()
        with swz.Socket(f"{endpoint}?type=REQ{client_opts}") as req:
            return _blocking_role("REQ", req, sig, 50)

    try:
        thread = asyncio.create_task(asyncio.to_thread(blocking_side))
        if blocking == "server":
            endpoint = (await sig.aget(10)).decode()
            async with az.Socket(f"{endpoint}?type=REQ{client_opts}") as req:
                assert await _async_role("REQ", req, sig, 50)
        else:
            async with az.Socket(f"zmq+tcp://127.0.0.1:0?type=REP&bind=1{server_opts}") as rep:
                sig.aput(rep.endpoints[0].encode())
                assert await _async_role("REP", rep, sig, 50)
                assert await rep.flush(timeout=10)
        assert await thread
    finally:
        sig.close()


async def test_sourceport_applies_to_async_connects() -> None:
    """The transport options of a zmq+tcp endpoint mean what they mean to the blocking side."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    source = probe.getsockname()[1]
    probe.close()  # never listened or connected: the port is free again at once
    seen: list[str] = []
    async with (
        az.Socket("PULL", "zmq+tcp://127.0.0.1:0?bind=1", trace=seen.append) as pull,
        az.Socket("PUSH", f"{pull.endpoints[0]}?sourceport={source}") as push,
    ):
        await push.send(b"x", timeout=5)
        assert await pull.recv(timeout=5) == [b"x"]
    assert any(f":{source}" in line for line in seen), seen[:5]


async def test_async_connects_check_sides_as_the_blocking_dial(tmp_path: Path) -> None:
    """aio.dial is the blocking dial awaited: a listener's option is refused on a connect,
    and an aio server hands out its endpoint without them (as the blocking server does)."""
    import sockwire

    with pytest.raises(AddressError, match="'backlog' is not for connecting"):
        await aio.dial.connect("tcp://127.0.0.1:9?backlog=5")

    async def echo(ch: aio.Channel, peer: object) -> None:
        async for msg in ch:
            await ch.send(msg)

    where = f"unix:{tmp_path / 's.sock'}?mode=0600&backlog=8"
    async with aio.serve(where, echo) as server:
        assert "mode" not in server.endpoint and "backlog" not in server.endpoint
        with sockwire.serve(where.replace("s.sock", "b.sock"), lambda ch, peer: None) as sync:
            assert sockwire.parse(sync.endpoint).options == sockwire.parse(server.endpoint).options
        async with aio.connect(server.endpoint) as ch:
            await ch.send(b"hi")
            assert await ch.recv(timeout=5) == b"hi"
