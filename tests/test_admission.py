"""admission.py: the fail-safe slot policy, with a fake clock (times are plain numbers)."""

from __future__ import annotations

import pytest

from sockwire.admission import Admission, Slot


def test_the_longest_waiting_idle_one_goes_first_and_busy_ones_never() -> None:
    policy = Admission(3, first_message=None)
    a = policy.add("a", 0.0)
    b = policy.add("b", 1.0)
    c = policy.add("c", 2.0)
    assert policy.full
    a.got(0.5)  # a is busy (its handler works on a message)
    assert policy.victim(10.0) is b
    assert b.evicted is not None and policy.leaving() == 1
    assert policy.victim(10.0) is c, "b was already told to go"
    assert policy.victim(10.0) is None, "a is busy"
    assert policy.next_victim() is None
    a.wait(9.9)
    assert policy.victim(10.0) is None, "a was active a tenth of a second ago"
    assert policy.next_victim() == 9.9 + 0.25
    assert policy.victim(10.2) is a


def test_a_new_connection_has_a_grace_for_its_first_message() -> None:
    policy = Admission(2, first_message=None)
    active = policy.add("active", 0.0)
    active.got(0.1)
    active.wait(0.2)
    new = policy.add("new", 0.1)
    assert policy.victim(0.3) is None, "new is within its grace, active was active at 0.2"
    assert policy.next_victim() == 0.35
    assert policy.victim(0.36) is new
    assert policy.victim(0.46) is active


def test_a_trickler_of_empty_frames_cannot_outlast_a_good_client() -> None:
    policy = Admission(2, first_message=None)
    trickler = policy.add("trickler", 0.0)
    good = policy.add("good", 0.0)
    for t in range(1, 20):  # the trickler sends a message every 2 s; the good client talks
        if t % 2 == 0:
            trickler.got(t)
            trickler.wait(t)
        good.got(t + 0.999)
        good.wait(t + 0.999)
    assert policy.victim(20.0) is trickler, "quiet since 18"


def test_first_message_and_idle_deadlines() -> None:
    policy = Admission(10, first_message=10.0, idle=30.0)
    silent = policy.add("silent", 0.0)
    talker = policy.add("talker", 0.0)
    talker.got(1.0)
    talker.wait(1.0)
    assert policy.next_deadline() == 10.0
    assert policy.expired(9.9) == []
    assert policy.expired(10.0) == [silent]
    assert silent.evicted == "no first message in time"
    assert policy.next_deadline() == 31.0
    assert policy.expired(31.0) == [talker] and talker.evicted == "idle"
    assert policy.next_deadline() is None
    policy.remove("silent")
    policy.remove("talker")
    assert len(policy) == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(0)


def test_a_minimum_rate_counts_windows_of_bytes() -> None:
    """Slot.count closes a window when a count comes after its end; slow() asks both."""
    slot = Slot("s", 0.0, 0.0, window_at=0.0)
    slot.count(0.5, 10)
    assert slot.slow(64)  # 10 bytes so far, no window complete
    slot.count(1.0, 200)  # the first window: 200 bytes
    assert (slot.last_window, slot.window_base) == (200, 200)
    assert not slot.slow(64)  # the last window had plenty
    slot.count(2.0, 210)  # the second: 10 bytes
    assert slot.last_window == 10 and slot.slow(64)
    slot.count(2.5, 300)  # 90 bytes in the current one
    assert not slot.slow(64)
    with pytest.raises(ValueError, match="above 0"):
        Admission(4, min_rate=0)
