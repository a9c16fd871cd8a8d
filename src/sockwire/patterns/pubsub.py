"""Publish/subscribe: topic prefixes, subscriptions in force before subscribe() returns,
a high-water mark per subscriber with a chosen policy, and every drop counted.

A :class:`Pub` binds an endpoint; each :class:`Sub` connects (reconnecting
with backoff, re-subscribing on every new link). ``sub.subscribe("weather.")``
sends SUBSCRIBE and returns only when the publisher's READY says the prefix
is in force on that link, so every message published after it returns (and
matching it) reaches that subscriber unless a policy below drops it, which
the publisher counts. The subscriber counts a drop when a later message on
the same link shows the gap (``missed``); trailing drops, disconnects and
what a broken link held only the publisher can know (docs/PROTOCOL.md 8.2).

The publisher's state per subscriber link (:class:`PubCore`)::

    event                               effect
    ----------------------------------  ---------------------------------------------------
    link greeted (HELLO)                a subscriber with no prefixes, an empty queue, seq 0
    SUBSCRIBE(token, prefix)            prefix added (at most MAX_SUBSCRIPTIONS), then
                                        READY(token) queued ahead of data (never dropped;
                                        MAX_SUBSCRIPTIONS unsent READYs: ProtocolError)
    UNSUBSCRIBE(token, prefix)          prefix removed, READY(token) queued
    publish, topic matches, room        PUBLISH(seq, topic, body) queued; seq += 1
    publish, topic matches, queue full  by policy:
      block                               the publisher waits for room (or its timeout:
                                          then dropped_timeout += 1, seq += 1)
      drop-newest                         this message is dropped: dropped_newest += 1, seq += 1
      drop-oldest                         the oldest queued one is dropped: dropped_oldest += 1;
                                          this one is queued
      disconnect                          every queued one and this one are dropped
                                          (dropped_disconnect), the link is closed; the
                                          subscriber reconnects and subscribes again
    the writer takes queued messages    sent += n (they are the socket's now)
    the link ends (EOF, heartbeat)      what was queued is counted in dropped_lost

"Full" is ``hwm`` messages queued for that subscriber, beyond what its socket
buffers and its writer already hold (at most WRITE_BATCH more). The sequence
number lets the subscriber count what it missed (``Sub.stats.missed``): a
gap in seq is exactly the messages dropped for it on this link between two
it received. Matching a topic costs one lookup per distinct prefix length
in use (:class:`~.prefixes.PrefixIndex`), never one per prefix.

The subscriber's state (:class:`SubCore`)::

    event                               effect
    ----------------------------------  ---------------------------------------------------
    subscribe(prefix)                   wanted; SUBSCRIBE(token, prefix) sent if connected
    a new link                          every wanted prefix sent again with a new token;
                                        none in force; next seq expected 0
    READY(token) for the latest token   that prefix is in force: subscribe() returns
    PUBLISH(seq, ...)                   missed += seq - expected (mod 2^32); then delivered
                                        if it matches a wanted prefix (else filtered += 1:
                                        it crossed an unsubscribe)
    unsubscribe(prefix)                 no longer wanted (filtered at once);
                                        UNSUBSCRIBE(token, prefix) sent
    the link ends                       nothing in force until the next link's READYs

The subscriber's own queue is bounded (``hwm``) and never drops: when it is
full, the Sub stops reading its socket, the publisher's writer for it blocks,
and the publisher's policy decides.
"""

from __future__ import annotations

import collections
import enum
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..address import Endpoint
from ..codecs import Codec
from ..connecting import DEFAULT_BACKOFF, Backoff
from ..errors import BadFrame, ClosedError, InvalidOperation, SockwireError, TimeoutError
from ..framing import DEFAULT_MAX_SIZE
from ..serving import DEFAULT_GRACE
from . import wire
from .base import DEFAULT_LIVENESS, L, NodeBase
from .driver import WRITE_BATCH, Link, Node
from .link import Liveness
from .prefixes import PrefixIndex
from .wire import MAX_PREFIX, U32, Msg, Role

