"""Push/pull for asyncio: :mod:`sockwire.patterns.pushpull`'s cores and wire, awaitable.

Credit-based backpressure as in the blocking pattern (its docstring has the
tables): ``Push.send`` waits for a puller with credit, ``Pull`` grants at
most ``hwm`` items ahead. Cancellation: a ``send`` cancelled (or timed out)
before its ITEM was queued gives the credit it took back, so the windows of
both ends stay equal; ``Pull.recv`` takes an item only after its last
``await`` and sends the credit it returns without waiting.
"""

from __future__ import annotations

from typing import Any

from ...address import Endpoint
from ...codecs import Codec
from ...connecting import DEFAULT_BACKOFF, Backoff
from ...errors import SockwireError, TimeoutError
from ...framing import DEFAULT_MAX_SIZE
from ...patterns import wire
from ...patterns.base import DEFAULT_LIVENESS
from ...patterns.link import Liveness
from ...patterns.pushpull import PullBase, PushBase
from ...patterns.wire import Msg
from ...serving import DEFAULT_GRACE
from .node import Link, Node

__all__ = ["Pull", "Push"]


class Push(PushBase[Link], Node):
    """The pushing side: binds ``endpoint``; ``await send(item)`` goes to the next puller
    with credit (round robin), waiting for credit up to ``timeout``."""

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

    async def send(self, item: Any, timeout: float | None = None) -> None:
        """Send ``item`` to the next puller with credit; wait for credit up to ``timeout``."""
        payload = self._payload(item)
        deadline = self._deadline(timeout)
        core = self.core
        waited = False
        while True:
            key = core.pick()
            while key is None:
                if not waited:
                    waited = True
                    self._blocked()
                await self._wait(self._has_credit, deadline, "send")
                key = core.pick()
            link = self._links_by_key[key]
            try:
                await link.send(payload, self._left(deadline))
            except TimeoutError:
                self._unpick(key)  # not queued: the credit is the puller's again
                raise
            except SockwireError as exc:
                self._resend(key, link, exc)
                continue
            except BaseException:
                self._unpick(key)  # cancelled before the item was queued
                raise
            self._delivered()
            return

    def _unpick(self, key: int) -> None:
        """Undo ``core.pick()`` for an item that was not queued."""
        self.core.refund(key)
        self._notify()

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Credit):
            await super()._handle(link, msg)
            return
        self._credit(link, msg)


class Pull(PullBase[Link], Node):
    """The pulling side: connects (and reconnects) to a Push; ``await recv()`` takes the
    next item. ``hwm`` is the window: at most that many items are sent ahead to it."""

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

    async def recv(self, timeout: float | None = None) -> Any:
        """The next item; TimeoutError after ``timeout`` s."""
        await self._wait(self._queued, self._deadline(timeout), "recv")
        payload, codec, credit, link = self._take()
        if credit is not None and link is not None:
            try:
                link.send_nowait(credit)  # no await after the item is taken
            except SockwireError as exc:  # the link broke; the next one grants afresh
                self._credit_failed(exc)
        return codec.decode(payload)

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Item):
            await super()._handle(link, msg)
            return
        self._item(link, msg)
