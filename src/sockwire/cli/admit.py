"""The command line's servers fail safe: :mod:`sockwire.admission` driven by the poll loop.

``echo``, ``relay`` and ``listen -k`` hold at most ``--max-clients``
connections in one poll loop. Without this module, 64 idle TCP connections
(or 64 that trickle a byte now and then) kept every other client waiting
in the backlog for as long as they stayed. The rules are the library's
(``serve()`` uses the same :class:`~sockwire.admission.Admission`), read
for bytes instead of messages: data *moves* when a read from either socket
returns something, or a write makes progress::

    rule          applies to                          what happens           trace, summary
    ------------  ----------------------------------  ---------------------  ----------------
    first bytes   nothing moved either way within     closed                 expire,
                  FIRST_MESSAGE_TIMEOUT (10 s) of                            no_first_bytes
                  accept (--timeout S: S)
    idle          nothing moved either way for        closed                 expire,
                  DEFAULT_IDLE (300 s; --timeout S:                          idle_closed
                  S) since the last move
    full, and a   the connection over which nothing   closed; the newcomer   evict,
    client waits  has moved for longest, if that is   is accepted on the     evicted
    to connect    over 0.25 s (a new one: 0.25 s      loop's next turn
                  after accept); or one that moved
                  under MIN_RATE (64 bytes/s) over
                  the last second and the one before

A connection moving data at MIN_RATE or more is never evicted: then the
newcomer waits in the backlog (at most 0.25 s for one to go quiet, or until
one closes). The rate rule is what keeps a slowloris out of a byte stream:
a peer trickling a byte every half second moves data, but 2 bytes a second
is nobody's request. It applies only while the server is full and a client
waits; a slow stream keeps its slot as long as nobody needs it.

Each close is one note under ``--trace``/``--json`` (``evict``, ``expire``)
and a count in the summary, not a report line: a flood of silent peers
must not become a flood of stderr lines. A limit given by ``--timeout``
also reports each close it makes, as it always did.

Why these numbers (an operator's view): a client that connects sends its
request, or its server greets it, within milliseconds, and a TLS handshake
takes well under a second; 10 s leaves room for slow links. 300 s (socat
``-T`` and ``nc -w`` have no default) is long enough for the pauses of an
interactive session or a slow answer behind a relay, and short enough that
a peer that vanished without a FIN frees its slot within minutes; who
wants longer says ``--timeout S`` (up to 86400), which then also allows
that long for the first bytes (a connection pool's idle connections).
Eviction only happens when the server is full and someone waits, so a
quiet connection keeps its slot as long as nobody needs it.

Evicted and expired connections are closed on the loop's next turn, never
in the middle of a turn: poll's results for this turn may still name their
descriptors, and accept(2) could hand the same numbers to a newcomer.
``--exec`` servers are not covered: the program owns the socket and its
bytes never pass through sockwire. A TLS client of ``listen -k`` is a
member from accept: until its handshake is done nothing has moved for the
application (``bridge._Handshaking``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from ..admission import DEFAULT_IDLE_TIMEOUT, FIRST_MESSAGE_TIMEOUT, Admission, Slot
from .observe import say

__all__ = ["DEFAULT_IDLE", "EVICT_WAIT", "FIRST_BYTES", "MIN_RATE", "Gate", "Member"]

#: Seconds from accept to the first bytes moved either way (without --timeout).
FIRST_BYTES = FIRST_MESSAGE_TIMEOUT
#: Seconds a connection may move nothing either way (without --timeout).
DEFAULT_IDLE = DEFAULT_IDLE_TIMEOUT
#: Full with nobody idle: how long the listener is left alone before asking again.
EVICT_WAIT = 0.5
#: Full, and a client waits: a connection moving fewer bytes a second (either
#: way, over the last second and the one before) counts as idle.
MIN_RATE = 64.0


class Member(Protocol):
    """What the gate needs of a connection (:class:`~sockwire.cli.pump.Conn` is one)."""

    label: str

    def __hash__(self) -> int: ...  # the policy keys its slots by member

    def last_moved(self) -> float | None:
        """When data last moved either way (monotonic), None when it never has."""
        ...

    def bytes_moved(self) -> int:
        """Bytes moved either way so far (a running total)."""
        ...

    def evict(self, reason: str) -> None:
        """End the connection at the loop's next turn, for ``reason``."""
        ...


