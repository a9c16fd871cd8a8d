"""What a server decides, for both drivers: options, counts, peer filters, endpoints, datagrams.

:func:`sockwire.serve` (a thread per connection) and :func:`sockwire.aio.serve`
(a task per connection) are two drivers of one server. Everything here is
theirs alike and never waits: the checks of the arguments and of the
endpoint's security files, opening the socket (``dial``: listen, bind or
adopt), the peer filters and their count, the endpoint clients connect to,
the statistics and the log line for each way a connection ends, and the
steps of one datagram around its handler call (receive, admit, decode,
reply). What differs stays in ``server.py`` and ``aio/server.py``: how
they wait for accept(2), run a handler, bound a handshake and shut down.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from . import dial, secure, unix
from .accepting import ACCEPT_BACKOFF
from .address import Endpoint, parse
from .channel import MAX_PACKET, ChannelCore
from .codecs import Codec, get_codec
from .errors import (
    ConnectionLost,
    InvalidOperation,
    PermissionDenied,
    ProtocolError,
    SockwireError,
    TimeoutError,
    errno_name,
    translate,
)
from .sock import Address, Creds, Peer, Socket, format_address, parse_ucred

__all__ = [
    "ABORT_WAIT",
    "DEFAULT_GRACE",
    "DROPPED",
    "KINDS",
    "ServerBase",
    "ServerStats",
    "check_codec",
    "check_limits",
    "datagram_ancillary",
    "datagram_core",
    "endpoint_of",
    "open_socket",
    "recv_datagram",
]

log = logging.getLogger("sockwire")

KINDS = {
    int(socket.SOCK_STREAM): "stream",
    int(socket.SOCK_SEQPACKET): "seqpacket",
    int(socket.SOCK_DGRAM): "dgram",
}

#: Default grace period of shutdown() (and of leaving ``with server:``).
DEFAULT_GRACE = 5.0
#: After the grace period: how long closed handlers get to unwind before we give up on them.
ABORT_WAIT = 5.0
#: What ends a connection because of its peer or a limit (``stats.dropped``, logged at INFO).
DROPPED = (ConnectionLost, ProtocolError, TimeoutError, PermissionDenied)

#: sendmsg flags of a datagram reply: never wait for a slow sender, never SIGPIPE.
_REPLY_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL


@dataclass
class ServerStats:
    """What a server did, counted since it started (read them any time; ints only).

    Connections: ``accepted``, ``refused`` (peer filter), ``handshake_failed``
    (TLS/HMAC), ``handled`` (handler returned), ``dropped`` (the peer went
    away, broke the protocol or hit a limit: logged at INFO), ``evicted``
    (made room for a newcomer at the limit), ``no_first_message`` (closed
    by the first-message deadline), ``failed``
    (the handler raised anything else: logged with its traceback),
    ``aborted`` (closed by shutdown after the grace period), ``active`` and
    ``peak`` (handlers running now / at most). Accept loop:
    ``accept_attempts`` and ``accept_backoffs`` (EMFILE and friends).
    Datagrams: ``messages``, ``replies``, ``unanswerable`` (a reply for an
    unnamed sender), ``reply_dropped`` (the sender's queue was full or it is
    gone), ``invalid`` (undecodable for the codec) and ``fds_refused``
    (datagrams that came with passed fds: the fds are never taken, the data
    is served); header-level loss is in :attr:`Server.datagram_stats`.
    """

    accepted: int = 0
    refused: int = 0
    evicted: int = 0
    no_first_message: int = 0
    handshake_failed: int = 0
    handled: int = 0
    dropped: int = 0
    failed: int = 0
    aborted: int = 0
    active: int = 0
    peak: int = 0
    accept_attempts: int = 0
    accept_backoffs: int = 0
    messages: int = 0
    replies: int = 0
    unanswerable: int = 0
    reply_dropped: int = 0
    invalid: int = 0
    fds_refused: int = 0


# ---- configuration


def check_limits(
    max_connections: int,
    idle_timeout: float | None,
    frame_deadline: float | None,
    first_message_timeout: float | None,
) -> None:
    """InvalidOperation for a limit no server can keep (before anything is opened)."""
    if max_connections < 1:
        raise InvalidOperation(f"max_connections={max_connections}", "allow at least 1")
    for what, value in (
        ("idle_timeout", idle_timeout),
        ("frame_deadline", frame_deadline),
        ("first_message_timeout", first_message_timeout),
    ):
        if value is not None and value <= 0:
            raise InvalidOperation(f"{what}={value}", "give a positive number of seconds")


def check_codec(ep: Endpoint, codec: str | Codec) -> None:
    """An unknown codec, or pickle where no peer can be proven, fails now (not per connection)."""
    # resolve the name first: "Pickle" is pickle, and the check asks the codec, not the spelling
    resolved = get_codec(codec, authenticated=True)
    if resolved.needs_auth and not secure.can_authenticate(ep):
        raise PermissionDenied(
            f"serve {ep.display()} with codec={resolved.name}",
            "pickle runs code chosen by the sender, so it needs authenticated peers: "
            "add ?authfile= (HMAC handshake), use tls+tcp:// with ?cafile= (client "
            "certificates from your CA), or on UNIX ?allowed_uids=/?allowed_gids=",
        )


def not_servable(ep: Endpoint) -> NoReturn:
    raise InvalidOperation(
        f"serve on {ep.display()}", "a server needs a stream, seqpacket or datagram socket"
    )


def open_socket(ep: Endpoint, backlog: int | None) -> Socket:
    """The listening (or bound datagram) socket of a server on ``ep``; never waits."""
    if ep.scheme in ("fd", "systemd"):
        sock = dial.adopt(ep)
        if sock.type == socket.SOCK_DGRAM:
            _passcred(sock)
            return sock
        if unix.is_listening(sock):
            return sock
        sock.detach()
        raise InvalidOperation(
            f"serve on {ep}", "the inherited socket is neither listening nor a datagram socket"
        )
    if ep.type == socket.SOCK_DGRAM:
        sock = dial.bind(ep)
        _passcred(sock)
        return sock
    return dial.listen(ep, backlog=backlog)


def endpoint_of(sock: Socket, address: Address) -> str:
    """An endpoint string for an adopted socket, from its family, type and name."""
    if sock.family == socket.AF_UNIX:
        scheme = {"stream": "unix", "seqpacket": "unix+seqpacket", "dgram": "unix+dgram"}[
            KINDS[int(sock.type)]
        ]
        text = format_address(socket.AF_UNIX, address, exact=True)
        return f"{scheme}:{text}"
    assert isinstance(address, tuple)
    host = str(address[0])
    shown = f"[{host}]" if ":" in host else host
    scheme = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    return f"{scheme}://{shown}:{address[1]}"


# ---- datagrams: the socket level

_UCRED_SIZE = 12  # struct ucred: pid, uid, gid
#: The datagram loop's control buffer: room for SCM_CREDENTIALS and nothing
#: else. With SO_PASSCRED on, the kernel writes the credentials first and
#: discards passed fds that find no room (MSG_CTRUNC, fput in the kernel):
#: no sender can make the server hold a descriptor. Should SO_PASSCRED be
#: off, the same 32 bytes hold up to 4 fds; those are closed at once.
_DGRAM_ANCILLARY = socket.CMSG_SPACE(_UCRED_SIZE)


def _passcred(sock: Socket) -> None:
    """SO_PASSCRED on a UNIX datagram server, bound here or inherited (fd:, systemd:).

    Every datagram then carries its sender's credentials (a sender that
    autobinds may send before we enable it otherwise), and they fill the
    control buffer so passed fds never arrive (see ``_DGRAM_ANCILLARY``).
    """
    if sock.family != socket.AF_UNIX:
        return
    try:
        unix.enable_passcred(sock)
    except SockwireError as exc:  # not expected on Linux; fds are still closed on arrival
        log.warning("SO_PASSCRED on %s failed: %s", sock, exc)


def datagram_ancillary(sock: Socket) -> int:
    """The control buffer size for :func:`recv_datagram` on ``sock``."""
    return _DGRAM_ANCILLARY if sock.family == socket.AF_UNIX else 0


def datagram_core(sock: Socket, framing: str | None, max_size: int) -> ChannelCore:
    """The core that decodes a datagram server's packets and frames its replies."""
    return ChannelCore(
        "dgram",
        framing=framing,
        max_size=max_size,
        packet_limit=min(MAX_PACKET, sock.packet_limit() or MAX_PACKET),
    )


