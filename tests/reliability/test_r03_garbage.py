"""R3: garbage to live servers over tcp, unix, seqpacket and udp.

Each trial is a new connection (a datagram on udp) carrying random bytes:
random lengths, random frame headers (huge, small, zero), random packet
header bytes. Every 100 trials a well-behaved client must get its echo
(health check). At the end the server's descriptors are back at their
baseline. Fast tier: 1,000 per transport; soak: 10,000.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable

import pytest

from sockwire.server import Server, serve
from tests.reliability.support import WAIT, echo, good_client, hang_up_seen, open_fds, short_tmp

TRANSPORTS = ["tcp", "unix", "seqpacket", "udp"]


def _garbage(rng: random.Random) -> bytes:
    shape = rng.randrange(4)
    if shape == 0:
        return rng.randbytes(rng.randint(0, 4096))
    if shape == 1:  # a len32 header of any size, maybe some body
        return rng.randint(0, 2**32 - 1).to_bytes(4, "big") + rng.randbytes(rng.randint(0, 64))
    if shape == 2:  # a packet/datagram header byte with other versions and flags
        return bytes([rng.randrange(256)]) + rng.randbytes(rng.randint(0, 300))
    return b"\x00" * rng.randint(1, 20)  # zeros: empty frames and a truncated header


def _trial(server: Server, transport: str, rng: random.Random, tmp: str) -> None:
    data = _garbage(rng)
    if transport == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(data, server.address)
        return
    if transport == "tcp":
        sock = socket.create_connection(server.address[:2])  # type: ignore[index]
    else:
        kind = socket.SOCK_SEQPACKET if transport == "seqpacket" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.connect(server.address)
    with sock:
        try:
            if transport == "seqpacket":
                for _ in range(rng.randint(1, 4)):
                    sock.send(_garbage(rng))
            else:
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return  # the server already hung up (EPIPE, ECONNRESET, ENOTCONN after a reset)
        hang_up_seen(sock)


def _run(transport: str, trials: int, report: Callable[..., None]) -> None:
    with short_tmp("sw-r3-") as tmp:
        endpoint = {
            "tcp": "tcp://127.0.0.1:0",
            "unix": f"unix:{tmp}/s.sock",
            "seqpacket": f"unix+seqpacket:{tmp}/q.sock",
            "udp": "udp://127.0.0.1:0",
        }[transport]
        handler = echo if transport != "udp" else (lambda msg, peer: msg)
        rng = random.Random(f"r3-{transport}-{trials}")
        checks = 0
        with serve(endpoint, handler, max_size=1 << 16).start() as server:
            good_client(server.endpoint, 1)  # warm: threads, caches
            assert server.wait_for(lambda s: s.stats.active == 0, WAIT)
            baseline = open_fds()
            for trial in range(1, trials + 1):
                _trial(server, transport, rng, tmp)
                if trial % 100 == 0:
                    good_client(server.endpoint, 1)
                    checks += 1
            assert server.wait_for(lambda s: s.stats.active == 0, WAIT)
            leaked = open_fds() - baseline
            assert leaked == 0, f"{leaked} more fds than at the baseline"
            assert server.stats.failed == 0
    report("R3", garbage_trials=trials, health_checks=checks, server_deaths=0, fds_leaked=0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_r03_garbage_to_a_live_server(transport: str, report: Callable[..., None]) -> None:
    _run(transport, 1000, report)


@pytest.mark.soak
@pytest.mark.timeout(600)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_r03_garbage_to_a_live_server_10000(transport: str, report: Callable[..., None]) -> None:
    _run(transport, 10_000, report)
