"""R13: 20% datagram loss (nftables) with ``?framing=sockwire``: every loss counted.

A UDP server in host A and a sender in host B, joined by a veth; in A an
nft rule drops a random 20% of the datagrams for the server's port, with a
counter. The sender sends 2,000 datagrams of 0-1,399 bytes (each payload
says its own number and length), then an END marker the rule spares. The
server's sockwire framing numbers them, so: received = sent - lost, where
``lost`` is the server's own count and equals nft's count of drops; no
datagram arrives merged, split or altered. Truncation is reported, never
silent: a datagram larger than the receive buffer raises TruncatedError
(the server counts it, ``datagram_stats.truncated``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from sockwire import socketpair
from sockwire.errors import TruncatedError
from tests.reliability.netlab import A_IP, TwoHosts

PORT = 7713
SENT = 2000
RECEIVER = textwrap.dedent(
    f"""
    import json, sys, threading
    from sockwire.server import serve
    got = {{"received": 0, "corrupt": 0}}
    done = threading.Event()

    def handler(msg, peer):
        if msg.startswith(b"END"):
            done.set()
            return None
        number, _, rest = msg.partition(b":")
        if rest != b"x" * (int(number) % 1400):
            got["corrupt"] += 1
        got["received"] += 1
        return None

    server = serve("udp://{A_IP}:{PORT}?framing=sockwire", handler).start()
    print("ready", flush=True)
    done.wait(60)
    stats = server.datagram_stats
    print(json.dumps(dict(got, lost=stats.lost, late=stats.late, invalid=stats.invalid,
                          truncated=stats.truncated)), flush=True)
    server.shutdown(5)
    """
)
SENDER = textwrap.dedent(
    f"""
    import threading
    from sockwire.client import connect
    pace = threading.Event()
    with connect("udp://{A_IP}:{PORT}?framing=sockwire") as ch:
        for i in range({SENT}):
            ch.send(b"%d:" % i + b"x" * (i % 1400))
            if i % 20 == 19:
                pace.wait(0.002)  # pacing the load, so the kernel drops nothing itself
        ch.send(b"END")
        ch.flush()
    """
)


@pytest.mark.timeout(120)
def test_r13_20_percent_loss_counted_exactly(report: Callable[..., None]) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    with TwoHosts("r13") as hosts:
        # a random 20% of the datagrams for PORT, except the END marker (its
        # payload, after UDP's 8 bytes and sockwire's 5, starts "END")
        hosts.nft(
            "a",
            "table inet swloss {\n"
            "  chain in { type filter hook input priority 0;\n"
            f"    udp dport {PORT} @th,104,24 != 0x454e44 numgen random mod 100 < 20 "
            "counter drop;\n"
            "  }\n"
            "}\n",
        )
        receiver = subprocess.Popen(
            hosts.argv("a", [sys.executable, "-c", RECEIVER]),
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert receiver.stdout is not None
            assert receiver.stdout.readline().strip() == "ready"
            sent = subprocess.run(
                hosts.argv("b", [sys.executable, "-c", SENDER]),
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert sent.returncode == 0, sent.stderr[-2000:]
            result = json.loads(receiver.stdout.readline())
            dropped = hosts.dropped("a")
        finally:
            receiver.kill()
            receiver.wait()
            if receiver.stdout is not None:
                receiver.stdout.close()
    assert result["corrupt"] == 0 and result["invalid"] == 0, result
    assert result["received"] + result["lost"] == SENT, result
    assert result["lost"] == dropped, f"the server counted {result['lost']}, nft {dropped}"
    assert 0.1 * SENT < dropped < 0.3 * SENT
    report(
        "R13",
        datagrams_sent=SENT,
        received=result["received"],
        lost_counted=result["lost"],
        nft_dropped=dropped,
        merged_split_or_corrupt=0,
    )


def test_r13_truncation_is_reported_never_silent(report: Callable[..., None]) -> None:
    a, b = socketpair(socket.SOCK_DGRAM)
    with a, b:
        a.send(b"y" * 1000)
        with pytest.raises(TruncatedError) as info:
            b.recv(100)
        assert info.value.size == 1000
    report("R13", truncations_reported=1)
