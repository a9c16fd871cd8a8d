"""R9: an EINTR storm. Round trips lose nothing, no InterruptedError surfaces,
and timeouts are still honoured (PEP 475 retries, with the time left).

* A child process takes SIGALRM every millisecond (setitimer, a Python
  handler that counts) while it does 10,000 request/replies through
  ``serve()`` and ``connect()`` over a UNIX socket, then waits on a silent
  channel with ``recv(timeout=0.2)``.
* The same child under ``strace -f -e inject=...:error=EINTR``: every second
  recvfrom/sendto/poll/ppoll/recvmsg/sendmsg/accept4 call fails with EINTR
  before it runs (10,000 round trips, about 20,000 EINTRs per call kind).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from tests.helpers import need_tool

CHILD = textwrap.dedent(
    """
    import json, signal, sys, tempfile, time
    from sockwire.client import connect
    from sockwire.errors import TimeoutError
    from sockwire.server import serve

    rounds, storm = int(sys.argv[1]), sys.argv[2] == "itimer"
    alarms = 0

    def tick(signum, frame):
        global alarms
        alarms += 1

    def echo(ch, peer):
        for msg in ch:
            ch.send(msg)

    interrupted = 0
    with tempfile.TemporaryDirectory(prefix="sw-r9-") as tmp:
        if storm:
            signal.signal(signal.SIGALRM, tick)
            signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        lost = 0
        try:
            with serve(f"unix:{tmp}/s.sock", echo).start() as server:
                with connect(server.endpoint) as client:
                    for i in range(rounds):
                        body = b"%d" % i
                        client.send(body)
                        if client.recv(timeout=30) != body:
                            lost += 1
                with connect(server.endpoint) as silent:
                    started = time.monotonic()
                    try:
                        silent.recv(timeout=0.2)
                    except TimeoutError:
                        pass
                    waited = time.monotonic() - started
        except InterruptedError:
            interrupted += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
    print(json.dumps({"lost": lost, "interrupted": interrupted, "alarms": alarms,
                      "waited": waited}), flush=True)
    """
)


def _run(argv: list[str], rounds: int, storm: str) -> dict[str, float]:
    proc = subprocess.run(
        [*argv, sys.executable, "-c", CHILD, str(rounds), storm],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.timeout(240)
def test_r09_10000_round_trips_under_a_1ms_interval_timer(report: Callable[..., None]) -> None:
    result = _run([], 10_000, "itimer")
    assert result["lost"] == 0 and result["interrupted"] == 0
    assert result["alarms"] > 100, "the storm happened"
    assert 0.2 <= result["waited"] < 0.2 * 3, "the timeout was honoured"
    report("R9", round_trips=10_000, signals=result["alarms"], lost=0, interrupted_errors=0)


@pytest.mark.timeout(240)
def test_r09_round_trips_with_strace_injected_eintr(report: Callable[..., None]) -> None:
    strace = need_tool("strace")
    calls = "recvfrom,sendto,poll,ppoll,recvmsg,sendmsg,accept4"
    result = _run(
        [strace, "-f", "-qq", "-o", "/dev/null", "-e", f"inject={calls}:error=EINTR:when=2+2"],
        10_000,
        "strace",
    )
    assert result["lost"] == 0 and result["interrupted"] == 0
    assert 0.2 <= result["waited"] < 0.2 * 3 + 1.0, "the timeout was honoured (strace is slow)"
    report("R9", strace_round_trips=10_000, lost=0, interrupted_errors=0)
