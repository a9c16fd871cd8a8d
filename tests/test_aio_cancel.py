"""Cancellation at every await point loses, splits or duplicates no message.

Each test cancels an operation after k loop iterations for k = 0, 1, 2, ...
(``task.cancel()``) or runs it under ``asyncio.timeout``, over and over, and
then checks the stream of messages that came out: every message exactly
once, in order, none cut (a cut frame would break the next read). The
points: Channel.recv (waiting for a message), Channel.send (waiting for
room), Channel.flush, Channel.close, the connect and the handshakes, and the
patterns' request, recv, send, publish and subscribe.
"""

from __future__ import annotations

import asyncio
import builtins
import random
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from sockwire import aio
from sockwire.channel import State
from sockwire.errors import ClosedError, TimeoutError
from tests.tls_helpers import write_key

ROUNDS = 60
pytestmark = pytest.mark.timeout(30)


async def _cancel_after(coro: Awaitable[Any], turns: int) -> tuple[bool, Any]:
    """Run ``coro`` as a task, cancel it after ``turns`` loop iterations; (finished, result)."""
    task = asyncio.ensure_future(coro)
    for _ in range(turns):
        if task.done():
            break
        await asyncio.sleep(0)  # one loop iteration, not a pause
    task.cancel()
    try:
        return True, await task
    except asyncio.CancelledError:
        return False, None


@pytest.mark.parametrize("kind", ["stream", "seqpacket", "dgram"])
async def test_cancelled_recv_loses_nothing(kind: str) -> None:
    a, b = aio.pipe(kind)
    count = 300
    rng = random.Random(1)
    async with a, b:

        async def produce() -> None:
            for i in range(count):
                await a.send(b"%d" % i)
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        producer = asyncio.create_task(produce())
        got: list[bytes] = []
        turns = 0
        while len(got) < count:
            finished, msg = await _cancel_after(b.recv(timeout=10), turns % 4)
            turns += 1
            if finished:
                got.append(msg)
        await producer
        assert got == [b"%d" % i for i in range(count)]
        assert b.state == State.OPEN


async def test_recv_under_asyncio_timeout_loses_nothing() -> None:
    a, b = aio.pipe()
    async with a, b:
        got: list[bytes] = []
        sent = 0
        for i in range(300):
            if i % 3 == 0:
                for _ in range(1 + i % 2):  # sometimes two at once
                    await a.send(b"%d" % sent)
                    sent += 1
            try:
                async with asyncio.timeout(0 if i % 2 else 0.001):
                    got.append(await b.recv())
            except builtins.TimeoutError:
                pass
        while len(got) < sent:
            got.append(await b.recv(timeout=5))
        assert got == [b"%d" % i for i in range(sent)]
        with pytest.raises(TimeoutError):
            await b.recv(timeout=0.01)


@pytest.mark.parametrize("kind", ["stream", "seqpacket", "dgram"])
async def test_cancelled_send_queues_all_or_nothing(kind: str) -> None:
    """A send cancelled while it waits for room sent nothing; one that returned sent all."""
    a, b = aio.pipe(kind)
    a.write_limit = 4096  # room runs out quickly: sends wait
    size = 3000 if kind != "stream" else 50_000
    async with a, b:
        got: list[bytes] = []

        async def slow_reader() -> None:
            while True:
                got.append(await b.recv())
                for _ in range(3):
                    await asyncio.sleep(0)

        reader = asyncio.create_task(slow_reader())
        sent: list[int] = []
        for i in range(ROUNDS):
            finished, _ = await _cancel_after(a.send(bytes([i]) * size), i % 4)
            if finished:
                sent.append(i)
        await a.flush(timeout=10)
        for _ in range(100_000):  # bounded: until the reader has them all
            if len(got) >= len(sent):
                break
            await asyncio.sleep(0)
        reader.cancel()
        await asyncio.wait({reader})
        assert 0 < len(sent) < ROUNDS  # some were cancelled while waiting, some went
        assert [m[0] for m in got] == sent  # every sent one, once, in order; no other
        assert all(len(m) == size for m in got)  # none cut
        assert a.state == State.OPEN


