"""Push/pull: work spread round robin over pullers, with credit-based backpressure.

A :class:`Push` binds an endpoint; each :class:`Pull` connects (reconnecting
with backoff). Nothing waits in an unbounded queue: a puller grants credit
for at most ``hwm`` items (its window), the pusher sends an item only to a
puller with credit, and ``push.send`` blocks (up to its timeout) while no
puller has any. A slow puller therefore holds at most its window; the
others keep working.

The pusher's state (:class:`PushCore`)::

    event                            effect
    -------------------------------  -----------------------------------------------------
    link greeted (HELLO)             a puller with credit 0, last in the round-robin order
    CREDIT(n)                        its credit += n (more than MAX_CREDIT in all: ProtocolError)
    send(item)                       the next puller in round-robin order that has credit gets
                                     ITEM(body) and credit -= 1; if none has credit, the
                                     pusher waits for CREDIT (backpressure) until its timeout
    a write to it fails              its credit is void; the item goes to the next puller
    the send's timeout passes while  TimeoutError; nothing written: the credit comes back;
    the item is being written (the   cut in two: the link is closed, its credit void
    puller stops reading)
    the link ends                    it leaves the order; its credit is void

The puller's state (:class:`PullCore`)::

    event                            effect
    -------------------------------  -----------------------------------------------------
    a new link                       CREDIT(window - queued) sent; outstanding = that
    ITEM(body)                       queued; outstanding -= 1 (an ITEM beyond the credit
                                     granted is a ProtocolError: the link closes)
    recv() takes an item             returned += 1; at a quarter of the window (at least 1):
                                     CREDIT(returned) sent, outstanding += returned
    the link ends                    outstanding = 0; queued items are still delivered

The puller keeps ``outstanding + queued <= window`` at every step. Delivery
is at most once: an item sent to a puller that dies before taking it is
lost (as in ZeroMQ); no acknowledgements, no redelivery.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Any

from ..address import Endpoint
from ..codecs import Codec
from ..connecting import DEFAULT_BACKOFF, Backoff
from ..errors import BadFrame, InvalidOperation, SockwireError, TimeoutError
from ..framing import DEFAULT_MAX_SIZE
from ..serving import DEFAULT_GRACE
from . import wire
from .base import DEFAULT_LIVENESS, L, NodeBase
from .driver import Link, Node
from .link import Liveness
from .wire import Msg, Role

__all__ = [
    "MAX_CREDIT",
    "Pull",
    "PullBase",
    "PullCore",
    "PullStats",
    "Push",
    "PushBase",
    "PushCore",
    "PushStats",
]

log = logging.getLogger("sockwire")

#: The most credit one puller may hold (its window); more is a protocol error.
MAX_CREDIT = 1 << 20


@dataclass
class PushStats:
    """``sent`` items; ``blocked``: send() calls that had to wait for credit;
    ``resent``: items re-routed after a write to a puller failed; ``pullers`` now."""

    sent: int = 0
    blocked: int = 0
    resent: int = 0
    pullers: int = 0


class PushCore:
    """The pusher's table (sans-IO): credit per puller and the round-robin order."""

    def __init__(self) -> None:
        self.credit: dict[int, int] = {}  # insertion order is the round-robin order
        self.sent_to: dict[int, int] = {}
        self._last: int | None = None
        self.stats = PushStats()

    def add(self, key: int) -> None:
        self.credit[key] = 0
        self.sent_to[key] = 0
        self.stats.pullers = len(self.credit)

    def remove(self, key: int) -> None:
        self.credit.pop(key, None)
        self.sent_to.pop(key, None)
        self.stats.pullers = len(self.credit)

    def grant(self, key: int, count: int) -> None:
        if key not in self.credit:
            return
        total = self.credit[key] + count
        if total > MAX_CREDIT:
            raise BadFrame(f"credit for {total} items", f"a window is at most {MAX_CREDIT}")
        self.credit[key] = total

    def void(self, key: int) -> None:
        if key in self.credit:
            self.credit[key] = 0

    def refund(self, key: int) -> None:
        """The item picked for ``key`` was not sent after all: its credit comes back."""
        if key in self.credit:
            self.credit[key] += 1
            self.sent_to[key] -= 1

    def ready(self) -> int:
        """Pullers that hold credit now."""
        return sum(1 for c in self.credit.values() if c > 0)

    def pick(self) -> int | None:
        """The next puller in round-robin order with credit (its credit taken), or None."""
        keys = list(self.credit)
        if not keys:
            return None
        start = 0
        if self._last in self.credit:
            start = keys.index(self._last) + 1
        for i in range(len(keys)):
            key = keys[(start + i) % len(keys)]
            if self.credit[key] > 0:
                self.credit[key] -= 1
                self.sent_to[key] += 1
                self._last = key
                return key
        return None


