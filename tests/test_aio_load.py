"""aio.serve holds many connections: req/rep from a client process, and slow lorises.

The server and the clients are separate processes (``sockwire.bench.aioload``),
one server process per transport, each loop kind. ``make test`` runs 1,000
connections x 100 request/replies per transport and loop; ``make soak`` runs
the issue's 10,000 (1,000,000 messages per transport). Counts are asserted
(0 lost, 0 duplicated, order kept per connection), and the server's peak
resident memory; throughput never is.

Slow clients: 1,000 connections trickle one byte every 0.5 s into a frame
that never completes; the server's 2 s frame deadline must close every one
of them within 3x of it, while a well-behaved client completes 100
request/replies within 5 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import sockwire

LOOPS = ("asyncio", "uvloop")
#: The issue's bound on the server's resident memory with 10,000 connections.
RSS_LIMIT_KIB = 200 * 1024


@contextmanager
def _server(loop: str, endpoint: str, *extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """An aioload echo server process; yields its endpoint (and the process)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sockwire.bench.aioload", "server", "aio", loop, endpoint, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready "), f"the server did not start: {line!r}"
        yield line.split(" ", 1)[1].strip(), proc
    finally:
        proc.kill()
        proc.communicate(timeout=60)


def _stop(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Close the server's stdin (its stop signal); its statistics."""
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    return dict(json.loads(out.strip().splitlines()[-1]))


def _clients(loop: str, endpoint: str, connections: int, requests: int) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sockwire.bench.aioload",
            "client",
            "aio",
            loop,
            endpoint,
            "--connections",
            str(connections),
            "--requests",
            str(requests),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _many(loop: str, transport: str, tmp: Path, connections: int, requests: int) -> None:
    endpoint = f"unix:{tmp}/many.sock" if transport == "unix" else "tcp://127.0.0.1:0"
    with _server(loop, endpoint, "--max-connections", str(connections + 100)) as (ep, proc):
        report = _clients(loop, ep, connections, requests)
        stats = _stop(proc)
    assert report["error_count"] == 0, report["errors"]
    assert report["messages"] == connections * requests
    assert (report["lost"], report["duplicated"], report["out_of_order"]) == (0, 0, 0)
    assert stats["accepted"] == connections and stats["peak"] == connections
    assert stats["failed"] == 0
    assert stats["peak_rss_kib"] < RSS_LIMIT_KIB, f"server peak RSS {stats['peak_rss_kib']} KiB"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("loop", LOOPS)
def test_a_thousand_connections_of_a_hundred_requests(
    loop: str, transport: str, tmp_path: Path
) -> None:
    _many(loop, transport, tmp_path, 1000, 100)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("loop", LOOPS)
def test_ten_thousand_connections_of_a_hundred_requests(
    loop: str, transport: str, tmp_path: Path
) -> None:
    """1,000,000 messages per transport, in one server process (fd limit: 20,000)."""
    _many(loop, transport, tmp_path, 10_000, 100)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("loop", LOOPS)
def test_slow_lorises_are_closed_on_time_while_a_good_client_is_served(
    loop: str, tmp_path: Path
) -> None:
    deadline = 2.0
    endpoint = f"unix:{tmp_path}/slow.sock"
    with _server(loop, endpoint, "--frame-deadline", str(deadline)) as (ep, server):
        trickle = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sockwire.bench.aioload",
                "trickle",
                "aio",
                loop,
                ep,
                "--connections",
                "1000",
                "--interval",
                "0.5",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert trickle.stdout is not None
            assert trickle.stdout.readline().strip() == "connected 1000"
            started = time.monotonic()
            with sockwire.connect(ep) as good:
                for i in range(100):
                    good.send(b"request %d" % i)
                    assert good.recv(timeout=5) == b"request %d" % i
            served_in = time.monotonic() - started
            out, _ = trickle.communicate(timeout=90)
        finally:
            trickle.kill()
            trickle.communicate()
        report = json.loads(out.strip().splitlines()[-1])
        stats = _stop(server)
    assert served_in < 5.0, f"the good client took {served_in:.2f} s"
    assert report["closed"] == 1000
    assert report["last_close_s"] < 3 * deadline
    assert report["first_close_s"] > deadline * 0.5  # not closed before its deadline
    assert stats["dropped"] >= 1000


@pytest.mark.timeout(120)
@pytest.mark.parametrize("impl", ["aio", "streams"])
@pytest.mark.parametrize("window", [1, 4])
def test_the_bench_runner_measures_both_implementations(impl: str, window: int) -> None:
    """`sockwire bench async` in small: the figures exist; none is judged."""
    from sockwire.bench import aioload
    from sockwire.bench.harness import Params
    from sockwire.bench.suites import build

    figures = aioload.case_runner(impl, "asyncio", 10, window)(Params(64, 400, None, None))
    assert figures["req_per_s"] > 0
    assert figures["cpu_us_per_req"] > 0
    (suite,) = build(["async"])
    assert len(suite.cases) == 16 and len(suite.comparisons) == 8