__all__ = [
    "MAX_SUBSCRIPTIONS",
    "Policy",
    "Pub",
    "PubBase",
    "PubCore",
    "PubStats",
    "Sub",
    "SubBase",
    "SubCore",
    "SubStats",
    "SubscriberStats",
]

log = logging.getLogger("sockwire")

#: Prefixes one subscriber link may hold; more is a protocol error.
MAX_SUBSCRIPTIONS = 1024


class Policy(enum.Enum):
    """What a Pub does when a subscriber's queue is full (see the module table)."""

    BLOCK = "block"
    DROP_NEWEST = "drop-newest"
    DROP_OLDEST = "drop-oldest"
    DISCONNECT = "disconnect"


@dataclass
class SubscriberStats:
    """One subscriber link, as the publisher sees it."""

    queued: int = 0
    sent: int = 0
    dropped_newest: int = 0
    dropped_oldest: int = 0
    dropped_timeout: int = 0
    dropped_disconnect: int = 0

    @property
    def dropped(self) -> int:
        return (
            self.dropped_newest
            + self.dropped_oldest
            + self.dropped_timeout
            + self.dropped_disconnect
        )


@dataclass
class PubStats:
    """Totals since the Pub was made; ``subscribers`` is the number of links now.

    ``published`` counts publish() calls, ``unmatched`` those no subscriber
    wanted, ``queued``/``sent`` message copies per subscriber. Drops, by
    cause: the policy (``dropped_newest``, ``dropped_oldest``,
    ``dropped_timeout``, ``dropped_disconnect``) and links that ended with
    messages still queued (``dropped_lost``). ``disconnects``: links cut by
    the disconnect policy; ``blocked``: publish() calls that had to wait.
    """

    published: int = 0
    unmatched: int = 0
    queued: int = 0
    sent: int = 0
    dropped_newest: int = 0
    dropped_oldest: int = 0
    dropped_timeout: int = 0
    dropped_disconnect: int = 0
    dropped_lost: int = 0
    disconnects: int = 0
    blocked: int = 0
    subscribers: int = 0

    @property
    def dropped(self) -> int:
        return (
            self.dropped_newest
            + self.dropped_oldest
            + self.dropped_timeout
            + self.dropped_disconnect
            + self.dropped_lost
        )


@dataclass
class _Subscriber:
    prefixes: set[bytes] = field(default_factory=set)
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    control: collections.deque[bytes] = field(default_factory=collections.deque)
    seq: int = 0
    cut: bool = False
    stats: SubscriberStats = field(default_factory=SubscriberStats)


