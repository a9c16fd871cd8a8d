"""R6: a peer killed mid-message at random cut points: no hang, no partial message, no fd leak.

The peer is a real process that writes a prefix of a real Channel's wire
bytes (cut at a random byte for streams, at a random packet for seqpacket,
so fragmented messages are cut between fragments) and then SIGKILLs itself.
The receiving Channel must deliver exactly the whole messages inside the
prefix, then raise ConnectionLost. ``make test`` runs a few dozen kills per
transport; ``make soak`` runs the issue's 1,000 per transport. The same
against a running ``serve()``: the handler sees exactly the whole messages,
the server's fds return to where they were, and it goes on serving.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import socket
from collections.abc import Callable

import pytest

from sockwire import dial
from sockwire.channel import Channel, ChannelCore, State
from sockwire.client import connect
from sockwire.errors import ConnectionLost
from sockwire.framing import BIG, LengthPrefixEncoder
from sockwire.server import serve
from sockwire.sock import Peer
from tests.reliability.support import WAIT, open_fds, short_tmp

Connect = Callable[[], tuple[socket.socket, Callable[[], socket.socket]]]


def _messages(rng: random.Random) -> list[bytes]:
    sizes = [rng.choice((0, 1, 5, 100, 3000, BIG, BIG * 3 + 1)) for _ in range(rng.randint(1, 6))]
    return [bytes([65 + i % 26]) * n for i, n in enumerate(sizes)]


def _stream_plan(rng: random.Random) -> tuple[list[bytes], list[bytes]]:
    """(chunks the dying peer writes, the messages that must arrive whole)."""
    messages = _messages(rng)
    enc = LengthPrefixEncoder()
    ends, wire = [], b""
    for msg in messages:
        wire += enc.head(msg)[0] + msg
        ends.append(len(wire))
    cut = rng.randrange(len(wire) + 1)
    whole = [m for m, end in zip(messages, ends, strict=True) if end <= cut]
    return [wire[:cut]], whole


def _packet_plan(rng: random.Random, framing: str) -> tuple[list[bytes], list[bytes]]:
    messages = _messages(rng)
    limit = rng.choice((1000, 70000, 200000))
    if framing == "none":  # one packet per message: only what fits in one
        messages = [m for m in messages if len(m) <= limit]
    core = ChannelCore("seqpacket", framing=framing, packet_limit=limit)
    packets: list[bytes] = []
    last_packet_of: list[int] = []
    for msg in messages:
        for write in core.queue(msg) or []:
            packets.append(b"".join(bytes(part) for part in write))
        last_packet_of.append(len(packets))
    cut = rng.randrange(len(packets) + 1)
    whole = [m for m, last in zip(messages, last_packet_of, strict=True) if last <= cut]
    return packets[:cut], whole


def _die_after_writing(sock: socket.socket, chunks: list[bytes], packets: bool) -> None:
    try:
        for chunk in chunks:
            if packets:
                sock.send(chunk)
            else:
                sock.sendall(chunk)
    finally:
        os.kill(os.getpid(), signal.SIGKILL)


def _trial(transport: str, rng: random.Random, listener: socket.socket | None) -> None:
    packets = transport.startswith("seqpacket")
    framing = "sockwire" if transport.endswith("-sockwire") else "none"
    chunks, whole = _packet_plan(rng, framing) if packets else _stream_plan(rng)
    if transport == "tcp":
        assert listener is not None
        port = listener.getsockname()[1]
        pid = os.fork()
        if pid == 0:
            listener.close()
            peer = socket.create_connection(("127.0.0.1", port))
            _die_after_writing(peer, chunks, packets)
        mine, _ = listener.accept()
    else:
        kind = socket.SOCK_SEQPACKET if packets else socket.SOCK_STREAM
        mine, theirs = socket.socketpair(socket.AF_UNIX, kind)
        pid = os.fork()
        if pid == 0:
            mine.close()
            _die_after_writing(theirs, chunks, packets)
        theirs.close()
    got: list[bytes] = []

    # half the trials read without a deadline (the fast receiver), half with
    # one (the general path); pytest-timeout catches a hang in either
    deadline = 20.0 if rng.random() < 0.5 else None

    def drain(channel: Channel) -> None:
        while True:
            got.append(channel.recv(deadline))

    with Channel.from_socket(mine, framing=framing if packets else None) as channel:
        with pytest.raises(ConnectionLost):
            drain(channel)
        assert channel.state in (State.PEER_CLOSED, State.BROKEN)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert got == whole, "a partial or missing message"


def _run(transport: str, trials: int, report: Callable[..., None]) -> None:
    rng = random.Random(f"{transport}-{trials}")
    listener = None
    if transport == "tcp":
        listener = socket.create_server(("127.0.0.1", 0))
    before = open_fds()
    try:
        for _ in range(trials):
            _trial(transport, rng, listener)
    finally:
        if listener is not None:
            listener.close()
    leaked = open_fds() - before + (1 if listener is not None else 0)
    assert leaked == 0
    report("R6", kills=trials, hangs=0, partial=0, fds_leaked=leaked)


TRANSPORTS = ["unix", "tcp", "seqpacket", "seqpacket-sockwire"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_r06_peer_killed_mid_message(transport: str, report: Callable[..., None]) -> None:
    _run(transport, 25, report)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_r06_peer_killed_mid_message_1000_times(
    transport: str, report: Callable[..., None]
) -> None:
    _run(transport, 1000, report)


# --------------------------------------------------------------------------
# The same against a running server
# --------------------------------------------------------------------------


def _server_messages(rng: random.Random, trial: int) -> list[bytes]:
    sizes = [rng.choice((0, 1, 5, 100, 3000, BIG, BIG * 3 + 1)) for _ in range(rng.randint(1, 6))]
    return [f"{trial}:{i}:".encode() + bytes([65 + i % 26]) * n for i, n in enumerate(sizes)]


def _server_plan(
    transport: str, rng: random.Random, trial: int
) -> tuple[list[bytes], list[bytes]]:
    """(what the dying peer writes, the messages that must reach the handler whole)."""
    messages = _server_messages(rng, trial)
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


def _server_kill_trials(
    transport: str, tmp: str, trials: int, report: Callable[..., None]
) -> None:
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
        with connect(server.endpoint) as client:  # the first handler thread, caches
            client.send(b"warm")
        assert results.get(timeout=WAIT) == ([b"warm"], None)
        assert server.wait_for(lambda s: s.stats.active == 0, WAIT)
        before = open_fds()
        for trial in range(trials):
            chunks, whole = _server_plan(transport, rng, trial)
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
        assert server.wait_for(lambda s: s.stats.active == 0, WAIT)
        leaked = open_fds() - before
    assert server.stats.active == 0
    assert leaked == 0, f"{leaked} fds more than before the kills"
    report("R6", kills=trials, hangs=0, partial=0, fds_leaked=leaked)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["unix", "seqpacket", "tcp"])
def test_r06_peer_killed_mid_message_against_a_server(
    transport: str, report: Callable[..., None]
) -> None:
    with short_tmp("sw-r6-") as tmp:
        _server_kill_trials(transport, tmp, 25, report)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("transport", ["unix", "seqpacket", "tcp"])
def test_r06_peer_killed_mid_message_against_a_server_1000_times(
    transport: str, report: Callable[..., None]
) -> None:
    with short_tmp("sw-r6-") as tmp:
        _server_kill_trials(transport, tmp, 1000, report)
