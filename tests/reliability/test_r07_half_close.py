"""R7: half-close. A client sends its frames, then shutdown(SHUT_WR); the server
reads every frame, then a clean EOF (its loop just ends), and its replies still
flow back after the client's SHUT_WR. 100 trials on each of unix, tcp and
unix+seqpacket (?framing=sockwire, so that messages may span packets).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

import pytest

from sockwire import dial
from sockwire.channel import Channel
from sockwire.errors import ConnectionLost
from sockwire.server import serve
from sockwire.sock import Peer
from tests.reliability.support import WAIT, short_tmp

TRIALS = 100


def _replies_after_eof(ch: Channel, peer: Peer) -> None:
    got = list(ch)  # every frame, then the clean EOF ends the loop
    for msg in got:
        ch.send(msg[::-1])
    ch.send(b"end %d" % len(got))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["unix", "tcp", "seqpacket"])
def test_r07_frames_then_clean_eof_then_replies(
    transport: str, report: Callable[..., None]
) -> None:
    rng = random.Random(f"r7-{transport}")
    with short_tmp("sw-r7-") as tmp:
        endpoint = {
            "unix": f"unix:{tmp}/s.sock",
            "tcp": "tcp://127.0.0.1:0",
            "seqpacket": f"unix+seqpacket:{tmp}/q.sock?framing=sockwire",
        }[transport]
        frames = 0
        with serve(endpoint, _replies_after_eof).start() as server:
            for _ in range(TRIALS):
                messages = [
                    rng.randbytes(rng.choice((0, 1, 100, 5000, 300_000)))
                    for _ in range(rng.randint(0, 8))
                ]
                sock = dial.connect(server.endpoint)
                framing = "sockwire" if transport == "seqpacket" else None
                with Channel.from_socket(sock, framing=framing) as ch:
                    for msg in messages:
                        ch.send(msg)
                    ch.flush()
                    sock.shutdown(socket.SHUT_WR)  # our side is done; theirs is not
                    for msg in messages:
                        assert ch.recv(timeout=WAIT) == msg[::-1]
                    assert ch.recv(timeout=WAIT) == b"end %d" % len(messages)
                    with pytest.raises(ConnectionLost):
                        ch.recv(timeout=WAIT)  # and then their clean end
                frames += len(messages)
            assert server.wait_for(lambda s: s.stats.active == 0, WAIT)
            assert server.stats.handled == TRIALS and server.stats.dropped == 0
    report(
        "R7", half_closes=TRIALS, frames=frames, clean_eofs=TRIALS, replies_after_shut_wr=frames
    )
