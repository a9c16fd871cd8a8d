"""The asyncio patterns: req/rep, pub/sub, push/pull, and sync <-> async peers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import sockwire
import sockwire.patterns
from sockwire import aio
from sockwire.errors import RemoteError, TimeoutError


async def test_req_rep_unix(tmp_path: Path) -> None:
    async def handler(body: bytes) -> bytes:
        await asyncio.sleep(0)
        return body.upper()

    async with aio.Rep(f"unix:{tmp_path}/rr.sock", handler) as rep, aio.Req(rep.endpoint) as req:
        assert await req.request(b"ping", timeout=5) == b"PING"
        replies = await asyncio.gather(*(req.request(b"m%d" % i, timeout=5) for i in range(50)))
        assert replies == [b"M%d" % i for i in range(50)]


async def test_rep_handler_error_is_remote_error(tmp_path: Path) -> None:
    def handler(body: bytes) -> bytes:
        raise ValueError("no")

    async with aio.Rep(f"unix:{tmp_path}/rr.sock", handler) as rep, aio.Req(rep.endpoint) as req:
        with pytest.raises(RemoteError, match="ValueError: no"):
            await req.request(b"x", timeout=5)


async def test_pub_sub(tmp_path: Path) -> None:
    async with aio.Pub(f"unix:{tmp_path}/ps.sock") as pub, aio.Sub(pub.endpoint) as sub:
        await sub.subscribe("weather.", timeout=5)
        assert await pub.publish("weather.paris", b"sun") == 1
        assert await pub.publish("news", b"x") == 0
        assert await sub.recv(timeout=5) == ("weather.paris", b"sun")


async def test_push_pull(tmp_path: Path) -> None:
    async with (
        aio.Push(f"unix:{tmp_path}/pp.sock") as push,
        aio.Pull(push.endpoint, hwm=4) as pull,
    ):
        for i in range(20):
            await push.send(b"%d" % i, timeout=5)
            assert await pull.recv(timeout=5) == b"%d" % i


async def test_req_udp(tmp_path: Path) -> None:
    async with (
        aio.Rep("udp://127.0.0.1:0", lambda b: b[::-1]) as rep,
        aio.Req(rep.endpoint) as req,
    ):
        assert await req.request(b"abc", timeout=5) == b"cba"


async def test_sync_req_to_async_rep(tmp_path: Path) -> None:
    async with aio.Rep(f"unix:{tmp_path}/rr.sock", lambda b: b + b"!") as rep:

        def client() -> bytes:
            with sockwire.patterns.Req(rep.endpoint) as req:
                return req.request(b"hi", timeout=5)  # type: ignore[no-any-return]

        assert await asyncio.to_thread(client) == b"hi!"


async def test_request_timeout_keeps_link(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def handler(body: bytes) -> bytes:
        if body == b"slow":
            await gate.wait()
        return body

    async with aio.Rep(f"unix:{tmp_path}/rr.sock", handler) as rep, aio.Req(rep.endpoint) as req:
        with pytest.raises(TimeoutError):
            await req.request(b"slow", timeout=0.2)
        gate.set()
        assert await req.request(b"fast", timeout=5) == b"fast"
        await req.wait_for(lambda r: r.stats.late == 1, 5)


async def test_round_robin_over_pullers(tmp_path: Path) -> None:
    async with aio.Push(f"unix+seqpacket:{tmp_path}/w.sock") as push:
        workers = [aio.Pull(push.endpoint, hwm=10) for _ in range(2)]
        try:
            assert await push.wait_for(lambda p: p.ready_pullers == 2, 5)
            for n in range(4):
                await push.send(b"job %d" % n, timeout=5)
            got = [await w.recv(timeout=5) for w in workers for _ in range(2)]
            assert got == [b"job 0", b"job 2", b"job 1", b"job 3"]
        finally:
            for w in workers:
                await w.close()


async def test_push_send_timeout_covers_a_puller_that_stopped_reading(tmp_path: Path) -> None:
    """Credit granted, then the puller stops reading: send times out, it does not hang."""
    ep = f"unix:{tmp_path}/w.sock"
    async with aio.Push(ep) as push, aio.Pull(push.endpoint, hwm=1000) as pull:
        assert await push.wait_for(lambda p: p.ready_pullers == 1, 5)
        pull._supervisor.cancel()  # type: ignore[union-attr]  # the puller goes dark
        big = b"x" * 200_000

        async def flood() -> None:
            for _ in range(100):
                await push.send(big, timeout=0.5)

        with pytest.raises(TimeoutError):
            await flood()


async def test_a_full_subscriber_queue_drops_newest_and_counts_both_ends(tmp_path: Path) -> None:
    ep = f"unix:{tmp_path}/p.sock"
    async with aio.Pub(ep, hwm=2) as pub, aio.Sub(pub.endpoint, hwm=1) as sub:
        await sub.subscribe("t", timeout=5)
        for i in range(200):  # no await between: the subscriber's queue overflows
            await pub.publish("t", b"%d" % i)
        assert pub.stats.dropped_newest > 0
        got = [await sub.recv(timeout=5) for _ in range(pub.stats.queued)]
        await pub.publish("t", b"end")  # the gap before it tells the Sub what it missed
        assert await sub.recv(timeout=5) == ("t", b"end")
        assert len(got) + pub.stats.dropped == 200
        assert sub.stats.missed == pub.stats.dropped
        assert [int(m) for _, m in got] == sorted(int(m) for _, m in got)


async def test_a_silent_peer_is_declared_dead_and_the_req_reconnects(tmp_path: Path) -> None:
    """A Rep that greets, then goes silent (no heartbeats): the Req's link dies, it reconnects."""
    import socket
    import struct

    from sockwire.patterns import wire

    path = str(tmp_path / "silent.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(4)
    listener.setblocking(False)
    held: list[socket.socket] = []
    loop = asyncio.get_running_loop()
    try:
        live = aio.Liveness(interval=0.05, timeout=0.3)
        async with aio.Req(f"unix:{path}", liveness=live) as req:
            for _ in range(2):  # the first link, then the reconnected one
                conn, _ = await loop.sock_accept(listener)
                held.append(conn)
                hello = wire.Hello(wire.Role.REP, 50).encode()  # promises heartbeats
                await loop.sock_sendall(conn, struct.pack("!I", len(hello)) + hello)
            assert req.dead >= 1
            assert req.connects >= 2
    finally:
        for conn in held:
            conn.close()
        listener.close()


async def test_sync_pub_to_async_sub_and_async_push_to_sync_pull(tmp_path: Path) -> None:
    with sockwire.patterns.Pub(f"unix:{tmp_path}/p.sock") as pub:
        async with aio.Sub(pub.endpoint) as sub:
            await sub.subscribe("x.", timeout=5)
            pub.publish("x.1", b"from sync")
            assert await sub.recv(timeout=5) == ("x.1", b"from sync")
    async with aio.Push(f"unix:{tmp_path}/q.sock") as push:

        def pull_one() -> bytes:
            with sockwire.patterns.Pull(push.endpoint) as pull:
                return pull.recv(timeout=5)  # type: ignore[no-any-return]

        puller = asyncio.create_task(asyncio.to_thread(pull_one))
        await push.send(b"from async", timeout=5)
        assert await puller == b"from async"


async def test_patterns_over_authfile_and_tls(tmp_path: Path) -> None:
    from tests.tls_helpers import write_key

    key = write_key(tmp_path / "key")
    ep = f"tcp://127.0.0.1:0?authfile={key}"
    async with aio.Rep(ep, lambda b: b * 2, codec="pickle") as rep:
        port = sockwire.parse(rep.endpoint).port
        async with aio.Req(f"tcp://127.0.0.1:{port}?authfile={key}", codec="pickle") as req:
            assert await req.request([1, "a"], timeout=5) == [1, "a", 1, "a"]
