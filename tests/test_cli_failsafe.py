"""The command line's servers fail safe (issue 13 defect 2 for ``echo``, ``relay``, ``listen -k``).

Real processes and real peers (nc, socat): a server full of idle
connections makes room for a newcomer by evicting the one quiet longest;
one moving data (64 bytes/s or more) is never evicted, a trickler is;
connections that never speak, or go idle, are closed by their deadlines;
each close is one ``evict``/``expire`` event under ``--json`` and a count
in the summary. The numbers under load
are R5 (tests/reliability/test_r05_slowloris.py).
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import connect_when_ready, host_port, program, run, short_dir, wait_path
from tests.helpers import need_tool

pytestmark = pytest.mark.timeout(60)

WAIT = 15.0


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def _docs(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _notes(text: str, call: str) -> list[dict[str, Any]]:
    return [doc for doc in _docs(text) if doc["event"] == "note" and doc["call"] == call]


def _closed_by_peer(sock: socket.socket, timeout: float = WAIT) -> bool:
    """True once the peer closed ``sock`` (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


def test_echo_full_of_idle_clients_evicts_the_longest_idle_for_a_newcomer(d: str) -> None:
    """Two idle clients filled --max-clients 2; a third (socat) used to wait in the
    backlog for as long as they stayed. Now the first idle one goes, one JSON event."""
    nc, socat = need_tool("nc"), need_tool("socat")
    path = f"{d}/e.sock"
    with run("echo", f"unix:{path}", "--max-clients", "2", "--json") as echo:
        echo.address()
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as first:
            echo.wait_err_count('"call": "accept"', 1)
            with program(nc, "-U", path) as second:  # connected, silent (stdin stays open)
                echo.wait_err_count('"call": "accept"', 2)
                with program(socat, "-t", "5", "-", f"UNIX-CONNECT:{path}") as newcomer:
                    newcomer.send(b"let me in\n")
                    newcomer.wait_out(b"let me in\n")
                    assert _closed_by_peer(first), "the one idle longest was evicted"
                    assert newcomer.finish() == 0
                assert second.p.poll() is None, "the other idle client keeps its slot"
        assert echo.stop() == 143
    (evicted,) = _notes(echo.text, "evict")
    assert evicted["args"][0].startswith("echo ")
    assert "the server is full (--max-clients 2) and a client waits" in evicted["args"][1]
    assert evicted["extra"]["quiet"] >= 0.25


def test_a_client_moving_data_is_never_evicted(d: str) -> None:
    """--max-clients 1 with a client doing request/replies: the newcomer (nc) waits in the
    backlog the whole time, and is served once the first goes quiet."""
    nc = need_tool("nc")
    path = f"{d}/e.sock"
    # the events of thousands of round trips: to a file, not a pipe this test reads late
    with (
        open(f"{d}/err", "w+b") as err,
        run("echo", f"unix:{path}", "--max-clients", "1", "--json", stderr=err.fileno()),
    ):
        wait_path(path)
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as busy:
            busy.settimeout(WAIT)
            busy.sendall(b"first")
            assert busy.recv(64) == b"first"
            with program(nc, "-U", path) as newcomer:
                newcomer.send(b"waiting\n")
                assert newcomer.p.stdout is not None
                # an observation window: 1.5 s of request/replies, never quiet for 0.25 s
                started, rounds = time.monotonic(), 0
                while time.monotonic() - started < 1.5 and rounds < 200_000:
                    busy.sendall(b"x" * 64)
                    got = b""
                    while len(got) < 64:
                        got += busy.recv(64 - len(got))
                    rounds += 1
                    ready, _, _ = select.select([newcomer.p.stdout], [], [], 0)
                    assert not ready, "the newcomer was served while the first moved data"
                err.seek(0)
                assert _notes(err.read().decode(), "evict") == []
                # quiet now: within a quarter of a second it is the one to go
                newcomer.wait_out(b"waiting\n")
                assert _closed_by_peer(busy)
        err.seek(0)
        text = err.read().decode()
    assert rounds > 10
    assert len(_notes(text, "evict")) == 1


def test_a_trickler_moving_under_the_minimum_rate_makes_room(d: str) -> None:
    """--max-clients 1 held by a peer sending a byte every 0.1 s (never quiet for
    0.25 s, but 10 bytes a second): a newcomer is served within a second, and the
    ``evict`` event names the rate rule. Without it the trickler kept the slot."""
    nc = need_tool("nc")
    path = f"{d}/e.sock"
    with run("echo", f"unix:{path}", "--max-clients", "1", "--json") as echo:
        wait_path(path)
        with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path) as trickler:
            trickler.sendall(b"t")
            trickler.settimeout(WAIT)
            assert trickler.recv(1) == b"t"  # it holds the slot
            with program(nc, "-U", path) as newcomer:
                newcomer.send(b"waiting\n")
                assert newcomer.p.stdout is not None
                started = time.monotonic()
                for _ in range(100):  # the attacker's pace: a byte, then 0.1 s of waiting
                    try:
                        trickler.sendall(b"t")
                    except OSError:
                        break  # cut
                    if select.select([newcomer.p.stdout], [], [], 0.1)[0]:
                        break  # the newcomer is served
                newcomer.wait_out(b"waiting\n")
                took = time.monotonic() - started
                assert took < 3 * 1.0, f"the newcomer waited {took:.2f} s"
                assert _closed_by_peer(trickler)
        assert echo.stop() == 143
    (evicted,) = _notes(echo.text, "evict")
    assert "it moves under 64 bytes/s" in evicted["args"][1]


