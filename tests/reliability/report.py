"""The battery's tally, shared by tests/conftest.py and tests/reliability/conftest.py.

Some rows are proven (in part) by tests that live beside the module they
test (the framing round trips in tests/test_framing.py, say). pytest calls a
conftest's ``pytest_runtest_logreport`` only for tests under its directory,
so tests/conftest.py imports the hook below, and their results count on the
row's line like the battery's own.
"""

from __future__ import annotations

import pytest

# id -> {count name: total}, in the order the names were first reported
TOTALS: dict[str, dict[str, float]] = {}
FAILED: set[str] = set()

#: Rows proven (in part) by tests that live beside the module they test: their
#: nodeid prefix -> (scenario, what one passing test adds to the line).
ELSEWHERE: dict[str, tuple[str, dict[str, float]]] = {
    "tests/test_framing.py::test_any_chunking_round_trips[": (
        "R1",
        {"framing_modes": 1, "hypothesis_examples": 2000},
    ),
    "tests/test_packet.py::test_sockwire_seqpacket_round_trips_at_any_packet_limit": (
        "R1",
        {"packet_codecs": 1, "hypothesis_examples": 2000},
    ),
    "tests/test_packet.py::test_plain_seqpacket_is_the_message_itself": (
        "R1",
        {"packet_codecs": 1, "hypothesis_examples": 2000},
    ),
    "tests/test_packet.py::test_random_packets_give_messages_or_a_documented_error": (
        "R1",
        {"garbage_packet_examples": 2000},
    ),
    "tests/test_framing.py::test_a_frame_trickled_two_bytes_at_a_time_costs_its_own_size[": (
        "R4",
        {"trickled_frames_bounded": 1},
    ),
    "tests/test_packet.py::test_a_flood_of_empty_fragments_costs_no_memory": (
        "R4",
        {"empty_fragment_floods_bounded": 1},
    ),
    "tests/test_packet.py::test_fragments_cost_max_size_plus_one_packet": (
        "R4",
        {"fragmented_messages_bounded": 1},
    ),
    "tests/test_channel_fake.py::test_capped_io_is_byte_identical_full_size": (
        "R10",
        {"messages_0_64KiB": 10_000, "messages_1MiB": 20, "byte_identical": 1},
    ),
    "tests/test_channel_fake.py::test_capped_io_is_byte_identical": (
        "R10",
        {"messages_0_64KiB": 300, "messages_1MiB": 1, "byte_identical": 1},
    ),
    "tests/test_cli_errors.py::test_connect_into_head_exits_141_quietly": (
        "R8",
        {"cli_into_head_quiet": 1},
    ),
    "tests/test_cli_errors.py::test_relay_trace_into_head_exits_141_quietly": (
        "R8",
        {"cli_into_head_quiet": 1},
    ),
    "tests/test_security_defects.py::test_defect3_": (
        "R11",
        {"write_timeouts_honoured": 1},
    ),
    # sockwire.aio holds the many-connection rows: per transport and loop
    "tests/test_aio_load.py::test_a_thousand_connections_of_a_hundred_requests": (
        "R15",
        {"aio_connections": 1000, "aio_req_rep": 100_000, "aio_lost_or_reordered": 0},
    ),
    "tests/test_aio_load.py::test_ten_thousand_connections_of_a_hundred_requests": (
        "R15",
        {"aio_connections": 10_000, "aio_req_rep": 1_000_000, "aio_lost_or_reordered": 0},
    ),
}


def _elsewhere(nodeid: str) -> tuple[str, dict[str, float]] | None:
    # the longest matching prefix: the fast capped-I/O test is a prefix of the soak one
    found = [prefix for prefix in ELSEWHERE if nodeid.startswith(prefix)]
    return ELSEWHERE[max(found, key=len)] if found else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    match = _elsewhere(report.nodeid)
    if match is None:
        return
    scenario, counts = match
    if report.failed:
        FAILED.add(scenario)
    elif report.passed:
        totals = TOTALS.setdefault(scenario, {})
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
