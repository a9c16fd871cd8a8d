"""``sockwire.zmq.Socket``: the blocking driver over :class:`~sockwire.zmq.core.SocketCore`.

It owns the transports (listeners, connects in progress, connected peers)
and the clock, and does all I/O inside the caller's ``send``/``recv``/``poll``
calls: there is no background thread. While a call waits it serves every
transport (accepts, handshakes, subscriptions, heartbeats, reconnects);
a ``send`` that does not wait serves them at least every
:data:`SERVICE_INTERVAL` seconds. A socket whose owner calls nothing for a
long time lets its kernel buffers fill, and peers wait, as with any
unserved socket; heartbeats resume on the next call.

Like a libzmq socket, one ``Socket`` belongs to one thread: the one that
made it. The sockets one thread made are served together (a REQ and a REP
in one thread talk to each other); each thread has its own such loop.

Platform decisions, written where they are made:

- reads ask for :data:`READ_SIZE` bytes (many small ZMTP frames per call);
- writes are ``send(MSG_NOSIGNAL)`` on a non-blocking socket: EAGAIN keeps
  the rest in the peer's bounded output; EPIPE/ECONNRESET close the peer;
- connects are non-blocking (EINPROGRESS, then SO_ERROR when writable), so
  one unreachable endpoint never holds up the others;
- accept errors follow :mod:`sockwire.accepting` (serve()'s and the CLI's
  policy): a connection that died in the backlog is skipped; out of
  descriptors, the listener is not polled for ACCEPT_BACKOFF (no spinning).
- a UNIX connect under a full backlog fails with EAGAIN at once (it is never
  in progress): retried after the connector's back-off, like a refusal.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import dial, zmtp
from ..accepting import ACCEPT_BACKOFF, on_accept_error
from ..errors import (
    AddressError,
    ClosedError,
    SockwireError,
    TimeoutError,
    translate,
)
from ..escape import printable
from ..sock import Socket as RawSocket
from .core import Backoff, Peer, SocketView
from .endpoint import ZmqEndpoint, parse
from .options import socket_core
from .security import mechanism_factory

__all__ = ["FLUSH_AT", "READ_SIZE", "SERVICE_INTERVAL", "Socket", "poll"]

log = logging.getLogger("sockwire")

READ_SIZE = 256 * 1024
#: A peer's buffered output is written once it holds this many bytes.
FLUSH_AT = 64 * 1024
#: A send this long after the last serving round serves the transports first.
SERVICE_INTERVAL = 0.02
_POLLIN, _POLLOUT = select.POLLIN, select.POLLOUT
_POLLERR = select.POLLERR | select.POLLHUP | select.POLLNVAL

Message = list[bytes]


@dataclass(eq=False)
class _Listener:
    sock: RawSocket
    ep: ZmqEndpoint
    factory: Callable[[bool], zmtp.Mechanism]
    paused_until: float = 0.0  # out of descriptors: not polled until then


@dataclass(eq=False)
class _Connector:
    ep: ZmqEndpoint
    factory: Callable[[bool], zmtp.Mechanism]
    backoff: Backoff = field(default_factory=Backoff)
    due: float = 0.0
    pending: RawSocket | None = None  # a connect in progress
    peer: Peer | None = None


@dataclass(eq=False)
class _Transport:
    sock: RawSocket
    raw: socket.socket
    connector: _Connector | None
    blocked: bool = False  # the last write stopped at EAGAIN


class Socket(SocketView):
    """A ZeroMQ socket speaking ZMTP 3.1 to libzmq, pyzmq, JeroMQ, NetMQ peers.

    ``Socket("PUSH", "zmq+tcp://127.0.0.1:5555")`` connects;
    ``Socket("PULL", "zmq+tcp://127.0.0.1:5555?bind=1")`` (or ``bind=True``)
    binds. The type may come from the endpoint (``?type=PULL``). More
    endpoints: :meth:`bind`, :meth:`connect`. A message is a list of frames:
    ``send(b"x")`` sends one frame, ``send([b"a", b"b"])`` a multipart
    message, and :meth:`recv` returns a list.
    """

    def __init__(
        self,
        socket_type: str | None = None,
        endpoint: str | ZmqEndpoint | None = None,
        *,
        bind: bool | None = None,
        identity: bytes | None = None,
        subscribe: Sequence[bytes] = (),
        heartbeat: float | None = None,
        handshake_timeout: float | None = None,
        sndhwm: int | None = None,
        rcvhwm: int | None = None,
        max_size: int | None = None,
        linger: float = 2.0,
        reconnect: tuple[float, float] = (0.1, 2.0),
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self._trace = trace
        self._core, ep = socket_core(
            socket_type,
            endpoint,
            identity=identity,
            heartbeat=heartbeat,
            handshake_timeout=handshake_timeout,
            sndhwm=sndhwm,
            rcvhwm=rcvhwm,
            max_size=max_size,
            log=self._log if trace else None,
        )
        kind = self._core.type
        self.linger = linger
        self._reconnect = reconnect
        self._listeners: list[_Listener] = []
        self._connectors: list[_Connector] = []
        self._closed = False
        self._last_service = 0.0
        self._dirty = False  # send() buffered something not yet written
        self._sends = 0
        self._flush_count = max(1, self._core.sndhwm // 2)
        self._one_frame_fast = kind in ("PUSH", "DEALER", "PAIR")
        self._loop = _this_threads_loop()
        self._loop.add(self)
        self.endpoints: list[str] = []
        try:
            for topic in (*subscribe, *(ep.subscriptions if ep else ())):
                self._core.subscribe(topic)
            if ep is not None:
                if bind if bind is not None else ep.bind:
                    self.bind(ep)
                else:
                    self.connect(ep)
        except BaseException:
            self.close(linger=0)
            raise

    # ------------------------------------------------------------------
    # set-up

    def bind(self, endpoint: str | ZmqEndpoint) -> str:
        """Listen on ``endpoint``; returns it with the port a bind to port 0 got."""
        self._check_open()
        ep = parse(endpoint)
        factory = mechanism_factory(ep)
        sock = dial.listen(ep.target)
        try:
            sock.setblocking(False)
            if ep.transport == "tcp":
                ep = ep.with_port(int(sock.getsockname()[1]))
        except BaseException:
            sock.close()
            raise
        self._listeners.append(_Listener(sock, ep, factory))
        self.endpoints.append(ep.display())
        self._note(f"bind {ep.display()}")
        return ep.display()

    def connect(self, endpoint: str | ZmqEndpoint) -> None:
        """Connect to ``endpoint`` now and again whenever the connection is lost."""
        self._check_open()
        ep = parse(endpoint)
        if ep.host_any:
            raise AddressError(f"connect to {ep.display()}", "* means every interface: bind only")
        connector = _Connector(ep, mechanism_factory(ep), Backoff(*self._reconnect))
        self._connectors.append(connector)
        self.endpoints.append(ep.display())
        self._start_connect(connector, time.monotonic())

    def subscribe(self, topic: bytes | str = b"") -> None:
        """SUB/XSUB: receive messages whose first frame starts with ``topic``."""
        self._check_open()
        self._core.subscribe(topic.encode() if isinstance(topic, str) else topic)
        self._flush_all()

    def unsubscribe(self, topic: bytes | str) -> None:
        self._check_open()
        self._core.unsubscribe(topic.encode() if isinstance(topic, str) else topic)
        self._flush_all()

    # ------------------------------------------------------------------
    # messages

    def send(
        self, msg: bytes | bytearray | memoryview | Sequence[bytes], timeout: float | None = None
    ) -> None:
        """Send one message (bytes: one frame; a list: the frames of a multipart message).

        Waits while no peer can take it (PUSH, DEALER, REQ, PAIR with every peer
        full or none connected); ``timeout`` bounds that wait (TimeoutError).
        PUB, XPUB and ROUTER never wait: they drop for a full peer and count it.

        Like a Channel's, a send is buffered (up to :data:`FLUSH_AT` bytes or
        half the high-water mark per peer) and written by the next call that
        waits or receives, by :meth:`flush`, or by :meth:`close`; a send that
        comes :data:`SERVICE_INTERVAL` or more after the last serving writes too.
        """
        if self._closed:
            self._check_open()
        if type(msg) is bytes and self._one_frame_fast:
            self._sends += 1
            # the clock is read every 64th send only: a send costs well under 1 us
            if self._sends & 63 or time.monotonic() - self._last_service <= SERVICE_INTERVAL:
                peer = self._core.send_one(msg)
                if peer is not None:
                    self._dirty = True
                    if peer.queued >= self._flush_count or len(peer.conn.outgoing) >= FLUSH_AT:
                        self._write(peer)
                    return
        frames: list[bytes]
        if isinstance(msg, bytes | bytearray | memoryview):
            frames = [bytes(msg)]
        else:
            frames = [f if type(f) is bytes else bytes(f) for f in msg]
        core = self._core
        now = time.monotonic()
        if now - self._last_service > SERVICE_INTERVAL:
            self._flush_all()
            self._step(now, 0.0)
        if not core.send(frames):
            self._send_waiting(frames, now, timeout)
        self._dirty = True
        peer = core.last_peer
        if peer is not None:
            if len(peer.conn.outgoing) >= FLUSH_AT or peer.queued >= self._flush_count:
                self._write(peer)
        else:
            for peer in core.peers:
                if len(peer.conn.outgoing) >= FLUSH_AT or peer.queued >= self._flush_count:
                    self._write(peer)

    def _send_waiting(self, frames: list[bytes], now: float, timeout: float | None) -> None:
        core = self._core
        deadline = None if timeout is None else now + timeout
        while True:
            if deadline is not None and now >= deadline:
                raise TimeoutError(
                    f"{core.type} send", f"no peer could take the message within {timeout:g} s"
                )
            self._step(now, None if deadline is None else deadline - now)
            if core.send(frames):
                return
            now = time.monotonic()

    send_multipart = send

    def recv(self, timeout: float | None = None) -> list[bytes]:
        """The next message, as its list of frames; waits up to ``timeout`` (TimeoutError).

        A REQ whose reply does not come in time drops that connection (it
        reconnects), so a late reply can never be taken for the next one.
        """
        if self._closed:
            self._check_open()
        if self._dirty:
            self._flush_all()
        core = self._core
        msg = core.recv()
        if msg is not None:
            return msg
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        while True:
            self._step(now, None if deadline is None else max(0.0, deadline - now))
            msg = core.recv()
            if msg is not None:
                return msg
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                core.abandon()
                self._reap(now)
                raise TimeoutError(f"{core.type} recv", f"no message within {timeout:g} s")

    recv_multipart = recv

    def poll(self, timeout: float | None = 0.0) -> bool:
        """True when :meth:`recv` would return at once; serves the transports meanwhile."""
        self._check_open()
        if self._core.can_recv():
            return True
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        while True:
            self._step(now, None if deadline is None else max(0.0, deadline - now))
            if self._core.can_recv():
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every connected peer's queued output is written (False on timeout).

        Output waits in user space only while a peer's kernel buffer is full;
        with no background thread it moves on the next call, or here.
        """
        self._check_open()
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        while True:
            self._flush_all()
            if not any(p.out and not p.closing for p in self._core.peers):
                return True
            if deadline is not None and now >= deadline:
                return False
            self._step(now, None if deadline is None else deadline - now)
            now = time.monotonic()

    def wait_peers(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``count`` peers completed their handshake (else TimeoutError)."""
        now = time.monotonic()
        deadline = now + timeout
        while self.peers < count:
            if now >= deadline:
                raise TimeoutError(
                    f"{self.type} waiting for {count} peer(s)",
                    f"{self.peers} within {timeout:g} s",
                )
            self._step(now, deadline - now)
            now = time.monotonic()

    # ------------------------------------------------------------------
    # closing

    def close(self, linger: float | None = None) -> None:
        """Close every transport; queued output gets up to ``linger`` seconds to leave."""
        if self._closed:
            return
        wait = self.linger if linger is None else linger
        deadline = time.monotonic() + wait
        try:
            while wait > 0 and any(p.out and p.ready and not p.closing for p in self._core.peers):
                now = time.monotonic()
                if now >= deadline:
                    break
                self._step(now, deadline - now)
        finally:
            self._closed = True
            for peer in list(self._core.peers):
                self._drop(peer, time.monotonic(), reconnect=False)
            for connector in self._connectors:
                if connector.pending is not None:
                    connector.pending.close()
                    connector.pending = None
            for listener in self._listeners:
                listener.sock.close()
            self._listeners.clear()
            self._connectors.clear()
            self._loop.remove(self)

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - a safety net, close() is the way
        if not getattr(self, "_closed", True):
            self.close(linger=0)

    # ------------------------------------------------------------------
    # the loop

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"ZeroMQ {self._core.type} socket is closed", "open a new one")

    def _step(self, now: float, wait: float | None) -> None:
        """One round of this thread's loop (every socket made in this thread)."""
        self._loop.step(now, wait)

    def _prepare(self, now: float) -> None:
        """Due connects and deadlines, before a round's poll."""
        self._last_service = now
        for connector in self._connectors:
            if connector.peer is None and connector.pending is None and now >= connector.due:
                self._start_connect(connector, now)
            elif connector.peer is not None and connector.peer.ready:
                connector.backoff.reset()
        self._core.tick(now)
        self._reap(now)

    def _register(self, poller: select.poll, fds: dict[int, tuple[Socket, object]]) -> None:
        now = time.monotonic()
        for listener in self._listeners:
            if listener.paused_until > now:
                continue  # backing off after EMFILE: the backlog keeps the connections
            fd = listener.sock.fileno()
            poller.register(fd, _POLLIN)
            fds[fd] = (self, listener)
        for connector in self._connectors:
            if connector.pending is not None:
                fd = connector.pending.fileno()
                poller.register(fd, _POLLOUT)
                fds[fd] = (self, connector)
        for peer in self._core.peers:
            transport: _Transport = peer.handle  # type: ignore[assignment]
            mask = (_POLLIN if peer.wants_input else 0) | (_POLLOUT if peer.out else 0)
            fd = transport.raw.fileno()
            poller.register(fd, mask)
            fds[fd] = (self, peer)

    def _deadline(self) -> float | None:
        limit = self._core.next_deadline()
        for connector in self._connectors:
            if connector.peer is None and connector.pending is None:
                limit = connector.due if limit is None else min(limit, connector.due)
        for listener in self._listeners:
            if listener.paused_until:
                limit = (
                    listener.paused_until if limit is None else min(limit, listener.paused_until)
                )
        return limit

    def _dispatch(self, thing: object, flags: int, now: float) -> None:
        if isinstance(thing, Peer):
            self._serve_peer(thing, flags, now)
        elif isinstance(thing, _Listener):
            self._accept(thing, now)
        elif isinstance(thing, _Connector):
            self._finish_connect(thing, now)

    def _serve_peer(self, peer: Peer, flags: int, now: float) -> None:
        transport: _Transport = peer.handle  # type: ignore[assignment]
        if flags & _POLLOUT:
            transport.blocked = False
            self._write(peer)
        if flags & (_POLLIN | _POLLERR) and peer.closing is None:
            try:
                data = transport.raw.recv(READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                peer.closing = translate(exc, "recv", peer.label).message
                return
            self._core.received(peer, data, now)
            if peer.out and not transport.blocked:
                self._write(peer)

    def _write(self, peer: Peer) -> None:
        transport: _Transport = peer.handle  # type: ignore[assignment]
        while peer.out:
            try:
                sent = transport.raw.send(peer.out, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                transport.blocked = True
                return
            except OSError as exc:
                peer.closing = peer.closing or translate(exc, "send", peer.label).message
                peer.out.clear()
                return
            self._core.wrote(peer, sent)

    def _flush_all(self) -> bool:
        """Write what every peer has queued; True when some bytes left."""
        # a blocked transport is tried again too: between two steps nothing else
        # would drain it, and one EAGAIN costs less than a poll
        self._dirty = False
        moved = False
        for peer in self._core.peers:
            out = peer.conn.outgoing
            if out:
                before = len(out)
                self._write(peer)
                moved = moved or len(out) < before
        return moved

    def _reap(self, now: float) -> None:
        for peer in [p for p in self._core.peers if p.closing]:
            self._drop(peer, now, reconnect=True)

    def _drop(self, peer: Peer, now: float, *, reconnect: bool) -> None:
        transport: _Transport = peer.handle  # type: ignore[assignment]
        if peer.out and peer.closing:
            self._write(peer)  # best effort: an ERROR command the peer should see
        reason = peer.closing or "closed"
        if peer.closing and not self._closed:
            level = logging.WARNING if peer.failed else logging.INFO
            log.log(level, "zmq %s peer %s: %s", self._core.type, peer.label, reason)
            self._note(f"drop {peer.label}: {reason}")
        transport.sock.close()
        self._core.detach(peer)
        connector = transport.connector
        if connector is not None and connector.peer is peer:
            connector.peer = None
            if reconnect and not self._closed:
                connector.due = now + connector.backoff.next()

    # ------------------------------------------------------------------
    # transports

    def _accept(self, listener: _Listener, now: float) -> None:
        listener.paused_until = 0.0
        for _ in range(64):  # bounded per step; the rest wait in the backlog
            try:
                sock, who = listener.sock.accept()
            except SockwireError as exc:
                action = on_accept_error(exc)  # the policy serve() and the CLI use
                if action == "again":
                    return
                if action == "skip":
                    continue
                log.warning("zmq %s accept on %s: %s", self.type, listener.ep.display(), exc)
                if action == "backoff":  # out of descriptors: no spinning on the backlog
                    listener.paused_until = now + ACCEPT_BACKOFF
                return
            label = f"{listener.ep.display()} <- {printable(str(who))}"  # peer-chosen name
            self._adopt(
                sock, listener.factory(True), None, label, now, tcp=listener.ep.transport == "tcp"
            )

    def _start_connect(self, connector: _Connector, now: float) -> None:
        ep = connector.ep
        try:
            family, address = _address(ep)
            sock = dial.client_socket(ep.target, family)  # options set, ?sourceport= bound
        except SockwireError as exc:
            self._connect_failed(connector, now, exc)
            return
        raw = sock.raw
        raw.setblocking(False)
        code = raw.connect_ex(address)  # type: ignore[arg-type]
        # TCP: EINPROGRESS, then SO_ERROR when writable. A UNIX connect never is
        # in progress: EAGAIN means the listener's backlog is full and this attempt
        # failed (the socket shows writable at once): try again after a pause
        if code in (0, errno.EINPROGRESS):
            connector.pending = sock
            if code == 0:
                self._finish_connect(connector, now)
            return
        sock.close()
        self._connect_failed(
            connector,
            now,
            translate(OSError(code, errno.errorcode.get(code, "")), "connect", ep.display()),
        )

    def _finish_connect(self, connector: _Connector, now: float) -> None:
        sock = connector.pending
        assert sock is not None
        code = sock.raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            try:
                sock.raw.getpeername()
            except OSError as exc:
                code = exc.errno or errno.ENOTCONN  # not connected after all: try again
        connector.pending = None
        if code:
            sock.close()
            self._connect_failed(
                connector,
                now,
                translate(
                    OSError(code, errno.errorcode.get(code, "")), "connect", connector.ep.display()
                ),
            )
            return
        label = connector.ep.display()
        connector.peer = self._adopt(
            sock,
            connector.factory(False),
            connector,
            label,
            now,
            tcp=connector.ep.transport == "tcp",
        )

    def _connect_failed(self, connector: _Connector, now: float, exc: SockwireError) -> None:
        delay = connector.backoff.next()
        connector.due = now + delay
        self._note(f"connect {connector.ep.display()}: {exc}; again in {delay:g} s")

    def _adopt(
        self,
        sock: RawSocket,
        mechanism: zmtp.Mechanism,
        connector: _Connector | None,
        label: str,
        now: float,
        *,
        tcp: bool,
    ) -> Peer:
        raw = sock.raw
        raw.setblocking(False)
        if tcp:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as libzmq does
        transport = _Transport(sock, raw, connector)
        peer = self._core.attach(transport, now, mechanism=mechanism, label=label)
        self._write(peer)
        return peer

    # ------------------------------------------------------------------
    # tracing

    def _log(self, label: str, direction: str, text: str) -> None:
        if self._trace is not None:
            self._trace(f"zmtp {label} {direction} {text}")

    def _note(self, text: str) -> None:
        if self._trace is not None:
            self._trace(f"zmq {self._core.type} {text}")


def poll(
    sockets: Sequence[Socket], timeout: float | None = None, *, fds: Sequence[int] = ()
) -> list[Socket]:
    """The sockets that have a message ready, waiting up to ``timeout`` seconds.

    Every socket of the calling thread is served meanwhile (zmq_poll's job).
    The wait also ends when one of ``fds`` (say, stdin) becomes readable; the
    result may then be empty.
    """
    if not sockets:
        return []
    loop = sockets[0]._loop
    now = time.monotonic()
    deadline = None if timeout is None else now + timeout
    while True:
        ready = [s for s in sockets if not s._closed and s._core.can_recv()]
        if ready or (deadline is not None and now >= deadline):
            return ready
        if loop.step(now, None if deadline is None else deadline - now, fds):
            return [s for s in sockets if not s._closed and s._core.can_recv()]
        now = time.monotonic()


class _Loop:
    """The sockets made in one thread, served together by whichever of them waits.

    Without it two sockets of one thread (a REQ and the REP it talks to, in a
    test or a small program) would deadlock: each waits in its own poll while
    the other's handshake needs serving. Sockets of other threads have their
    own loop and never touch this one.
    """

    def __init__(self) -> None:
        self.sockets: list[weakref.ref[Socket]] = []

    def add(self, sock: Socket) -> None:
        self.sockets = [r for r in self.sockets if r() is not None]
        self.sockets.append(weakref.ref(sock))

    def remove(self, sock: Socket) -> None:
        self.sockets = [r for r in self.sockets if r() is not None and r() is not sock]

    def live(self) -> list[Socket]:
        return [s for s in (r() for r in self.sockets) if s is not None and not s._closed]

    def step(self, now: float, wait: float | None, extra: Sequence[int] = ()) -> bool:
        """Deadlines of every socket, one poll over all their fds, then serve what is ready.

        True when one of the ``extra`` fds became readable.
        """
        sockets = self.live()
        poller = select.poll()
        fds: dict[int, tuple[Socket, object]] = {}
        limit: float | None = None
        moved = False
        for sock in sockets:
            # a wait writes what send() buffered first; if that moved bytes, the
            # caller's condition may hold now: look again instead of sleeping
            moved = sock._flush_all() or moved
            sock._prepare(now)
            sock._register(poller, fds)
            when = sock._deadline()
            if when is not None and (limit is None or when < limit):
                limit = when
        if limit is not None:
            until = max(0.0, limit - now)
            wait = until if wait is None else min(wait, until)
        if moved:
            wait = 0.0
        for fd in extra:
            poller.register(fd, _POLLIN)
        ms = -1 if wait is None else int(wait * 1000 + 0.999)
        ready = poller.poll(ms)  # EINTR is retried by Python (PEP 475)
        now = time.monotonic()
        woken = False
        for fd, flags in ready:
            if fd in extra:
                woken = True
                continue
            owner, thing = fds[fd]
            owner._dispatch(thing, flags, now)
        for sock in sockets:
            sock._reap(now)
        return woken


_loops = threading.local()


def _this_threads_loop() -> _Loop:
    loop: _Loop | None = getattr(_loops, "loop", None)
    if loop is None:
        loop = _loops.loop = _Loop()
    return loop


def _address(ep: ZmqEndpoint) -> tuple[int, object]:
    target = ep.target
    if ep.transport == "ipc":
        return socket.AF_UNIX, target.sockaddr
    family, address = target.resolve()[0]
    return family, address