def test_relay_closes_silent_and_idle_connections_and_counts_them(d: str) -> None:
    """--timeout 1: a client that never speaks and one that went quiet are closed
    within 1 s (3x slack), each with one ``expire`` event; the summary counts them."""
    socat = need_tool("socat")
    target = f"{d}/t.sock"
    front = f"{d}/r.sock"
    with program(socat, f"UNIX-LISTEN:{target},fork", "EXEC:cat") as backend:
        with run("relay", f"unix:{front}", f"unix:{target}", "--timeout", "1", "--json") as relay:
            relay.address()
            wait_path(target)  # socat is ready when its socket file is there
            with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, front) as silent:
                started = time.monotonic()
                assert _closed_by_peer(silent)
                assert time.monotonic() - started < 3.0
            with connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, front) as talker:
                talker.settimeout(WAIT)
                talker.sendall(b"hello")
                assert talker.recv(64) == b"hello"
                started = time.monotonic()
                assert _closed_by_peer(talker)
                assert time.monotonic() - started < 3.0
            assert relay.stop() == 143
        backend.kill()
    rules = [note["extra"]["rule"] for note in _notes(relay.text, "expire")]
    assert rules == ["first bytes", "idle"]
    (summary,) = [doc for doc in _docs(relay.text) if doc["event"] == "summary"]
    assert (summary["no_first_bytes"], summary["idle_closed"], summary["evicted"]) == (1, 1, 0)
    reports = [doc for doc in _docs(relay.text) if doc["event"] == "report"]
    assert len(reports) == 2 and all("(--timeout); closing" in r["message"] for r in reports)


def test_listen_keep_open_gives_an_idle_clients_slot_to_a_newcomer(d: str) -> None:
    """``listen -k`` serves one client at a time (--max-clients 1): an nc that connected
    and said nothing used to keep everyone else out for as long as it stayed."""
    nc, socat = need_tool("nc"), need_tool("socat")
    path = f"{d}/l.sock"
    with run("listen", "-k", f"unix:{path}", "--trace") as server:
        server.address()
        with program(nc, "-U", path) as idle:
            server.wait_err("accept(")
            with program(socat, "-t", "5", "-", f"UNIX-CONNECT:{path}") as newcomer:
                newcomer.send(b"from the newcomer\n")
                server.wait_out(b"from the newcomer\n")
                evict = server.wait_err(" evict ")
                assert "the server is full (--max-clients 1)" in evict
                newcomer.close_stdin()
                assert newcomer.finish() == 0
            idle.kill()
        server.close_stdin()
        assert server.stop() == 143


def test_listen_keep_open_on_tls_evicts_a_client_that_never_shakes_hands(d: str) -> None:
    """A TCP connection that never sends its ClientHello held ``listen -k``'s one slot
    until the 10 s handshake timeout, and reconnecting kept it forever; now a socat TLS
    client that waits takes that slot at once."""
    from tests.tls_helpers import make_certs, server_query

    socat = need_tool("socat")
    certs = make_certs(Path(d))
    listen = f"tls+tcp://127.0.0.1:0?{server_query(certs)}"
    with run("listen", "-k", listen, "--trace") as server:
        host, port = host_port(server.address())
        with socket.create_connection((host, port), timeout=WAIT) as silent:
            server.wait_err("accept(")
            started = time.monotonic()
            with program(
                socat, "-", f"OPENSSL:{host}:{port},cafile={certs.ca},commonname=localhost"
            ) as client:
                client.send(b"over tls\n")
                server.wait_out(b"over tls\n")
                took = time.monotonic() - started
            assert _closed_by_peer(silent)
        assert "the server is full (--max-clients 1)" in server.wait_err(" evict ")
        server.close_stdin()
        assert server.stop() == 143
    assert took < 5.0, f"the TLS client waited {took:.1f} s for the silent one's slot"
