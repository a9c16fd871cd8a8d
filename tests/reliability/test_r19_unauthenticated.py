"""R19: unauthenticated bytes never reach the application, and pickle never executes.

* 1,000 raw connections (fast tier; unix and tcp) send garbage greetings to
  a pickle server behind ``?authfile=``: wrong magic, HTTP, TLS records, a
  truncated HELLO, a valid HELLO followed by a forged PROOF, pickle bytes
  that would create a file. 0 messages reach the handler, the sentinel file
  is never created, the server's fds come back to where they were, and an
  honest client is served after.
* Pickle bytes sent to a default (bytes) server or a json server, or to a
  default Rep, are data, never code.
"""

from __future__ import annotations

import pickle
import queue
import random
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sockwire.channel import Channel
from sockwire.client import connect
from sockwire.errors import ProtocolError, RemoteError
from sockwire.patterns import Liveness, Rep, Req
from sockwire.server import serve
from sockwire.sock import Peer
from tests.reliability.support import WAIT, echo, hang_up_seen, open_fds, short_tmp
from tests.tls_helpers import write_key

FAST = Liveness(interval=0.1, timeout=0.5)


@pytest.fixture
def tmp() -> Iterator[str]:
    with short_tmp("sw-r19-") as path:
        yield path


class _Evil:
    """Unpickling this creates a file: the sentinel of code execution."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str, str]]:
        return (subprocess.call, ("touch", self.path, "--"))  # type: ignore[return-value]


def _greetings(rng: random.Random, evil: bytes) -> list[bytes]:
    hello = b"SWAH\x01" + rng.randbytes(32)
    return [
        rng.randbytes(rng.randint(1, 200)),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(40),  # a TLS hello
        hello[: rng.randint(1, 36)],
        hello + rng.randbytes(32),  # a forged PROOF right behind the HELLO
        b"SWAH\x02" + rng.randbytes(32),  # a version nobody speaks
        evil,
        b"\x00\x00\x00\x05hello",  # a len32 frame, as if there were no handshake
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_r19_garbage_greetings_never_reach_the_application(
    transport: str, tmp: str, report: Callable[..., None]
) -> None:
    sentinel = Path(tmp) / "executed"
    evil = pickle.dumps(_Evil(str(sentinel)))
    key = write_key(Path(tmp) / "key")
    reached: queue.Queue[object] = queue.Queue()

    def handler(ch: Channel, peer: Peer) -> None:
        for msg in ch:
            reached.put(msg)
            ch.send(msg)

    ep = f"unix:{tmp}/s.sock" if transport == "unix" else "tcp://127.0.0.1:0"
    rng = random.Random(f"r19-{transport}")
    trials = 500
    with serve(f"{ep}?authfile={key}", handler, codec="pickle").start() as server:
        address = server.address
        before = open_fds()
        for i in range(trials):
            family = socket.AF_UNIX if transport == "unix" else socket.AF_INET
            with socket.socket(family) as sock:
                sock.connect(address)
                greetings = _greetings(rng, evil)
                try:
                    sock.sendall(greetings[i % len(greetings)])
                    sock.shutdown(socket.SHUT_WR)  # and nothing more: EOF, not a stall
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass  # refused at the first wrong byte (reset, or ENOTCONN after it)
                hang_up_seen(sock)
        assert server.wait_for(lambda s: s.stats.active == 0, WAIT)
        leaked = open_fds() - before
        with connect(server.endpoint, codec="pickle") as honest:
            honest.send({"an": "object"})
            assert honest.recv(timeout=WAIT) == {"an": "object"}
    assert reached.qsize() == 1, "only the honest client's message"
    assert not sentinel.exists()
    assert leaked == 0
    assert server.stats.handshake_failed == trials
    report("R19", garbage_connections=trials, messages_reached=0, pickle_executed=0)


def test_r19_pickle_bytes_sent_to_a_default_server_never_execute(
    tmp: str, report: Callable[..., None]
) -> None:
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
    report("R19", pickle_executed=0)


def test_r19_pickle_bytes_sent_to_a_default_rep_never_execute(
    tmp: str, report: Callable[..., None]
) -> None:
    sentinel = Path(tmp) / "executed"
    payload = pickle.dumps(_Evil(str(sentinel)))
    with (
        Rep(f"unix:{tmp}/b.sock", lambda body: len(body).to_bytes(4, "big"), liveness=FAST) as rep,
        Req(rep.endpoint, liveness=FAST, timeout=WAIT) as req,
    ):
        assert req.request(payload) == len(payload).to_bytes(4, "big")
    with (
        Rep(f"unix:{tmp}/j.sock", lambda obj: obj, codec="json", liveness=FAST) as rep,
        Req(rep.endpoint, liveness=FAST, timeout=WAIT) as req,
        pytest.raises(RemoteError, match="not valid json"),
    ):
        req.request(payload)  # a bytes Req to a json Rep: the payload is refused, not run
    assert not sentinel.exists()
    report("R19", pickle_executed=0)