async def test_send_timeout_leaves_nothing_half_written() -> None:
    a, b = aio.pipe()
    a.write_limit = 1000
    async with a, b:
        outcomes = []
        for i in range(30):
            try:
                async with asyncio.timeout(0):
                    await a.send(b"%03d" % i + b"z" * 5000)
                outcomes.append(i)
            except builtins.TimeoutError:
                pass
        received = []
        for _ in outcomes:
            received.append(await b.recv(timeout=10))
        assert [int(m[:3]) for m in received] == outcomes
        with pytest.raises(TimeoutError):
            await b.recv(timeout=0.05)


async def test_cancelled_flush_keeps_the_queue_in_order() -> None:
    a, b = aio.pipe()
    async with a, b:
        for i in range(12):  # 240 kB: queued without waiting, more than the socket takes
            await a.send(b"%d" % i + b"." * 20_000)
        for turns in range(3):
            finished, _ = await _cancel_after(a.flush(), turns)
            assert not finished
        got = [await b.recv(timeout=10) for _ in range(12)]
        assert [int(m.rstrip(b".")) for m in got] == list(range(12))
        await a.flush(timeout=5)
        assert not a.queued


async def test_cancelled_close_still_closes() -> None:
    a, b = aio.pipe()
    async with b:
        for _ in range(4):  # 240 kB, queued at once; more than the socket takes
            await a.send(b"x" * 60_000)
        await _cancel_after(a.close(), 1)
        assert a.closed  # cancelled in its flush, it closed the socket anyway
        with pytest.raises(ClosedError):
            await a.send(b"y")


async def test_cancelled_connect_and_handshake_leak_nothing(tmp_path: Path) -> None:
    """A connect cancelled at any point: no fd left, and the server is fine."""
    key = write_key(tmp_path / "key")

    async def echo(ch: aio.Channel, peer: object) -> None:
        async for msg in ch:
            await ch.send(msg)

    async with aio.serve(f"tcp://127.0.0.1:0?authfile={key}", echo) as server:
        for turns in range(12):
            finished, ch = await _cancel_after(aio.connect(server.endpoint), turns)
            if finished:
                await ch.close()
        async with aio.connect(server.endpoint) as ch:
            await ch.send(b"after")
            assert await ch.recv(timeout=5) == b"after"


async def _cancelled_at_every_turn(
    op: Callable[[], Awaitable[Any]], turns: int = 6
) -> list[tuple[bool, Any]]:
    return [await _cancel_after(op(), k) for k in range(turns)]


