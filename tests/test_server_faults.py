"""A running server against bad input and dying peers (the issue's fault tests).

* Declared lengths over max_size (1,000 trials, including 2^31-1, 2^32-1 and,
  with len64 framing, 2^63-1): that connection is closed, nothing large is
  allocated (tracemalloc), and a good client is served afterwards.
* Peers killed mid-message (real processes, SIGKILL at random cut points):
  no hang, no partial message reaches the handler, no fd leaks. ``make
  test`` runs a few dozen per transport, ``make soak`` the full 1,000.
* Pickle bytes sent to a default server never execute.
* EMFILE on accept is backed off, not spun on (a child with a lowered
  RLIMIT_NOFILE).
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import queue
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from sockwire import dial
from sockwire.channel import Channel, ChannelCore
from sockwire.client import connect
from sockwire.errors import ConnectionLost, FrameTooLarge, ProtocolError
from sockwire.framing import BIG, DEFAULT_MAX_SIZE, LengthPrefixEncoder
from sockwire.server import Server, serve
from sockwire.sock import Peer

WAIT = 10.0


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sw-fault-") as path:
        yield path


def echo(ch: Channel, peer: Peer) -> None:
    for msg in ch:
        ch.send(msg)


def _hang_up_seen(sock: socket.socket) -> None:
    """Read until the server closes (EOF or reset); bounded by the socket timeout."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass


def _bad_lengths(rng: random.Random, count: int, max_size: int, width: int) -> list[int]:
    top = (1 << (8 * width)) - 1
    fixed = [max_size + 1, 2**31 - 1, 2**32 - 1] + ([2**63 - 1, top] if width == 8 else [])
    fixed = [n for n in fixed if n <= top]
    return fixed + [rng.randint(max_size + 1, top) for _ in range(count - len(fixed))]


def _bad_length_trials(server: Server, lengths: list[int], width: int) -> None:
    host, port = server.address  # type: ignore[misc]
    pack = {4: "!I", 8: "!Q"}[width]
    for i, size in enumerate(lengths):
        with socket.create_connection((host, port)) as sock:
            # a header alone, or with the start of the "body" the server must not wait for
            sock.sendall(struct.pack(pack, size) + b"A" * (i % 3) * 100)
            _hang_up_seen(sock)


def _good_client_works(server: Server) -> None:
    with connect(server.endpoint) as client:
        client.send(b"still serving")
        assert client.recv(timeout=WAIT) == b"still serving"


@pytest.mark.timeout(300)
def test_declared_lengths_over_max_size_1000_times_unix(tmp: str) -> None:
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
            for size in lengths:
                _unix_trial(path, size)
            gc.collect()
            now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        _good_client_works(server)
    assert now - base < 1 << 20, f"memory grew by {now - base} bytes"
    # at most a few connections' receive buffers (256 KiB each) at once, never a body
    assert peak - base < 4 << 20, f"peak {peak - base} bytes over the base"
    assert server.stats.dropped == 1020
    assert server.stats.handled == 1


def _unix_trial(path: str, size: int) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(struct.pack("!I", size))
        _hang_up_seen(sock)


@pytest.mark.timeout(120)
def test_declared_lengths_over_max_size_len64_over_tcp() -> None:
    lengths = _bad_lengths(random.Random(2), 100, DEFAULT_MAX_SIZE, 8)
    assert 2**63 - 1 in lengths
    with serve("tcp://127.0.0.1:0?framing=len64", echo).start() as server:
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            _bad_length_trials(server, lengths, 8)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        _good_client_works(server)
    assert peak - base < 4 << 20
    assert server.stats.dropped == 100


@pytest.mark.timeout(60)
def test_fragments_past_max_size_over_seqpacket(tmp: str) -> None:
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
                _hang_up_seen(sock)
            assert isinstance(caught.get(timeout=WAIT), FrameTooLarge)
        _good_client_works(server)


# --------------------------------------------------------------------------
# Peers killed mid-message
# --------------------------------------------------------------------------


def _messages(rng: random.Random, trial: int) -> list[bytes]:
    sizes = [rng.choice((0, 1, 5, 100, 3000, BIG, BIG * 3 + 1)) for _ in range(rng.randint(1, 6))]
    return [f"{trial}:{i}:".encode() + bytes([65 + i % 26]) * n for i, n in enumerate(sizes)]


def _plan(transport: str, rng: random.Random, trial: int) -> tuple[list[bytes], list[bytes]]:
    """(what the dying peer writes, the messages that must reach the handler whole)."""
    messages = _messages(rng, trial)
    if transport == "seqpacket":
        core = ChannelCore(
            "seqpacket", framing="sockwire", packet_limit=rng.choice((1000, 70000, 200000))
        )
        packets: list[bytes] = []
        last_of: list[int] = []
        for msg in messages:
            for write in core.queue(msg) or []:
                packets.append(b"".join(bytes(part) for part in write))
            last_of.append(len(packets))
        cut = rng.randrange(len(packets) + 1)
        return packets[:cut], [m for m, last in zip(messages, last_of, strict=True) if last <= cut]
    enc = LengthPrefixEncoder()
    ends, wire = [], b""
    for msg in messages:
        wire += enc.head(msg)[0] + msg
        ends.append(len(wire))
    cut = rng.randrange(len(wire) + 1)
    return [wire[:cut]], [m for m, end in zip(messages, ends, strict=True) if end <= cut]


