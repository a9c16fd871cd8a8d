"""How many report lines of one kind a server writes: the first few, then one a second.

A CLI server writes a line to stderr for each refused peer (``?allowed_uids=``),
failed handshake or broken connection. Under a flood of them (another user
connecting in a loop) that is one line per attempt: with stderr a pipe that
nobody reads, the pipe filled after about 600 lines and the server stopped
in write(2), serving nobody. So, per kind of line (a log message's
template, say)::

    the first BURST (10) lines     written as they come
    after that                     counted; once INTERVAL (1 s) after the first one
                                   counted, one line says how many and shows the last
    INTERVAL with nothing counted  the kind starts afresh: BURST lines again

Sans-IO: times come from the caller (a clock of its choice); the caller
writes what :meth:`Limiter.admit` lets through and what :meth:`Limiter.due`
returns, and asks :meth:`Limiter.next_due` when to come back. Memory: one
small record per kind; kinds are the program's own templates, not
peer-controlled text, and at most :data:`MAX_KINDS` are kept (beyond, while
all of them are counting, new kinds share the record ``other``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BURST", "INTERVAL", "MAX_KINDS", "Limiter", "Suppressed"]

#: Lines of one kind written before counting starts.
BURST = 10
#: Seconds between two lines that count what was left out.
INTERVAL = 1.0
#: Kinds remembered at once (the oldest quiet one is forgotten beyond that).
MAX_KINDS = 64


@dataclass(slots=True)
class Suppressed:
    """What :meth:`Limiter.due` hands back: ``count`` lines of ``key`` left out since
    ``since``; ``last`` is the text of the latest."""

    key: str
    count: int
    since: float
    last: str


@dataclass(slots=True)
class _Kind:
    shown: int = 0
    count: int = 0
    since: float = 0.0
    last: str = ""
    seen: float = 0.0


class Limiter:
    """The rule of the module docstring, for any number of kinds."""

    def __init__(self, burst: int = BURST, interval: float = INTERVAL) -> None:
        if burst < 0 or interval <= 0:
            raise ValueError(f"burst={burst}, interval={interval}: need >= 0 and > 0")
        self.burst = burst
        self.interval = interval
        self._kinds: dict[str, _Kind] = {}

    def admit(self, key: str, text: str, now: float) -> bool:
        """True: write this line now. False: it was counted (see :meth:`due`)."""
        kind = self._kinds.get(key)
        if kind is None:
            if len(self._kinds) >= MAX_KINDS and not self._forget():
                key = "other"  # every kind is counting: share one record, lose nothing
            kind = self._kinds.setdefault(key, _Kind(seen=now))
        elif not kind.count and now - kind.seen >= self.interval:
            kind.shown = 0  # quiet for a while: start afresh
        kind.seen = now
        if not kind.count and kind.shown < self.burst:
            kind.shown += 1
            return True
        if not kind.count:
            kind.since = now
        kind.count += 1
        kind.last = text
        return False

    def due(self, now: float, *, everything: bool = False) -> list[Suppressed]:
        """The counts whose interval is over (``everything``: all of them, at exit)."""
        out = []
        for key, kind in self._kinds.items():
            if kind.count and (everything or now >= kind.since + self.interval):
                out.append(Suppressed(key, kind.count, kind.since, kind.last))
                kind.count = 0
                kind.shown = self.burst  # still flooding: the next one is counted again
        return out

    def next_due(self) -> float | None:
        """When :meth:`due` will have something (None: nothing counted)."""
        times = [kind.since + self.interval for kind in self._kinds.values() if kind.count]
        return min(times) if times else None

    def _forget(self) -> bool:
        """Drop the kind quiet longest (nothing counted is lost); False when all count."""
        quiet = [key for key, kind in self._kinds.items() if not kind.count]
        if not quiet:
            return False
        del self._kinds[min(quiet, key=lambda key: self._kinds[key].seen)]
        return True
