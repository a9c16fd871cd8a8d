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
