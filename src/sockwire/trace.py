"""One hook that records every Socket call: name, arguments, result or errno, time.

sock.py calls :func:`emit` after each system call when at least one hook is
installed; with none installed the cost is one truth test. The tour's
``syscalls`` list and the CLI's ``--trace/--hex/--json`` both read these
events, so nobody hand-writes a print of a system call.

An :class:`Event` renders the way strace does::

    socket(AF_UNIX, SOCK_SEQPACKET, 0) = 5
    connect(5, "/tmp/x.sock") = -1 ECONNREFUSED
    recv(6, 100, MSG_PEEK) = 5 b"hello"
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Event",
    "Hook",
    "add_hook",
    "emit",
    "installed",
    "note",
    "preview",
    "recording",
    "remove_hook",
]

PREVIEW_BYTES = 24


@dataclass(slots=True)
class Event:
    """One recorded call.

    ``args`` are already formatted the way strace shows them; ``data`` is the
    payload sent or received (for hex dumps), ``extra`` carries anything a
    reader may want as structured data (peer credentials, flags, address).
    """

    call: str
    args: tuple[str, ...]
    result: str
    errno: str | None = None
    fd: int | None = None
    time: float = field(default_factory=time.monotonic)
    data: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None

    def __str__(self) -> str:
        text = f"{self.call}({', '.join(self.args)})"
        if self.errno is not None:
            return f"{text} = -1 {self.errno}"
        text = f"{text} = {self.result}"
        if self.data is not None and self.call in _SHOW_DATA:
            text += f" {preview(self.data)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (data as latin-1-safe hex)."""
        out: dict[str, Any] = {
            "call": self.call,
            "args": list(self.args),
            "result": self.result,
            "errno": self.errno,
            "fd": self.fd,
            "time": self.time,
            "text": str(self),
        }
        if self.data is not None:
            out["len"] = len(self.data)
            out["hex"] = self.data.hex()
        if self.extra:
            out["extra"] = self.extra
        if self.pid is not None:
            out["pid"] = self.pid
        return out


# receives show the payload after the result (like strace shows the buffer)
_SHOW_DATA = frozenset({"recv", "recvfrom", "recvmsg", "recv_into", "read"})

Hook = Callable[[Event], None]

#: The installed hooks. Read-only outside this module: sock.py tests its
#: truth before formatting anything, so an idle trace costs one test per call.
installed: list[Hook] = []
_hooks = installed
_lock = threading.Lock()


def add_hook(hook: Hook) -> None:
    with _lock:
        _hooks.append(hook)


def remove_hook(hook: Hook) -> None:
    with _lock:
        if hook in _hooks:
            _hooks.remove(hook)


def emit(event: Event) -> None:
    """Give ``event`` to every hook. Hooks must not raise; a raising hook is removed."""
    for hook in tuple(_hooks):
        try:
            hook(event)
        except Exception:  # noqa: BLE001  # a broken hook must not break I/O
            remove_hook(hook)


def note(call: str, *args: str, result: str = "0", **extra: Any) -> None:
    """Record a step that is not a Socket call (fork, an `ip` command, os.read)."""
    if _hooks:
        emit(Event(call, tuple(args), result, extra=dict(extra)))


@contextmanager
def recording() -> Iterator[list[Event]]:
    """Collect every event of the block into a list."""
    events: list[Event] = []
    add_hook(events.append)
    try:
        yield events
    finally:
        remove_hook(events.append)


def preview(data: bytes, limit: int = PREVIEW_BYTES) -> str:
    """``b"hello"`` or ``b"hello wor"...(100 bytes)`` for long payloads."""
    if len(data) <= limit:
        return _bytes_literal(data)
    return f"{_bytes_literal(data[:limit])}...({len(data)} bytes)"


def _bytes_literal(data: bytes) -> str:
    body = repr(bytes(data))[2:-1].replace('"', '\\"')
    return f'b"{body}"'