def _kill_trials(transport: str, tmp: str, trials: int) -> None:
    results: queue.Queue[tuple[list[bytes], BaseException | None]] = queue.Queue()

    def handler(ch: Channel, peer: Peer) -> None:
        got: list[bytes] = []
        try:
            for msg in ch:
                got.append(msg)
        except BaseException as exc:
            results.put((got, exc))
            raise
        results.put((got, None))

    ep = {
        "unix": f"unix:{tmp}/s.sock",
        "seqpacket": f"unix+seqpacket:{tmp}/q.sock?framing=sockwire",
        "tcp": "tcp://127.0.0.1:0",
    }[transport]
    rng = random.Random(f"server-kill-{transport}-{trials}")
    with serve(ep, handler, frame_deadline=None).start() as server:
        for trial in range(trials):
            chunks, whole = _plan(transport, rng, trial)
            sock = dial.connect(server.endpoint)
            pid = os.fork()
            if pid == 0:  # the peer: write a prefix of real wire bytes, then die
                try:
                    for chunk in chunks:
                        if transport == "seqpacket":
                            sock.raw.send(chunk)
                        else:
                            sock.raw.sendall(chunk)
                finally:
                    os.kill(os.getpid(), signal.SIGKILL)
            sock.close()  # the child holds the only other copy
            got, error = results.get(timeout=WAIT)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            assert got == whole, f"trial {trial}: a partial or missing message"
            assert error is None or isinstance(error, ConnectionLost)
        with connect(server.endpoint) as client:
            client.send(b"still serving")
        assert results.get(timeout=WAIT) == ([b"still serving"], None)
    assert server.stats.active == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["unix", "seqpacket", "tcp"])
def test_peer_killed_mid_message_against_a_server(transport: str, tmp: str) -> None:
    _kill_trials(transport, tmp, 25)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("transport", ["unix", "seqpacket", "tcp"])
def test_peer_killed_mid_message_against_a_server_1000_times(transport: str, tmp: str) -> None:
    _kill_trials(transport, tmp, 1000)


# --------------------------------------------------------------------------
# Pickle never runs
# --------------------------------------------------------------------------


class _Evil:
    """Unpickling this creates a file: the sentinel of code execution."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str, str]]:
        return (subprocess.call, ("touch", self.path, "--"))  # type: ignore[return-value]


def test_pickle_bytes_sent_to_a_default_server_never_execute(tmp: str) -> None:
    sentinel = Path(tmp) / "executed"
    payload = pickle.dumps(_Evil(str(sentinel)))
    with serve(f"unix:{tmp}/s.sock", echo).start() as server, connect(server.endpoint) as client:
        client.send(payload)
        assert client.recv(timeout=WAIT) == payload, "bytes in, the same bytes out"
    caught: queue.Queue[BaseException] = queue.Queue()

    def json_handler(ch: Channel, peer: Peer) -> None:
        try:
            ch.recv()
        except BaseException as exc:
            caught.put(exc)
            raise

    with (
        serve(f"unix:{tmp}/j.sock", json_handler, codec="json").start() as server,
        connect(server.endpoint) as client,
    ):
        client.send(payload)
        client.flush()
        assert isinstance(caught.get(timeout=WAIT), ProtocolError)
    assert not sentinel.exists()


# --------------------------------------------------------------------------
# EMFILE on accept
# --------------------------------------------------------------------------

EMFILE_CHILD = textwrap.dedent(
    """
    import json, os, resource, socket, sys, threading
    from sockwire.server import serve

    def echo(ch, peer):
        for msg in ch:
            ch.send(msg)

    name = sys.argv[1]
    window = float(sys.argv[2])
    server = serve(f"unix:@{name}", echo).start()
    client = socket.socket(socket.AF_UNIX)        # its fd exists before the limit drops
    client.settimeout(10)
    lowest = os.dup(0)
    os.close(lowest)                               # the lowest free descriptor
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))  # no new fd fits
    client.connect(b"\\0" + name.encode())         # waits in the backlog; accept fails
    threading.Event().wait(window)                 # the measuring window (not a sync)
    during = (server.stats.accept_attempts, server.stats.accept_backoffs)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    client.sendall(b"\\0\\0\\0\\x05hello")
    reply = client.recv(100)
    client.close()
    server.shutdown(5)
    print(json.dumps({"during": during, "reply": reply.decode("latin-1"),
                      "accepted": server.stats.accepted}), flush=True)
    """
)


@pytest.mark.timeout(60)
def test_emfile_on_accept_backs_off_instead_of_spinning() -> None:
    window = 0.5
    proc = subprocess.run(
        [sys.executable, "-c", EMFILE_CHILD, f"sw-emfile-{os.getpid()}", str(window)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    attempts, backoffs = report["during"]
    # one attempt per 100 ms back-off: about 5 in the window; a spinning loop makes
    # tens of thousands. Counts, not timings: a slower machine makes fewer.
    assert backoffs >= 2
    assert attempts == backoffs, "every attempt in the window failed and was backed off"
    assert attempts <= window / 0.1 + 3
    assert report["reply"] == "\0\0\0\x05hello", "accepted once descriptors were free again"
    assert report["accepted"] == 1
    assert "EMFILE" in proc.stderr, "the back-off is logged"
