"""serve/connect and every pattern over tls+tcp:// and ?authfile=: just another endpoint."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sockwire.channel import Channel
from sockwire.client import connect
from sockwire.errors import ConnectionLost, SockwireError
from sockwire.patterns import Liveness, Pub, Pull, Push, Rep, Req, Sub
from sockwire.server import serve
from sockwire.sock import Peer
from tests.tls_helpers import Certs, client_query, make_certs, server_query, write_key

WAIT = 10.0
LIVE = Liveness(interval=0.2, timeout=2.0)


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    with tempfile.TemporaryDirectory(prefix="sw-ptls-") as path:
        yield make_certs(Path(path))


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sw-ptls-") as path:
        yield path


def _pair(certs: Certs) -> tuple[str, str]:
    """(listen endpoint, the query a client adds)."""
    return f"tls+tcp://127.0.0.1:0?{server_query(certs)}", client_query(certs)


def _client(server_endpoint: str, query: str) -> str:
    base = server_endpoint.split("?", maxsplit=1)[0]
    return f"{base}?{query}"


def test_serve_and_connect_over_tls(certs: Certs) -> None:
    seen: list[bool] = []

    def echo(ch: Channel, peer: Peer) -> None:
        seen.append(ch.authenticated)
        for msg in ch:
            ch.send(msg)

    listen, query = _pair(certs)
    with serve(listen, echo, idle_timeout=5).start() as server:
        with connect(_client(server.endpoint, query), timeout=WAIT) as ch:
            ch.send_many([b"", b"over tls", b"x" * 300_000])
            got = [ch.recv(timeout=WAIT) for _ in range(3)]
            assert got == [b"", b"over tls", b"x" * 300_000]
        assert server.shutdown(WAIT)
    assert server.stats.handled == 1


def test_a_plain_client_fails_the_tls_handshake_and_the_server_goes_on(certs: Certs) -> None:
    listen, query = _pair(certs)
    with serve(listen, lambda ch, peer: None).start() as server:
        plain = server.endpoint.split("?")[0].replace("tls+tcp", "tcp")
        with connect(plain) as ch:
            ch.send(b"not tls")
            with pytest.raises((ConnectionLost, SockwireError)):
                ch.recv(timeout=WAIT)
        with connect(_client(server.endpoint, query), timeout=WAIT):
            pass
    assert server.stats.handshake_failed == 1


def test_every_pattern_over_tls(certs: Certs) -> None:
    listen, query = _pair(certs)
    with (
        Rep(listen, lambda b: b[::-1], liveness=LIVE) as rep,
        Req(_client(rep.endpoint, query), liveness=LIVE, timeout=WAIT) as req,
    ):
        assert req.request(b"abc") == b"cba"
    with (
        Pub(listen, liveness=LIVE) as pub,
        Sub(_client(pub.endpoint, query), liveness=LIVE) as sub,
    ):
        sub.subscribe("t")
        pub.publish("t", b"over tls")
        assert sub.recv(timeout=WAIT) == ("t", b"over tls")
    with (
        Push(listen, liveness=LIVE) as push,
        Pull(_client(push.endpoint, query), liveness=LIVE) as pull,
    ):
        assert push.wait_for(lambda p: p.ready_pullers == 1, WAIT)
        push.send(b"job", timeout=WAIT)
        assert pull.recv(timeout=WAIT) == b"job"


def test_hmac_authfile_lets_pickle_through_and_patterns_too(tmp: str) -> None:
    key = write_key(Path(tmp) / "key")
    endpoint = f"tcp://127.0.0.1:0?authfile={key}"

    def handler(obj: object) -> object:
        return {"got": obj}

    with Rep(endpoint, handler, codec="pickle", liveness=LIVE) as rep:
        port = rep.endpoint.split(":")[-1].split("?")[0]
        with Req(
            f"tcp://127.0.0.1:{port}?authfile={key}", codec="pickle", liveness=LIVE, timeout=WAIT
        ) as req:
            assert req.request({1, 2}) == {"got": {1, 2}}
    other = write_key(Path(tmp) / "other", b"o" * 32)
    with Rep(endpoint, handler, codec="pickle", liveness=LIVE) as rep:
        port = rep.endpoint.split(":")[-1].split("?")[0]
        with (
            Req(f"tcp://127.0.0.1:{port}?authfile={other}", codec="pickle", liveness=LIVE) as req,
            pytest.raises(SockwireError),
        ):
            req.request({1}, timeout=1)
        assert rep.stats.requests == 0
    assert os.path.exists(key)
