"""Publish/subscribe for asyncio: :mod:`sockwire.patterns.pubsub`'s cores and wire, awaitable.

The tables, the high-water mark per subscriber, the policies and every
drop count are :class:`PubCore`'s and :class:`SubCore`'s (read the blocking
module's docstring); a sync Sub reads an async Pub and the other way round.
Each subscriber link has a writer task that takes its queue
(``PubCore.take``) and waits for room in the Channel, so a subscriber that
stops reading holds only its own queue and the policy decides beyond it.
``Sub.recv`` takes a message only after its last ``await``: cancelling it
loses nothing. A ``publish`` cancelled while it waits for room (the block
policy) has queued its message for the subscribers before the full one and
for none after: each has it whole or not at all, and none counts a gap for
it. A ``subscribe`` cancelled while it waits for READY stays wanted.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncIterator
from typing import Any

from ...address import Endpoint
from ...client import DEFAULT_BACKOFF, Backoff
from ...codecs import Codec
from ...errors import ClosedError, InvalidOperation, SockwireError, TimeoutError
from ...framing import DEFAULT_MAX_SIZE
from ...patterns import wire
from ...patterns.driver import DEFAULT_LIVENESS
from ...patterns.link import Liveness
from ...patterns.pubsub import Policy, PubCore, PubStats, SubCore, SubscriberStats, SubStats
from ...patterns.wire import Msg, Role
from ...server import DEFAULT_GRACE
from .node import Link, Node

__all__ = ["Pub", "Sub"]

log = logging.getLogger("sockwire")


class Pub(Node):
    """The publishing side: binds ``endpoint``; ``await publish(topic, body)`` fans out.

    ``hwm`` messages may wait per subscriber; ``policy`` says what happens
    beyond (``"drop-newest"`` by default; see :class:`sockwire.Pub`).
    """

    role = Role.PUB
    needs_writer = True

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        hwm: int = 1000,
        policy: Policy | str = Policy.DROP_NEWEST,
        codec: str | Codec = "bytes",
        liveness: Liveness | None = DEFAULT_LIVENESS,
        max_connections: int = 10_000,
        max_size: int = DEFAULT_MAX_SIZE,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        try:
            chosen = Policy(policy)
        except ValueError:
            raise InvalidOperation(
                f"policy={policy!r}", "one of: " + ", ".join(p.value for p in Policy)
            ) from None
        self.core = PubCore(hwm, chosen)
        self._links_by_key: dict[int, Link] = {}
        super().__init__(
            endpoint,
            bind=True,
            codec=codec,
            liveness=liveness,
            max_connections=max_connections,
            max_size=max_size,
            grace=grace,
        )

    @property
    def stats(self) -> PubStats:
        return self.core.stats

    def subscriber_stats(self) -> dict[str, SubscriberStats]:
        """Per live subscriber link (keyed "#link peer"), what was queued, sent and dropped."""
        return {
            f"#{key} {self._links_by_key[key].peer}": sub.stats
            for key, sub in self.core.subs.items()
            if key in self._links_by_key
        }

    async def publish(self, topic: str, body: Any, timeout: float | None = None) -> int:
        """Queue ``body`` for every subscriber whose prefix ``topic`` matches; returns how many.

        With the block policy this waits while a matching subscriber's queue
        is full, up to ``timeout``; the copies it could not queue by then are
        dropped and counted (``dropped_timeout``).
        """
        name = topic.encode()
        if len(name) > wire.MAX_TOPIC:
            raise InvalidOperation(f"a {len(name)}-byte topic", f"at most {wire.MAX_TOPIC} bytes")
        data = self.codec.encode(body)
        deadline = self._deadline(timeout)
        core = self.core
        if self._closing:
            raise ClosedError("publish on a closed PUB", "it was closed")
        core.stats.published += 1
        keys = core.matching(name)
        if not keys:
            core.stats.unmatched += 1
            return 0
        delivered = 0
        cut: list[Link] = []
        waited = False
        for key in keys:
            while True:
                if key not in core.subs:
                    break  # the link went while we waited
                outcome = core.offer(key, name, data)
                if outcome == "queued":
                    delivered += 1
                    self._links_by_key[key].wake.notify()
                elif outcome == "cut":
                    cut.append(self._links_by_key[key])
                elif outcome == "full":
                    if not waited:
                        waited = True
                        core.stats.blocked += 1
                        self._changes.notify()
                    if await self._wait_room(key, deadline):
                        continue
                    core.give_up(key)
                break
        self._kick(cut)
        return delivered

    async def _wait_room(self, key: int, deadline: float | None) -> bool:
        """Until subscriber ``key``'s queue has room; False at the deadline."""
        try:
            await self._wait(lambda: self.core.has_room(key), deadline, "publish")
        except TimeoutError:
            return False
        return key in self.core.subs

    def _link_ready(self, link: Link) -> None:
        self.core.add(link.key)
        self._links_by_key[link.key] = link

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Subscribe | wire.Unsubscribe):
            await super()._handle(link, msg)
            return
        if link.key not in self.core.subs:
            return
        self.core.subscribe(link.key, msg)
        link.wake.notify()

    def _outgoing(self, link: Link) -> list[bytes]:
        return self.core.take(link.key)

    def _sent(self, link: Link, frames: list[bytes]) -> None:
        self._changes.notify()  # room: a blocked publish() may go on

    def _link_lost(self, link: Link, error: BaseException | None) -> None:
        self.core.remove(link.key)
        self._links_by_key.pop(link.key, None)


