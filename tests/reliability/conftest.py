"""The reliability battery (issue 13): one report line per scenario in the pytest output.

Each scenario adds its counts with the ``report`` fixture, after its
assertions passed::

    report("R6", kills=25, hangs=0, partial=0, fds_leaked=0)

Counts of the same id add up across tests (one per transport, say), and the
terminal summary prints one line per id, in id order, e.g.
``R6 passed: 75 kills, 0 hangs, 0 partial, 0 fds leaked``. A scenario that
failed prints no line (pytest reports the failure). ``make test`` runs the
fast tier; ``make soak`` the full numbers (marker ``soak``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.reliability.report import FAILED as _FAILED
from tests.reliability.report import TOTALS as _TOTALS


def _sort_key(scenario: str) -> tuple[int, str]:
    found = re.match(r"R(\d+)", scenario)
    return (int(found.group(1)) if found else -1, scenario)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``report("R6", kills=25, hangs=0)``: add this test's counts to scenario R6's line."""

    def add(scenario: str, **counts: float) -> None:
        totals = _TOTALS.setdefault(scenario, {})
        for name, value in counts.items():
            if name.startswith(("slowest", "max", "peak")):  # a worst case, not a sum
                totals[name] = max(totals.get(name, value), value)
            else:
                totals[name] = totals.get(name, 0) + value

    return add


def _words(name: str, value: float) -> str:
    number = str(int(value)) if float(value).is_integer() else f"{value:.2f}"
    return f"{number} {name.replace('_', ' ')}"


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    skipped = (pytest.skip.Exception, pytest.xfail.Exception)
    if (
        call.when == "call"
        and call.excinfo is not None
        and not call.excinfo.errisinstance(skipped)
    ):
        found = re.search(r"test_r(\d+)_", item.nodeid)
        if found:
            _FAILED.add(f"R{int(found.group(1))}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TOTALS and not _FAILED:
        return
    terminalreporter.section("reliability battery")
    for scenario in sorted(set(_TOTALS) | _FAILED, key=_sort_key):
        totals = _TOTALS.get(scenario, {})
        verdict = "FAILED" if scenario in _FAILED else "passed"
        body = ", ".join(_words(name, value) for name, value in totals.items())
        terminalreporter.write_line(f"{scenario} {verdict}: {body}".rstrip(": "))