async def test_cancelled_requests_leave_the_req_usable(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def handler(body: bytes) -> bytes:
        if body == b"slow":
            await gate.wait()
        return body

    async with aio.Rep(f"unix:{tmp_path}/r.sock", handler) as rep, aio.Req(rep.endpoint) as req:
        await req.request(b"warm", timeout=5)
        outcomes = await _cancelled_at_every_turn(lambda: req.request(b"slow", timeout=5))
        assert not any(done for done, _ in outcomes)
        gate.set()
        assert await req.request(b"fast", timeout=5) == b"fast"
        assert req.core.pending == set()


async def test_cancelled_pull_recv_loses_no_item(tmp_path: Path) -> None:
    async with aio.Push(f"unix:{tmp_path}/p.sock") as push, aio.Pull(push.endpoint, hwm=8) as pull:
        count = 100

        async def produce() -> None:
            for i in range(count):
                await push.send(b"%d" % i, timeout=10)

        producer = asyncio.create_task(produce())
        got: list[bytes] = []
        turns = 0
        while len(got) < count:
            finished, item = await _cancel_after(pull.recv(timeout=10), turns % 5)
            turns += 1
            if finished:
                got.append(item)
        await producer
        assert got == [b"%d" % i for i in range(count)]


async def test_cancelled_push_send_keeps_the_credit(tmp_path: Path) -> None:
    async with aio.Push(f"unix:{tmp_path}/p.sock") as push, aio.Pull(push.endpoint, hwm=2) as pull:
        await push.send(b"first", timeout=5)
        assert await pull.recv(timeout=5) == b"first"
        await push.wait_for(lambda p: p.ready_pullers == 1, 5)
        sent = []
        for i in range(20):
            finished, _ = await _cancel_after(push.send(b"%d" % i, timeout=5), i % 3)
            if finished:
                sent.append(b"%d" % i)
        got = [await pull.recv(timeout=5) for _ in sent]
        assert got == sent
        await push.send(b"last", timeout=5)  # the window is whole again
        assert await pull.recv(timeout=5) == b"last"


async def test_cancelled_sub_recv_loses_nothing(tmp_path: Path) -> None:
    async with (
        aio.Pub(f"unix:{tmp_path}/s.sock", policy="block") as pub,
        aio.Sub(pub.endpoint, hwm=4) as sub,
    ):
        await sub.subscribe("t", timeout=5)
        count = 80

        async def produce() -> None:
            for i in range(count):
                await pub.publish("t", b"%d" % i, timeout=10)

        producer = asyncio.create_task(produce())
        got: list[bytes] = []
        turns = 0
        while len(got) < count:
            finished, item = await _cancel_after(sub.recv(timeout=10), turns % 4)
            turns += 1
            if finished:
                got.append(item[1])
        await producer
        assert got == [b"%d" % i for i in range(count)]
        assert sub.stats.missed == 0


async def test_cancelled_socket_calls_make_no_partial_call() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with left:
        async with aio.Socket.wrap(right) as sock:
            for turns in range(4):
                finished, _ = await _cancel_after(sock.recv(100), turns)
                assert not finished
            left.send(b"one")
            assert await sock.recv(100) == b"one"


async def test_cancelled_publish_delivers_whole_copies_only(tmp_path: Path) -> None:
    """A publish waiting for room (block policy) and cancelled: each subscriber has the
    message whole or not at all, and no one counts a gap for it."""
    ep = f"unix:{tmp_path}/p.sock"
    async with aio.Pub(ep, hwm=1, policy="block") as pub, aio.Sub(pub.endpoint, hwm=1) as sub:
        await sub.subscribe("t", timeout=5)
        published = 0
        for i in range(30):
            finished, _ = await _cancel_after(pub.publish("t", b"%d" % i), i % 3)
            published += finished
        got = []
        while True:
            try:
                got.append((await sub.recv(timeout=0.2))[1])
            except TimeoutError:
                break
        numbers = [int(m) for m in got]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
        assert len(got) >= published  # every finished publish arrived (a cancelled one may too)
        assert sub.stats.missed == 0


async def test_cancelled_subscribe_stays_wanted(tmp_path: Path) -> None:
    async with aio.Pub(f"unix:{tmp_path}/p.sock") as pub, aio.Sub(pub.endpoint) as sub:
        await sub.wait_for(lambda s: s.core.connected, 5)
        task = asyncio.create_task(sub.subscribe("news.", timeout=5))
        await asyncio.sleep(0)  # it sent SUBSCRIBE and waits for READY
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await sub.wait_for(lambda s: b"news." in s.core.in_force, 5)
        await pub.publish("news.today", b"still subscribed")
        assert await sub.recv(timeout=5) == ("news.today", b"still subscribed")


async def test_cancelled_accept_and_connect_leave_the_sockets_usable(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with aio.Socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(4)
        for turns in range(3):
            finished, _ = await _cancel_after(listener.accept(), turns)
            assert not finished
        with aio.Socket(socket.AF_UNIX) as client:
            await client.connect(path)
            conn, _ = await listener.accept()
            with conn:
                await client.sendall(b"after the cancelled accepts")
                assert await conn.recv(100) == b"after the cancelled accepts"