class PubCore:
    """The publisher's table (sans-IO): subscriptions, queues, the policy, the counts."""

    def __init__(self, hwm: int, policy: Policy) -> None:
        if hwm < 1:
            raise InvalidOperation(f"hwm={hwm}", "a high-water mark of at least 1 message")
        self.hwm = hwm
        self.policy = policy
        self.subs: dict[int, _Subscriber] = {}
        self.stats = PubStats()
        #: prefix -> subscriber keys: matching costs the same for 1 or 1,024 prefixes
        self.index: PrefixIndex[int] = PrefixIndex()

    def add(self, key: int) -> None:
        self.subs[key] = _Subscriber()
        self.stats.subscribers = len(self.subs)

    def remove(self, key: int) -> None:
        sub = self.subs.pop(key, None)
        self.stats.subscribers = len(self.subs)
        if sub is None:
            return
        self.index.discard_all(key, sub.prefixes)
        if not sub.cut:
            self.stats.dropped_lost += len(sub.queue)

    def subscribe(self, key: int, msg: wire.Subscribe | wire.Unsubscribe) -> None:
        sub = self.subs[key]
        if isinstance(msg, wire.Subscribe):
            if msg.prefix not in sub.prefixes and len(sub.prefixes) >= MAX_SUBSCRIPTIONS:
                raise BadFrame(
                    f"more than {MAX_SUBSCRIPTIONS} subscriptions on one link",
                    "subscribe to shorter, shared prefixes",
                )
            sub.prefixes.add(msg.prefix)
            self.index.add(key, msg.prefix)
        else:
            sub.prefixes.discard(msg.prefix)
            self.index.discard(key, msg.prefix)
        if len(sub.control) >= MAX_SUBSCRIPTIONS:  # it asks and asks, and never reads
            raise BadFrame(
                f"{MAX_SUBSCRIPTIONS} (un)subscriptions not yet answered",
                "a subscriber must read the READYs it asked for",
            )
        sub.control.append(wire.Ready(msg.token).encode())

    def matching(self, topic: bytes) -> list[int]:
        """The live subscribers that want ``topic``, in link order (see PrefixIndex)."""
        subs = self.subs
        return sorted(key for key in self.index.match(topic) if not subs[key].cut)

    def offer(self, key: int, topic: bytes, body: bytes) -> str:
        """``queued``, ``dropped`` (drop-newest), ``full`` (block: wait) or ``cut``."""
        sub = self.subs[key]
        stats = self.stats
        if len(sub.queue) >= self.hwm:
            policy = self.policy
            if policy is Policy.BLOCK:
                return "full"
            if policy is Policy.DROP_NEWEST:
                sub.seq = (sub.seq + 1) & U32
                sub.stats.dropped_newest += 1
                stats.dropped_newest += 1
                return "dropped"
            if policy is Policy.DROP_OLDEST:
                sub.queue.popleft()
                sub.stats.dropped_oldest += 1
                stats.dropped_oldest += 1
            else:
                dropped = len(sub.queue) + 1
                sub.queue.clear()
                sub.cut = True
                sub.stats.dropped_disconnect += dropped
                stats.dropped_disconnect += dropped
                stats.disconnects += 1
                return "cut"
        sub.queue.append(wire.publish_head(sub.seq, topic) + body)
        sub.seq = (sub.seq + 1) & U32
        sub.stats.queued = len(sub.queue)
        stats.queued += 1
        return "queued"

    def give_up(self, key: int) -> None:
        """Block policy, the publisher's timeout passed: this copy is dropped."""
        sub = self.subs.get(key)
        if sub is None:
            return
        sub.seq = (sub.seq + 1) & U32
        sub.stats.dropped_timeout += 1
        self.stats.dropped_timeout += 1

    def has_room(self, key: int) -> bool:
        sub = self.subs.get(key)
        return sub is None or sub.cut or len(sub.queue) < self.hwm

    def take(self, key: int, limit: int = WRITE_BATCH) -> list[bytes]:
        """Control messages, then up to ``limit`` queued messages, for the writer."""
        sub = self.subs.get(key)
        if sub is None or sub.cut:
            return []
        frames = list(sub.control)
        sub.control.clear()
        queue = sub.queue
        count = min(limit, len(queue))
        frames.extend(queue.popleft() for _ in range(count))
        sub.stats.sent += count
        sub.stats.queued = len(queue)
        self.stats.sent += count
        return frames


