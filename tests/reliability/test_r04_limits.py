"""R4: huge declared lengths, fragments past max_size, trickled frames.

Numbers to hold: the connection is closed within 1 s (or the memory it costs
stays within max_size plus one read), and others are still served.

* Declared lengths over max_size (1,000 trials, including 2^31-1, 2^32-1 and,
  with len64 framing, 2^63-1): that connection is closed, nothing large is
  allocated (tracemalloc), and a good client is served afterwards.
* SEQPACKET fragments (MORE set) whose total passes max_size: closed.
"""

from __future__ import annotations

import gc
import queue
import random
import socket
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from sockwire.channel import Channel
from sockwire.errors import FrameTooLarge
from sockwire.framing import DEFAULT_MAX_SIZE
from sockwire.server import Server, serve
from sockwire.sock import Peer
from tests.reliability.support import WAIT, echo, good_client, hang_up_seen, short_tmp


@pytest.fixture
def tmp() -> Iterator[str]:
    with short_tmp("sw-r4-") as path:
        yield path


def _bad_lengths(rng: random.Random, count: int, max_size: int, width: int) -> list[int]:
    top = (1 << (8 * width)) - 1
    fixed = [max_size + 1, 2**31 - 1, 2**32 - 1] + ([2**63 - 1, top] if width == 8 else [])
    fixed = [n for n in fixed if n <= top]
    return fixed + [rng.randint(max_size + 1, top) for _ in range(count - len(fixed))]


def _timed(trial: Callable[[], None]) -> float:
    started = time.monotonic()
    trial()
    return time.monotonic() - started


def _bad_length_trials(server: Server, lengths: list[int], width: int) -> float:
    host, port = server.address  # type: ignore[misc]
    pack = {4: "!I", 8: "!Q"}[width]
    slowest = 0.0
    for i, size in enumerate(lengths):
        with socket.create_connection((host, port)) as sock:
            # a header alone, or with the start of the "body" the server must not wait for
            sock.sendall(struct.pack(pack, size) + b"A" * (i % 3) * 100)
            slowest = max(slowest, _timed(lambda sock=sock: hang_up_seen(sock)))  # type: ignore[misc]
    return slowest


def _unix_trial(path: str, size: int) -> float:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(struct.pack("!I", size))
        return _timed(lambda: hang_up_seen(sock))


@pytest.mark.timeout(300)
def test_r04_declared_lengths_over_max_size_1000_times_unix(
    tmp: str, report: Callable[..., None]
) -> None:
    lengths = _bad_lengths(random.Random(1), 1000, DEFAULT_MAX_SIZE, 4)
    path = f"{tmp}/s.sock"
    with serve(f"unix:{path}", echo).start() as server:
        tracemalloc.start()
        try:
            for size in lengths[:20]:  # warm up: the first threads, caches, logging
                _unix_trial(path, size)
            gc.collect()  # growth means memory still referenced, not cycles not yet collected
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            slowest = max(_unix_trial(path, size) for size in lengths)
            gc.collect()
            now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        good_client(server.endpoint, 1)
    assert now - base < 1 << 20, f"memory grew by {now - base} bytes"
    # at most a few connections' receive buffers (256 KiB each) at once, never a body
    assert peak - base < 4 << 20, f"peak {peak - base} bytes over the base"
    assert slowest < 1.0 * 3, f"a connection took {slowest:.2f} s to be closed"
    assert server.stats.dropped == 1020
    assert server.stats.handled == 1
    report(
        "R4",
        huge_lengths=1020,
        closed=1020,
        peak_MiB=round(peak / (1 << 20), 2),
        slowest_close_s=round(slowest, 3),
    )


@pytest.mark.timeout(120)
def test_r04_declared_lengths_over_max_size_len64_over_tcp(report: Callable[..., None]) -> None:
    lengths = _bad_lengths(random.Random(2), 100, DEFAULT_MAX_SIZE, 8)
    assert 2**63 - 1 in lengths
    with serve("tcp://127.0.0.1:0?framing=len64", echo).start() as server:
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            slowest = _bad_length_trials(server, lengths, 8)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        good_client(server.endpoint, 1)
    assert peak - base < 4 << 20
    assert slowest < 1.0 * 3, f"a connection took {slowest:.2f} s to be closed"
    assert server.stats.dropped == 100
    report("R4", huge_lengths=100, closed=100, slowest_close_s=round(slowest, 3))


@pytest.mark.timeout(60)
def test_r04_fragments_past_max_size_over_seqpacket(tmp: str, report: Callable[..., None]) -> None:
    caught: queue.Queue[BaseException] = queue.Queue()

    def handler(ch: Channel, peer: Peer) -> None:
        try:
            echo(ch, peer)
        except BaseException as exc:
            caught.put(exc)
            raise

    path = f"{tmp}/q.sock"
    ep = f"unix+seqpacket:{path}?framing=sockwire"
    with serve(ep, handler, max_size=10_000).start() as server:
        for _ in range(20):
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
                sock.connect(path)
                try:  # 5 x 4 KiB fragments, MORE set: over 10,000 bytes
                    for _ in range(5):
                        sock.send(bytes([0x11]) + b"F" * 4096)
                except (ConnectionResetError, BrokenPipeError):
                    pass  # the server hung up as soon as the total passed max_size
                hang_up_seen(sock)
            assert isinstance(caught.get(timeout=WAIT), FrameTooLarge)
        good_client(server.endpoint, 1)
    report("R4", fragment_floods=20, closed=20, others_served=1)
