"""Run tour stops, each in its own process group, and assemble their results."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .proc import Forked
from .stop import REGISTRY, StopSpec, run_in_stop_process

__all__ = ["StopResult", "run_stops", "select_stops"]

#: Consecutive calls of one name by one process shown before the rest are counted.
SHOW_REPEATS = 3


@dataclass
class StopResult:
    """One stop's verdict, as the JSON output carries it."""

    id: str
    title: str
    claim: str
    result: str  # "pass" | "fail" | "skip"
    syscalls: list[str] = field(default_factory=list)
    observed: list[str] = field(default_factory=list)
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "claim": self.claim,
            "result": self.result,
            "syscalls": self.syscalls,
            "observed": self.observed,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
        }


def select_stops(only: Iterable[str] | None = None) -> list[StopSpec]:
    """The registered stops, or only those named (unknown names raise KeyError)."""
    from . import stops  # noqa: F401  # registers every stop module

    if not only:
        return list(REGISTRY.values())
    chosen = []
    for stop_id in only:
        if stop_id not in REGISTRY:
            raise KeyError(stop_id)
        chosen.append(REGISTRY[stop_id])
    return chosen


def run_stops(specs: Iterable[StopSpec]) -> Iterable[StopResult]:
    """Run each stop in a fresh process; yield results as they finish."""
    for spec in specs:
        started = time.monotonic()
        forked = Forked(run_in_stop_process, (spec.id,), "A", new_group=True)
        outcome = forked.join(spec.timeout)
        result = StopResult(spec.id, spec.title, spec.claim, "pass")
        result.seconds = time.monotonic() - started
        result.syscalls = _syscall_lines(outcome.records)
        result.observed = [
            (r["text"] if r["role"] == "A" else f"{r['role']}: {r['text']}")
            for r in sorted(
                (r for r in outcome.records if r["t"] == "observe"), key=lambda r: r["time"]
            )
        ]
        if outcome.timed_out:
            result.result = "fail"
            result.reason = f"the stop did not finish within {spec.timeout:g} s"
        elif outcome.error is not None:
            kind, reason = outcome.error
            result.result = "skip" if kind == "skip" else "fail"
            result.reason = reason if kind != "crash" else f"crashed: {reason}"
        elif outcome.signal is not None:
            result.result = "fail"
            result.reason = f"the stop process died of signal {outcome.signal}"
        elif outcome.exitcode:
            result.result = "fail"
            result.reason = f"the stop process exited with {outcome.exitcode}"
        yield result


def _syscall_lines(records: list[dict[str, Any]]) -> list[str]:
    """Each process's calls in time order; long runs of one call are shortened.

    A run is one call name with one outcome, by one process: the EAGAIN that
    ends a loop of successful sends starts a run of its own, so it is shown.
    Of a long run the first SHOW_REPEATS calls and the last one are listed.
    ``exec`` steps (each a different command) are never shortened.
    """
    events = sorted((r for r in records if r["t"] == "event"), key=lambda r: r["time"])
    lines: list[str] = []
    run_key: tuple[str, str] | None = None  # (role, "call()" or "call() ERRNO")
    run_len = 0
    hidden: list[str] = []

    def flush() -> None:
        if len(hidden) > 2 and run_key is not None:
            lines.append(f"{run_key[0]}: ... {len(hidden) - 1} more {run_key[1]} calls")
            del hidden[:-1]
        lines.extend(hidden)
        hidden.clear()

    for record in events:
        call = record["text"].split("(", 1)[0]
        outcome = record["text"].rsplit(") = ", 1)[-1]
        failed = outcome.split(" ", 2)[1] if outcome.startswith("-1 ") else ""
        key = (record["role"], f"{call}() {failed}".strip())
        if key == run_key:
            run_len += 1
        else:
            flush()
            run_key, run_len = key, 1
        line = f"{record['role']}: {record['text']}"
        if run_len <= SHOW_REPEATS or call == "exec":
            lines.append(line)
        else:
            hidden.append(line)
    flush()
    for record in records:
        if record["t"] == "dropped":
            lines.append(f"{record['role']}: ... {record['count']} more calls not recorded")
    return lines
