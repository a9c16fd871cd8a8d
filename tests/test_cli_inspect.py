"""``sockwire inspect``: listing sockets with their processes, probing socket files."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import pytest

from sockwire.cli.exitcodes import Exit
from tests.cli_helpers import short_dir, sockwire

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def test_path_verdicts(d: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram:
        dgram.bind(f"{d}/g.sock")
        proc = sockwire("inspect", f"{d}/g.sock", "--json")
        assert proc.returncode == Exit.OK
        doc = json.loads(proc.stdout)
        assert doc["live"] and doc["type"] == "dgram"
        assert doc["probes"] == {
            "stream": "EPROTOTYPE",
            "seqpacket": "EPROTOTYPE",
            "dgram": "connected",
        }
        assert os.getpid() in {p["pid"] for e in doc["listeners"] for p in e["processes"]}
    # the socket is closed, the file stays: stale
    proc = sockwire("inspect", f"{d}/g.sock")
    assert proc.returncode == Exit.REFUSED
    assert "stale: nobody listens" in proc.stdout.decode()
    with open(f"{d}/plain", "w"):
        pass
    assert sockwire("inspect", f"{d}/plain").returncode == Exit.IO
    missing = sockwire("inspect", f"{d}/missing")
    assert missing.returncode == Exit.REFUSED and "No such file" in missing.stdout.decode()


def test_seqpacket_listener_is_found_by_its_type(d: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
        server.bind(f"{d}/q.sock")
        server.listen(1)
        proc = sockwire("inspect", f"{d}/q.sock")
        assert proc.returncode == Exit.OK
        text = proc.stdout.decode()
        assert "live seqpacket socket" in text and "stream: EPROTOTYPE" in text
        assert f"pid {os.getpid()}" in text


def test_listing_tcp_with_owner() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        proc = sockwire("inspect", "--listening", "--kind", "tcp,udp", "--json")
        assert proc.returncode == 0
        sockets = json.loads(proc.stdout)["sockets"]
        mine = [s for s in sockets if s["local"] == f"127.0.0.1:{port}"]
        assert len(mine) == 1 and mine[0]["state"] == "LISTEN"
        assert [p["pid"] for p in mine[0]["processes"]] == [os.getpid()]
        assert all(s["kind"] in ("tcp", "udp") for s in sockets)
