"""What a tour stop is, and the handle a stop function works with.

A stop is a function registered with :func:`stop`. It runs in its own forked
process (role "A"), spawns its peers as further processes ("B", "C", ...),
makes real system calls through :class:`sockwire.Socket` (each one is
recorded by the trace hook), writes what it saw with :meth:`Stop.observe`,
and verifies the claim with :meth:`Stop.check`. It never asserts from
memory: every line of ``observed`` comes from a call it just made.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .. import trace
from .proc import Failure, Forked, Outcome, Recorder, Skip

__all__ = ["REGISTRY", "Failure", "Peer", "Skip", "Stop", "StopSpec", "stop"]


@dataclass(frozen=True)
class StopSpec:
    """One stop of the tour: an id, a title, the claim from the seeds, the code."""

    id: str
    title: str
    claim: str
    fn: Callable[[Stop], None]
    timeout: float = 5.0


#: Every registered stop, in tour order (the order the modules define them).
REGISTRY: dict[str, StopSpec] = {}


def stop(
    id: str,  # the stop's id, as in the JSON
    *,
    title: str,
    claim: str,
    timeout: float = 5.0,
) -> Callable[[Callable[[Stop], None]], Callable[[Stop], None]]:
    """Register a stop function under ``id``."""

    def register(fn: Callable[[Stop], None]) -> Callable[[Stop], None]:
        if id in REGISTRY:
            raise ValueError(f"tour stop {id!r} registered twice")
        REGISTRY[id] = StopSpec(id, title, claim, fn, timeout)
        return fn

    return register


class Peer:
    """A spawned peer process; :meth:`join` returns what its function returned."""

    def __init__(self, owner: Stop, forked: Forked) -> None:
        self._owner = owner
        self._forked = forked
        self.pid = forked.pid
        self.role = forked.role
        self.signal: int | None = None
        self.exitcode: int | None = None

    def join(self, timeout: float = 3.0, *, expect_signal: bool = False) -> Any:
        """Wait for the peer; its records join ours; its failure becomes ours.

        With ``expect_signal`` a peer killed by a signal is not a failure:
        read :attr:`signal` afterwards.
        """
        outcome = self._forked.join(timeout)
        self._owner._absorb(outcome)
        self.signal = outcome.signal
        self.exitcode = outcome.exitcode
        if outcome.timed_out:
            raise Failure(f"peer {self.role} did not finish within {timeout:g} s")
        if outcome.signal is not None and not expect_signal:
            name = signal.Signals(outcome.signal).name
            raise Failure(f"peer {self.role} was killed by signal {outcome.signal} ({name})")
        if outcome.error is not None:
            kind, reason = outcome.error
            if kind == "skip":
                raise Skip(reason)
            raise Failure(f"peer {self.role}: {reason}")
        return outcome.value

    def kill(self) -> None:
        self._forked.kill()


class Stop:
    """The handle a stop function (and each of its peers) gets."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self.role = recorder.role
        self._peers: list[Peer] = []
        self._next_role = ord(self.role[-1]) + 1 if self.role == "A" else None
        self._tmpdir: str | None = None

    # ---- what the stop says

    def observe(self, text: str) -> None:
        """Record one observed fact (it came from a call just made)."""
        self._recorder.observe(text)

    def check(self, ok: bool, expectation: str) -> None:
        """Fail the stop, naming ``expectation``, unless ``ok``."""
        if not ok:
            raise Failure(f"expected {expectation}, but it was not observed")

    def skip(self, reason: str) -> NoReturn:
        """This stop cannot run here; ``reason`` names what is missing."""
        raise Skip(reason)

    def fail(self, reason: str) -> NoReturn:
        raise Failure(reason)

    # ---- peers and helpers

    def spawn(self, fn: Callable[..., Any], *args: Any, role: str | None = None) -> Peer:
        """Run ``fn(peer_stop, *args)`` in a new process; join it later."""
        if role is None:
            if self._next_role is None:
                role = f"{self.role}{len(self._peers) + 1}"
            else:
                role = chr(self._next_role)
                self._next_role += 1
        started = time.monotonic()  # the fork is listed before anything the child does
        forked = Forked(_peer_main, (fn, args), role)
        if trace.installed:
            trace.emit(trace.Event("fork", (), f"{forked.pid} ({role})", time=started))
        peer = Peer(self, forked)
        self._peers.append(peer)
        return peer

    @contextlib.contextmanager
    def tally(self, what: str) -> Iterator[None]:
        """Count the Socket calls of a busy loop instead of listing each one.

        The calls are still made through :class:`~sockwire.Socket` and traced;
        the syscalls list shows one line: ``[what] 17 send() = 1048576 bytes, ...``.
        """
        self._recorder.start_tally()
        try:
            yield
        finally:
            self._recorder.end_tally(what)

    def run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a helper program (``ip ...``), recorded as an ``exec`` step."""
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
        trace.note("exec", " ".join(argv), result=str(proc.returncode))
        if check and proc.returncode != 0:
            raise Failure(
                f"`{' '.join(argv)}` exited with {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    @property
    def tmpdir(self) -> str:
        """A private directory (mode 0700) for socket files; removed after the stop."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="sockwire-tour-")
        return self._tmpdir

    # ---- internals

    def _absorb(self, outcome: Outcome) -> None:
        for record in outcome.records:
            if record["t"] in ("event", "observe", "dropped"):
                self._recorder.write(record)

    def _cleanup(self) -> None:
        for peer in self._peers:
            peer.kill()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def _peer_main(recorder: Recorder, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    peer_stop = Stop(recorder)
    try:
        return fn(peer_stop, *args)
    finally:
        for peer in peer_stop._peers:
            peer.kill()


def run_in_stop_process(recorder: Recorder, stop_id: str) -> None:
    """The body of a stop's own process (role A)."""
    spec = REGISTRY[stop_id]
    handle = Stop(recorder)
    try:
        spec.fn(handle)
    finally:
        handle._cleanup()
