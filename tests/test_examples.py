"""The scripts in examples/ run as a user would run them, and say what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: script -> lines its output must contain
EXPECTED = {
    "worker_pipe.py": ["job 4: 16", "worker exited with 0"],
    "fd_passing.py": ["with 1 fd(s)", "the file says: written by the child, read by the parent"],
    "private_service.py": [
        "mode of the socket file: 0o600",
        "hello from pid",
        "socket file left behind: False",
    ],
    "log_collector.py": ["worker 0 started", "worker 2 started", "from unnamed pid="],
}


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for line in EXPECTED[script]:
        assert line in done.stdout, done.stdout
