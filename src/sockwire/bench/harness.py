"""The benchmark harness: cases, two real processes per run, interleaved rounds, ratios.

A *case* is one way of moving messages between two processes (sockwire over
a UNIX Channel, a hand-written stdlib loop, pyzmq, C, ...). Each case makes
its two connection ends before fork(); the parent and the child each open
their end after the fork. A *driver* (round trip, one-way, memory) runs the
same pattern over any case. A *suite* is a list of cases and the ratios
(sockwire / peer) it reports, each with an optional target.

Method: every case runs once per round, rounds interleave (sockwire, peer,
sockwire, peer, ...), the two processes are pinned to different cores where
the machine has two, and each ratio is the median of the per-round ratios
with min-max shown. Timings never enter pass/fail tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Case",
    "Comparison",
    "Conn",
    "Ends",
    "Params",
    "Suite",
    "SuiteResult",
    "cpus",
    "run_suite",
]


class Conn(Protocol):
    """One end of a case's connection, opened in its own process."""

    def send(self, data: bytes) -> None: ...

    def recv(self) -> Any: ...  # something with len()

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class Ends:
    """Both ends of a connection, made before fork; each opened after it."""

    parent: Callable[[], Conn]
    child: Callable[[], Conn]
    cleanup: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Params:
    """What a driver is asked to do in one run."""

    size: int  # message size in bytes
    count: int  # messages (or round trips)
    cpu_parent: int | None
    cpu_child: int | None
    total: int = 0  # bytes, for byte-volume drivers (relay, memory)


Driver = Callable[["Case", Params], dict[str, float]]


@dataclass
class Case:
    """One contender. ``make`` builds its ends; ``run`` overrides the driver (C, relay)."""

    key: str
    label: str
    group: str  # "sockwire" or "peer"
    make: Callable[[], Ends] | None = None
    run: Callable[[Params], dict[str, float]] | None = None
    missing: Callable[[], str | None] = lambda: None
    one_core: bool = False  # pin both processes to the same core


@dataclass(frozen=True)
class Comparison:
    """``sockwire / peer`` on one metric, with the target the issue sets (if any).

    An empty ``peer`` makes the target absolute: the sockwire figure itself.
    """

    sockwire: str
    peer: str
    metric: str
    target: float | None = None
    direction: str = ">="  # ratio must be >= target (or <= for lower-is-better metrics)
    note: str = ""


@dataclass
class Suite:
    name: str
    title: str
    metrics: Sequence[tuple[str, str, bool]]  # (metric, unit, higher_is_better)
    cases: list[Case]
    comparisons: list[Comparison]
    driver: Driver | None
    full: Params
    quick: Params


@dataclass
class SuiteResult:
    """Every round's figures per case, and the ratios computed from them."""

    suite: Suite
    rounds: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def median(self, key: str, metric: str) -> float | None:
        values = [r[metric] for r in self.rounds.get(key, []) if metric in r]
        return statistics.median(values) if values else None

    def spread(self, key: str, metric: str) -> tuple[float, float] | None:
        values = [r[metric] for r in self.rounds.get(key, []) if metric in r]
        return (min(values), max(values)) if values else None

    def ratio(self, comparison: Comparison) -> tuple[float, float, float] | None:
        """(median, min, max) of the per-round ratios, or None if a side is missing."""
        mine = self.rounds.get(comparison.sockwire, [])
        if not comparison.peer:  # an absolute target: the figure itself
            values = [a[comparison.metric] for a in mine if comparison.metric in a]
            if not values:
                return None
            return statistics.median(values), min(values), max(values)
        theirs = self.rounds.get(comparison.peer, [])
        ratios = [
            a[comparison.metric] / b[comparison.metric]
            for a, b in zip(mine, theirs, strict=False)
            if comparison.metric in a and b.get(comparison.metric)
        ]
        if not ratios:
            return None
        return statistics.median(ratios), min(ratios), max(ratios)

    def to_dict(self) -> dict[str, Any]:
        suite = self.suite
        cases = {}
        for case in suite.cases:
            entry: dict[str, Any] = {"label": case.label, "group": case.group}
            if case.key in self.missing:
                entry["missing"] = self.missing[case.key]
            if case.key in self.errors:
                entry["error"] = self.errors[case.key]
            for metric, unit, _ in suite.metrics:
                value = self.median(case.key, metric)
                if value is not None:
                    low, high = self.spread(case.key, metric) or (value, value)
                    entry[metric] = {"median": value, "min": low, "max": high, "unit": unit}
            cases[case.key] = entry
        ratios = []
        for comparison in suite.comparisons:
            found = self.ratio(comparison)
            item: dict[str, Any] = {
                "sockwire": comparison.sockwire,
                "peer": comparison.peer,
                "metric": comparison.metric,
                "target": comparison.target,
                "direction": comparison.direction,
            }
            if found is None:
                item["ratio"] = None
            else:
                item["ratio"], item["min"], item["max"] = found
                if comparison.target is not None:
                    item["met"] = (
                        found[0] >= comparison.target
                        if comparison.direction == ">="
                        else found[0] <= comparison.target
                    )
            ratios.append(item)
        return {"title": suite.title, "cases": cases, "ratios": ratios}