class PubBase(NodeBase[L]):
    """What both drivers' Pub do with :class:`PubCore`; they add the waiting for room."""

    role = Role.PUB
    needs_writer = True

    def _setup(self, hwm: int, policy: Policy | str) -> None:
        try:
            chosen = Policy(policy)
        except ValueError:
            raise InvalidOperation(
                f"policy={policy!r}", "one of: " + ", ".join(p.value for p in Policy)
            ) from None
        self.core = PubCore(hwm, chosen)
        self._links_by_key: dict[int, L] = {}

    @property
    def stats(self) -> PubStats:
        return self.core.stats

    def subscriber_stats(self) -> dict[str, SubscriberStats]:
        """Per live subscriber link (keyed "#link peer"), what was queued, sent and dropped."""
        with self._lock:
            return {
                f"#{key} {self._links_by_key[key].peer}": sub.stats
                for key, sub in self.core.subs.items()
                if key in self._links_by_key
            }

    def _message(self, topic: str, body: Any) -> tuple[bytes, bytes]:
        """publish()'s topic and encoded body, checked."""
        name = topic.encode()
        if len(name) > wire.MAX_TOPIC:
            raise InvalidOperation(f"a {len(name)}-byte topic", f"at most {wire.MAX_TOPIC} bytes")
        return name, self.codec.encode(body)

    def _matching(self, name: bytes) -> list[int]:
        """A publish() begins (lock held): counted; the subscribers that want ``name``."""
        core = self.core
        if self._closing:
            raise ClosedError("publish on a closed PUB", "it was closed")
        core.stats.published += 1
        keys = core.matching(name)
        if not keys:
            core.stats.unmatched += 1
        return keys

    def _offer(self, key: int, name: bytes, data: bytes, cut: list[L]) -> str:
        """One copy for subscriber ``key`` (lock held): PubCore.offer's outcome, or ``gone``.

        ``queued`` wakes its writer; ``cut`` adds its link to ``cut`` (to be
        kicked outside the lock); ``full`` (block policy) asks the caller to
        wait for room (:meth:`_blocked` the first time) or give up.
        """
        if key not in self.core.subs:
            return "gone"  # the link went while we waited
        outcome = self.core.offer(key, name, data)
        if outcome == "queued":
            self._links_by_key[key].wake_writer()
        elif outcome == "cut":
            cut.append(self._links_by_key[key])
        return outcome

    def _blocked(self) -> None:
        """A publish() has to wait for room, the first time (lock held)."""
        self.core.stats.blocked += 1
        self._notify()

    def _room(self, key: int) -> bool:
        return self.core.has_room(key)

    def _subscription(self, link: L, msg: wire.Subscribe | wire.Unsubscribe) -> None:
        """A SUBSCRIBE or UNSUBSCRIBE from ``link``: its READY goes out through the writer."""
        with self._lock:
            if link.key not in self.core.subs:
                return
            self.core.subscribe(link.key, msg)
            link.wake_writer()

    def _link_ready(self, link: L) -> None:
        self.core.add(link.key)
        self._links_by_key[link.key] = link

    def _outgoing(self, link: L) -> list[bytes]:
        return self.core.take(link.key)

    def _sent(self, link: L, frames: list[bytes]) -> None:
        self._notify()  # room: a blocked publish() may go on

    def _link_lost(self, link: L, error: BaseException | None) -> None:
        self.core.remove(link.key)
        self._links_by_key.pop(link.key, None)


class Pub(PubBase[Link], Node):
    """The publishing side: binds ``endpoint``; ``publish(topic, body)`` fans out.

    ``hwm`` messages may wait per subscriber; ``policy`` (``"block"``,
    ``"drop-newest"`` (default, as ZeroMQ), ``"drop-oldest"``,
    ``"disconnect"``) says what happens beyond. Every drop is counted in
    ``stats`` and, per subscriber, in :meth:`subscriber_stats`.
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        hwm: int = 1000,
        policy: Policy | str = Policy.DROP_NEWEST,
        codec: str | Codec = "bytes",
        liveness: Liveness | None = DEFAULT_LIVENESS,
        max_connections: int = 64,
        max_size: int = DEFAULT_MAX_SIZE,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self._setup(hwm, policy)
        super().__init__(
            endpoint,
            bind=True,
            codec=codec,
            liveness=liveness,
            max_connections=max_connections,
            max_size=max_size,
            grace=grace,
        )

    def publish(self, topic: str, body: Any, timeout: float | None = None) -> int:
        """Queue ``body`` for every subscriber whose prefix ``topic`` matches; returns how many.

        With the block policy this waits while a matching subscriber's queue
        is full, up to ``timeout`` (None: as long as it takes); the copies it
        could not queue by then are dropped and counted (``dropped_timeout``).
        """
        name, data = self._message(topic, body)
        deadline = self._deadline(timeout)
        delivered = 0
        cut: list[Link] = []
        with self._lock:
            waited = False
            for key in self._matching(name):
                while True:
                    outcome = self._offer(key, name, data, cut)
                    if outcome == "queued":
                        delivered += 1
                    elif outcome == "full":
                        if not waited:
                            waited = True
                            self._blocked()
                        if self._wait_room(key, deadline):
                            continue
                        self.core.give_up(key)
                    break
        self._kick(cut)
        return delivered

    def _wait_room(self, key: int, deadline: float | None) -> bool:
        """Wait (lock held) for room in subscriber ``key``'s queue; False at the deadline."""
        try:
            self._wait(lambda: self._room(key), deadline, "publish")
        except TimeoutError:
            return False
        return key in self.core.subs

    def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Subscribe | wire.Unsubscribe):
            super()._handle(link, msg)
            return
        self._subscription(link, msg)


