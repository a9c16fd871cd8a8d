"""R12: partition and heal between two network namespaces (nftables drops on the veth).

A Rep runs in host A, a Req in host B (heartbeats every 0.5 s, dead after
2 s of silence, connect timeout 1 s), each in its own process, requesting
in a loop. Each cycle pulls the cable (an nft table in A dropping all on its
veth), waits until the Req declares the Rep dead, then heals. Numbers to
hold: dead within 5 s of the partition, requests succeed again within 2 s
of the heal (asserted with 3x slack), and never a wrong, duplicated or
reordered reply. Fast tier: 2 partitions; soak: 20.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.reliability.netlab import A_IP, TwoHosts

PORT = 7712
REP = textwrap.dedent(
    f"""
    import sys
    from sockwire.patterns import Liveness, Rep
    with Rep("tcp://{A_IP}:{PORT}", lambda body: body, liveness=Liveness(0.5, 2.0)) as rep:
        print("ready", flush=True)
        sys.stdin.read()
    """
)
REQ = textwrap.dedent(
    f"""
    import json, select, sys, time
    from sockwire.errors import SockwireError
    from sockwire.patterns import Liveness, Req
    say = lambda **kw: print(json.dumps(dict(kw, t=time.monotonic())), flush=True)
    with Req("tcp://{A_IP}:{PORT}", liveness=Liveness(0.5, 2.0), connect_timeout=1.0,
             timeout=1.0) as req:
        i = dead = 0
        while not select.select([sys.stdin], [], [], 0)[0]:
            try:
                reply = req.request(b"%d" % i)
                say(ok=i) if reply == b"%d" % i else say(wrong=i)
            except SockwireError as exc:
                say(err=type(exc).__name__, i=i)
            if req.dead != dead:
                dead = req.dead
                say(dead=dead)
            i += 1
        say(done=i, late=req.stats.late, unexpected=req.stats.unexpected)
    """
)


class Lines:
    """JSON lines from a child's stdout, read with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready, "the child said nothing for 30 s"
        line = self.proc.stdout.readline()
        assert line, f"the child ended: {self.proc.wait()}"
        return json.loads(line)  # type: ignore[no-any-return]

    def until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for event in self:
            assert "wrong" not in event, f"a wrong reply: {event}"
            if predicate(event):
                return event
        raise AssertionError("unreachable")


def _run(partitions: int, report: Callable[..., None]) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    with TwoHosts("r12") as hosts:
        rep = subprocess.Popen(
            hosts.argv("a", [sys.executable, "-c", REP]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        req = subprocess.Popen(
            hosts.argv("b", [sys.executable, "-c", REQ]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert rep.stdout is not None and rep.stdout.readline().strip() == "ready"
            events = Lines(req)
            deads, heals = [], []
            for _ in range(partitions):
                for _ in range(5):  # a few good round trips first
                    events.until(lambda e: "ok" in e)
                hosts.partition("a")
                cut = time.monotonic()
                dead = events.until(lambda e: "dead" in e)
                deads.append(dead["t"] - cut)
                hosts.heal("a")
                healed = time.monotonic()
                back = events.until(lambda e, healed=healed: "ok" in e and e["t"] > healed)
                heals.append(back["t"] - healed)
            assert req.stdin is not None
            req.stdin.write("stop\n")
            req.stdin.flush()
            done = events.until(lambda e: "done" in e)
        finally:
            for proc in (req, rep):
                if proc.stdin is not None:
                    proc.stdin.close()
                try:
                    proc.wait(15)
                finally:
                    proc.kill()
                    proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
    assert max(deads) < 5.0, f"declared dead after {max(deads):.2f} s"
    assert max(heals) < 2.0 * 3, f"back {max(heals):.2f} s after the heal"
    assert done["unexpected"] == 0
    report(
        "R12",
        partitions=partitions,
        slowest_dead_s=round(max(deads), 2),
        slowest_back_after_heal_s=round(max(heals), 2),
        wrong_or_duplicate_replies=0,
        late_replies_dropped=done["late"],
    )


@pytest.mark.timeout(180)
def test_r12_partition_and_heal_twice(report: Callable[..., None]) -> None:
    _run(2, report)


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_r12_partition_and_heal_20_times(report: Callable[..., None]) -> None:
    _run(20, report)
