"""``sockwire scan tcp://HOST:PORTS``: open, closed and filtered, on loopback only."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockwire import sock_diag
from sockwire.cli.exitcodes import Exit
from sockwire.cli.scan_cmd import InOrder, Result, parse_ports
from tests.cli_helpers import sockwire

pytestmark = pytest.mark.timeout(60)


@given(st.lists(st.tuples(st.integers(1, 65535), st.integers(0, 40)), min_size=1, max_size=8))
def test_port_lists_and_ranges(parts: list[tuple[int, int]]) -> None:
    spans = [(low, min(low + extra, 65535)) for low, extra in parts]
    text = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)
    want: list[int] = []
    for a, b in spans:
        want.extend(p for p in range(a, b + 1) if p not in want)
    assert parse_ports(text) == want


@pytest.mark.parametrize("bad", ["0", "65536", "5-1", "a", "", "1,,2", "1-2-3", "-5", "9" * 50])
def test_bad_port_lists(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_ports(bad)


def test_results_leave_in_port_order() -> None:
    out: list[int] = []
    ordered = InOrder([5, 1, 9], lambda r: out.append(r.port))
    for port in (9, 1, 5):
        ordered.add(Result(port, "closed", "ECONNREFUSED", 0.0))
        assert out == [5, 1, 9][: len(out)]
    assert out == [5, 1, 9]


@contextlib.contextmanager
def ports(kind: str, count: int) -> Iterator[list[int]]:
    """``count`` loopback ports: listening (open), bound only (closed: RST), or listening
    with a full accept queue (filtered: the kernel drops the SYN)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
            if kind in ("open", "filtered"):
                sock.listen(0 if kind == "filtered" else 8)
            if kind == "filtered":
                port = sock.getsockname()[1]
                filler = socket.create_connection(("127.0.0.1", port), timeout=10)
                socks.append(filler)
                _wait_queue_full(port)
        yield [s.getsockname()[1] for s in socks if s.getsockname()[1] and not _is_client(s)]
    finally:
        for sock in socks:
            sock.close()


def _is_client(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


def _wait_queue_full(port: int) -> None:
    """Until the kernel shows the accept queue over its backlog of 0 (bounded; no sleep)."""
    deadline = time.monotonic() + 10
    while True:
        listeners = [e for e in sock_diag.inet_sockets("tcp") if e.port == port]
        if any(e.state == "LISTEN" and (e.recv_q or 0) > (e.send_q or 0) for e in listeners):
            return
        assert time.monotonic() < deadline, listeners
        select.select([], [], [], 0.01)


def test_open_closed_and_filtered_ports_with_their_errno() -> None:
    with ports("open", 3) as open_, ports("closed", 3) as closed, ports("filtered", 1) as dropped:
        spec = ",".join(map(str, open_ + closed + dropped))
        proc = sockwire("scan", f"tcp://127.0.0.1:{spec}", "--json", "--timeout", "0.5")
        assert proc.returncode == Exit.OK, proc.stderr
        results = [json.loads(line) for line in proc.stdout.decode().splitlines()]
        assert [r["port"] for r in results] == open_ + closed + dropped  # in the order asked
        by_port = {r["port"]: (r["state"], r["errno"]) for r in results}
        assert {by_port[p] for p in open_} == {("open", None)}
        assert {by_port[p] for p in closed} == {("closed", "ECONNREFUSED")}
        assert {by_port[p] for p in dropped} == {("filtered", "ETIMEDOUT")}
        (summary,) = [json.loads(line) for line in proc.stderr.decode().splitlines()]
        assert (summary["open"], summary["closed"], summary["filtered"]) == (3, 3, 1)
        text = sockwire("scan", f"tcp://127.0.0.1:{spec}", "--timeout", "0.5")
        assert text.stdout.decode().splitlines() == [f"tcp://127.0.0.1:{p} open" for p in open_]


def test_a_range_concurrently_and_none_open_exits_3() -> None:
    with ports("open", 4) as open_:
        low = min(open_)
        proc = sockwire(
            "scan", f"tcp://127.0.0.1:{low}-{low + 300}", "--concurrency", "16", "--all"
        )
        lines = proc.stdout.decode().splitlines()
        assert len(lines) == 301 and proc.returncode == Exit.OK
        opened = [int(x.split()[0].rsplit(":", 1)[1]) for x in lines if x.endswith(" open")]
        # ours in the range show open (other processes' servers may listen there too)
        assert {p for p in open_ if p <= low + 300} <= set(opened) and low in opened
    with ports("closed", 2) as closed:
        spec = ",".join(map(str, closed))
        none = sockwire("scan", f"tcp://[::1]:{spec}")
        assert none.returncode == Exit.REFUSED and none.stdout == b""
        assert "0 open, 2 closed, 0 filtered" in none.stderr.decode()


@pytest.mark.parametrize(
    "target", ["udp://127.0.0.1:53", "tcp://127.0.0.1", "tcp://:80", "tcp://[::1]80", "x"]
)
def test_bad_targets_are_one_line_usage_errors(target: str) -> None:
    proc = sockwire("scan", target)
    assert proc.returncode == Exit.USAGE
    assert proc.stderr.decode().count("\n") == 1 and b"Traceback" not in proc.stderr
