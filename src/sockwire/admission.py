"""Who keeps a connection slot when a server is full: the fail-safe policy, sans-IO.

A server with a bounded number of connections (threads, or entries in a
poll loop) is locked out by whoever fills the slots and never lets go: 64
idle connections, or 64 senders of one empty frame every 2 s, kept every
other client of a default ``serve()`` waiting for as long as they stayed.
This module decides, from times a driver passes in, which connection must
go. The driver does the I/O: ``serve()`` shuts the chosen connection's
reading side down (its handler sees the end between two messages);
``sockwire echo``/``relay``/``listen -k`` call the same policy from their poll
loop (:mod:`sockwire.cli.admit`, which reads "a message" as "data moved").

The rules, with the defaults ``serve()`` uses::

    rule                 applies to                           what happens
    -------------------  -----------------------------------  ------------------------------
    first message        a connection waiting for its first   closed after FIRST_MESSAGE_TIMEOUT
                         message since it was accepted        (10 s) from accept
    idle                 waiting between messages             closed after ``idle`` (300 s in
                                                              serve(), by the Channel's own
                                                              read limit; None: never)
    full, and someone    the idle connection that has         evicted: the newcomer takes its
    is waiting to        waited longest for its peer. Idle:   slot at once. A busy connection
    connect              silent since accept for over         (its handler at work) or a
                         FIRST_GRACE (0.25 s), or quiet for   recently active one is never
                         over ACTIVE_WINDOW (0.25 s) since    chosen; with none to choose, the
                         its last message                     newcomer waits in the backlog

A well-behaved client talks in bursts of messages, so it is not quiet for a
quarter of a second while it uses its connection; connections that hold a
slot without using it, or trickle a message every few seconds, are idle
most of the time and go first. The grace spares a client between its
connect (or TLS handshake) and its first request. A recently active
connection is never evicted: the newcomer waits (at most a quarter of a
second) rather than cut a client in the middle of its work.

The numbers are small on purpose. An attacker who reconnects at once keeps
the backlog full, and a newcomer behind N of them waits for N evictions;
each slot can be taken back every 0.25 s, so 64 slots clear at least 256
a second (measured: a good client behind 1,000 reconnecting tricklers
waits about 4 s). The price: under such a flood, a client that pauses
longer than 0.25 s between requests may lose its connection (it sees the
end and reconnects). A peer that sends a valid message four times a second
or faster is, to this server, a busy client: many of those are the asyncio
driver's job.

A byte stream has no messages, so a driver that reads "a message" as "data
moved" (the command line's servers) would count a peer trickling one byte
every half second as active half the time, and its slots would turn over
only every half second. Such a driver also gives a minimum rate
(``min_rate``): at the limit, with a newcomer waiting, a connection that
moved fewer than ``min_rate`` bytes a second over the last RATE_WINDOW
(1 s), and in the window before, is idle once its grace is over, however
recently it moved. ``serve()`` counts whole messages and sets no rate.

Thread contract: ``serve()`` updates a :class:`Slot` from its handler's
thread (``waiting``/``got``: plain attribute writes, atomic under the GIL)
and asks :class:`Admission` under its own lock; a race between the two costs
at most evicting a connection that just received a message, which it still
handles before it sees the end.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass

__all__ = [
    "ACTIVE_WINDOW",
    "DEFAULT_IDLE_TIMEOUT",
    "FIRST_GRACE",
    "FIRST_MESSAGE_TIMEOUT",
    "RATE_WINDOW",
    "Admission",
    "Slot",
]

#: A new connection's first message must arrive within this many seconds of accept.
FIRST_MESSAGE_TIMEOUT = 10.0
#: ``serve()``'s default idle timeout: nothing received for this long between messages.
DEFAULT_IDLE_TIMEOUT = 300.0
#: A new connection may not be evicted before it had this long for its first message.
FIRST_GRACE = 0.25
#: A connection quiet for longer than this since its last message counts as idle.
ACTIVE_WINDOW = 0.25
#: With a minimum rate: the window its bytes are counted over (seconds).
RATE_WINDOW = 1.0


@dataclass(slots=True, eq=False)
class Slot:
    """One connection as the policy sees it; times are the driver's clock (monotonic)."""

    key: Hashable
    accepted: float
    #: since when it waits for its peer (None: busy, e.g. its handler is working)
    waiting: float | None = None
    #: how many messages arrived (the first one ends the first-message deadline)
    messages: int = 0
    #: why it was told to go, once it was (it may take a moment to leave)
    evicted: str | None = None
    #: bytes moved so far, as the driver last counted them (:meth:`count`)
    moved: int = 0
    #: when the current rate window began, and ``moved`` then
    window_at: float = 0.0
    window_base: int = 0
    #: bytes moved in the last complete window (None: none complete yet)
    last_window: int | None = None

    def wait(self, now: float) -> None:
        """It now waits for the peer's next message (a handler called recv)."""
        self.waiting = now

    def got(self, now: float) -> None:
        """A message arrived (recv returned): busy until it waits again."""
        self.messages += 1
        self.waiting = None

    def busy(self) -> None:
        """It is not waiting for the peer (a recv that failed, a handshake done)."""
        self.waiting = None

    def count(self, now: float, moved: int, window: float = RATE_WINDOW) -> None:
        """``moved`` bytes so far (a running total); a window of ``window`` s closes
        when a count comes after its end (a window that ran longer holds more)."""
        self.moved = moved
        if now - self.window_at >= window:
            self.last_window = moved - self.window_base
            self.window_at, self.window_base = now, moved

    def slow(self, least: float) -> bool:
        """Fewer than ``least`` bytes in the current window and in the last complete one."""
        if self.moved - self.window_base >= least:
            return False
        return self.last_window is None or self.last_window < least