class PushBase(NodeBase[L]):
    """What both drivers' Push do with :class:`PushCore`; they add the waiting and sending."""

    role = Role.PUSH

    def _setup(self) -> None:
        self.core = PushCore()
        self._links_by_key: dict[int, L] = {}

    @property
    def stats(self) -> PushStats:
        return self.core.stats

    @property
    def ready_pullers(self) -> int:
        """Pullers that can take an item now (greeted, with credit left)."""
        return self.core.ready()

    def puller_stats(self) -> dict[str, int]:
        """Items sent to each live puller (keyed "#link peer")."""
        with self._lock:
            return {
                f"#{key} {self._links_by_key[key].peer}": count
                for key, count in self.core.sent_to.items()
                if key in self._links_by_key
            }

    def _payload(self, item: Any) -> bytes:
        """The ITEM message that carries ``item``."""
        return wire.ITEM_HEAD + self.codec.encode(item)

    def _blocked(self) -> None:
        """A send() has to wait for credit, the first time (lock held)."""
        self.core.stats.blocked += 1
        self._notify()

    def _has_credit(self) -> bool:
        return self.core.ready() > 0

    def _resend(self, key: int, link: L, exc: SockwireError) -> None:
        """Writing to puller ``key`` failed: its credit is void, the item goes to the next."""
        with self._lock:
            self.core.void(key)
            self.core.stats.resent += 1
        log.debug("PUSH: %s failed (%s); re-routing the item", link.peer, exc)

    def _delivered(self) -> None:
        with self._lock:
            self.core.stats.sent += 1

    def _credit(self, link: L, msg: wire.Credit) -> None:
        """A CREDIT: that puller may take more; a waiting send() looks again."""
        with self._lock:
            self.core.grant(link.key, msg.count)
            self._notify()

    def _link_ready(self, link: L) -> None:
        self.core.add(link.key)
        self._links_by_key[link.key] = link

    def _link_lost(self, link: L, error: BaseException | None) -> None:
        self.core.remove(link.key)
        self._links_by_key.pop(link.key, None)


class Push(PushBase[Link], Node):
    """The pushing side: binds ``endpoint``; ``send(item)`` goes to the next puller with credit."""

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        codec: str | Codec = "bytes",
        liveness: Liveness | None = DEFAULT_LIVENESS,
        max_connections: int = 64,
        max_size: int = DEFAULT_MAX_SIZE,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self._setup()
        super().__init__(
            endpoint,
            bind=True,
            codec=codec,
            liveness=liveness,
            max_connections=max_connections,
            max_size=max_size,
            grace=grace,
        )

    def send(self, item: Any, timeout: float | None = None) -> None:
        """Send ``item`` to the next puller with credit; wait for credit up to ``timeout``."""
        payload = self._payload(item)
        deadline = self._deadline(timeout)
        core = self.core
        waited = False
        while True:
            with self._lock:
                key = core.pick()
                while key is None:
                    if not waited:
                        waited = True
                        self._blocked()
                    self._wait(self._has_credit, deadline, "send")
                    key = core.pick()
                link = self._links_by_key[key]
            try:
                link.send(payload, deadline)
            except TimeoutError:
                # the puller granted credit but does not read: the item was not
                # delivered (nothing written, or the link cut and closed)
                with self._lock:
                    if link.broken:
                        core.void(key)
                    else:
                        core.refund(key)
                raise TimeoutError(
                    f"send on {self._ep.display()}",
                    f"the puller did not take the item within {timeout:g} s; it was not delivered",
                ) from None
            except SockwireError as exc:
                self._resend(key, link, exc)
                continue
            self._delivered()
            return

    def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Credit):
            super()._handle(link, msg)
            return
        self._credit(link, msg)


@dataclass
class PullStats:
    received: int = 0
    credit_sent: int = 0


