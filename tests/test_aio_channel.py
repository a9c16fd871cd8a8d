"""The asyncio Channel over every transport, on both loops (see conftest.py)."""

from __future__ import annotations

import asyncio

import pytest

from sockwire import aio


async def test_pipe_round_trip() -> None:
    a, b = aio.pipe()
    async with a, b:
        await a.send(b"hello")
        assert await b.recv(timeout=5) == b"hello"
        await b.send(b"world")
        assert await a.recv(timeout=5) == b"world"


@pytest.mark.parametrize("kind", ["stream", "seqpacket", "dgram"])
async def test_pipe_kinds(kind: str) -> None:
    a, b = aio.pipe(kind)
    async with a, b:
        for i in range(100):
            await a.send(b"m%d" % i)
        await a.send(b"")
        got = [await b.recv(timeout=5) for _ in range(101)]
        assert got == [b"m%d" % i for i in range(100)] + [b""]
        assert asyncio.get_running_loop() is not None


async def test_serve_and_connect_unix_seqpacket(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def shout(channel: aio.Channel, peer: object) -> None:
        async for msg in channel:
            await channel.send(msg.upper())

    ep = f"unix+seqpacket:{tmp_path}/s.sock?mode=0600"
    async with aio.serve(ep, shout) as server, aio.connect(server.endpoint) as ch:
        await ch.send(b"hello")
        await ch.send(b"world")
        assert [await ch.recv(timeout=5), await ch.recv(timeout=5)] == [b"HELLO", b"WORLD"]
    assert not (tmp_path / "s.sock").exists()


@pytest.mark.parametrize("scheme", ["unix", "tcp"])
async def test_serve_and_connect_streams(tmp_path, scheme) -> None:  # type: ignore[no-untyped-def]
    async def echo(channel: aio.Channel, peer: object) -> None:
        async for msg in channel:
            await channel.send(msg)

    ep = f"unix:{tmp_path}/s.sock" if scheme == "unix" else "tcp://127.0.0.1:0"
    async with aio.serve(ep, echo) as server, aio.connect(server.endpoint) as ch:
        for i in range(1000):
            await ch.send(b"x%d" % i)
        for i in range(1000):
            assert await ch.recv(timeout=5) == b"x%d" % i