class Admission:
    """The slots of one server and the rules of the module docstring.

    ``limit``: connections at once. ``first_message``: seconds from accept to
    the first message (None: no such deadline). ``idle``: seconds a waiting
    connection may stay silent between messages (None: the driver enforces
    it elsewhere, or never). ``first_grace``: how long a new connection is
    spared by :meth:`victim` while its first message is on the way;
    ``active_window``: how recent a last message must be to count as active.
    ``min_rate`` (bytes/s, None: no such rule): a connection that moved less
    than this over the last ``rate_window`` s (as :meth:`Slot.count` was told)
    counts as idle once its grace is over, however recently it moved.
    """

    def __init__(
        self,
        limit: int,
        *,
        first_message: float | None = FIRST_MESSAGE_TIMEOUT,
        idle: float | None = None,
        first_grace: float = FIRST_GRACE,
        active_window: float = ACTIVE_WINDOW,
        min_rate: float | None = None,
        rate_window: float = RATE_WINDOW,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit={limit}: at least 1")
        if min_rate is not None and (min_rate <= 0 or rate_window <= 0):
            raise ValueError(f"min_rate={min_rate}, rate_window={rate_window}: both above 0")
        self.min_rate = min_rate
        self.rate_window = rate_window
        self.limit = limit
        self.first_message = first_message
        self.idle = idle
        self.first_grace = first_grace
        self.active_window = active_window
        self._slots: dict[Hashable, Slot] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[Slot]:
        return iter(list(self._slots.values()))

    @property
    def full(self) -> bool:
        return len(self._slots) >= self.limit

    def add(self, key: Hashable, now: float, *, waiting: bool = True) -> Slot:
        """A new connection (accepted at ``now``); it waits for its peer unless told otherwise."""
        slot = Slot(key, now, now if waiting else None, window_at=now)
        self._slots[key] = slot
        return slot

    def remove(self, key: Hashable) -> None:
        self._slots.pop(key, None)

    def _deadline(self, slot: Slot) -> float | None:
        """When ``slot`` expires, if it keeps waiting (None: never)."""
        if slot.waiting is None or slot.evicted is not None:
            return None
        limits = []
        if slot.messages == 0 and self.first_message is not None:
            limits.append(slot.accepted + self.first_message)
        if self.idle is not None:
            limits.append(slot.waiting + self.idle)
        return min(limits) if limits else None

    def expired(self, now: float) -> list[Slot]:
        """Slots past their first-message or idle deadline, now marked evicted."""
        found = []
        for slot in self._slots.values():
            deadline = self._deadline(slot)
            if deadline is not None and deadline <= now:
                slot.evicted = "no first message in time" if slot.messages == 0 else "idle"
                found.append(slot)
        return found

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`expired` may find something (None: nothing pending)."""
        deadlines = [d for d in map(self._deadline, self._slots.values()) if d is not None]
        return min(deadlines) if deadlines else None

    def _idle_since(self, slot: Slot) -> float | None:
        """From when ``slot`` counts as idle if it keeps waiting (None: busy or leaving)."""
        if slot.waiting is None or slot.evicted is not None:
            return None
        if slot.messages == 0:
            return slot.accepted + self.first_grace
        if self.min_rate is not None and slot.slow(self.min_rate * self.rate_window):
            return slot.accepted + self.first_grace  # moving, but too little to count
        return slot.waiting + self.active_window

    def victim(self, now: float) -> Slot | None:
        """At the limit, with a newcomer waiting: the slot to free, now marked evicted.

        The idle one (module docstring) that has waited longest; None when
        none is idle (then see :meth:`next_victim`).
        """
        best: Slot | None = None
        for slot in self._slots.values():
            since = self._idle_since(slot)
            if since is None or since > now:
                continue
            if best is None or slot.waiting < best.waiting:  # type: ignore[operator]
                best = slot
        if best is not None:
            best.evicted = "evicted: the server was full and it was idle longest"
        return best

    def next_victim(self) -> float | None:
        """When :meth:`victim` may next find one if nothing changes (None: all busy)."""
        times = [t for t in map(self._idle_since, self._slots.values()) if t is not None]
        return min(times) if times else None

    def leaving(self) -> int:
        """Slots told to go that have not left yet."""
        return sum(1 for slot in self._slots.values() if slot.evicted is not None)