class Counts(Protocol):
    """The summary's counters (:class:`~sockwire.cli.pump.Stats`)."""

    evicted: int
    no_first_bytes: int
    idle_closed: int


class Gate:
    """The admission policy of one server, as a handler of the pump's loop.

    ``limit``: --max-clients. ``timeout``: --timeout (None: the defaults of
    the module docstring). ``report(text)``: a server's report line, for
    idle closes. The acceptor asks :meth:`make_room` when the server is
    full and its listener is readable.
    """

    def __init__(
        self,
        limit: int,
        *,
        timeout: float | None,
        stats: Counts,
        report: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.idle = DEFAULT_IDLE if timeout is None else timeout
        self.policy = Admission(
            limit,
            first_message=FIRST_BYTES if timeout is None else timeout,
            idle=self.idle,
            min_rate=MIN_RATE,
        )
        self.stats = stats
        self.report = report
        self.clock = clock

    def __len__(self) -> int:
        return len(self.policy)

    # ---- members

    def add(self, member: Member) -> None:
        """A connection accepted now (nothing has moved yet)."""
        self.policy.add(member, self.clock())

    def remove(self, member: Member) -> None:
        """The connection closed (its slot is free)."""
        self.policy.remove(member)

    def _sync(self) -> None:
        """Tell the policy what moved since it last asked: a move is a message that
        arrived (ending the first-bytes deadline) after which the connection waits again."""
        now = self.clock()
        for slot in self.policy:
            if slot.evicted is not None:
                continue
            member = _member(slot)
            slot.count(now, member.bytes_moved(), self.policy.rate_window)
            moved = member.last_moved()
            if moved is not None and (slot.messages == 0 or moved > (slot.waiting or 0.0)):
                slot.got(moved)
                slot.wait(moved)

    # ---- full, and a client waits

    def make_room(self) -> bool:
        """Evict the connection idle longest; False when none is idle (all move data)."""
        self._sync()
        now = self.clock()
        victim = self.policy.victim(now)
        if victim is None:
            return False
        member = _member(victim)
        quiet = now - (victim.waiting if victim.waiting is not None else victim.accepted)
        why = (
            f"nothing moved for {quiet:.2f} s"
            if quiet > self.policy.active_window or victim.messages == 0
            else f"it moves under {MIN_RATE:g} bytes/s"
        )
        say(
            "evict",
            member.label,
            f"{why}; the server is full (--max-clients {self.policy.limit}) and a client waits",
            quiet=round(quiet, 3),
        )
        self.stats.evicted += 1
        member.evict("evicted: the server was full and it was idle longest")
        return True

    def next_room(self) -> float | None:
        """When :meth:`make_room` may find a connection to evict (None: all move data)."""
        self._sync()
        return self.policy.next_victim()

    # ---- the loop's handler protocol: deadlines only

    def interest(self) -> list[tuple[int, int]]:
        return []

    def ready(self, fd: int, revents: int) -> None:
        pass

    def deadline(self) -> float | None:
        self._sync()
        return self.policy.next_deadline()

    def expire(self, now: float) -> None:
        self._sync()
        for slot in self.policy.expired(self.clock()):
            member = _member(slot)
            if slot.messages == 0:
                self.stats.no_first_bytes += 1
                why = f"no bytes either way within {self.policy.first_message:g} s of accept"
                say("expire", member.label, why, rule="first bytes")
            else:
                self.stats.idle_closed += 1
                why = f"no data either way for {self.idle:g} s"
                say("expire", member.label, why, rule="idle")
            if self.timeout is not None and self.report is not None:
                # asked for by name: one line, as --timeout always gave (the defaults
                # stay quiet: a flood of silent peers must not become a flood of lines)
                self.report(
                    f"{member.label}: no data either way for {self.timeout:g} s "
                    "(--timeout); closing"
                )
            member.evict(why)

    @property
    def done(self) -> bool:
        return False

    def close(self) -> None:
        pass


def _member(slot: Slot) -> Member:
    member: Member = slot.key  # type: ignore[assignment]  # Gate.add keys slots by member
    return member
