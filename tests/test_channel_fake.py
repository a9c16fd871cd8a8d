"""The Channel's sans-IO core and its blocking driver over a fake I/O seam.

The fake caps every send and recv at 1-64 bytes (a hostile kernel), so frame
reassembly is exercised at every possible cut. Full size (10,000 messages of
0-64 KiB plus 20 of 1 MiB) runs in ``make soak``; ``make test`` runs a slice.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence

import pytest

from sockwire.channel import FLUSH_AT, Channel, ChannelCore, State
from sockwire.errors import (
    BadFrame,
    ClosedError,
    ConnectionLost,
    FrameTooLarge,
    MessageTooLarge,
    TimeoutError,
)
from sockwire.framing import BIG, BytesLike

WAIT = 20.0  # a fake that waits this long is a hung test


class _Wire:
    """One direction of a fake stream: a bounded byte queue with EOF."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.buf = bytearray()
        self.capacity = capacity
        self.eof = False
        self.cond = threading.Condition()


class FakeStreamIO:
    """The I/O seam of a Channel, in memory, with every call capped at 1-``cap`` bytes."""

    buffers = False

    def __init__(self, inbound: _Wire, outbound: _Wire, seed: int, cap: int = 64) -> None:
        self.inbound = inbound
        self.outbound = outbound
        self.rng = random.Random(seed)
        self.cap = cap
        self.calls = 0

    def recv(self, size: int, waitall: bool) -> bytes:
        wire = self.inbound
        with wire.cond:
            if not wire.cond.wait_for(lambda: wire.buf or wire.eof, WAIT):
                raise AssertionError("fake recv waited too long")
            n = min(size, self.rng.randint(1, self.cap), len(wire.buf))
            data = bytes(wire.buf[:n])
            del wire.buf[:n]
            wire.cond.notify_all()
        self.calls += 1
        return data  # short even with waitall, as after a signal: the driver must cope

    def recv_packet(self, buf: memoryview) -> tuple[int, None]:
        raise NotImplementedError

    def send_all(self, buffers: Sequence[BytesLike]) -> None:
        wire = self.outbound
        for item in buffers:
            view = memoryview(item).cast("B")
            while view:
                with wire.cond:
                    if not wire.cond.wait_for(
                        lambda: len(wire.buf) < wire.capacity or wire.eof, WAIT
                    ):
                        raise AssertionError("fake send waited too long")
                    if wire.eof:
                        raise BrokenPipeError(32, "Broken pipe")
                    room = wire.capacity - len(wire.buf)
                    n = min(len(view), self.rng.randint(1, self.cap), room)
                    wire.buf += view[:n]
                    view = view[n:]
                    wire.cond.notify_all()
                self.calls += 1

    def write(self, buffers: Sequence[BytesLike], deadline: float | None) -> int:
        """send_all until ``deadline``: the bytes the bounded wire took."""
        wire = self.outbound
        total = 0
        for item in buffers:
            view = memoryview(item).cast("B")
            while view:
                with wire.cond:
                    left = None if deadline is None else deadline - time.monotonic()
                    if not wire.cond.wait_for(
                        lambda: len(wire.buf) < wire.capacity or wire.eof, left
                    ):
                        return total
                    if wire.eof:
                        raise BrokenPipeError(32, "Broken pipe")
                    n = min(
                        len(view), self.rng.randint(1, self.cap), wire.capacity - len(wire.buf)
                    )
                    wire.buf += view[:n]
                    view = view[n:]
                    total += n
                    wire.cond.notify_all()
        return total

    def send_packet(self, buffers: Sequence[BytesLike], deadline: float | None = None) -> bool:
        raise NotImplementedError

    def wait(self, readable: bool, timeout: float | None) -> bool:
        wire = self.inbound
        with wire.cond:
            return bool(wire.cond.wait_for(lambda: wire.buf or wire.eof, timeout))

    def shutdown(self, how: int) -> None:
        self.close()

    def close(self) -> None:
        for wire in (self.outbound, self.inbound):
            with wire.cond:
                wire.eof = True
                wire.cond.notify_all()


def fake_pair(seed: int = 0, cap: int = 64) -> tuple[Channel, Channel]:
    ab, ba = _Wire(), _Wire()
    left = Channel(FakeStreamIO(ba, ab, seed, cap), label="fake-a")
    right = Channel(FakeStreamIO(ab, ba, seed + 1, cap), label="fake-b")
    return left, right


def _sizes(rng: random.Random, count: int, big: int) -> list[int]:
    sizes = [
        rng.randrange(1024) if rng.random() < 0.9 else rng.randrange(65536) for _ in range(count)
    ]
    for _ in range(big):
        sizes.insert(rng.randrange(len(sizes) + 1), 1 << 20)
    return sizes


def _capped_run(count: int, big: int) -> None:
    rng = random.Random(count)
    sizes = _sizes(rng, count, big)
    assert sum(sizes) < 64 << 20
    messages = [rng.randbytes(n) for n in sizes]
    a, b = fake_pair(seed=count)
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            for msg in messages:
                a.send(msg)
            a.flush()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        for i, msg in enumerate(messages):
            got = b.recv()
            assert got == msg, f"message {i} of {len(msg)} bytes differs"
    finally:
        thread.join()
        a.close()
        b.close()
    assert not errors


