"""What every pattern node decides, for both drivers: configuration, links, errors, counts.

A node (Req, Rep, Pub, Sub, Push, Pull) is a pattern core (``ReqCore``,
``PubCore``, ...) and a :class:`~.link.LinkCore` per link, driven by the
blocking driver (:mod:`.driver`: threads, one lock) or the asyncio one
(:mod:`sockwire.aio.patterns.node`: tasks, no lock). :class:`NodeBase` is
the part of a node both drivers share and which never waits: the checks of
the arguments, the link table and what opening, greeting and losing a link
does to it, the connect-failure bookkeeping and every error a waiting call
raises. The drivers add the waiting: how a call sleeps until something
changes (:meth:`NodeBase._notify` wakes it), how a link is read and written,
how the connecting side reconnects.

Locking: the blocking driver's ``_lock`` guards the table; the asyncio
driver's ``_lock`` is a no-op context (one thread). Methods documented
"(lock held)" expect the caller to hold it; the others take it themselves.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any, ClassVar, Generic, TypeVar

from .. import secure
from ..address import Endpoint, parse
from ..codecs import Codec, get_codec
from ..connecting import Backoff, retryable
from ..errors import (
    ClosedError,
    ConnectionLost,
    InvalidOperation,
    PermissionDenied,
    ProtocolError,
    SockwireError,
    TimeoutError,
)
from .link import LinkCore, Liveness
from .wire import Msg, Role

__all__ = [
    "DEFAULT_LIVENESS",
    "MIN_WAIT",
    "NO_LOCK",
    "LinkBase",
    "NodeBase",
    "translate_refusal",
]

log = logging.getLogger("sockwire")

DEFAULT_LIVENESS = Liveness()
#: A reader whose heartbeat deadline has passed still takes what is already
#: buffered before it declares the peer dead (it may have been busy).
MIN_WAIT = 0.01
#: The asyncio driver's ``_lock``: one thread, nothing to exclude.
NO_LOCK: contextlib.AbstractContextManager[None] = contextlib.nullcontext()

C = TypeVar("C")


class LinkBase(Generic[C]):
    """One live connection of a node: its Channel ``C``, LinkCore, codec and state."""

    __slots__ = ("channel", "closing", "codec", "core", "key", "peer", "ready")

    #: ``repr()`` says which driver's link this is.
    _KIND_NAME: ClassVar[str] = "Link"

    def __init__(self, key: int, channel: C, peer: Any, core: LinkCore, codec: Codec) -> None:
        self.key = key
        self.channel = channel
        self.peer = peer
        self.core = core
        self.codec = codec
        self.closing = False
        self.ready = False

    def wake_writer(self) -> None:
        """Something to send, or the link is closing: the writer looks again."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self._KIND_NAME} {self.key} {self.peer} {self.core.state}>"


L = TypeVar("L", bound=LinkBase[Any])