class Sub(Node):
    """The subscribing side: connects (and reconnects) to a Pub.

    ``await subscribe(prefix)`` returns once the publisher has it in force;
    ``await recv(timeout)`` returns ``(topic, body)``; ``async for`` yields
    them until the Sub is closed. At most ``hwm`` messages wait here.
    """

    role = Role.SUB

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
        if hwm < 1:
            raise InvalidOperation(f"hwm={hwm}", "a high-water mark of at least 1 message")
        self.hwm = hwm
        self.core = SubCore()
        self._queue: collections.deque[tuple[str, bytes, Codec]] = collections.deque()
        self._link: Link | None = None
        super().__init__(
            endpoint,
            bind=False,
            codec=codec,
            liveness=liveness,
            backoff=backoff,
            connect_timeout=connect_timeout,
            max_size=max_size,
        )

    @property
    def stats(self) -> SubStats:
        return self.core.stats

    async def subscribe(self, prefix: str = "", timeout: float | None = 10.0) -> None:
        """Subscribe to topics starting with ``prefix``; return once the Pub has it in force."""
        p = prefix.encode()
        deadline = self._deadline(timeout)
        payload = self.core.subscribe(p)
        link = self._link
        if payload is not None and link is not None:
            self._send(link, payload)
        await self._wait(lambda: p in self.core.in_force, deadline, f"subscribe {prefix!r}")

    async def unsubscribe(self, prefix: str = "") -> None:
        """Stop delivering ``prefix`` at once; the Pub is told (no wait)."""
        payload = self.core.unsubscribe(prefix.encode())
        link = self._link
        if payload is not None and link is not None:
            self._send(link, payload)

    def _send(self, link: Link, payload: bytes) -> None:
        try:
            link.send_nowait(payload)
        except SockwireError as exc:  # the link broke: the next link re-subscribes
            log.debug("SUB: send failed, the next link re-subscribes: %s", exc)

    async def recv(self, timeout: float | None = None) -> tuple[str, Any]:
        """The next ``(topic, body)``; TimeoutError after ``timeout`` s."""
        await self._wait(lambda: bool(self._queue), self._deadline(timeout), "recv")
        topic, payload, codec = self._queue.popleft()
        self._changes.notify()  # room for the reader
        return topic, codec.decode(payload)

    def __aiter__(self) -> AsyncIterator[tuple[str, Any]]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[tuple[str, Any]]:
        """Messages until the Sub is closed."""
        while not self.closed:
            try:
                item = await self.recv()
            except ClosedError:
                return
            yield item

    def _opening(self, link: Link) -> list[bytes]:
        self._link = link  # subscriptions may go out right behind HELLO
        return self.core.on_link()

    async def _handle(self, link: Link, msg: Msg) -> None:
        if isinstance(msg, wire.Ready):
            self.core.ready(msg.token)
            self._changes.notify()
            return
        if not isinstance(msg, wire.Publish):
            await super()._handle(link, msg)
            return
        if not self.core.publish(msg):
            return
        # bounded: when full, stop reading and let the Pub's policy act
        await self._wait(lambda: len(self._queue) < self.hwm or link.closing, None, "recv")
        self._queue.append((msg.topic.decode("utf-8", "replace"), msg.body, link.codec))
        self.core.stats.received += 1
        self._changes.notify()

    def _link_lost(self, link: Link, error: BaseException | None) -> None:
        if self._link is link:
            self._link = None
        self.core.link_lost()
