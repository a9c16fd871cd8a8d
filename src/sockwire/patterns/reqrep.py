"""Request/reply: request ids, per-request timeouts, late replies dropped and counted.

A :class:`Rep` binds an endpoint and answers each REQUEST with the return
value of ``handler(body)``; a :class:`Req` connects (and reconnects) and
``request(body, timeout)`` returns the reply. Several threads may share one
Req: requests carry ids, so replies find their caller in any order.

The requester's state per request id (:class:`ReqCore`)::

    state      event                                next       the caller sees
    ---------  -----------------------------------  ---------  ------------------------------------
    -          request(body)                        PENDING    REQUEST(id, body) is sent; ids are
                                                               u32, counting up, wrapping; at most
                                                               max_pending at once (more wait)
    PENDING    REPLY(id)                            DONE       the reply body
    PENDING    ERROR(id, text)                      DONE       RemoteError(text)
    PENDING    the caller's timeout passes          TIMED_OUT  TimeoutError; the id is forgotten;
                                                               the link stays READY for the next
    -          the timeout passes while REQUEST is  TIMED_OUT  TimeoutError; not sent at all: the
               still being written (the Rep does               link stays READY; cut in two: the
               not read)                                       link is closed (the Rep never saw
                                                               it whole), the next waits for the
                                                               reconnect
    PENDING    the link is lost (EOF, heartbeat)    FAILED     ConnectionLost: it may or may not
                                                               have run, so it is not resent
    PENDING    its datagram is refused (the Rep's   FAILED     not delivered, so it is sent again
               socket is gone or new)                          as a new request on the next link
    forgotten  REPLY/ERROR with an id we issued     forgotten  nothing: dropped, late += 1
    -          REPLY/ERROR, id never issued         -          nothing: dropped, unexpected += 1

The replier's state per link (:class:`RepCore`)::

    state      event                                next       effect
    ---------  -----------------------------------  ---------  ------------------------------------
    -          REQUEST(id, body)                    RUNNING    handler(body); at most
                                                               MAX_OUTSTANDING per link
    RUNNING    REQUEST with the same id             CLOSED     ProtocolError (a broken requester)
    RUNNING    the handler returns                  -          REPLY(id, its return value)
    RUNNING    the handler raises                   -          ERROR(id, "TypeName: message")

"Issued" is serial-number arithmetic: an id at most 2^31 behind the next one.
Over datagrams (``unix+dgram:``, ``udp://``) there is no greeting and no
heartbeat: each REQUEST is one datagram, each REPLY goes back to its sender,
and a lost datagram is a request that times out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..address import Endpoint
from ..codecs import Codec
from ..connecting import DEFAULT_BACKOFF, Backoff
from ..errors import (
    BadFrame,
    ClosedError,
    ConnectError,
    ConnectionLost,
    MessageTooLarge,
    ProtocolError,
    RemoteError,
    SockwireError,
    TimeoutError,
)
from ..framing import DEFAULT_MAX_SIZE
from ..serving import DEFAULT_GRACE
from ..sock import Peer
from . import wire
from .base import DEFAULT_LIVENESS, L, NodeBase
from .driver import Link, Node
from .link import Liveness
from .wire import U32, Msg, Role

__all__ = [
    "MAX_OUTSTANDING",
    "Rep",
    "RepBase",
    "RepCore",
    "RepStats",
    "Req",
    "ReqBase",
    "ReqCore",
    "ReqStats",
]

log = logging.getLogger("sockwire")

#: Requests one link may have running at once on a replier.
MAX_OUTSTANDING = 1024


@dataclass
class ReqStats:
    """Counts since the Req was made: see the table in the module docstring."""

    sent: int = 0
    replied: int = 0
    remote_errors: int = 0
    timed_out: int = 0
    failed: int = 0
    late: int = 0
    unexpected: int = 0


@dataclass
class RepStats:
    requests: int = 0
    replies: int = 0
    errors: int = 0
    invalid: int = 0


class ReqCore:
    """The requester's table (sans-IO): ids in, payloads and outcomes out."""

    def __init__(self, max_pending: int = 1024) -> None:
        self.max_pending = max_pending
        self.next_id = 1
        self.pending: set[int] = set()
        self.stats = ReqStats()

    def full(self) -> bool:
        return len(self.pending) >= self.max_pending

    def request(self, body: bytes) -> tuple[int, bytes]:
        """A new PENDING request: its id and the REQUEST payload to send."""
        if self.full():
            raise ProtocolError("request", f"{self.max_pending} requests already pending")
        rid = self.next_id
        self.next_id = (rid + 1) & U32
        self.pending.add(rid)
        self.stats.sent += 1
        return rid, wire.Request(rid, body).encode()

    def receive(self, msg: wire.Reply | wire.Error) -> str:
        """``reply``, ``error`` (both for a PENDING id, now DONE), ``late`` or ``unexpected``."""
        rid = msg.id
        if rid in self.pending:
            self.pending.discard(rid)
            if isinstance(msg, wire.Reply):
                self.stats.replied += 1
                return "reply"
            self.stats.remote_errors += 1
            return "error"
        if (self.next_id - 1 - rid) & U32 < 1 << 31:
            self.stats.late += 1
            return "late"
        self.stats.unexpected += 1
        return "unexpected"

    def expire(self, rid: int) -> bool:
        """PENDING -> TIMED_OUT; False if it was already DONE or FAILED."""
        if rid not in self.pending:
            return False
        self.pending.discard(rid)
        self.stats.timed_out += 1
        return True

    def fail(self, rid: int) -> bool:
        """One PENDING request -> FAILED (it could not be sent)."""
        if rid not in self.pending:
            return False
        self.pending.discard(rid)
        self.stats.failed += 1
        return True

    def link_lost(self) -> list[int]:
        """Every PENDING request -> FAILED; returns their ids."""
        ids = list(self.pending)
        self.pending.clear()
        self.stats.failed += len(ids)
        return ids


