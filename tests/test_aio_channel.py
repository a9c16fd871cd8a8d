"""The asyncio Channel conformance: one set of tests over every transport, on both loops.

The transports of tests/test_channel.py (unix stream, tcp, seqpacket, unix
datagram, udp, each packet type with and without the sockwire header, and
pipe() of each type); every test runs on the default loop and on uvloop
(conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import sockwire
from sockwire import aio, dial, trace
from sockwire.aio.channel import READ_LIMIT, WRITE_LIMIT
from sockwire.channel import State
from sockwire.errors import (
    BadFrame,
    ClosedError,
    ConnectionLost,
    ConnectionRefused,
    FrameTooLarge,
    InvalidOperation,
    MessageTooLarge,
    TimeoutError,
)
from sockwire.sock import Socket

Pair = tuple[aio.Channel, aio.Channel]
pytestmark = pytest.mark.timeout(30)


async def _accepted(listen_ep: str, connect_ep: str, **kw: object) -> Pair:
    listener = dial.listen(listen_ep)
    try:
        if "?" not in connect_ep and listen_ep.startswith("tcp"):
            connect_ep = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        client = await aio.connect(connect_ep, **kw)  # type: ignore[arg-type]
        conn, _ = listener.accept()
    finally:
        listener.close()
    return client, aio.Channel.from_socket(conn, framing=client.framing, **kw)  # type: ignore[arg-type]


def _datagrams(family: int, addresses: tuple[object, object], framing: str | None) -> Pair:
    a = Socket(family, socket.SOCK_DGRAM)
    b = Socket(family, socket.SOCK_DGRAM)
    for sock in (a, b):  # UDP drops what does not fit: give the tests room
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    a.bind(addresses[0])  # type: ignore[arg-type]
    b.bind(addresses[1])  # type: ignore[arg-type]
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    return aio.Channel.from_socket(a, framing=framing), aio.Channel.from_socket(b, framing=framing)


async def _make(name: str, tmp: Path, **kw: object) -> Pair:
    """The pair of Channels of transport ``name``; ``-sockwire``: the sockwire packet header."""
    header = name.endswith("-sockwire")
    name = name.removesuffix("-sockwire")
    query = "?framing=sockwire" if header else ""
    framing = "sockwire" if header else None
    path = tmp / "s"
    if name == "unix":
        return await _accepted(f"unix:{path}", f"unix:{path}", **kw)
    if name == "unix-netstring":
        return await _accepted(f"unix:{path}", f"unix:{path}?framing=netstring", **kw)
    if name == "tcp":
        return await _accepted("tcp://127.0.0.1:0", "tcp", **kw)
    if name == "seqpacket":
        return await _accepted(f"unix+seqpacket:{path}", f"unix+seqpacket:{path}{query}", **kw)
    if name == "unix-dgram":
        return _datagrams(socket.AF_UNIX, (str(tmp / "a"), str(tmp / "b")), framing)
    if name == "udp":
        return _datagrams(socket.AF_INET, (("127.0.0.1", 0), ("127.0.0.1", 0)), framing)
    return aio.pipe(name.removeprefix("pipe-"), framing=framing, **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def pair_of(name: str, tmp: Path, **kw: object) -> AsyncIterator[Pair]:
    a, b = await _make(name, tmp, **kw)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


ALL = [
    "unix",
    "unix-netstring",
    "tcp",
    "seqpacket",
    "seqpacket-sockwire",
    "unix-dgram",
    "unix-dgram-sockwire",
    "udp",
    "udp-sockwire",
    "pipe-stream",
    "pipe-seqpacket",
    "pipe-seqpacket-sockwire",
    "pipe-dgram",
    "pipe-dgram-sockwire",
]
RELIABLE = [n for n in ALL if "dgram" not in n and not n.startswith("udp")]
ANY_SIZE = [n for n in RELIABLE if "seqpacket" not in n or n.endswith("-sockwire")]


@pytest.mark.parametrize("name", ALL)
async def test_messages_keep_their_boundaries_both_ways(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path) as (a, b):
        messages = [b"", b"one", b"", b"x" * 1000, b"\0\n,:" * 10, b""]
        for msg in messages:
            await a.send(msg)
        assert [await b.recv(timeout=10) for _ in messages] == messages
        await b.send_many(messages)
        await b.flush()
        assert [await a.recv(timeout=10) for _ in messages] == messages


@pytest.mark.parametrize("name", ALL)
async def test_many_small_messages_in_order(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path) as (a, b):
        count = 100 if a.kind != "stream" else 5000
        for i in range(count):
            await a.send(b"%d" % i)
        assert [await b.recv(timeout=10) for _ in range(count)] == [
            b"%d" % i for i in range(count)
        ]
        if a.kind == "dgram":
            assert b.stats.lost == (0 if b.framing == "sockwire" else None)


@pytest.mark.parametrize("name", ALL)
async def test_recv_times_out_and_the_channel_stays_usable(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path) as (a, b):
        with pytest.raises(TimeoutError):
            await b.recv(timeout=0.01)
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.01):
                await b.recv()
        await a.send(b"after")
        assert await b.recv(timeout=10) == b"after"
        assert b.state == State.OPEN


@pytest.mark.parametrize("name", ALL)
async def test_closed_channel_raises_closed_error(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path) as (a, _):
        await a.close()
        await a.close()
        assert a.closed
        with pytest.raises(ClosedError):
            await a.send(b"x")
        with pytest.raises(ClosedError):
            await a.recv(timeout=1)
        with pytest.raises(ClosedError):
            await a.flush()


@pytest.mark.parametrize("name", ["unix", "seqpacket", "pipe-dgram"])
async def test_json_codec(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path, codec="json") as (a, b):
        await a.send({"n": 1, "s": ["x", None]})
        assert await b.recv(timeout=10) == {"n": 1, "s": ["x", None]}
        async for msg in _take(b, 0):
            raise AssertionError(msg)


async def _take(ch: aio.Channel, count: int) -> AsyncIterator[object]:
    for _ in range(count):
        yield await ch.recv(timeout=5)


@pytest.mark.parametrize("name", ALL)
async def test_tasks_never_interleave_frames(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path) as (a, b):
        per_task = 50 if a.kind == "dgram" else 1000

        async def sender(tag: int) -> None:
            for i in range(per_task):
                await a.send(b"%d:%d" % (tag, i) + b"." * (i % 300))

        senders = asyncio.gather(*(sender(t) for t in range(4)))
        got = [await b.recv(timeout=10) for _ in range(4 * per_task)]
        await senders
        for tag in range(4):
            mine = [m for m in got if m.startswith(b"%d:" % tag)]
            assert [int(m.split(b":")[1].rstrip(b".")) for m in mine] == list(range(per_task))


@pytest.mark.parametrize("name", ANY_SIZE)
async def test_one_mebibyte_messages(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path) as (a, b):
        big = os.urandom(1 << 20)

        async def sender() -> None:
            await a.send(big)
            await a.send(b"tail")
            await a.send(big)
            await a.flush()

        task = asyncio.create_task(sender())
        assert await b.recv(timeout=20) == big
        assert await b.recv(timeout=20) == b"tail"
        assert await b.recv(timeout=20) == big
        await task


@pytest.mark.parametrize("name", RELIABLE)
async def test_peer_close_ends_iteration(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path) as (a, b):
        for msg in (b"1", b"", b"3"):
            await a.send(msg)
        await a.close()
        assert [m async for m in b] == [b"1", b"", b"3"]
        assert b.state == State.PEER_CLOSED
        with pytest.raises(ConnectionLost, match="peer closed"):
            await b.recv()


@pytest.mark.parametrize("name", RELIABLE)
async def test_send_to_a_closed_peer_is_connection_lost(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path) as (a, b):
        await b.close()

        async def flood() -> None:
            for _ in range(100):  # a stream may take the first writes into its buffer
                await a.send(b"x" * 70000 if a.kind == "stream" else b"x")
                await a.flush()

        with pytest.raises(ConnectionLost):
            await flood()
        assert a.state == State.BROKEN


@pytest.mark.parametrize("name", ["udp", "unix-dgram", "udp-sockwire", "unix-dgram-sockwire"])
async def test_datagram_size_limit_names_it(name: str, tmp_path: Path) -> None:
    async with pair_of(name, tmp_path) as (a, _):
        with pytest.raises(MessageTooLarge, match="at most"):
            await a.send(b"x" * (a.max_message + 1))


async def test_a_message_over_one_packet_names_the_sockwire_framing() -> None:
    a, b = aio.pipe("seqpacket")
    async with a, b:
        with pytest.raises(MessageTooLarge, match=r"\?framing=sockwire"):
            await a.send(b"x" * (a.max_message + 1))
        await a.send(b"x" * a.max_message)
        assert await b.recv(timeout=10) == b"x" * a.max_message
        assert a.state == State.OPEN


async def test_plain_packets_are_what_other_programs_send() -> None:
    for kind in (socket.SOCK_SEQPACKET, socket.SOCK_DGRAM):
        left, right = socket.socketpair(socket.AF_UNIX, kind)
        with left:
            async with aio.Channel.from_socket(right) as ch:
                left.send(b"from a plain socket")
                left.send(b"")
                assert await ch.recv(timeout=5) == b"from a plain socket"
                assert await ch.recv(timeout=5) == b""
                await ch.send(b"to a plain socket")
                await ch.flush()
                assert left.recv(100) == b"to a plain socket"
                assert ch.stats.lost is None


async def test_empty_seqpacket_messages_before_the_end_are_not_taken_for_it() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    async with aio.Channel.from_socket(right) as ch:
        for msg in (b"", b"x", b"", b""):
            left.send(msg)
        left.close()
        assert [m async for m in ch] == [b"", b"x", b"", b""]
        assert ch.state == State.PEER_CLOSED


async def test_unix_datagram_channel_holds_the_sender_back_without_loss() -> None:
    a, b = aio.pipe("dgram", framing="sockwire")
    count = 3000
    async with a, b:
        sender = asyncio.create_task(a.send_many(b"%d" % i for i in range(count)))
        # the receiver's queue fills: send waits (bounded), nothing is dropped
        got = [await b.recv(timeout=10) for _ in range(count)]
        await sender
        assert got == [b"%d" % i for i in range(count)]
        assert (b.stats.lost, b.stats.late) == (0, 0)


async def test_kernel_truncation_of_an_oversized_datagram_is_counted() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    async with aio.Channel.from_socket(right) as rx:
        with left:
            left.send(b"x" * (300 * 1024))  # over MAX_PACKET
            left.send(b"ok")
        assert await rx.recv(timeout=10) == b"ok"
        assert rx.stats.truncated == 1


async def test_foreign_packet_on_a_sockwire_seqpacket_breaks_it() -> None:
    a, b = aio.pipe("seqpacket", framing="sockwire")
    async with a, b:
        a._io.raw.send(b"plain")  # type: ignore[attr-defined]  # no sockwire header
        with pytest.raises(BadFrame, match="header byte"):
            await b.recv(timeout=10)
        assert b.state == State.BROKEN


async def test_framing_is_refused_on_message_sockets() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    right.close()
    with pytest.raises(InvalidOperation, match="framing"):
        aio.Channel.from_socket(left, framing="netstring")
    assert left.fileno() == -1


async def test_declared_length_over_max_size_closes_the_connection() -> None:
    left, right = socket.socketpair()
    with left:
        async with aio.Channel.from_socket(right, max_size=1 << 20) as ch:
            left.send(struct.pack("!I", (1 << 20) + 1))
            with pytest.raises(FrameTooLarge):
                await ch.recv(timeout=10)
            assert ch.state == State.BROKEN
            assert left.recv(10) == b""  # shut down: the peer sees the end at once


async def test_pipe_across_fork() -> None:
    a, b = aio.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh loop on its end
        code = 1
        try:
            a.abort()

            async def child() -> None:
                msg = await b.recv(timeout=10)
                await b.send(msg[::-1])
                await b.close()

            aio.run(child())
            code = 0
        finally:
            os._exit(code)
    b.abort()
    try:
        await a.send(b"olleh")
        assert await a.recv(timeout=10) == b"hello"
    finally:
        await a.close()
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


async def test_a_channel_made_under_a_trace_hook_shows_its_system_calls() -> None:
    events: list[trace.Event] = []
    trace.add_hook(events.append)
    try:
        a, b = aio.pipe()
        async with a, b:
            await a.send(b"traced")
            await a.flush()
            assert await b.recv(timeout=5) == b"traced"
    finally:
        trace.remove_hook(events.append)
    calls = {e.call for e in events}
    assert {"socketpair", "recv"} <= calls
    assert calls & {"send", "sendmsg"}


async def test_read_ahead_stops_at_the_read_limit() -> None:
    """A peer that sends faster than recv takes: the Channel stops reading at read_limit."""
    left, right = socket.socketpair()
    left.setblocking(False)
    with left:
        async with aio.Channel.from_socket(right) as ch:
            with pytest.raises(TimeoutError):
                await ch.recv(timeout=0.01)  # reading starts with the first use
            frame = struct.pack("!I", 1000) + b"x" * 1000
            for _ in range(20_000):  # until the Channel stops reading and the kernel fills
                try:
                    left.send(frame)
                except BlockingIOError:
                    if ch._paused:
                        break
                    await asyncio.sleep(0)  # one loop iteration: the reader runs
            assert ch._paused
            held = sum(len(m) for m in ch._pending)
            assert held <= READ_LIMIT + 256 * 1024 + 1004
            assert await ch.recv(timeout=5) == b"x" * 1000


async def test_send_waits_for_room_and_the_bound_holds() -> None:
    a, b = aio.pipe()
    async with a, b:
        big = b"y" * 100_000
        sent = 0

        async def fill() -> None:
            nonlocal sent
            for _ in range(100):  # the peer does not read: send waits, then times out
                await a.send(big, timeout=0.2)
                sent += 1

        with pytest.raises(TimeoutError, match="was not sent"):
            await fill()
        assert a.queued <= WRITE_LIMIT + len(big) + 64 * 1024
        assert a.state == State.OPEN
        received = [await b.recv(timeout=10) for _ in range(sent)]
        assert received == [big] * sent


async def test_sync_pipe_end_talks_to_an_async_end() -> None:
    left, right = socket.socketpair()
    sync_end = sockwire.Channel.from_socket(left)
    with sync_end:
        async with aio.Channel.from_socket(right) as async_end:
            sync_end.send(b"from sync")
            sync_end.flush()
            assert await async_end.recv(timeout=5) == b"from sync"
            await async_end.send(b"from async")
            await async_end.flush()
            assert await asyncio.to_thread(sync_end.recv, 5) == b"from async"


async def test_an_icmp_refusal_on_udp_is_reported_once_and_the_channel_goes_on() -> None:
    """A datagram to a port nobody holds: the next recv says so, then the channel works."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody there now
    async with aio.connect(f"udp://127.0.0.1:{port}") as ch:
        await ch.send(b"anyone?")
        with pytest.raises(ConnectionRefused):
            await ch.recv(timeout=5)
        assert ch.state == State.OPEN
        with pytest.raises(TimeoutError):
            await ch.recv(timeout=0.05)