@pytest.mark.timeout(120)
def test_capped_io_is_byte_identical() -> None:
    _capped_run(300, 1)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_capped_io_is_byte_identical_full_size() -> None:
    _capped_run(10_000, 20)


def test_recv_timeout_on_the_fake_then_usable() -> None:
    a, b = fake_pair()
    with a, b:
        with pytest.raises(TimeoutError):
            b.recv(timeout=0.01)
        a.send(b"late")
        a.flush()
        assert b.recv(timeout=WAIT) == b"late"


def test_eof_mid_frame_through_the_fake_delivers_no_partial_message() -> None:
    a, b = fake_pair()
    a.send(b"whole")
    a.flush()
    a._io.send_all([b"\0\0\0\x10part"])  # header of 16, 4 bytes of it
    a.close()
    with b:
        assert b.recv() == b"whole"
        with pytest.raises(ConnectionLost, match="middle of a message"):
            b.recv()
        assert b.state == State.BROKEN
        with pytest.raises(ConnectionLost):
            b.recv()


# ---------------------------------------------------------------- the core alone


def test_core_state_table() -> None:
    core = ChannelCore("stream")
    assert core.state is State.OPEN
    assert core.queue(b"x") is None  # buffered
    core.receive(b"\0\0\0\x01y")
    assert list(core.pending) == [b"y"]
    core.receive(b"")  # EOF at a boundary
    assert core.state is State.PEER_CLOSED
    core.check("send")  # half-close: sending is still allowed
    with pytest.raises(ConnectionLost, match="peer closed"):
        core.check("recv")
    core.closed()
    assert core.state is State.CLOSED
    with pytest.raises(ClosedError):
        core.queue(b"x")
    with pytest.raises(ClosedError):
        core.check("recv")


def test_core_broken_keeps_its_error() -> None:
    core = ChannelCore("stream", max_size=10)
    with pytest.raises(FrameTooLarge):
        core.receive(b"\0\0\0\xff")
    assert core.state is State.BROKEN
    with pytest.raises(FrameTooLarge):
        core.check("recv")
    with pytest.raises(FrameTooLarge):
        core.queue(b"x")


def test_core_eof_mid_frame_is_connection_lost_caused_by_bad_frame() -> None:
    core = ChannelCore("stream")
    core.receive(b"\0\0\0\x05ab")
    with pytest.raises(ConnectionLost) as info:
        core.receive(b"")
    assert isinstance(info.value.__cause__, BadFrame)
    assert not core.pending


def test_core_coalesces_until_flush_at_and_sends_big_without_copy() -> None:
    core = ChannelCore("stream")
    msg = b"m" * 100
    writes = None
    count = 0
    while writes is None:
        writes = core.queue(msg)
        count += 1
    assert count == -(-FLUSH_AT // 104)
    ((taken,),) = writes
    assert taken == (b"\0\0\0\x64" + msg) * count
    assert not core.out
    big = b"B" * BIG
    (write,) = core.queue(big)  # type: ignore[misc]
    assert write[-1] is big


def test_core_seqpacket_fragments_and_reassembles() -> None:
    tx = ChannelCore("seqpacket", framing="sockwire", packet_limit=1000)
    rx = ChannelCore("seqpacket", framing="sockwire")
    msg = bytes(range(256)) * 20
    writes = tx.queue(msg)
    assert writes is not None
    assert len(writes) == 6
    assert [w[0] for w in writes] == [b"\x11"] * 5 + [b"\x10"]
    buf = memoryview(bytearray(1 << 18))
    for write in writes:
        packet = b"".join(bytes(part) for part in write)
        buf[: len(packet)] = packet
        rx.receive_packet(buf, len(packet), None)
    assert list(rx.pending) == [msg]


def test_core_seqpacket_rejects_foreign_packets() -> None:
    rx = ChannelCore("seqpacket", framing="sockwire")
    buf = memoryview(bytearray(16))
    buf[0] = 0x20
    with pytest.raises(BadFrame, match="0x20"):
        rx.receive_packet(buf, 3, None)
    assert rx.state is State.BROKEN


def test_core_datagram_counts_loss_lateness_truncation_and_garbage() -> None:
    tx = ChannelCore("dgram", framing="sockwire")
    rx = ChannelCore("dgram", framing="sockwire")
    packets = []
    for i in range(10):
        (write,) = tx.queue(b"%d" % i)  # type: ignore[misc]
        packets.append(b"".join(bytes(p) for p in write))
    buf = memoryview(bytearray(64))

    def deliver(packet: bytes, sender: str = "s") -> None:
        buf[: len(packet)] = packet
        rx.receive_packet(buf, len(packet), sender)

    for i in (0, 1, 4, 5, 2, 9):
        deliver(packets[i])
    assert rx.stats.lost == 2 + 3 - 1  # 2,3 then 6,7,8 skipped; 2 arrived late
    assert rx.stats.late == 1
    deliver(packets[3], "other")  # a new sender starts its own count
    assert rx.stats.lost == 4
    deliver(b"junk")
    rx.receive_packet(buf, 100, "s")  # MSG_TRUNC: real size over the buffer
    assert (rx.stats.invalid, rx.stats.truncated) == (1, 1)
    assert list(rx.pending) == [b"0", b"1", b"4", b"5", b"2", b"9", b"3"]
    with pytest.raises(MessageTooLarge):
        tx.queue(b"x" * (1 << 20))
