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
import logging
from collections.abc import Callable
from typing import Any

from ...address import Endpoint
from ...client import DEFAULT_BACKOFF, Backoff
from ...codecs import Codec
from ...errors import (
    ClosedError,
    ConnectError,
    ConnectionLost,
    MessageTooLarge,
    ProtocolError,
    RemoteError,
    SockwireError,
    TimeoutError,
)
from ...framing import DEFAULT_MAX_SIZE
from ...patterns import wire
from ...patterns.driver import DEFAULT_LIVENESS
from ...patterns.link import Liveness
from ...patterns.reqrep import RepCore, RepStats, ReqCore, ReqStats
from ...patterns.wire import Msg, Role
from ...server import DEFAULT_GRACE
from ...sock import Peer
from .node import Link, Node

__all__ = ["Rep", "Req"]

log = logging.getLogger("sockwire")


class Req(Node):
    """The requesting side: connects to a Rep (reconnecting with backoff).

    ``await req.request(body, timeout)`` returns the reply; several tasks may
    share one Req (ids route the replies). See :class:`sockwire.Req`.
    """

    role = Role.REQ
    datagrams = True

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
        self.timeout = timeout
        self.core = ReqCore(max_pending)
        self._slots: dict[int, asyncio.Future[Any]] = {}
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
    def stats(self) -> ReqStats:
        return self.core.stats

    @property
    def connected(self) -> bool:
        return self._link is not None

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
                if core.fail(rid):  # not queued: nothing was sent
                    self._slots.pop(rid, None)
                if isinstance(exc, MessageTooLarge | TimeoutError) or not isinstance(
                    exc, SockwireError
                ):
                    raise  # the caller's mistake, the deadline, or a cancellation
                link.channel.abort()  # a link that cannot send is done: reconnect
                if self._dgram and isinstance(exc, ConnectError | ClosedError):
                    # a datagram refused (the server's socket is gone or new) was not
                    # delivered: safe to send again on the next link, within the deadline
                    log.debug("REQ: datagram not delivered (%s); trying the next link", exc)
                    stale = link
                    continue
                raise ConnectionLost(
                    f"request on {self._ep.display()}",
                    f"the link broke while sending ({exc}); the request may or may not have "
                    "reached the peer",
                ) from exc
        try:
            outcome = await self._reply(slot, deadline)
        except TimeoutError:
            if core.expire(rid):
                self._slots.pop(rid, None)
            raise TimeoutError(
                f"request {rid} on {self._ep.display()}",
                f"no reply within {limit:g} s; the link stays usable and a late reply "
                "will be dropped (stats.late)",
            ) from None
        except BaseException:
            if core.fail(rid):  # closed, or cancelled: the id is forgotten
                self._slots.pop(rid, None)
            raise
        if isinstance(outcome, SockwireError):
            raise outcome
        return link.codec.decode(outcome)

    async def _reply(self, slot: asyncio.Future[Any], deadline: float | None) -> Any:
        """The slot's outcome (payload or error); TimeoutError at ``deadline``."""
        if deadline is None:
            return await asyncio.shield(slot)
        left = deadline - self._loop.time()
        done, _ = await asyncio.wait({slot}, timeout=max(0.0, left))
        if not done:
            raise TimeoutError("request", "no reply in time")
        return slot.result()

    def _can_send(self, stale: Link | None) -> Callable[[], bool]:
        """A link other than ``stale`` is up, and fewer than max_pending are pending."""
        return lambda: self._link is not None and self._link is not stale and not self.core.full()

    def _link_ready(self, link: Link) -> None:
        self._link = link

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Reply | wire.Error):
            await super()._handle(link, msg)
            return
        outcome = self.core.receive(msg)
        if outcome in ("late", "unexpected"):
            log.debug("REQ: dropped a %s reply with id %d", outcome, msg.id)
            return
        slot = self._slots.pop(msg.id)
        if isinstance(msg, wire.Reply):
            slot.set_result(msg.body)
        else:
            slot.set_result(RemoteError(f"request {msg.id} on {self._ep.display()}", msg.text))
        self._changes.notify()  # room under max_pending

    def _link_lost(self, link: Link, error: BaseException | None) -> None:
        if self._link is not link:
            return
        self._link = None
        why = str(error) if error is not None else "the link was closed"
        for rid in self.core.link_lost():
            slot = self._slots.pop(rid, None)
            if slot is not None and not slot.done():
                slot.set_result(
                    ConnectionLost(
                        f"request {rid} on {self._ep.display()}",
                        f"the link was lost before the reply ({why}); the request may or may "
                        "not have run",
                    )
                )

    def _closing_hook(self) -> None:
        for rid, slot in list(self._slots.items()):
            if not slot.done() and self.core.fail(rid):
                slot.set_result(ClosedError(f"request {rid}", "the Req was closed"))
        self._slots.clear()


class Rep(Node):
    """The replying side: binds ``endpoint``, answers each request with ``handler(body)``.

    ``handler`` may be a plain function or a coroutine function; a handler
    that raises sends ERROR (``RemoteError`` at the requester) and the link
    stays up. See :class:`sockwire.Rep`.
    """

    role = Role.REP
    datagrams = True

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
        self.handler = handler
        self.core = RepCore()
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
    def stats(self) -> RepStats:
        return self.core.stats

    async def _answer(self, codec: Codec, key: int, request: wire.Request) -> bytes:
        try:
            body = codec.decode(request.body)
            result = self.handler(body)
            if inspect.isawaitable(result):
                result = await result
            data = codec.encode(result)
        except Exception as exc:  # noqa: BLE001  # any handler failure is the requester's error
            log.info("REP: request %d failed: %s: %s", request.id, type(exc).__name__, exc)
            return self.core.error(key, request.id, f"{type(exc).__name__}: {exc}")
        return self.core.reply(key, request.id, data)

    async def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Request):
            await super()._handle(link, msg)
            return
        self.core.begin(link.key, msg.id)
        await link.send(await self._answer(link.codec, link.key, msg))

    def _link_lost(self, link: Link, error: BaseException | None) -> None:
        self.core.forget(link.key)

    async def _datagram(self, payload: bytes, peer: Peer) -> bytes | None:
        """One request datagram -> its reply datagram (sent back by the server)."""
        try:
            msg = wire.parse(payload)
        except ProtocolError as exc:
            self.core.stats.invalid += 1
            log.debug("REP: dropped a datagram from %s: %s", peer, exc)
            return None
        if not isinstance(msg, wire.Request):
            self.core.stats.invalid += 1
            return None
        self.core.stats.requests += 1
        return await self._answer(self.codec, -1, msg)