@dataclass
class SubStats:
    """``received``: queued for recv(); ``missed``: gaps in the publisher's sequence
    (messages it dropped for us); ``filtered``: arrived after an unsubscribe."""

    received: int = 0
    missed: int = 0
    filtered: int = 0


class SubCore:
    """The subscriber's table (sans-IO): wanted prefixes, tokens, sequence gaps."""

    def __init__(self) -> None:
        self.wanted: dict[bytes, int] = {}
        self._wanted_index: PrefixIndex[int] = PrefixIndex()
        self.tokens: dict[int, bytes] = {}
        self.in_force: set[bytes] = set()
        self.next_token = 1
        self.expect = 0
        self.connected = False
        self.stats = SubStats()

    def _token(self, prefix: bytes) -> int:
        token = self.next_token
        self.next_token = (token + 1) & U32
        self.tokens[token] = prefix
        if len(self.tokens) > 4 * MAX_SUBSCRIPTIONS:  # tokens never answered (lost links)
            del self.tokens[next(iter(self.tokens))]
        return token

    def subscribe(self, prefix: bytes) -> bytes | None:
        """SUBSCRIBE to send now (None: not connected; it goes out on the next link)."""
        if len(prefix) > MAX_PREFIX:
            raise InvalidOperation(f"a {len(prefix)}-byte prefix", f"at most {MAX_PREFIX} bytes")
        if prefix not in self.wanted and len(self.wanted) >= MAX_SUBSCRIPTIONS:
            raise InvalidOperation("subscribe", f"at most {MAX_SUBSCRIPTIONS} prefixes")
        token = self._token(prefix)
        self.wanted[prefix] = token  # already in force stays in force: same prefix
        self._wanted_index.add(0, prefix)
        return wire.Subscribe(token, prefix).encode() if self.connected else None

    def unsubscribe(self, prefix: bytes) -> bytes | None:
        if self.wanted.pop(prefix, None) is None:
            return None
        self._wanted_index.discard(0, prefix)
        self.in_force.discard(prefix)
        return wire.Unsubscribe(self._token(prefix), prefix).encode() if self.connected else None

    def on_link(self) -> list[bytes]:
        """A new link: every wanted prefix again, with new tokens."""
        self.connected = True
        self.in_force.clear()
        self.expect = 0
        out = []
        for prefix in list(self.wanted):
            token = self._token(prefix)
            self.wanted[prefix] = token
            out.append(wire.Subscribe(token, prefix).encode())
        return out

    def ready(self, token: int) -> None:
        prefix = self.tokens.pop(token, None)
        if prefix is not None and self.wanted.get(prefix) == token:
            self.in_force.add(prefix)

    def publish(self, msg: wire.Publish) -> bool:
        """Account for ``msg``'s sequence number; True when it should be delivered."""
        gap = (msg.seq - self.expect) & U32
        if gap and gap < 1 << 31:
            self.stats.missed += gap
        self.expect = (msg.seq + 1) & U32
        if self._wanted_index.matches_any(msg.topic):
            return True
        self.stats.filtered += 1
        return False

    def link_lost(self) -> None:
        self.connected = False
        self.in_force.clear()