def recv_datagram(
    raw: socket.socket, buf: memoryview, anc_size: int
) -> tuple[int, int, Creds | None, Address | None]:
    """One datagram into ``buf``: (real size, flags, SCM_CREDENTIALS, sender or None).

    MSG_TRUNC in the flags makes Linux return the real length of a datagram
    larger than ``buf`` (the core counts it as truncated). Passed fds that
    found room in the control buffer are closed before anything else
    happens; MSG_CTRUNC in the returned flags says fds (or more) were sent.
    """
    size, ancdata, flags, address = raw.recvmsg_into([buf], anc_size, socket.MSG_TRUNC)
    creds = None
    for level, kind, data in ancdata:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            for fd in array.array("i", data[:usable]):
                with contextlib.suppress(OSError):
                    os.close(fd)
            flags |= socket.MSG_CTRUNC
        elif kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED_SIZE:
            found = parse_ucred(data)
            if found.pid != 0:  # queued before SO_PASSCRED: no credentials, not pid 0
                creds = found
    if address in (None, "", b""):
        address = None
    return size, flags, creds, address


class ServerBase:
    """The half of a Server both drivers share; the driver adds waiting and running.

    A driver's ``__init__`` calls :meth:`_configure` first and
    :meth:`_open` last; :meth:`_opened` is its hook for what it needs on the
    open socket. ``_count`` is overridden where counts are shared between
    threads.
    """

    #: ``repr()`` and default thread/task names say which driver this is.
    _KIND_NAME = "Server"
    _DEFAULT_NAME = "sockwire-server"

    _ep: Endpoint
    _sock: Socket
    _filters: list[Callable[[Peer], bool]]
    _datagram_core: ChannelCore | None
    _stopping: bool
    _closed: bool
    stats: ServerStats
    endpoint: str
    name: str
    kind: str

    def _configure(
        self,
        endpoint: Endpoint | str,
        handler: Any,
        *,
        max_connections: int,
        idle_timeout: float | None,
        frame_deadline: float | None,
        first_message_timeout: float | None,
        codec: str | Codec,
        framing: str | None,
        max_size: int,
        handshake_timeout: float,
        grace: float,
    ) -> Endpoint:
        """Check and keep the arguments; the codec and security files are checked now."""
        ep = parse(endpoint)
        check_limits(max_connections, idle_timeout, frame_deadline, first_message_timeout)
        self._ep = ep
        self.handler = handler
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.frame_deadline = frame_deadline
        self.first_message_timeout = first_message_timeout
        self.codec = codec
        self.framing = framing if framing is not None else ep.option("framing")
        self.max_size = max_size
        self.handshake_timeout = handshake_timeout
        self.grace = grace
        self.stats = ServerStats()
        self._stopping = False
        self._closed = False
        self._datagram_core = None
        check_codec(ep, codec)
        secure.check_server(ep)  # a bad certfile= or authfile= fails now, not per connection
        return ep

    def _open(
        self, backlog: int | None, name: str | None, peer_filter: Callable[[Peer], bool] | None
    ) -> None:
        """Open the socket, then what follows from it; closed again if any of it fails."""
        self._sock = open_socket(self._ep, backlog)
        self.kind = KINDS.get(int(self._sock.type), "")
        try:
            if not self.kind:
                not_servable(self._ep)
            self.endpoint = self._client_endpoint()
            self.name = name or f"{self._DEFAULT_NAME} {self.endpoint}"
            self._filters = self._collect_filters(peer_filter)
            self._opened()
        except BaseException:
            self._sock.close()
            raise

    def _opened(self) -> None:
        """The driver's own set-up on the open socket (its failure closes the socket)."""

    def _collect_filters(
        self, peer_filter: Callable[[Peer], bool] | None
    ) -> list[Callable[[Peer], bool]]:
        """The endpoint's ?allowed_uids= filter and ``peer_filter``: both must admit."""
        filters: list[Callable[[Peer], bool]] = []
        own = getattr(self._sock, "peer_filter", None)
        if own is not None:
            filters.append(own)
            self._sock.peer_filter = None  # type: ignore[attr-defined]  # we apply it (and count)
        if peer_filter is not None:
            if isinstance(peer_filter, unix.PeerFilter):
                filters.append(peer_filter)
            else:
                filters.append(unix.PeerFilter(predicate=peer_filter))
        return filters

    def _admit(self, peer: Peer) -> bool:
        for check in self._filters:
            if not check(peer):  # PeerFilter logs the refusal and why
                self.stats.refused += 1
                return False
        return True

    def _client_endpoint(self) -> str:
        """The endpoint clients connect to (port 0 replaced by the port bound, and
        without the listener's own options, which a client would be refused)."""
        ep = self._ep
        address = self.address
        if ep.scheme in ("fd", "systemd"):
            return endpoint_of(self._sock, address)
        if ep.port == 0 and isinstance(address, tuple):
            ep = dataclasses.replace(ep, port=int(address[1]))
        return str(ep.for_side("connect"))  # ?mode=, ?backlog=... are the listener's

    # ---- what it is

    @property
    def address(self) -> Address:
        """getsockname() of the listening/bound socket."""
        return self._sock.getsockname()

    @property
    def connections(self) -> int:
        """Handlers running now."""
        return self.stats.active

    @property
    def datagram_stats(self) -> Any:
        """Loss/lateness/truncation/invalid counts of a datagram server (a DatagramStats)."""
        core = self._datagram_core
        return core.stats if core is not None else None

    @property
    def stopping(self) -> bool:
        """True once shutdown() has begun."""
        return self._stopping

    def __repr__(self) -> str:
        state = "closed" if self._closed else "stopping" if self._stopping else "open"
        active = self.stats.active
        return f"<{self._KIND_NAME} {self.endpoint} {self.kind} {state} active={active}>"

    # ---- connections: accept, count, log

    def _count(self, field: str) -> None:
        """One more of ``field`` in stats."""
        setattr(self.stats, field, getattr(self.stats, field) + 1)

    def _accept(self, listener: Socket) -> tuple[Socket, Peer]:
        """accept(2) on the non-blocking listener, through the peer filters (counted)."""
        if self._filters:
            return unix.accept_checked(listener, self._admit)
        return listener.accept()

    def _count_backoff(self, exc: SockwireError) -> None:
        """Out of descriptors (accepting.on_accept_error said so): counted, logged every 100th."""
        self._count("accept_backoffs")
        backoffs = self.stats.accept_backoffs
        if backoffs % 100 == 1:
            log.warning(
                "%s: accept failed (%s), backing off %g s (%d times so far): %s",
                self.name,
                exc.errno_name,
                ACCEPT_BACKOFF,
                backoffs,
                exc.hint,
            )

    def _started(self) -> None:
        """A handler is starting (under the driver's lock, if it has one)."""
        stats = self.stats
        stats.active += 1
        stats.peak = max(stats.peak, stats.active)

    def _label(self, peer: Peer) -> str:
        """The Channel label of a connection from ``peer``."""
        return f"{self._ep.display()} peer {peer}"

    def _handshake_failed(self, peer: Peer, exc: SockwireError) -> None:
        self._count("handshake_failed")
        log.info("%s: handshake with %s failed: %s", self.name, peer, exc)

    def _channel_refused(self, peer: Peer, exc: SockwireError) -> None:
        """No Channel for the secured socket (e.g. pickle on a peer that did not authenticate)."""
        self._count("handshake_failed")
        log.warning("%s: refused %s: %s", self.name, peer, exc)

    def _handler_stopped(self, peer: Peer, exc: SockwireError) -> None:
        """Shutdown closed its Channel after the grace period."""
        log.debug("%s: handler for %s stopped: %s", self.name, peer, exc)

    def _dropped(self, peer: Peer, exc: BaseException, why: str | None = None) -> None:
        """One of :data:`DROPPED` ended it; ``why``: the admission policy's count instead."""
        self._count(why or "dropped")
        if why is None:
            log.info("%s: connection from %s ended: %s", self.name, peer, exc)

    def _handler_failed(self, peer: Peer) -> None:
        """The handler raised anything else (call it in the ``except``: logs the traceback)."""
        self._count("failed")
        log.exception("%s: handler failed for %s", self.name, peer)

    def _aborting(self, peers: list[Peer], grace: float) -> None:
        """The grace period passed with handlers of ``peers`` still running: they are closed."""
        log.warning(
            "%s: %d handlers still running after %g s; closing their connections",
            self.name,
            len(peers),
            grace,
        )
        self.stats.aborted += len(peers)

    def _stuck(self, peers: list[Peer]) -> None:
        shown = [str(peer) for peer in peers]
        log.error("%s: handlers did not return after close: %s", self.name, shown)

    # ---- datagrams: the steps around the handler call

    def _receive_failed(self, exc: OSError) -> None:
        """recvmsg failed (an ICMP error for an earlier reply, ...): logged, the loop goes on."""
        error = translate(exc, "recvmsg", self._ep.display(), family=self._sock.family)
        log.debug("%s: receive failed: %s", self.name, error)

    def _datagram_in(
        self,
        core: ChannelCore,
        codec: Codec,
        buf: memoryview,
        size: int,
        flags: int,
        creds: Creds | None,
        address: Address | None,
    ) -> tuple[Peer, Any] | None:
        """A received datagram -> (its sender, the decoded message), or None: nothing to serve.

        Counts what :class:`ServerStats` says: fds refused, messages, invalid
        ones; the peer filters' refusals; truncated or headerless ones are in
        ``core.stats``.
        """
        if flags & socket.MSG_CTRUNC:
            self.stats.fds_refused += 1  # the datagram itself is still served
        core.receive_packet(buf, size, address)
        if not core.pending:
            return None  # truncated, or without the sockwire header: counted in core.stats
        payload = core.pending.popleft()
        peer = Peer(address, self._sock.family, creds)
        if self._filters and not self._admit(peer):
            return None
        self.stats.messages += 1
        try:
            return peer, codec.decode(payload)
        except ProtocolError as exc:
            self.stats.invalid += 1
            log.info("%s: dropped a datagram from %s: %s", self.name, peer, exc)
            return None

    def _datagram_failed(self, peer: Peer) -> None:
        """The datagram handler raised (call it from the ``except``)."""
        self.stats.failed += 1
        log.exception("%s: handler failed for a datagram from %s", self.name, peer)

    def _datagram_out(self, core: ChannelCore, codec: Codec, reply: Any, peer: Peer) -> None:
        """The handler returned ``reply``: sent back (None: nothing), never waiting."""
        stats = self.stats
        stats.handled += 1
        if reply is None:
            return
        address = peer.address
        if address is None:
            stats.unanswerable += 1
            log.debug("%s: no reply to an unnamed sender (it never bound a name)", self.name)
            return
        try:
            write = core.datagram_to(codec.encode(reply), address)
            self._sock.raw.sendmsg(write, (), _REPLY_FLAGS, address)
        except SockwireError:
            stats.failed += 1
            log.exception("%s: the handler's reply cannot be sent", self.name)
            return
        except OSError as exc:
            # EAGAIN: the sender's queue is full (a UNIX datagram client that
            # does not read); ECONNREFUSED/ENOENT: it is gone. One slow client
            # must not stall the server: drop, count.
            stats.reply_dropped += 1
            log.debug("%s: reply to %s dropped: %s", self.name, peer, errno_name(exc.errno))
            return
        stats.replies += 1
