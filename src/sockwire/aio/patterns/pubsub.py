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

import logging
from collections.abc import AsyncIterator
from typing import Any

from ...address import Endpoint
from ...codecs import Codec
from ...connecting import DEFAULT_BACKOFF, Backoff
from ...errors import ClosedError, SockwireError, TimeoutError
from ...framing import DEFAULT_MAX_SIZE
from ...patterns import wire
from ...patterns.base import DEFAULT_LIVENESS
from ...patterns.link import Liveness
from ...patterns.pubsub import Policy, PubBase, SubBase
from ...patterns.wire import Msg
from ...serving import DEFAULT_GRACE
from .node import Link, Node

__all__ = ["Pub", "Sub"]

log = logging.getLogger("sockwire")


class Pub(PubBase[Link], Node):
    """The publishing side: binds ``endpoint``; ``await publish(topic, body)`` fans out.

    ``hwm`` messages may wait per subscriber; ``policy`` says what happens
    beyond (``"drop-newest"`` by default; see :class:`sockwire.Pub`).
    """

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

    async def publish(self, topic: str, body: Any, timeout: float | None = None) -> int:
        """Queue ``body`` for every subscriber whose prefix ``topic`` matches; returns how many.

        With the block policy this waits while a matching subscriber's queue
        is full, up to ``timeout``; the copies it could not queue by then are
        dropped and counted (``dropped_timeout``).
        """
        name, data = self._message(topic, body)
        deadline = self._deadline(timeout)
        delivered = 0
        cut: list[Link] = []
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
                    if await self._wait_room(key, deadline):
                        continue
                    self.core.give_up(key)
                break
        self._kick(cut)
        return delivered

    async def _wait_room(self, key: int, deadline: float | None) -> bool:
        """Until subscriber ``key``'s queue has room; False at the deadline."""
        try:
            await self._wait(lambda: self._room(key), deadline, "publish")
        except TimeoutError:
            return False
        return key in self.core.subs

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Subscribe | wire.Unsubscribe):
            await super()._handle(link, msg)
            return
        self._subscription(link, msg)


class Sub(SubBase[Link], Node):
    """The subscribing side: connects (and reconnects) to a Pub.

    ``await subscribe(prefix)`` returns once the publisher has it in force;
    ``await recv(timeout)`` returns ``(topic, body)``; ``async for`` yields
    them until the Sub is closed. At most ``hwm`` messages wait here.
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

    async def subscribe(self, prefix: str = "", timeout: float | None = 10.0) -> None:
        """Subscribe to topics starting with ``prefix``; return once the Pub has it in force."""
        p = prefix.encode()
        deadline = self._deadline(timeout)
        payload = self.core.subscribe(p)
        link = self._link
        if payload is not None and link is not None:
            self._send(link, payload)
        await self._wait(lambda: self._in_force(p), deadline, f"subscribe {prefix!r}")

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
        await self._wait(self._queued, self._deadline(timeout), "recv")
        topic, payload, codec = self._take()
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

    async def _handle(self, link: Link, msg: Msg) -> None:
        if isinstance(msg, wire.Ready):
            self._ready(msg)
            return
        if not isinstance(msg, wire.Publish):
            await super()._handle(link, msg)
            return
        if not self.core.publish(msg):
            return
        # bounded: when full, stop reading and let the Pub's policy act
        await self._wait(self._has_room(link), None, "recv")
        self._deliver(link, msg)
