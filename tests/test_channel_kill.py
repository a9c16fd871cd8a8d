"""A peer killed mid-message at random cut points: no hang, no partial message, no fd leak.

The peer is a real process that writes a prefix of a real Channel's wire
bytes (cut at a random byte for streams, at a random packet for seqpacket,
so fragmented messages are cut between fragments) and then SIGKILLs itself.
The receiving Channel must deliver exactly the whole messages inside the
prefix, then raise ConnectionLost. ``make test`` runs a few dozen kills per
transport; ``make soak`` runs the issue's 1,000 per transport.
"""

from __future__ import annotations

import os
import random
import signal
import socket
from collections.abc import Callable

import pytest

from sockwire.channel import Channel, ChannelCore, State
from sockwire.errors import ConnectionLost
from sockwire.framing import BIG, LengthPrefixEncoder

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


def _run(transport: str, trials: int) -> None:
    rng = random.Random(f"{transport}-{trials}")
    listener = None
    if transport == "tcp":
        listener = socket.create_server(("127.0.0.1", 0))
    try:
        for _ in range(trials):
            _trial(transport, rng, listener)
    finally:
        if listener is not None:
            listener.close()


TRANSPORTS = ["unix", "tcp", "seqpacket", "seqpacket-sockwire"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_peer_killed_mid_message(transport: str) -> None:
    _run(transport, 25)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_peer_killed_mid_message_1000_times(transport: str) -> None:
    _run(transport, 1000)
