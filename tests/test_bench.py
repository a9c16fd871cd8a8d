"""The bench's smoke test: `--quick --json` runs and gives valid JSON. No timing is judged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sockwire.bench.harness import Comparison, SuiteResult
from sockwire.bench.suites import build


@pytest.mark.timeout(120)
def test_quick_json_smoke() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sockwire",
            "bench",
            "--quick",
            "--json",
            "--rounds",
            "1",
            "latency",
            "memory",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["quick"] is True
    assert {"host", "kernel", "cpu", "cores", "python"} <= set(doc["machine"])
    latency = doc["suites"]["latency"]
    stdlib = latency["cases"]["stdlib-unix"]
    assert stdlib["mean_us"]["median"] > 0
    for key, case in latency["cases"].items():
        # every case is measured, missing (with the reason) or failed (with the error)
        assert "mean_us" in case or case.get("missing") or case.get("error"), key
    assert all("ratio" in item for item in latency["ratios"])


def test_unknown_suite_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sockwire", "bench", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "valid: latency" in proc.stderr


def test_ratio_is_the_median_of_per_round_ratios() -> None:
    suite = build(["latency"])[0]
    result = SuiteResult(suite)
    result.rounds["a"] = [{"m": 10.0}, {"m": 20.0}, {"m": 30.0}]
    result.rounds["b"] = [{"m": 10.0}, {"m": 10.0}, {"m": 10.0}]
    assert result.ratio(Comparison("a", "b", "m")) == (2.0, 1.0, 3.0)
    assert result.ratio(Comparison("a", "", "m")) == (20.0, 10.0, 30.0)
    assert result.ratio(Comparison("a", "missing", "m")) is None


@pytest.mark.timeout(120)
def test_startup_suite_reports_the_ratio() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sockwire", "bench", "--quick", "--json", "--rounds=1", "startup"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    suite = json.loads(proc.stdout)["suites"]["startup"]
    for key in ("sockwire-help", "sockwire-relay-help", "python-import-socket"):
        assert suite["cases"][key]["startup_ms"]["median"] > 0
    assert {r["target"] for r in suite["ratios"]} == {2.5}  # judged by the bench, not here
