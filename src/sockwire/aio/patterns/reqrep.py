"""Request/reply for asyncio: :mod:`sockwire.patterns.reqrep`'s cores and wire, awaitable.

The state tables (per request id on the requester, per link on the replier)
are at the top of :mod:`sockwire.patterns.reqrep`; :class:`ReqCore` and
:class:`RepCore` enforce them here too, so a sync Req talks to an async Rep
and the other way round. Cancellation: a ``request`` cancelled before its
REQUEST was queued sent nothing; one cancelled after forgets its id (the
reply, if it comes, is dropped and counted in ``stats.late``), as a timeout
does. A Rep's handler may be a plain function or a coroutine function; each
link's requests are answered in order.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from ...address import Endpoint
from ...codecs import Codec
from ...connecting import DEFAULT_BACKOFF, Backoff
from ...errors import ClosedError, MessageTooLarge, SockwireError, TimeoutError
from ...framing import DEFAULT_MAX_SIZE
from ...patterns import wire
from ...patterns.base import DEFAULT_LIVENESS
from ...patterns.link import Liveness
from ...patterns.reqrep import RepBase, ReqBase
from ...patterns.wire import Msg
from ...serving import DEFAULT_GRACE
from ...sock import Peer
from .node import Link, Node

__all__ = ["Rep", "Req"]


class Req(ReqBase[Link, "asyncio.Future[Any]"], Node):
    """The requesting side: connects to a Rep (reconnecting with backoff).

    ``await req.request(body, timeout)`` returns the reply; several tasks may
    share one Req (ids route the replies). See :class:`sockwire.Req`.
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        *,
        timeout: float | None = 10.0,
        max_pending: int = 1024,
        codec: str | Codec = "bytes",
        liveness: Liveness | None = DEFAULT_LIVENESS,
        backoff: Backoff = DEFAULT_BACKOFF,
        connect_timeout: float = 10.0,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._setup(timeout, max_pending)
        super().__init__(
            endpoint,
            bind=False,
            codec=codec,
            liveness=liveness,
            backoff=backoff,
            connect_timeout=connect_timeout,
            max_size=max_size,
        )

    async def request(self, body: Any, timeout: float | None = None) -> Any:
        """Send ``body``, return the reply; TimeoutError after ``timeout`` (default: the Req's)."""
        limit = self.timeout if timeout is None else timeout
        deadline = self._deadline(limit)
        data = self.codec.encode(body)
        core = self.core
        stale: Link | None = None  # a link that failed to send: wait for the next one
        while True:
            await self._wait(self._can_send(stale), deadline, "request")
            link = self._link
            assert link is not None
            rid, payload = core.request(data)
            slot: asyncio.Future[Any] = self._loop.create_future()
            self._slots[rid] = slot
            try:
                await link.send(payload, self._left(deadline))
                break
            except BaseException as exc:
                self._forget(rid)  # not queued: nothing was sent
                if isinstance(exc, MessageTooLarge | TimeoutError) or not isinstance(
                    exc, SockwireError
                ):
                    raise  # the caller's mistake, the deadline, or a cancellation
                lost = self._send_broke(link, exc)
                if lost is None:
                    stale = link
                    continue
                raise lost from exc
        try:
            outcome = await self._outcome(slot, deadline)
        except TimeoutError:
            if core.expire(rid):
                self._slots.pop(rid, None)
            raise self._no_reply(rid, limit) from None
        except BaseException:
            self._forget(rid)  # closed, or cancelled: the id is forgotten
            raise
        if isinstance(outcome, SockwireError):
            raise outcome
        return link.codec.decode(outcome)

    async def _outcome(self, slot: asyncio.Future[Any], deadline: float | None) -> Any:
        """The slot's outcome (payload or error); TimeoutError at ``deadline``."""
        if deadline is None:
            return await asyncio.shield(slot)
        left = deadline - self._loop.time()
        done, _ = await asyncio.wait({slot}, timeout=max(0.0, left))
        if not done:
            raise TimeoutError("request", "no reply in time")
        return slot.result()

    def _resolve(self, slot: asyncio.Future[Any], outcome: bytes | SockwireError) -> None:
        if not slot.done():
            slot.set_result(outcome)

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Reply | wire.Error):
            await super()._handle(link, msg)
            return
        if self._reply(msg):
            self._notify()  # room under max_pending

    def _closing_hook(self) -> None:
        for rid, slot in list(self._slots.items()):
            if not slot.done() and self.core.fail(rid):
                slot.set_result(ClosedError(f"request {rid}", "the Req was closed"))
        self._slots.clear()


class Rep(RepBase[Link], Node):
    """The replying side: binds ``endpoint``, answers each request with ``handler(body)``.

    ``handler`` may be a plain function or a coroutine function; a handler
    that raises sends ERROR (``RemoteError`` at the requester) and the link
    stays up. See :class:`sockwire.Rep`.
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        handler: Callable[[Any], Any],
        *,
        codec: str | Codec = "bytes",
        liveness: Liveness | None = DEFAULT_LIVENESS,
        max_connections: int = 10_000,
        max_size: int = DEFAULT_MAX_SIZE,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self._setup(handler)
        super().__init__(
            endpoint,
            bind=True,
            codec=codec,
            liveness=liveness,
            max_connections=max_connections,
            max_size=max_size,
            grace=grace,
        )

    async def _answer(self, codec: Codec, key: int, request: wire.Request) -> bytes:
        try:
            result = self.handler(codec.decode(request.body))
            if inspect.isawaitable(result):
                result = await result
            data = codec.encode(result)
        except Exception as exc:  # noqa: BLE001  # any handler failure is the requester's error
            return self._failed(key, request, exc)
        return self._answered(key, request, data)

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Request):
            await super()._handle(link, msg)
            return
        self._begin(link, msg)
        await link.send(await self._answer(link.codec, link.key, msg))

    async def _datagram(self, payload: bytes, peer: Peer) -> bytes | None:
        """One request datagram -> its reply datagram (sent back by the server)."""
        msg = self._request(payload, peer)
        return None if msg is None else await self._answer(self.codec, -1, msg)
