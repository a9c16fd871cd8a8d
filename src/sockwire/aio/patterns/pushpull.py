"""Push/pull for asyncio: :mod:`sockwire.patterns.pushpull`'s cores and wire, awaitable.

Credit-based backpressure as in the blocking pattern (its docstring has the
tables): ``Push.send`` waits for a puller with credit, ``Pull`` grants at
most ``hwm`` items ahead. Cancellation: a ``send`` cancelled (or timed out)
before its ITEM was queued gives the credit it took back, so the windows of
both ends stay equal; ``Pull.recv`` takes an item only after its last
``await`` and sends the credit it returns without waiting.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from ...address import Endpoint
from ...client import DEFAULT_BACKOFF, Backoff
from ...codecs import Codec
from ...errors import SockwireError, TimeoutError
from ...framing import DEFAULT_MAX_SIZE
from ...patterns import wire
from ...patterns.driver import DEFAULT_LIVENESS
from ...patterns.link import Liveness
from ...patterns.pushpull import PullCore, PullStats, PushCore, PushStats
from ...patterns.wire import Msg, Role
from ...server import DEFAULT_GRACE
from .node import Link, Node

__all__ = ["Pull", "Push"]

log = logging.getLogger("sockwire")


class Push(Node):
    """The pushing side: binds ``endpoint``; ``await send(item)`` goes to the next puller
    with credit (round robin), waiting for credit up to ``timeout``."""

    role = Role.PUSH

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        codec: str | Codec = "bytes",
        liveness: Liveness | None = DEFAULT_LIVENESS,
        max_connections: int = 10_000,
        max_size: int = DEFAULT_MAX_SIZE,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.core = PushCore()
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
    def stats(self) -> PushStats:
        return self.core.stats

    @property
    def ready_pullers(self) -> int:
        """Pullers that can take an item now (greeted, with credit left)."""
        return self.core.ready()

    def puller_stats(self) -> dict[str, int]:
        """Items sent to each live puller (keyed "#link peer")."""
        return {
            f"#{key} {self._links_by_key[key].peer}": count
            for key, count in self.core.sent_to.items()
            if key in self._links_by_key
        }

    async def send(self, item: Any, timeout: float | None = None) -> None:
        """Send ``item`` to the next puller with credit; wait for credit up to ``timeout``."""
        payload = wire.ITEM_HEAD + self.codec.encode(item)
        deadline = self._deadline(timeout)
        core = self.core
        waited = False
        while True:
            key = core.pick()
            while key is None:
                if not waited:
                    waited = True
                    core.stats.blocked += 1
                    self._changes.notify()
                await self._wait(lambda: core.ready() > 0, deadline, "send")
                key = core.pick()
            link = self._links_by_key[key]
            try:
                await link.send(payload, self._left(deadline))
            except TimeoutError:
                self._unpick(key)  # not queued: the credit is the puller's again
                raise
            except SockwireError as exc:
                core.void(key)  # that puller is gone: the item goes to the next one
                core.stats.resent += 1
                log.debug("PUSH: %s failed (%s); re-routing the item", link.peer, exc)
                continue
            except BaseException:
                self._unpick(key)  # cancelled before the item was queued
                raise
            core.stats.sent += 1
            return

    def _unpick(self, key: int) -> None:
        """Undo ``core.pick()`` for an item that was not queued."""
        self.core.refund(key)
        self._changes.notify()

    def _link_ready(self, link: Link) -> None:
        self.core.add(link.key)
        self._links_by_key[link.key] = link

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Credit):
            await super()._handle(link, msg)
            return
        self.core.grant(link.key, msg.count)
        self._changes.notify()

    def _link_lost(self, link: Link, error: BaseException | None) -> None:
        self.core.remove(link.key)
        self._links_by_key.pop(link.key, None)


class Pull(Node):
    """The pulling side: connects (and reconnects) to a Push; ``await recv()`` takes the
    next item. ``hwm`` is the window: at most that many items are sent ahead to it."""

    role = Role.PULL

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
        self.core = PullCore(hwm)
        self._queue: collections.deque[tuple[bytes, Codec]] = collections.deque()
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
    def stats(self) -> PullStats:
        return self.core.stats

    async def recv(self, timeout: float | None = None) -> Any:
        """The next item; TimeoutError after ``timeout`` s."""
        await self._wait(lambda: bool(self._queue), self._deadline(timeout), "recv")
        payload, codec = self._queue.popleft()
        credit = self.core.took()
        link = self._link
        if credit is not None and link is not None:
            try:
                link.send_nowait(credit)  # no await after the item is taken
            except SockwireError as exc:  # the link broke; the next one grants afresh
                log.debug("PULL: credit not sent: %s", exc)
        return codec.decode(payload)

    def _opening(self, link: Link) -> list[bytes]:
        self._link = link  # credit may go out right behind HELLO
        return self.core.on_link()

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Item):
            await super()._handle(link, msg)
            return
        self.core.item()
        self._queue.append((msg.body, link.codec))
        self._changes.notify()

    def _link_lost(self, link: Link, error: BaseException | None) -> None:
        if self._link is link:
            self._link = None
        self.core.link_lost()