class RepCore:
    """The replier's table (sans-IO), per link."""

    def __init__(self, max_outstanding: int = MAX_OUTSTANDING) -> None:
        self.max_outstanding = max_outstanding
        self.running: dict[int, set[int]] = {}
        self.stats = RepStats()

    def begin(self, key: int, rid: int) -> None:
        running = self.running.setdefault(key, set())
        if rid in running:
            raise BadFrame(f"request id {rid} sent twice", "it is still running")
        if len(running) >= self.max_outstanding:
            raise BadFrame(
                f"more than {self.max_outstanding} requests at once on one link",
                "a requester must wait for replies",
            )
        running.add(rid)
        self.stats.requests += 1

    def reply(self, key: int, rid: int, body: bytes) -> bytes:
        self.running.get(key, set()).discard(rid)
        self.stats.replies += 1
        return wire.Reply(rid, body).encode()

    def error(self, key: int, rid: int, text: str) -> bytes:
        self.running.get(key, set()).discard(rid)
        self.stats.errors += 1
        return wire.Error(rid, text).encode()

    def forget(self, key: int) -> None:
        self.running.pop(key, None)


S = TypeVar("S")


class ReqBase(NodeBase[L], Generic[L, S]):
    """What both drivers' Req do with :class:`ReqCore`; ``S`` is a waiting request's slot.

    The driver adds the waiting (for a link, for the reply) and how an
    outcome reaches a slot (:meth:`_resolve`).
    """

    role = Role.REQ
    datagrams = True

    def _setup(self, timeout: float | None, max_pending: int) -> None:
        self.timeout = timeout
        self.core = ReqCore(max_pending)
        self._slots: dict[int, S] = {}
        self._link: L | None = None

    @property
    def stats(self) -> ReqStats:
        return self.core.stats

    @property
    def connected(self) -> bool:
        return self._link is not None

    def _resolve(self, slot: S, outcome: bytes | SockwireError) -> None:
        """The reply body, or the error to raise, reaches the waiting request (lock held)."""
        raise NotImplementedError

    def _can_send(self, stale: L | None) -> Callable[[], bool]:
        """A link other than ``stale`` is up, and fewer than max_pending are pending."""
        return lambda: self._link is not None and self._link is not stale and not self.core.full()

    def _forget(self, rid: int) -> None:
        """Request ``rid`` failed: it was not sent, or its caller gave up (lock held)."""
        if self.core.fail(rid):
            self._slots.pop(rid, None)

    def _send_broke(self, link: L, exc: SockwireError) -> ConnectionLost | None:
        """Sending a request on ``link`` failed: None to try the next link, else the error.

        The link is kicked either way: a link that cannot send is done.
        """
        self._kick([link])
        if self._dgram and isinstance(exc, ConnectError | ClosedError):
            # a datagram refused (the server's socket is gone or new) was not
            # delivered: safe to send again on the next link, within the deadline
            log.debug("REQ: datagram not delivered (%s); trying the next link", exc)
            return None
        return ConnectionLost(
            f"request on {self._ep.display()}",
            f"the link broke while sending ({exc}); the request may or may not have "
            "reached the peer",
        )

    def _no_reply(self, rid: int, limit: float | None) -> TimeoutError:
        return TimeoutError(
            f"request {rid} on {self._ep.display()}",
            f"no reply within {limit:g} s; the link stays usable and a late reply "
            "will be dropped (stats.late)",
        )

    def _reply(self, msg: wire.Reply | wire.Error) -> bool:
        """A REPLY or ERROR (lock held): True when it reached its waiting request;
        False when it was dropped and counted (late or unexpected)."""
        outcome = self.core.receive(msg)
        if outcome in ("late", "unexpected"):
            log.debug("REQ: dropped a %s reply with id %d", outcome, msg.id)
            return False
        slot = self._slots.pop(msg.id)
        if isinstance(msg, wire.Reply):
            self._resolve(slot, msg.body)
        else:
            self._resolve(slot, RemoteError(f"request {msg.id} on {self._ep.display()}", msg.text))
        return True

    def _link_ready(self, link: L) -> None:
        self._link = link

    def _link_lost(self, link: L, error: BaseException | None) -> None:
        if self._link is not link:
            return
        self._link = None
        why = str(error) if error is not None else "the link was closed"
        for rid in self.core.link_lost():
            slot = self._slots.pop(rid, None)
            if slot is not None:
                self._resolve(
                    slot,
                    ConnectionLost(
                        f"request {rid} on {self._ep.display()}",
                        f"the link was lost before the reply ({why}); the request may or may "
                        "not have run",
                    ),
                )


