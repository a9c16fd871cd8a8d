"""``--trace``, ``--hex`` and ``--json``: the trace hook's events, rendered on stderr.

Everything shown comes from :mod:`sockwire.trace`: Socket calls report
themselves, and the steps that are not system calls (a message counted, EOF
seen, a connection's totals) are :func:`say` notes. Nothing here prints a
system call by hand.

Output trouble is not a socket failure: when stderr's reader goes away
(``2>&1 | head -c1``) the hook records it and the command's loop stops with
the broken-pipe exit code (141) at its next turn, instead of the trace
module silently dropping the hook.

``--json`` means JSON lines on stderr, all of them: trace events (with
``--trace`` too: no text beside them), the ``listening on`` line, reports,
summaries, library warnings and the final error, each one JSON object
(schema: docs/JSON.md). :func:`line` is how a command says something on
stderr in either mode; :class:`JsonStderr`, installed by ``main`` for a
``--json`` run, turns any other line written to stderr into an object too,
so no text line can slip between them. Payload bytes appear only with
``--hex`` (``"hex"``); otherwise an event carries the length (``"len"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import select
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

from .. import trace
from ..escape import one_line
from ..trace import Event
from .ratelimit import Limiter

__all__ = [
    "JsonStderr",
    "Observer",
    "flush_limited",
    "hexdump",
    "json_mode",
    "limited",
    "limited_due",
    "line",
    "say",
    "set_json_mode",
]

# calls whose payload travels out (>) or in (<)
_OUT = frozenset({"send", "sendto", "sendmsg", "sendall", "write", "send_fds"})
_IN = frozenset({"recv", "recvfrom", "recvmsg", "recv_into", "read", "recv_fds"})


class _Mode:
    json = False


_MODE = _Mode()
_line_lock = threading.Lock()
_LIMITS = Limiter()
#: the longest rate-limited line: at most PIPE_BUF, so a pipe with room takes it at once
_MAX_LIMITED = 4000


def set_json_mode(on: bool) -> None:
    """Every stderr line of this run a JSON object (``--json``); set by ``main``."""
    _MODE.json = on


def json_mode() -> bool:
    return _MODE.json


def line(event: str, text: str, **fields: Any) -> None:
    """One line on stderr: ``sockwire: TEXT``, or ``{"event": EVENT, "message": TEXT, ...}``.

    For what a command tells its user outside the trace: ``listening on``,
    a summary, the final error. Never raises for a closed stderr (the
    command's own output decides its exit code). Lines a peer can cause
    once per connection go through :func:`limited` instead.
    """
    _write(_format(event, text, fields))


def limited(event: str, text: str, key: str, **fields: Any) -> None:
    """:func:`line` for reports and library warnings: rate-limited, never blocking.

    Rate-limited by ``key`` (:mod:`.ratelimit`: the first 10 of a kind, then
    one line a second with the count, written by :func:`flush_limited`), and
    written only when stderr takes it at once: a pipe nobody reads (or a
    terminal stopped with ^S) must not stop a server in write(2). A line
    stderr could not take is counted, and the count is said with the next
    line that goes out.
    """
    now = time.monotonic()
    flush_limited(now)
    if _LIMITS.admit(key, text, now):
        _try_write(event, text, fields)


def _format(event: str, text: str, fields: dict[str, Any]) -> str:
    if _MODE.json:
        doc = {"event": event, "message": text, "wall": round(time.time(), 6), **fields}
        return json.dumps(doc, default=str)
    return f"sockwire: {one_line(text)}"


def _write(out: str) -> None:
    with _line_lock:
        try:
            sys.stderr.write(out + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


class _Unwritten:
    count = 0


def _try_write(event: str, text: str, fields: dict[str, Any]) -> None:
    """Write the line only if stderr takes it without waiting (else count it).

    poll(2) says POLLOUT on a pipe when a page is free, and a write of at
    most PIPE_BUF (4096) bytes then completes at once; a regular file is
    always writable; a terminal stopped with ^S is not. So the line is cut
    to fit in PIPE_BUF (it is one line of text, never data).
    """
    try:
        poller = select.poll()
        poller.register(sys.stderr.fileno(), select.POLLOUT)
        writable = bool(poller.poll(0))
    except (OSError, ValueError, io.UnsupportedOperation):
        writable = True  # not a descriptor (a test's StringIO): it cannot block
    if not writable:
        _Unwritten.count += 1
        return
    out = _fitted(event, text, fields)
    count = _Unwritten.count
    if count:
        note = f"{count} report lines were not written: stderr was full (is anyone reading it?)"
        both = _fitted("unwritten", note, {"count": count}) + "\n" + out
        if len(both) <= _MAX_LIMITED:  # else the count waits for a shorter line
            out, _Unwritten.count = both, 0
    _write(out)


def _fitted(event: str, text: str, fields: dict[str, Any]) -> str:
    """The formatted line, its texts cut until it is at most :data:`_MAX_LIMITED` long."""
    out = _format(event, text, fields)
    if len(out) <= _MAX_LIMITED:
        return out
    cut = {k: v[:300] + " ..." if isinstance(v, str) else v for k, v in fields.items()}
    out = _format(event, text[:300] + " ...", cut)
    if len(out) <= _MAX_LIMITED:
        return out
    return _format(event, text[:100] + " ...", {})  # escaping made even that too long


def flush_limited(now: float | None = None, *, everything: bool = False) -> None:
    """Write the counts of rate-limited lines whose second is over (``everything``: all,
    when the command ends). The loop calls it at :func:`limited_due`."""
    for gone in _LIMITS.due(time.monotonic() if now is None else now, everything=everything):
        text = (
            f"{gone.count} more {'line' if gone.count == 1 else 'lines'} like this "
            f"(the first {_LIMITS.burst} of a kind are shown, then one line a second); "
            f"the last: {gone.last}"
        )
        _try_write("suppressed", text, {"count": gone.count, "last": gone.last})


def limited_due() -> float | None:
    """When :func:`flush_limited` has something to write (None: nothing counted)."""
    return _LIMITS.next_due()


class JsonStderr(io.TextIOBase):
    """sys.stderr for a ``--json`` run: any line that is not a JSON object becomes one.

    The structured lines (:func:`line`, the Observer's events) pass through
    as written; a stray text line (``sockwire: ...`` from code that writes
    to stderr itself, argparse's usage) becomes ``{"event": "message",
    "message": ...}``. Lines are assembled across writes; a partial line is
    held until its newline, or written out by :meth:`close`.
    """

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            pieces = (self._partial + text).split("\n")
            self._partial = pieces.pop()
            out = [self._json(piece) for piece in pieces if piece.strip()]
            if out:
                self.raw.write("\n".join(out) + "\n")
        return len(text)

    @staticmethod
    def _json(text: str) -> str:
        if text.startswith("{") and text.endswith("}"):
            return text
        message = text.removeprefix("sockwire: ")
        return json.dumps({"event": "message", "message": message})

    def flush(self) -> None:
        self.raw.flush()

    def fileno(self) -> int:
        return self.raw.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def close(self) -> None:
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest.strip():
            with contextlib.suppress(OSError, ValueError):
                self.raw.write(self._json(rest) + "\n")
                self.raw.flush()
        super().close()


def say(call: str, *args: str, **extra: Any) -> None:
    """A note for the watchers: ``eof fd=5``, ``message #3 5 bytes from unnamed``.

    Costs one truth test when nobody watches.
    """
    if trace.installed:
        trace.emit(Event(call, tuple(args), "", extra={"note": True, **extra}))


def hexdump(data: bytes, indent: str = "    ", width: int = 16) -> list[str]:
    """``0000  68 65 6c 6c 6f           hello`` lines, like ``xxd``/socat ``-x``."""
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset : offset + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{indent}{offset:04x}  {hexes:<{width * 3 - 1}}  {text}")
    return lines


class Observer:
    """Installs one trace hook that writes the chosen renderings to ``out``."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        trace_lines: bool = False,
        hex_dump: bool = False,
        json_lines: bool = False,
    ) -> None:
        self.out = out if out is not None else sys.stderr
        self.trace_lines = trace_lines
        self.hex_dump = hex_dump
        self.json_lines = json_lines
        self.broken = False
        self._lock = threading.Lock()
        # wall clock = monotonic + offset, fixed once so times never jump
        self._offset = time.time() - time.monotonic()

    @property
    def active(self) -> bool:
        return self.trace_lines or self.hex_dump or self.json_lines

    def __enter__(self) -> Observer:
        if self.active:
            trace.add_hook(self.hook)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        trace.remove_hook(self.hook)

    def check(self) -> None:
        """Raise BrokenPipeError once the output's reader has gone."""
        if self.broken:
            raise BrokenPipeError(errno.EPIPE, "the trace output's reader went away")

    def clock(self, when: float) -> str:
        wall = when + self._offset
        stamp = time.strftime("%H:%M:%S", time.localtime(wall))
        return f"{stamp}.{int((wall % 1) * 1_000_000):06d}"

    def hook(self, event: Event) -> None:
        if self.broken:
            return
        lines: list[str] = []
        if self.json_lines:
            lines.append(self.json_event(event))
        elif self.trace_lines:
            lines.append(f"{self.clock(event.time)} {render(event)}")
        if self.hex_dump and event.data and event.errno is None and not self.json_lines:
            direction = ">" if event.call in _OUT else "<" if event.call in _IN else "="
            lines.append(
                f"{direction} {self.clock(event.time)} fd {event.fd} {event.call} "
                f"{len(event.data)} bytes"
            )
            lines.extend(hexdump(event.data))
        if not lines:
            return
        with self._lock:
            try:
                self.out.write("\n".join(one_line(line) for line in lines) + "\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):
                self.broken = True
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
                self.broken = True

    def json_event(self, event: Event) -> str:
        """One event as a JSON line; its payload as ``"hex"`` only with --hex."""
        size = len(event.data) if event.data is not None else None
        if not self.hex_dump and (event.data is not None or event.call in _OUT | _IN):
            event = _without_payload(event)
        doc: dict[str, Any] = {"event": "note" if event.extra.get("note") else "call"}
        doc.update(event.to_dict())
        if size is not None:
            doc["len"] = size
        doc["wall"] = round(event.time + self._offset, 6)
        return json.dumps(doc, default=str)


def _without_payload(event: Event) -> Event:
    """The event with its bytes gone: previews in the arguments become ``<bytes>``,
    ``data`` None (the caller keeps the count as ``len``)."""
    return dataclasses.replace(event, args=tuple(_redact(arg) for arg in event.args), data=None)


def _redact(arg: str) -> str:
    if arg.startswith(('b"', '[b"')):
        return "<bytes>"
    return arg


def render(event: Event) -> str:
    """One line for an event: strace's form for calls, words for notes."""
    if event.extra.get("note"):
        return " ".join((event.call, *event.args))
    text = str(event)
    if event.call == "accept" and event.errno is None:
        keys = ("peer", "pid", "uid", "gid")
        text += "  " + " ".join(f"{k}={event.extra[k]}" for k in keys if k in event.extra)
    return text