class SubBase(NodeBase[L]):
    """What both drivers' Sub do with :class:`SubCore`; they add the waiting and sending."""

    role = Role.SUB

    def _setup(self, hwm: int) -> None:
        if hwm < 1:
            raise InvalidOperation(f"hwm={hwm}", "a high-water mark of at least 1 message")
        self.hwm = hwm
        self.core = SubCore()
        self._queue: collections.deque[tuple[str, bytes, Codec]] = collections.deque()
        self._link: L | None = None

    @property
    def stats(self) -> SubStats:
        return self.core.stats

    def _in_force(self, prefix: bytes) -> bool:
        return prefix in self.core.in_force

    def _queued(self) -> bool:
        return bool(self._queue)

    def _take(self) -> tuple[str, bytes, Codec]:
        """The next message, out of the queue (lock held): room for the reader."""
        item = self._queue.popleft()
        self._notify()
        return item

    def _opening(self, link: L) -> list[bytes]:
        self._link = link  # subscriptions may go out right behind HELLO
        return self.core.on_link()

    def _ready(self, msg: wire.Ready) -> None:
        """A READY: that prefix is in force, its subscribe() returns."""
        with self._lock:
            self.core.ready(msg.token)
            self._notify()

    def _has_room(self, link: L) -> Callable[[], bool]:
        """The queue takes one more (or the link is going): the reader may go on."""
        return lambda: len(self._queue) < self.hwm or link.closing

    def _deliver(self, link: L, msg: wire.Publish) -> None:
        """A PUBLISH for recv(), once there is room (lock held)."""
        self._queue.append((msg.topic.decode("utf-8", "replace"), msg.body, link.codec))
        self.core.stats.received += 1
        self._notify()

    def _link_lost(self, link: L, error: BaseException | None) -> None:
        if self._link is link:
            self._link = None
        self.core.link_lost()


class Sub(SubBase[Link], Node):
    """The subscribing side: connects (and reconnects) to a Pub.

    ``subscribe(prefix)`` returns once the publisher has it in force;
    ``recv(timeout)`` returns ``(topic, body)``. At most ``hwm`` messages
    wait here; beyond that the Sub stops reading and the Pub's policy
    applies. ``stats.missed`` counts what the Pub dropped for this Sub.
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        hwm: int = 1000,
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

    def subscribe(self, prefix: str = "", timeout: float | None = 10.0) -> None:
        """Subscribe to topics starting with ``prefix``; return once the Pub has it in force."""
        p = prefix.encode()
        deadline = self._deadline(timeout)
        with self._lock:
            payload = self.core.subscribe(p)
            link = self._link
        if payload is not None and link is not None:
            self._send(link, payload, deadline)
        with self._lock:
            self._wait(lambda: self._in_force(p), deadline, f"subscribe {prefix!r}")

    def unsubscribe(self, prefix: str = "", timeout: float | None = 10.0) -> None:
        """Stop delivering ``prefix`` at once; the Pub is told, without waiting for its READY.

        Telling it is bounded by ``timeout`` (as every pattern call's
        writing is): a Pub that does not take the UNSUBSCRIBE in time (it
        stopped reading) loses this link, and the next link subscribes only
        what is still wanted, so the prefix is gone either way. None: wait
        as long as it takes.
        """
        deadline = self._deadline(timeout)
        with self._lock:
            payload = self.core.unsubscribe(prefix.encode())
            link = self._link
        if payload is not None and link is not None:
            self._send(link, payload, deadline)

    def _send(self, link: Link, payload: bytes, deadline: float | None = None) -> None:
        try:
            link.send(payload, deadline)
        except SockwireError as exc:  # the link broke: the next link re-subscribes
            log.debug("SUB: send failed, the next link re-subscribes: %s", exc)
            if isinstance(exc, TimeoutError):
                # the Pub does not read: a SUBSCRIBE it never got would be missing
                # on this link for good, so the link goes and the next subscribes all
                link.channel.close()

    def recv(self, timeout: float | None = None) -> tuple[str, Any]:
        """The next ``(topic, body)``; TimeoutError after ``timeout`` s."""
        deadline = self._deadline(timeout)
        with self._lock:
            self._wait(self._queued, deadline, "recv")
            topic, payload, codec = self._take()
        return topic, codec.decode(payload)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """Messages until the Sub is closed."""
        while not self.closed:
            try:
                yield self.recv()
            except ClosedError:
                return

    def _handle(self, link: Link, msg: Msg) -> None:
        if isinstance(msg, wire.Ready):
            self._ready(msg)
            return
        if not isinstance(msg, wire.Publish):
            super()._handle(link, msg)
            return
        with self._lock:
            if not self.core.publish(msg):
                return
            # bounded: when full, stop reading and let the Pub's policy act
            self._wait(self._has_room(link), None, "recv")
            self._deliver(link, msg)