class PullCore:
    """The puller's table (sans-IO): its window, what it owes, the credit it returns."""

    def __init__(self, window: int) -> None:
        if not 1 <= window <= MAX_CREDIT:
            raise InvalidOperation(f"hwm={window}", f"a window of 1 to {MAX_CREDIT} items")
        self.window = window
        self.queued = 0
        self.outstanding = 0
        self.returned = 0
        self.connected = False
        self.threshold = max(1, window // 4)
        self.stats = PullStats()

    def on_link(self) -> list[bytes]:
        self.connected = True
        self.returned = 0
        grant = self.window - self.queued
        self.outstanding = grant
        if grant <= 0:
            return []
        self.stats.credit_sent += grant
        return [wire.Credit(grant).encode()]

    def item(self) -> None:
        if self.outstanding <= 0:
            raise BadFrame("an ITEM beyond the credit granted", "the pusher ignored flow control")
        self.outstanding -= 1
        self.queued += 1
        self.stats.received += 1

    def took(self) -> bytes | None:
        """recv() took an item: CREDIT to send, when enough has been returned."""
        self.queued -= 1
        if not self.connected:
            return None
        self.returned += 1
        if self.returned < self.threshold:
            return None
        grant, self.returned = self.returned, 0
        self.outstanding += grant
        self.stats.credit_sent += grant
        return wire.Credit(grant).encode()

    def link_lost(self) -> None:
        self.connected = False
        self.outstanding = 0
        self.returned = 0


class PullBase(NodeBase[L]):
    """What both drivers' Pull do with :class:`PullCore`; they add the waiting and sending."""

    role = Role.PULL

    def _setup(self, hwm: int) -> None:
        self.core = PullCore(hwm)
        self._queue: collections.deque[tuple[bytes, Codec]] = collections.deque()
        self._link: L | None = None

    @property
    def stats(self) -> PullStats:
        return self.core.stats

    def _queued(self) -> bool:
        return bool(self._queue)

    def _take(self) -> tuple[bytes, Codec, bytes | None, L | None]:
        """The next item (lock held), and the CREDIT to send for it on the link (or None)."""
        payload, codec = self._queue.popleft()
        return payload, codec, self.core.took(), self._link

    def _credit_failed(self, exc: SockwireError) -> None:
        log.debug("PULL: credit not sent: %s", exc)

    def _opening(self, link: L) -> list[bytes]:
        self._link = link  # credit may go out right behind HELLO
        return self.core.on_link()

    def _item(self, link: L, msg: wire.Item) -> None:
        """An ITEM within the credit granted (beyond it: ProtocolError), for recv()."""
        with self._lock:
            self.core.item()
            self._queue.append((msg.body, link.codec))
            self._notify()

    def _link_lost(self, link: L, error: BaseException | None) -> None:
        if self._link is link:
            self._link = None
        self.core.link_lost()


class Pull(PullBase[Link], Node):
    """The pulling side: connects (and reconnects) to a Push; ``recv()`` takes the next item.

    ``hwm`` is the window: at most that many items are sent ahead to this
    puller (queued here or on the way); the pusher blocks beyond it.
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        hwm: int = 100,
        codec: str | Codec = "bytes",
        liveness: Liveness | None = DEFAULT_LIVENESS,
        backoff: Backoff = DEFAULT_BACKOFF,
        connect_timeout: float = 10.0,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._setup(hwm)
        super().__init__(
            endpoint,
            bind=False,
            codec=codec,
            liveness=liveness,
            backoff=backoff,
            connect_timeout=connect_timeout,
            max_size=max_size,
        )

    def recv(self, timeout: float | None = None) -> Any:
        """The next item; TimeoutError after ``timeout`` s."""
        deadline = self._deadline(timeout)
        with self._lock:
            self._wait(self._queued, deadline, "recv")
            payload, codec, credit, link = self._take()
        if credit is not None and link is not None:
            try:
                link.send(credit, deadline)
            except SockwireError as exc:  # the link broke; the next one grants afresh
                self._credit_failed(exc)
                if isinstance(exc, TimeoutError):
                    # the pusher does not read: credit it never got would be lost
                    # for good, so this link goes and the next grants afresh
                    link.channel.close()
        return codec.decode(payload)

    def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Item):
            super()._handle(link, msg)
            return
        self._item(link, msg)