class NodeBase(Generic[L]):
    """What both drivers' nodes share (see the module docstring).

    Subclasses set ``role`` and override the hooks; the driver calls
    :meth:`_configure` first in its ``__init__`` and provides ``_lock``,
    :meth:`_notify`, :meth:`_now` and :meth:`_kick`.
    """

    role: ClassVar[Role]
    #: Links of this pattern need a writer even without heartbeats (Pub).
    needs_writer: ClassVar[bool] = False
    #: Datagram endpoints are allowed (Req/Rep only).
    datagrams: ClassVar[bool] = False
    #: ``repr()`` says which driver's node this is.
    _KIND_PREFIX: ClassVar[str] = ""

    _lock: contextlib.AbstractContextManager[Any]
    _server: Any
    endpoint: str

    def _configure(
        self,
        endpoint: Endpoint | str,
        *,
        codec: str | Codec,
        liveness: Liveness | None,
        backoff: Backoff,
        connect_timeout: float,
        max_size: int,
        grace: float,
    ) -> Endpoint:
        """Check and keep the arguments (before anything is opened or started)."""
        ep = parse(endpoint)
        self._ep = ep
        self._dgram = ep.type == socket.SOCK_DGRAM
        if self._dgram and not self.datagrams:
            raise InvalidOperation(
                f"{type(self).__name__} on {ep.display()}",
                "this pattern keeps per-peer state (subscriptions, credit) that needs a "
                "connection: use unix:, unix+seqpacket: or tcp://",
            )
        self.codec = get_codec(codec, authenticated=True)  # unknown names fail here
        if self.codec.needs_auth and not secure.can_authenticate(ep):
            raise PermissionDenied(
                f"{type(self).__name__} on {ep.display()} with codec=pickle",
                "pickle needs authenticated peers: add ?authfile=, use tls+tcp:// with "
                "?cafile=, or on UNIX ?allowed_uids=/?allowed_gids=",
            )
        self._codec_spec = codec
        self.liveness = liveness
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.max_size = max_size
        self.grace = grace
        self._links: dict[int, L] = {}
        self._next_key = 0
        self._closing = False
        self._closed = False
        self.connects = 0
        self.dead = 0
        self._server = None
        self._channel: Any = None
        self._fatal: SockwireError | None = None
        self._connect_error: SockwireError | None = None  # the last failed attempt, for hints
        return ep

    # ---- the driver's part

    def _notify(self) -> None:
        """Wake every call waiting for a state change (lock held)."""
        raise NotImplementedError

    def _now(self) -> float:
        """The driver's clock: deadlines are in its time."""
        raise NotImplementedError

    def _kick(self, links: list[L]) -> None:
        """Close links (lock not held): their readers end them."""
        raise NotImplementedError

    # ---- hooks (patterns)

    def _opening(self, link: L) -> list[bytes]:
        """Messages to send right after HELLO on a new link (lock held)."""
        return []

    def _link_ready(self, link: L) -> None:
        """The peer's HELLO arrived: the link is usable (lock held)."""

    def _link_lost(self, link: L, error: BaseException | None) -> None:
        """The link ended (lock held)."""

    def _outgoing(self, link: L) -> list[bytes]:
        """Queued messages the writer should send now, taken out (lock held)."""
        return []

    def _sent(self, link: L, frames: list[bytes]) -> None:
        """The writer wrote ``frames`` (lock held): room in its queue now."""

    def _closing_hook(self) -> None:
        """close() began (lock held): wake whatever the pattern has waiting."""

    def _unexpected(self, msg: Msg) -> ProtocolError:
        """What a message this role never receives is (the default ``_handle`` raises it)."""
        return ProtocolError(
            f"a {type(msg).__name__.upper()} sent to a {self.role.name}",
            f"a {self.role.peer.name} never sends that",
        )

    def _no_datagrams(self) -> InvalidOperation:
        return InvalidOperation(f"{self.role.name} over datagrams", "not supported")

    # ---- deadlines and the errors of a waiting call

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else self._now() + timeout

    def _left(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - self._now())

    def _check_waiting(self, what: str) -> None:
        """A call waiting for ``what`` ends now: the node was closed, or cannot connect."""
        if self._closing:
            raise ClosedError(f"{what} on a closed {self.role.name}", "it was closed")
        if self._fatal is not None:
            raise self._fatal

    def _expired(self, what: str) -> TimeoutError:
        """The deadline of a call waiting for ``what`` passed (with why it may not connect)."""
        hint = "the deadline passed"
        if self._connect_error is not None:
            hint += f" (not connected: {self._connect_error})"
        return TimeoutError(f"{what} on {self._ep.display()}", hint)

    # ---- links

    def _link_codec(self, channel: Any, peer: Any) -> Codec | PermissionDenied:
        """The codec for a link's Channel, or why the link is refused (logged)."""
        try:
            return get_codec(self._codec_spec, authenticated=channel.authenticated)
        except PermissionDenied as exc:
            log.warning("%s: link from %s refused: %s", self.role.name, peer, exc)
            return exc

    def _link_refused(self, peer: Any, refused: BaseException) -> None:
        """A bound link ended before its greeting completed."""
        log.info("%s: link from %s refused: %s", self.role.name, peer, refused)

    def _new_key(self) -> int:
        key = self._next_key
        self._next_key += 1
        return key

    def _link_opened(self, link: L, greet: bool) -> list[bytes]:
        """A new link in the table (lock held); returns what to send on it first."""
        self._links[link.key] = link
        opening = ([link.core.hello()] if greet else []) + self._opening(link)
        if not greet:
            link.ready = True
            self._link_ready(link)
        self._notify()
        return opening

    def _greeted(self, link: L) -> None:
        """The peer's HELLO arrived (lock held)."""
        link.ready = True
        self._connect_error = None  # connected and greeted: no excuse to show
        self._link_ready(link)
        self._notify()

    def _link_ended(self, link: L, error: BaseException | None) -> None:
        """The link is out of the table (lock held); its writer and waiters look again."""
        link.closing = True
        link.core.close()
        self._links.pop(link.key, None)
        self._link_lost(link, error)
        link.wake_writer()
        self._notify()

    def _link_error(self, peer: Any, exc: BaseException) -> None:
        log.debug("%s: link %s ended: %s", self.role.name, peer, exc)

    def _writer_stopped(self, link: L, exc: SockwireError) -> None:
        """The writer's Channel failed: the reader sees it broken and ends the link."""
        log.debug("%s: writer for %s stopped: %s", self.role.name, link.peer, exc)

    def _silent(self, link: L) -> ConnectionLost:
        """The heartbeat deadline passed with nothing heard: the peer counts as dead."""
        with self._lock:
            self.dead += 1
        return ConnectionLost(
            f"{self.role.name} link to {link.peer or self._ep.display()}",
            f"the peer was silent for {link.core.dead_after:g} s (heartbeat timeout); "
            "it is hung, stopped or cut off",
        )

    def _unreachable(self, exc: SockwireError) -> None:
        """An ICMP error for an earlier datagram: the datagram link keeps reading."""
        log.debug("%s: %s", self.role.name, exc)

    def _ready_links(self) -> list[L]:
        return [link for link in self._links.values() if link.ready and not link.closing]

    # ---- the connecting side

    def _connect_failed(self, exc: SockwireError) -> None:
        """One attempt failed: kept for the hints; one that retrying cannot mend is fatal."""
        ep = self._ep
        fatal = not (retryable(ep, exc) or isinstance(exc, ConnectionLost))
        if fatal:
            log.warning("%s: cannot connect to %s: %s", self.role.name, ep.display(), exc)
        with self._lock:
            self._connect_error = exc
            if fatal:
                self._fatal = exc
            self._notify()

    def _connected(self, channel: Any) -> bool:
        """A new connection (lock held); False: close() came first, the caller closes it."""
        if self._closing:
            return False
        self._channel = channel
        self._fatal = None
        self.connects += 1
        return True

    def _refused(self, refused: BaseException) -> None:
        """The link ended in its greeting (e.g. a REQ that reached a PUB): said in timeouts."""
        log.info("%s: link to %s refused: %s", self.role.name, self._ep.display(), refused)
        with self._lock:
            self._connect_error = translate_refusal(refused)
            self._notify()

    # ---- lifecycle

    def _begin_close(self) -> bool:
        """close() began (lock held): every waiter wakes; False when it had already."""
        if self._closed:
            return False
        self._closing = True
        self._closed = True
        for link in self._links.values():
            link.wake_writer()
        self._notify()
        self._closing_hook()
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        side = "bound" if self._server is not None else "connecting"
        state = "closed" if self._closed else f"{len(self._links)} links"
        return f"<{self._KIND_PREFIX}{type(self).__name__} {side} {self.endpoint} {state}>"


def translate_refusal(error: BaseException) -> SockwireError:
    """A link that ended during its greeting, as the error a waiting caller is shown."""
    if isinstance(error, SockwireError):
        return error
    return SockwireError("greeting", str(error))
