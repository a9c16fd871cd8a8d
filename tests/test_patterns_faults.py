"""Patterns against real processes that stop, die and come back.

* Heartbeats declare a SIGSTOP'd peer dead within the configured time (3x
  slack): a Req whose Rep froze, a Pub whose Sub froze.
* A SIGKILL'd server fails what was pending at once (EOF), and clients
  reconnect to the server that replaces it (a new process, same endpoint).
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sockwire.errors import ConnectionLost
from sockwire.patterns import Liveness, Pub, Rep, Req, Sub

WAIT = 10.0
FAST = Liveness(interval=0.1, timeout=0.5)


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sw-patf-") as path:
        yield path


class Child:
    """A forked process running ``body(report)``; ``report(text)`` reaches the parent."""

    def __init__(self, body: Callable[[Callable[[str], None]], None]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                os.close(read_end)
                body(lambda text: os.write(write_end, text.encode() + b"\n") and None)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write_end)
        self.pid = pid
        self.reaped = False
        self._pipe = os.fdopen(read_end, "rb")

    def line(self) -> str:
        text = self._pipe.readline().decode().strip()
        assert text, "the child ended without reporting"
        return text

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.kill(self.pid, sig)
        if sig == signal.SIGKILL:  # dead (its sockets closed) before the caller goes on
            os.waitpid(self.pid, 0)
            self.reaped = True

    def stop(self) -> None:
        """SIGSTOP, and wait until it has taken effect (kill() returns before that)."""
        os.kill(self.pid, signal.SIGSTOP)
        _, status = os.waitpid(self.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status)

    def reap(self) -> None:
        if not self.reaped:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.reaped = True
        self._pipe.close()


def _serve_rep(endpoint: str) -> Callable[[Callable[[str], None]], None]:
    def body(report: Callable[[str], None]) -> None:
        def handler(data: bytes) -> bytes:
            if data == b"never":
                signal.pause()  # this request is never answered
            return data + f" from {os.getpid()}".encode()

        with Rep(endpoint, handler, liveness=FAST) as rep:
            report(rep.endpoint)
            signal.pause()

    return body


@pytest.mark.timeout(60)
def test_heartbeats_declare_a_stopped_rep_dead(tmp: str) -> None:
    child = Child(_serve_rep(f"unix:{tmp}/rep.sock"))
    try:
        endpoint = child.line()
        with Req(endpoint, liveness=FAST, timeout=WAIT) as req:
            assert req.request(b"hi") == f"hi from {child.pid}".encode()
            child.stop()
            started = time.monotonic()
            with pytest.raises(ConnectionLost, match="heartbeat timeout"):
                req.request(b"anyone there?")
            elapsed = time.monotonic() - started
            assert req.dead == 1
        child.kill(signal.SIGCONT)
    finally:
        child.reap()
    assert elapsed < 3 * FAST.timeout


@pytest.mark.timeout(60)
def test_heartbeats_declare_a_stopped_subscriber_dead(tmp: str) -> None:
    with Pub("tcp://127.0.0.1:0", liveness=FAST) as pub:

        def body(report: Callable[[str], None]) -> None:
            with Sub(pub.endpoint, liveness=FAST) as sub:
                sub.subscribe("t")
                report("subscribed")
                signal.pause()

        child = Child(body)
        try:
            assert child.line() == "subscribed"
            assert pub.stats.subscribers == 1
            child.stop()
            started = time.monotonic()
            assert pub.wait_for(lambda p: p.stats.subscribers == 0, 3 * FAST.timeout)
            elapsed = time.monotonic() - started
            assert pub.dead == 1
        finally:
            child.reap()
    assert elapsed < 3 * FAST.timeout


@pytest.mark.timeout(60)
def test_req_survives_its_rep_being_killed_and_replaced(tmp: str) -> None:
    endpoint = f"unix:{tmp}/rep.sock"
    first = Child(_serve_rep(endpoint))
    second = None
    try:
        assert first.line() == endpoint
        with Req(endpoint, liveness=FAST, timeout=WAIT) as req:
            assert req.request(b"a") == f"a from {first.pid}".encode()
            outcome: list[BaseException] = []

            def ask() -> None:
                try:
                    req.request(b"never")
                except BaseException as exc:
                    outcome.append(exc)

            asker = threading.Thread(target=ask)
            asker.start()
            assert req.wait_for(lambda r: len(r.core.pending) == 1, WAIT)
            first.kill()  # mid-request: EOF fails it at once, long before its timeout
            asker.join()
            assert isinstance(outcome[0], ConnectionLost)
            second = Child(_serve_rep(endpoint))  # the stale socket file is replaced
            assert second.line() == endpoint
            assert req.request(b"b") == f"b from {second.pid}".encode()
            assert req.connects == 2
            assert req.stats.failed == 1
    finally:
        first.reap()
        if second is not None:
            second.reap()


@pytest.mark.timeout(60)
def test_sub_follows_its_pub_across_a_process_restart(tmp: str) -> None:
    endpoint = f"unix:{tmp}/pub.sock"

    def body(report: Callable[[str], None]) -> None:
        with Pub(endpoint, liveness=FAST) as pub:
            report("up")
            for n in range(10_000):  # bounded: 10,000 ticks of 10 ms at most
                pub.publish("tick", f"{os.getpid()} {n}".encode())
                time.sleep(0.01)  # the publisher's pace, not synchronisation

    first = Child(body)
    second = None
    try:
        assert first.line() == "up"
        with Sub(endpoint, liveness=FAST) as sub:
            sub.subscribe("tick", timeout=WAIT)
            assert sub.recv(timeout=WAIT)[1].split()[0] == str(first.pid).encode()
            first.kill()
            second = Child(body)
            assert second.line() == "up"
            deadline = time.monotonic() + WAIT
            senders = set()
            while str(second.pid).encode() not in senders and time.monotonic() < deadline:
                senders.add(sub.recv(timeout=WAIT)[1].split()[0])
            assert str(second.pid).encode() in senders
            assert sub.connects == 2
    finally:
        first.reap()
        if second is not None:
            second.reap()


@pytest.mark.timeout(60)
def test_unsubscribe_timeout_covers_a_pub_that_stopped_reading(tmp: str) -> None:
    """A Pub frozen (SIGSTOP) while a Sub unsubscribes 400 prefixes of 1 KB: once the
    socket buffers are full, unsubscribe(timeout=1) returns within its timeout (3x
    slack) and drops the link; it used to block for as long as the Pub stayed frozen."""
    endpoint = f"unix:{tmp}/pub.sock"

    def body(report: Callable[[str], None]) -> None:
        with Pub(endpoint, liveness=None):
            report("up")
            signal.pause()  # until killed

    child = Child(body)
    try:
        assert child.line() == "up"
        with Sub(endpoint, liveness=None) as sub:
            prefixes = [f"{n:04d}" + "p" * 1000 for n in range(400)]
            for prefix in prefixes:
                sub.subscribe(prefix, timeout=WAIT)
            child.stop()
            took = []
            for prefix in prefixes:  # bounded: 400 calls of at most 1 s (3 s with slack)
                started = time.monotonic()
                sub.unsubscribe(prefix, timeout=1.0)
                took.append(time.monotonic() - started)
            assert not sub.core.wanted, "every prefix is gone, told or not"
        child.kill(signal.SIGCONT)
    finally:
        child.reap()
    assert max(took) < 3.0, f"unsubscribe(timeout=1) returned after {max(took):.1f} s"
    assert max(took) >= 0.9, "the buffers filled: one unsubscribe had to wait"
