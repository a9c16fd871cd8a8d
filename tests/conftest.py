"""Shared test rules: every test leaves no fd, thread or child process behind.

``async def`` tests need no plugin: each runs once on the default asyncio
loop and once on uvloop (``[asyncio]``/``[uvloop]`` in its id), in a fresh
loop that is closed, with its executor, before the leak check; the test's
own timeout (pytest-timeout) applies as to any test.

Tests that need root, an external tool or a kernel feature use the helpers
in ``tests/helpers.py``: on a user's machine they skip with the reason; under
``CI=true`` they fail, so CI never hides a missing prerequisite.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# rows of the reliability battery proven by tests outside tests/reliability/
from tests.reliability.report import pytest_runtest_logreport  # noqa: F401

#: Every ``async def`` test runs once per loop kind (see pytest_pyfunc_call).
AIO_LOOPS = ("asyncio", "uvloop")

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


def pytest_sessionstart(session: pytest.Session) -> None:
    """libuv opens a process-wide pipe (its signal lock) with the first uvloop loop
    and keeps it: open it now, so it is no test's leak."""
    try:
        import uvloop
    except ImportError:  # the [uvloop] tests then fail with the reason
        return
    uvloop.new_event_loop().close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every coroutine test over the loop kinds."""
    if inspect.iscoroutinefunction(metafunc.function):
        metafunc.fixturenames.append("aio_loop")
        metafunc.parametrize("aio_loop", AIO_LOOPS)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a coroutine test on a new loop of its kind (sockwire.aio.run)."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    from sockwire.aio import run

    kind = pyfuncitem.callspec.params["aio_loop"]
    wanted = inspect.signature(function).parameters  # a test may ask for aio_loop too
    kwargs = {name: pyfuncitem.funcargs.get(name, kind) for name in wanted}
    run(function(**kwargs), loop=kind)
    return True
