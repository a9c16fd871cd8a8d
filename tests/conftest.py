"""Shared test rules: every test leaves no fd, thread or child process behind.

Tests that need root, an external tool or a kernel feature use the helpers
in ``tests/helpers.py``: on a user's machine they skip with the reason; under
``CI=true`` they fail, so CI never hides a missing prerequisite.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# rows of the reliability battery proven by tests outside tests/reliability/
from tests.reliability.report import pytest_runtest_logreport  # noqa: F401

settings.register_profile(
    "sockwire",
    database=None,  # no .hypothesis directory in the checkout
    deadline=None,  # a 2-core shared machine is noisy; we test counts, not time
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("sockwire")


def _open_fds() -> dict[int, str]:
    fds: dict[int, str] = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            fds[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except FileNotFoundError:
            continue  # the directory handle listdir itself used
    return fds


def _children() -> set[int]:
    kids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as handle:
                kids.update(int(pid) for pid in handle.read().split())
        except FileNotFoundError:
            continue
    return kids


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves an fd, a thread or a child process behind."""
    fds_before = _open_fds()
    threads_before = set(threading.enumerate())
    children_before = _children()
    yield
    new_threads = [t for t in threading.enumerate() if t not in threads_before]
    for thread in new_threads:
        thread.join(timeout=5)  # a finishing thread gets its chance; no sleeping
    alive = [t.name for t in new_threads if t.is_alive()]
    fds_after = _open_fds()
    leaked = {
        fd: target
        for fd, target in fds_after.items()
        if fd not in fds_before or fds_before[fd] != target
    }
    children = _children() - children_before
    problems = []
    if leaked:
        problems.append(f"leaked fds: {leaked}")
    if alive:
        problems.append(f"leaked threads: {alive}")
    if children:
        problems.append(f"leaked child processes: {sorted(children)}")
    if problems:
        pytest.fail("; ".join(problems))
