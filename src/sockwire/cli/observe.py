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
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

from .. import trace
from ..escape import one_line
from ..trace import Event

__all__ = ["JsonStderr", "Observer", "hexdump", "json_mode", "line", "say", "set_json_mode"]

# calls whose payload travels out (>) or in (<)
_OUT = frozenset({"send", "sendto", "sendmsg", "sendall", "write", "send_fds"})
_IN = frozenset({"recv", "recvfrom", "recvmsg", "recv_into", "read", "recv_fds"})


class _Mode:
    json = False


_MODE = _Mode()
_line_lock = threading.Lock()


def set_json_mode(on: bool) -> None:
    """Every stderr line of this run a JSON object (``--json``); set by ``main``."""
    _MODE.json = on


def json_mode() -> bool:
    return _MODE.json


def line(event: str, text: str, **fields: Any) -> None:
    """One line on stderr: ``sockwire: TEXT``, or ``{"event": EVENT, "message": TEXT, ...}``.

    For what a command tells its user outside the trace: ``listening on``,
    a connection's error on a server that goes on, a summary. Never raises
    for a closed stderr (the command's own output decides its exit code).
    """
    if _MODE.json:
        doc = {"event": event, "message": text, "wall": round(time.time(), 6), **fields}
        out = json.dumps(doc, default=str)
    else:
        out = f"sockwire: {one_line(text)}"
    with _line_lock:
        try:
            sys.stderr.write(out + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


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
