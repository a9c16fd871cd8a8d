"""R11: a slow consumer costs the producer bounded memory and nobody else anything.

A Pub (hwm 100, drop-newest) publishes 5,000 messages of 10 KiB, in bursts
of 50, to two subscribers: one never reads, one reads everything. The publisher's memory
stays within the high-water mark (100 queued copies per subscriber plus the
socket buffers and the writer's batch), every drop is counted (on the Pub;
on the Sub once a later message shows the gap), and the reading subscriber
is unaffected: it receives all 5,000, in order, none dropped, and publish()
never waits. Every ``timeout=`` of the patterns is
honoured when a peer stops reading: see tests/test_security_defects.py
(defect 3), reported in this row.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable

import pytest

from sockwire.patterns import Liveness, Pub, Sub
from tests.reliability.support import WAIT, short_tmp

LIVE = Liveness(interval=0.5, timeout=30.0)  # a slow reader is not a dead one here


@pytest.mark.timeout(120)
def test_r11_a_subscriber_that_never_reads(report: Callable[..., None]) -> None:
    total, size, hwm, burst = 5000, 10 * 1024, 100, 50
    body = b"b" * size
    with (
        short_tmp("sw-r11-") as tmp,
        Pub(f"unix:{tmp}/p.sock", hwm=hwm, policy="drop-newest", liveness=LIVE) as pub,
        Sub(pub.endpoint, hwm=1, liveness=LIVE) as slow,
        Sub(pub.endpoint, hwm=10_000, liveness=LIVE) as fast,
    ):
        slow.subscribe("t")
        fast.subscribe("t")
        got: list[int] = []
        progress = threading.Condition()

        def read() -> None:
            for _ in range(total):
                _, msg = fast.recv(timeout=WAIT)
                with progress:
                    got.append(int.from_bytes(msg[:4], "big"))
                    progress.notify_all()

        reader = threading.Thread(target=read)
        reader.start()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            slowest = 0.0
            for n in range(total):
                started = time.monotonic()
                pub.publish("t", n.to_bytes(4, "big") + body)
                slowest = max(slowest, time.monotonic() - started)
                if n % burst == burst - 1:  # bursts the reading subscriber can keep up with
                    with progress:
                        assert progress.wait_for(lambda n=n: len(got) > n, WAIT)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            reader.join(WAIT)
        assert not reader.is_alive()
        per_sub = {name.split()[0]: stats for name, stats in pub.subscriber_stats().items()}
    stats = list(per_sub.values())
    dropped_fast = min(s.dropped for s in stats)
    dropped_slow = max(s.dropped for s in stats)
    # the reading subscriber, beside one that never reads: everything, in order
    assert got == list(range(total))
    assert dropped_fast == 0 and fast.stats.missed == 0
    # the one that never reads: bounded, and every drop counted on the Pub
    assert dropped_slow >= total - hwm - 200, "most copies for it were dropped"
    budget = 2 * hwm * (size + 64) + 8 * (1 << 20)  # queues + socket buffers + batches
    assert peak - base < budget, f"publisher peak {peak - base} bytes > {budget}"
    assert slowest < 1.0, "publish() never waited on the slow subscriber"
    report(
        "R11",
        published=total,
        slow_sub_dropped_counted=dropped_slow,
        fast_sub_received=len(got),
        fast_sub_dropped=dropped_fast,
        peak_publisher_MiB=round((peak - base) / (1 << 20), 2),
    )
