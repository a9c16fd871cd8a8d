"""The tour, run as a user runs it: `sockwire tour --json` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from sockwire.tour.runner import select_stops


def _tour(*args: str) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "sockwire", "tour", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


def test_every_stop_passes_and_the_json_has_the_documented_shape() -> None:
    code, doc = _tour()
    stops = doc["stops"]
    assert isinstance(stops, list)
    failing = {s["id"]: s["reason"] for s in stops if s["result"] != "pass"}
    assert not failing
    assert code == 0
    for stop in stops:
        assert set(stop) >= {"id", "title", "claim", "result", "syscalls", "observed", "reason"}
        assert stop["syscalls"], f"{stop['id']} shows no system calls"
        assert stop["observed"], f"{stop['id']} observed nothing"
    assert doc["summary"] == {"pass": len(stops), "fail": 0, "skip": 0}
    assert [s["id"] for s in stops] == [s.id for s in select_stops()]


def test_only_runs_the_named_stops() -> None:
    code, doc = _tour("--only", "stream")
    assert code == 0
    assert [s["id"] for s in doc["stops"]] == ["stream"]  # type: ignore[index]
