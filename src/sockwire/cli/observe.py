"""``--trace``, ``--hex`` and ``--json``: the trace hook's events, rendered on stderr.

Everything shown comes from :mod:`sockwire.trace`: Socket calls report
themselves, and the steps that are not system calls (a message counted, EOF
seen, a connection's totals) are :func:`say` notes. Nothing here prints a
system call by hand.

Output trouble is not a socket failure: when stderr's reader goes away
(``2>&1 | head -c1``) the hook records it and the command's loop stops with
the broken-pipe exit code (141) at its next turn, instead of the trace
module silently dropping the hook.
"""

from __future__ import annotations

import errno
import json
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

from .. import trace
from ..escape import one_line
from ..trace import Event

__all__ = ["Observer", "hexdump", "say"]

# calls whose payload travels out (>) or in (<)
_OUT = frozenset({"send", "sendto", "sendmsg", "sendall", "write", "send_fds"})
_IN = frozenset({"recv", "recvfrom", "recvmsg", "recv_into", "read", "recv_fds"})


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
            doc = event.to_dict()
            doc["wall"] = round(event.time + self._offset, 6)
            lines.append(json.dumps(doc, default=str))
        if self.trace_lines:
            lines.append(f"{self.clock(event.time)} {render(event)}")
        if self.hex_dump and event.data and event.errno is None:
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


def render(event: Event) -> str:
    """One line for an event: strace's form for calls, words for notes."""
    if event.extra.get("note"):
        return " ".join((event.call, *event.args))
    text = str(event)
    if event.call == "accept" and event.errno is None:
        keys = ("peer", "pid", "uid", "gid")
        text += "  " + " ".join(f"{k}={event.extra[k]}" for k in keys if k in event.extra)
    return text