def cpus() -> tuple[int | None, int | None]:
    """Two different cores for parent and child where the machine has two."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 2:
        return available[0], available[1]
    return None, None


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


Progress = Callable[[str], None]


class CaseFailed(RuntimeError):
    """A case could not be measured; the message carries the reason."""


def run_suite(suite: Suite, *, quick: bool, rounds: int, progress: Progress) -> SuiteResult:
    """Run every available case ``rounds`` times, interleaved."""
    result = SuiteResult(suite)
    params = suite.quick if quick else suite.full
    parent_cpu, child_cpu = cpus()
    for case in suite.cases:
        reason = case.missing()
        if reason:
            result.missing[case.key] = reason
    for number in range(1, rounds + 1):
        for case in suite.cases:
            if case.key in result.missing or case.key in result.errors:
                continue
            progress(f"{suite.name}: round {number}/{rounds}: {case.label}")
            pinned = Params(
                params.size,
                params.count,
                parent_cpu,
                parent_cpu if case.one_core else child_cpu,
                params.total,
            )
            try:
                figures = _run_in_worker(suite.name, case.key, pinned)
            except CaseFailed as exc:  # one broken case must not end the bench
                result.errors[case.key] = str(exc)
                continue
            result.rounds.setdefault(case.key, []).append(figures)
    return result


def _run_in_worker(suite: str, key: str, params: Params) -> dict[str, float]:
    """Run one case once in a fresh interpreter (see worker.py for why)."""
    argv = [
        sys.executable,
        "-m",
        "sockwire.bench.worker",
        suite,
        key,
        json.dumps(dataclasses.asdict(params)),
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        raise CaseFailed(f"{key}: no result within 600 s") from None
    lines = proc.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1])
    except (IndexError, ValueError):
        detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise CaseFailed(f"{key}: the worker died: {detail}") from None
    if "error" in reply:
        raise CaseFailed(reply["error"])
    figures: dict[str, float] = reply["ok"]
    return figures


# --------------------------------------------------------------------------
# Running the two halves of a case: fork, pin, report back through a pipe
# --------------------------------------------------------------------------


def fork_pair(
    case: Case,
    params: Params,
    parent_side: Callable[[Conn], dict[str, float]],
    child_side: Callable[[Conn], dict[str, float] | None],
    timeout: float = 300.0,
) -> dict[str, float]:
    """Run ``child_side`` in a forked, pinned child and ``parent_side`` here.

    Both get their opened end. Figures from both sides are merged. The child
    is killed if it outlives ``timeout``.
    """
    assert case.make is not None
    ends = case.make()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            _pin(params.cpu_child)
            conn = ends.child()
            figures = child_side(conn) or {}
            conn.close()
            os.write(write_fd, json.dumps({"ok": figures}).encode())
        except BaseException as exc:  # noqa: BLE001  # report, never escape a fork
            try:
                os.write(write_fd, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
            finally:
                code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    pidfd = os.pidfd_open(pid)
    previous = os.sched_getaffinity(0)
    try:
        _pin(params.cpu_parent)
        conn = ends.parent()
        try:
            figures = parent_side(conn)
        finally:
            conn.close()
        _await_exit(pidfd, pid, timeout, case.label)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        os.sched_setaffinity(0, previous)
        os.waitpid(pid, 0)
        os.close(pidfd)
        report = _read_all(read_fd)
        os.close(read_fd)
        ends.cleanup()
    reply = json.loads(report or b'{"error": "child died without a report"}')
    if "error" in reply:
        raise CaseFailed(reply["error"])
    figures.update(reply["ok"])
    return figures


def _await_exit(pidfd: int, pid: int, timeout: float, label: str) -> None:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if not poller.poll(timeout * 1000):
        os.kill(pid, signal.SIGKILL)
        raise CaseFailed(f"{label}: the child did not finish in {timeout:g} s")


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, int(len(sorted_values) * fraction))
    return sorted_values[index]


def now_ns() -> int:
    return time.perf_counter_ns()