class _Slot:
    """Where a reply meets the thread waiting for it."""

    __slots__ = ("cond", "done", "error", "payload")

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)
        self.done = False
        self.payload: bytes | None = None
        self.error: SockwireError | None = None


class Req(ReqBase[Link, _Slot], Node):
    """The requesting side: connects to a Rep (reconnecting with backoff).

    ``request(body, timeout)`` sends one request and returns the reply (the
    codec's object). A request that times out leaves the link as it was:
    its reply, if it ever comes, is dropped and counted in ``stats.late``.
    Requests pending when the link is lost fail with ConnectionLost (they
    may or may not have run, so they are never resent). While disconnected,
    ``request`` waits for the reconnect within its own timeout.
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

    def request(self, body: Any, timeout: float | None = None) -> Any:
        """Send ``body``, return the reply; TimeoutError after ``timeout`` (default: the Req's)."""
        limit = self.timeout if timeout is None else timeout
        deadline = self._deadline(limit)
        data = self.codec.encode(body)
        core = self.core
        stale: Link | None = None  # a link that failed to send: wait for the next one
        while True:
            with self._lock:
                self._wait(self._can_send(stale), deadline, "request")
                link = self._link
                assert link is not None
                rid, payload = core.request(data)
                slot = self._slots[rid] = _Slot(self._lock)
            try:
                link.send(payload, deadline)
                break
            except TimeoutError:
                # the write itself took too long (the Rep stopped reading): the
                # request never reached it whole, so it cannot have run
                with self._lock:
                    self._forget(rid)
                how = (
                    "part of it was written, so the link was closed (the next request "
                    "waits for the reconnect)"
                    if link.broken
                    else "nothing of it was written; the link stays usable"
                )
                raise TimeoutError(
                    f"request {rid} on {self._ep.display()}",
                    f"the peer did not take it within {limit:g} s; {how}",
                ) from None
            except MessageTooLarge:
                # refused before a byte was written (one packet cannot carry it):
                # the caller's mistake, and the link is as good as before
                with self._lock:
                    self._forget(rid)
                raise
            except SockwireError as exc:
                with self._lock:
                    self._forget(rid)
                lost = self._send_broke(link, exc)
                if lost is None:
                    stale = link
                    continue
                raise lost from exc
        with self._lock:
            try:
                self._wait(lambda: slot.done, deadline, "request", slot.cond)
            except TimeoutError:
                if core.expire(rid):
                    self._slots.pop(rid, None)
                    raise self._no_reply(rid, limit) from None
            except BaseException:
                self._forget(rid)  # closed, or interrupted: the id is forgotten
                raise
        if slot.error is not None:
            raise slot.error
        assert slot.payload is not None
        return link.codec.decode(slot.payload)

    def _resolve(self, slot: _Slot, outcome: bytes | SockwireError) -> None:
        if isinstance(outcome, SockwireError):
            slot.error = outcome
        else:
            slot.payload = outcome
        slot.done = True
        slot.cond.notify()

    def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Reply | wire.Error):
            super()._handle(link, msg)
            return
        with self._lock:
            self._reply(msg)

    def _closing_hook(self) -> None:
        for slot in self._slots.values():
            slot.cond.notify()


