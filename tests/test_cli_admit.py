"""cli/admit.py: the command line's servers drive sockwire.admission (fake clock, fake members).

The real servers under real peers are in tests/test_cli_failsafe.py and
tests/reliability/test_r05_slowloris.py; here the Gate's reading of bytes
into the policy's events is checked step by step.
"""

from __future__ import annotations

import pytest

from sockwire.cli.admit import DEFAULT_IDLE, FIRST_BYTES, MIN_RATE, Gate
from sockwire.cli.pump import Stats

pytestmark = pytest.mark.timeout(10)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Member:
    """A connection as the gate sees it: when data last moved, how much, and its eviction."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.moved: float | None = None
        self.total = 0
        self.evicted: str | None = None

    def move(self, now: float, count: int = 1_000) -> None:
        """``count`` bytes moved at ``now`` (a client's request or answer, by default)."""
        self.moved = now
        self.total += count

    def last_moved(self) -> float | None:
        return self.moved

    def bytes_moved(self) -> int:
        return self.total

    def evict(self, reason: str) -> None:
        self.evicted = reason


def _gate(limit: int, timeout: float | None = None) -> tuple[Gate, Clock, Stats, list[str]]:
    clock, stats, reports = Clock(), Stats(), []
    gate = Gate(limit, timeout=timeout, stats=stats, report=reports.append, clock=clock)
    return gate, clock, stats, reports


def test_the_defaults_are_the_librarys_numbers() -> None:
    gate, _, _, _ = _gate(4)
    assert (gate.policy.first_message, gate.policy.idle) == (FIRST_BYTES, DEFAULT_IDLE)
    assert (FIRST_BYTES, DEFAULT_IDLE) == (10.0, 300.0)
    timed, _, _, _ = _gate(4, timeout=30.0)
    assert (timed.policy.first_message, timed.policy.idle) == (30.0, 30.0)


def test_a_silent_connection_is_closed_after_the_first_bytes_deadline_quietly() -> None:
    gate, clock, stats, reports = _gate(4)
    silent, talker = Member("silent"), Member("talker")
    gate.add(silent)
    gate.add(talker)
    clock.now += 1.0
    talker.move(clock.now)
    assert gate.deadline() == 100.0 + FIRST_BYTES
    clock.now = 100.0 + FIRST_BYTES
    gate.expire(clock.now)
    assert silent.evicted is not None and talker.evicted is None
    assert (stats.no_first_bytes, stats.idle_closed, stats.evicted) == (1, 0, 0)
    assert reports == [], "the defaults close quietly (a note under --trace, a count)"
    gate.remove(silent)
    assert gate.deadline() == 101.0 + DEFAULT_IDLE


def test_idle_counts_data_either_way_and_timeout_reports_each_close() -> None:
    gate, clock, stats, reports = _gate(4, timeout=5.0)
    member = Member("echo 127.0.0.1:4000")
    gate.add(member)
    for _ in range(10):  # data every 4 s: never idle for 5
        clock.now += 4.0
        member.move(clock.now)
        gate.expire(clock.now)
    assert member.evicted is None
    clock.now += 5.0
    assert gate.deadline() == clock.now
    gate.expire(clock.now)
    assert member.evicted is not None and stats.idle_closed == 1
    assert reports == ["echo 127.0.0.1:4000: no data either way for 5 s (--timeout); closing"]


def test_full_the_longest_quiet_goes_and_one_moving_data_never_does() -> None:
    gate, clock, stats, _ = _gate(3)
    a, b, c = Member("a"), Member("b"), Member("c")
    for member in (a, b, c):
        gate.add(member)
        member.move(clock.now)
    clock.now += 1.0
    a.move(clock.now - 0.1)  # moving data: quiet for less than 0.25 s
    b.move(clock.now - 0.9)
    c.move(clock.now - 0.5)
    assert gate.make_room() and b.evicted is not None and stats.evicted == 1
    assert gate.make_room() and c.evicted is not None
    assert not gate.make_room(), "a moved data 0.1 s ago"
    assert a.evicted is None
    assert gate.next_room() == pytest.approx(clock.now - 0.1 + 0.25)
    clock.now += 0.2
    assert gate.make_room() and a.evicted is not None


def test_a_newcomer_has_a_grace_then_goes_first_if_it_said_nothing() -> None:
    gate, clock, _, _ = _gate(2)
    old, new = Member("old"), Member("new")
    gate.add(old)
    old.move(clock.now)
    clock.now += 0.1
    gate.add(new)
    clock.now += 0.2  # old quiet for 0.3 s, new silent for 0.2 s (its grace is 0.25)
    assert gate.make_room() and old.evicted is not None
    assert not gate.make_room()
    clock.now += 0.05
    assert gate.make_room() and new.evicted is not None


def test_every_read_or_write_counts_as_movement() -> None:
    """A connection that keeps moving a little (a read every 0.2 s) is never a victim;
    the gate passes each move on as the policy's message."""
    gate, clock, _, _ = _gate(1)
    member = Member("m")
    gate.add(member)
    for _ in range(50):
        clock.now += 0.2
        member.move(clock.now)
        assert not gate.make_room()
    assert gate.policy._slots[member].messages == 50


def test_full_a_trickler_goes_after_its_grace_though_it_just_moved() -> None:
    """A byte every 0.2 s moves data but is nobody's request: at the limit, with a
    client waiting, it goes once its grace is over. A client moving its requests at
    MIN_RATE or more in the same time keeps its slot."""
    gate, clock, stats, _ = _gate(2)
    trickler, client = Member("trickler"), Member("client")
    gate.add(trickler)
    gate.add(client)
    clock.now += 0.2
    trickler.move(clock.now, 1)
    client.move(clock.now, int(MIN_RATE))
    assert not gate.make_room(), "both are within their grace"
    clock.now += 0.2
    trickler.move(clock.now, 1)
    client.move(clock.now, int(MIN_RATE))
    assert gate.make_room()
    assert trickler.evicted is not None and client.evicted is None
    assert stats.evicted == 1
    gate.remove(trickler)
    assert not gate.make_room(), "the client moves enough: it is never the one to go"


def test_the_rate_counts_the_last_window_so_a_pause_inside_a_busy_stream_is_spared() -> None:
    """A stream that moved plenty over the last second and just began a new window
    is not slow; one that stayed under the rate for a whole window and since is."""
    gate, clock, _, _ = _gate(1)
    stream = Member("stream")
    gate.add(stream)
    for _ in range(6):  # 1.2 s of 100 bytes every 0.2 s: 500 bytes a second
        clock.now += 0.2
        stream.move(clock.now, 100)
        assert not gate.make_room()
    clock.now += 0.1  # a pause shorter than the active window, early in a new window
    assert not gate.make_room()
    for _ in range(15):  # 3 s of 2 bytes a second: slow in the window and the last
        clock.now += 0.2
        stream.move(clock.now, 1)
        if gate.make_room():
            break
    assert stream.evicted is not None
    assert clock.now - 100.0 > 1.5, "not before a whole slow window"
