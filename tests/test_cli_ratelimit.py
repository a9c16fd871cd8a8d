"""Report lines a peer can cause: rate-limited per kind, never blocking on stderr.

cli/ratelimit.py with a fake clock (property tests: nothing is lost, the
rate holds), then cli/observe.limited() in-process against a real pipe that
nobody reads.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockwire.cli import observe
from sockwire.cli.ratelimit import BURST, INTERVAL, MAX_KINDS, Limiter

pytestmark = pytest.mark.timeout(30)


def test_the_first_burst_then_one_count_a_second_then_afresh() -> None:
    limits = Limiter(burst=3, interval=1.0)
    shown = [limits.admit("refused", f"peer {i}", 10.0 + i * 0.01) for i in range(10)]
    assert shown == [True] * 3 + [False] * 7
    assert limits.next_due() == pytest.approx(10.03 + 1.0)
    assert limits.due(10.5) == []
    assert not limits.admit("refused", "peer 10", 10.95)
    (gone,) = limits.due(11.1)
    assert (gone.key, gone.count, gone.last) == ("refused", 8, "peer 10")
    assert not limits.admit("refused", "still flooding", 11.2), "no new burst while it floods"
    (gone,) = limits.due(12.3)
    assert gone.count == 1
    assert limits.admit("refused", "after a quiet second", 13.5), "a quiet second: afresh"


def test_kinds_are_limited_apart() -> None:
    limits = Limiter(burst=1, interval=1.0)
    assert limits.admit("log:refused", "a", 0.0)
    assert not limits.admit("log:refused", "b", 0.0)
    assert limits.admit("report", "a connection's error", 0.0)


def test_beyond_max_kinds_nothing_counted_is_lost() -> None:
    limits = Limiter(burst=0, interval=1.0)
    for n in range(MAX_KINDS + 5):
        assert not limits.admit(f"kind {n}", "x", 0.0)
    gone = limits.due(0.0, everything=True)
    assert sum(g.count for g in gone) == MAX_KINDS + 5


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0.0, 0.5)),
        min_size=0,
        max_size=400,
    )
)
def test_every_line_is_written_or_counted_and_the_rate_holds(
    events: list[tuple[str, float]],
) -> None:
    """Property: per kind, lines let through + lines counted == lines offered; and no
    kind writes more than BURST lines plus one count line in any INTERVAL."""
    limits = Limiter()
    now = 0.0
    out: dict[str, list[float]] = {}  # when each line of a kind went out (lines and counts)
    admitted: dict[str, int] = {}
    counted: dict[str, int] = {}
    offered: dict[str, int] = {}
    for key, step in events:
        now += step
        for gone in limits.due(now):
            counted[gone.key] = counted.get(gone.key, 0) + gone.count
            out.setdefault(gone.key, []).append(now)
        offered[key] = offered.get(key, 0) + 1
        if limits.admit(key, "line", now):
            admitted[key] = admitted.get(key, 0) + 1
            out.setdefault(key, []).append(now)
    for gone in limits.due(now, everything=True):
        counted[gone.key] = counted.get(gone.key, 0) + gone.count
    for key, total in offered.items():
        assert admitted.get(key, 0) + counted.get(key, 0) == total
        times = out.get(key, [])
        for start in times:
            assert sum(1 for t in times if start <= t < start + INTERVAL) <= BURST + 1


@contextlib.contextmanager
def _stderr_pipe() -> Iterator[tuple[int, int]]:
    """sys.stderr a real pipe (read end, write end) that nobody reads unless told."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    saved = sys.stderr
    sys.stderr = io.TextIOWrapper(os.fdopen(w, "wb", buffering=0), write_through=True)
    try:
        yield r, w
    finally:
        stream, sys.stderr = sys.stderr, saved
        stream.close()
        os.close(r)


def _drain(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_limited_lines_never_wait_for_a_full_stderr() -> None:
    """A pipe nobody reads: 5,000 reports of 5,000 kinds (no rate limit can help) return
    at once; what did not fit is counted and said with the next line that fits."""
    with _stderr_pipe() as (r, _):
        started = time.monotonic()
        for n in range(5000):
            observe.limited("report", f"connection {n}: reset " + "x" * 200, f"kind {n % 50}")
        assert time.monotonic() - started < 10.0, "never blocked in write(2)"
        first = _drain(r)
        assert first.count(b"\n") < 5000
        observe.limited("report", "after the reader came back", "another kind")
        after = _drain(r).decode()
    observe.flush_limited(everything=True)  # the counts, to the real stderr
    assert "report lines were not written: stderr was full" in after
    assert after.rstrip().endswith("sockwire: after the reader came back")


def test_plain_lines_still_block_and_arrive_whole() -> None:
    """line() (listening, summaries, the final error) is unchanged: written in full."""
    with _stderr_pipe() as (r, _):
        observe.line("summary", "relay: 1 connections")
        assert _drain(r) == b"sockwire: relay: 1 connections\n"