class RepBase(NodeBase[L]):
    """What both drivers' Rep do with :class:`RepCore`; they add calling the handler."""

    role = Role.REP
    datagrams = True

    def _setup(self, handler: Callable[[Any], Any]) -> None:
        self.handler = handler
        self.core = RepCore()

    @property
    def stats(self) -> RepStats:
        return self.core.stats

    def _begin(self, link: L, msg: wire.Request) -> None:
        """A REQUEST on ``link``: RUNNING (a repeated id, or too many, is a ProtocolError)."""
        with self._lock:
            self.core.begin(link.key, msg.id)

    def _answered(self, key: int, request: wire.Request, data: bytes) -> bytes:
        """The handler's encoded result: the REPLY to send."""
        with self._lock:
            return self.core.reply(key, request.id, data)

    def _failed(self, key: int, request: wire.Request, exc: Exception) -> bytes:
        """The handler (or the codec) raised: the ERROR to send; the link stays up."""
        log.info("REP: request %d failed: %s: %s", request.id, type(exc).__name__, exc)
        with self._lock:
            return self.core.error(key, request.id, f"{type(exc).__name__}: {exc}")

    def _request(self, payload: bytes, peer: Peer) -> wire.Request | None:
        """A request datagram, parsed and counted; None: it is none (dropped, counted)."""
        try:
            msg = wire.parse(payload)
        except ProtocolError as exc:
            with self._lock:
                self.core.stats.invalid += 1
            log.debug("REP: dropped a datagram from %s: %s", peer, exc)
            return None
        with self._lock:
            if not isinstance(msg, wire.Request):
                self.core.stats.invalid += 1
                return None
            self.core.stats.requests += 1
        return msg

    def _link_lost(self, link: L, error: BaseException | None) -> None:
        self.core.forget(link.key)


class Rep(RepBase[Link], Node):
    """The replying side: binds ``endpoint``, answers each request with ``handler(body)``.

    The handler runs in the link's own thread, so one slow request holds up
    only the requests behind it on the same link; ``max_connections`` links
    are served at once. A handler that raises sends ERROR to the requester
    (``RemoteError`` there) and the link stays up.
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        handler: Callable[[Any], Any],
        *,
        codec: str | Codec = "bytes",
        liveness: Liveness | None = DEFAULT_LIVENESS,
        max_connections: int = 64,
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

    def _answer(self, codec: Codec, key: int, request: wire.Request) -> bytes:
        try:
            data = codec.encode(self.handler(codec.decode(request.body)))
        except Exception as exc:  # noqa: BLE001  # any handler failure is the requester's error
            return self._failed(key, request, exc)
        return self._answered(key, request, data)

    def _handle(self, link: Link, msg: Msg) -> None:
        if not isinstance(msg, wire.Request):
            super()._handle(link, msg)
            return
        self._begin(link, msg)
        link.send(self._answer(link.codec, link.key, msg))

    def _datagram(self, payload: bytes, peer: Peer) -> bytes | None:
        """One request datagram -> its reply datagram (sent back by the server)."""
        msg = self._request(payload, peer)
        return None if msg is None else self._answer(self.codec, -1, msg)
