"""Run a function in a forked process and collect what it saw.

Every participant of a tour stop (the stop itself, "A", and each peer it
spawns, "B", "C", ...) is a real process. Each writes its records (trace
events, observations, its result or failure) as JSON lines to a private
temporary file as they happen, so nothing is lost when it is killed and a
writer never blocks on a slow reader. Its parent waits on a pidfd with a
deadline, then reads the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import trace
from ..errors import SockwireError

__all__ = ["MAX_EVENTS", "Failure", "Forked", "Outcome", "Recorder", "Skip"]

#: Trace events kept per participant; more are counted, not stored.
MAX_EVENTS = 300
#: Calls whose result is a byte count (a tally sums them).
_DATA_CALLS = frozenset(
    {"send", "sendto", "sendmsg", "write", "recv", "recvfrom", "recvmsg", "recv_into", "read"}
)


class Skip(Exception):  # a control-flow signal, not an error
    """Raised by a stop that cannot run here; ``reason`` says why."""


class Failure(Exception):
    """Raised when an observation contradicts the claim."""


class Recorder:
    """Writes one participant's records to its file, unbuffered, line by line."""

    def __init__(self, fd: int, role: str) -> None:
        self.fd = fd
        self.role = role
        self.events = 0
        self.dropped = 0
        self._tally: dict[str, list[int]] | None = None

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str) + "\n"
        os.write(self.fd, line.encode())

    def event(self, event: trace.Event) -> None:
        if self._tally is not None:
            self._count(event)
            return
        if self.events >= MAX_EVENTS:
            self.dropped += 1
            return
        self.events += 1
        self.write({"t": "event", "role": self.role, "time": event.time, "text": str(event)})

    def start_tally(self) -> None:
        """From now on count events per call (and errno) instead of writing each."""
        self._tally = {}

    def _count(self, event: trace.Event) -> None:
        assert self._tally is not None
        key = f"{event.call}() {event.errno}" if event.errno else f"{event.call}()"
        entry = self._tally.setdefault(key, [0, 0, event.call in _DATA_CALLS])
        entry[0] += 1
        head = event.result.split(" ", 1)[0]
        if event.errno is None and head.isdigit():
            entry[1] += int(head)
        else:
            entry[2] = 0  # no byte count to report for this call

    def end_tally(self, what: str) -> None:
        """Write one event line that sums up the calls counted since start_tally()."""
        tally, self._tally = self._tally, None
        parts = []
        for key, (count, total, sized) in (tally or {}).items():
            parts.append(f"{count} x {key}" + (f" = {total} bytes" if sized else ""))
        text = f"[{what}] " + (", ".join(parts) if parts else "no socket calls")
        self.write({"t": "event", "role": self.role, "time": time.monotonic(), "text": text})

    def observe(self, text: str) -> None:
        self.write({"t": "observe", "role": self.role, "time": time.monotonic(), "text": text})

    def finish(self) -> None:
        if self.dropped:
            self.write({"t": "dropped", "role": self.role, "count": self.dropped})


@dataclass
class Outcome:
    """What a forked participant left behind."""

    records: list[dict[str, Any]] = field(default_factory=list)
    value: Any = None
    error: tuple[str, str] | None = None  # (kind: fail|skip|crash, reason)
    signal: int | None = None
    exitcode: int | None = None
    timed_out: bool = False


class Forked:
    """``fn(recorder, *args)`` running in a child process that records as it goes."""

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        role: str,
        *,
        new_group: bool = False,
    ) -> None:
        self.role = role
        handle = tempfile.TemporaryFile(prefix="sockwire-tour-")  # noqa: SIM115
        self._file_fd = os.dup(handle.fileno())
        handle.close()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child_main(fn, args, role, self._file_fd, new_group)
        self.pid = pid
        self._pidfd = os.pidfd_open(pid)
        self.outcome: Outcome | None = None

    def join(self, timeout: float) -> Outcome:
        """Wait up to ``timeout`` seconds; a late child is killed (with its group)."""
        if self.outcome is not None:
            return self.outcome
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        outcome = Outcome()
        if not poller.poll(max(0.0, timeout) * 1000):
            outcome.timed_out = True
            for target in (-self.pid, self.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(target, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        os.close(self._pidfd)
        if os.WIFSIGNALED(status):
            outcome.signal = os.WTERMSIG(status)
        else:
            outcome.exitcode = os.WEXITSTATUS(status)
        outcome.records = _read_records(self._file_fd)
        os.close(self._file_fd)
        for record in outcome.records:
            if record["t"] == "result":
                outcome.value = record.get("value")
            elif record["t"] == "error":
                outcome.error = (record["kind"], record["reason"])
        self.outcome = outcome
        return outcome

    def kill(self) -> None:
        """End the child now (used when the parent itself is failing)."""
        if self.outcome is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.join(1.0)


def _read_records(fd: int) -> list[dict[str, Any]]:
    chunks = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 16, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    records = []
    for line in b"".join(chunks).splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a kill; the rest is still good
    return records


def _child_main(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    role: str,
    fd: int,
    new_group: bool,
) -> None:
    code = 0
    try:
        if new_group:
            os.setpgid(0, 0)
        recorder = Recorder(fd, role)
        trace.installed.clear()  # the parent's hooks do not belong here
        trace.add_hook(recorder.event)
        try:
            value = fn(recorder, *args)
        except Skip as exc:
            recorder.write({"t": "error", "kind": "skip", "reason": str(exc)})
        except Failure as exc:
            recorder.write({"t": "error", "kind": "fail", "reason": str(exc)})
        except SockwireError as exc:
            recorder.write(
                {"t": "error", "kind": "fail", "reason": f"{type(exc).__name__}: {exc}"}
            )
        except BaseException as exc:  # noqa: BLE001  # report a crash, do not lose it
            tb = traceback.format_exception(exc)
            recorder.write(
                {
                    "t": "error",
                    "kind": "crash",
                    "reason": f"{type(exc).__name__}: {exc}",
                    "traceback": "".join(tb[-6:]),
                }
            )
        else:
            recorder.write({"t": "result", "value": value})
        recorder.finish()
    except BaseException:  # noqa: BLE001  # nothing may escape a forked child
        code = 70
    finally:
        os._exit(code)
