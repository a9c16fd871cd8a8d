"""The transports of one asyncio ZeroMQ socket: listeners, connects, peers' bytes, the clock.

The asyncio twin of the transport half of :mod:`sockwire.zmq.blocking`: what
the bytes mean, who gets which message, the high-water marks and every
deadline are :class:`~sockwire.zmq.core.SocketCore`'s; this module keeps its
driver contract (see the core's docstring) with loop callbacks instead of a
poll loop:

* **Reading** happens in each peer's reader callback, registered while
  ``peer.wants_input`` (its inbox is below ``rcvhwm``): up to
  :data:`READS_PER_WAKEUP` reads of ``READ_SIZE`` into the thread's shared
  buffer (:func:`~sockwire.aio.loops.read_buffer`), each handed to
  ``core.received``. A peer at its high-water mark is paused and resumed
  by the ``recv`` that takes it below (:meth:`Driver.resume`); meanwhile
  the kernel holds the peer back.
* **Writing**: what the core queues goes to the socket at once when a
  peer's output reaches :data:`FLUSH_AT` bytes or half the high-water mark,
  else once per loop iteration (one ``call_soon`` per socket); what the
  kernel does not take waits for a writer callback.
* **Time**: one timer at the nearest deadline (``core.next_deadline()`` and
  due reconnects) runs ``core.tick``. It is armed lazily: a deadline that
  moves later (a peer was heard from) lets it fire early and re-arm.
* **Connects** are tasks over :func:`sockwire.aio.dial.connect` (names
  resolve in the executor; EINPROGRESS; a full UNIX backlog is retried);
  a failed connect or a lost peer connects again after
  :class:`~sockwire.zmq.core.Backoff`.

Waiters (the application's side, :mod:`.socket`) sit on two lists of
Futures: :attr:`Driver.readable` (a message may be there) and
:attr:`Driver.changed` (room, a peer came or went, output drained). Each
wake-up only says "look again": the core is the state.

Platform decisions, written where they are made:

- writes are ``send(MSG_NOSIGNAL)`` on a non-blocking socket: EAGAIN waits
  for writability; EPIPE/ECONNRESET close the peer (and it reconnects);
- a UNIX connect that finds the listener's backlog full (EAGAIN) is retried
  by ``aio.dial`` (1 ms doubling to 50 ms), as the listener is alive;
- accept errors follow :mod:`sockwire.accepting`: ECONNABORTED/EPROTO and
  their kin skip one connection; EMFILE/ENFILE/ENOBUFS/ENOMEM pause the
  listener for ``ACCEPT_BACKOFF`` (the backlog keeps the connections; a
  reader callback on a listener that stays readable would spin a core).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ... import dial, zmtp
from ...accepting import ACCEPT_BACKOFF, on_accept_error
from ...channel.core import FLUSH_AT
from ...errors import AddressError, SockwireError, translate
from ...escape import printable
from ...framing import READ_SIZE
from ...sock import Socket as RawSocket
from ...zmq.core import Backoff, Peer, SocketCore
from ...zmq.endpoint import ZmqEndpoint
from ...zmq.security import mechanism_factory
from .. import dial as aio_dial
from ..loops import read_buffer

__all__ = ["ACCEPTS_PER_WAKEUP", "FLUSH_AT", "READS_PER_WAKEUP", "Driver"]

log = logging.getLogger("sockwire")

#: Reads per readiness callback: one busy peer cannot starve the others.
READS_PER_WAKEUP = 16
#: Connections accepted per readiness callback; the rest wait in the backlog.
ACCEPTS_PER_WAKEUP = 64
_NOSIGNAL = socket.MSG_NOSIGNAL


def wake(waiters: list[asyncio.Future[Any]]) -> None:
    """Wake every Future of ``waiters`` (each looks again) and empty the list."""
    for fut in waiters:
        if not fut.done():
            fut.set_result(True)
    waiters.clear()


@dataclass(eq=False)
class _Listener:
    sock: RawSocket
    ep: ZmqEndpoint
    factory: Callable[[bool], zmtp.Mechanism]
    reading: bool = False
    resume: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Connector:
    ep: ZmqEndpoint
    factory: Callable[[bool], zmtp.Mechanism]
    backoff: Backoff = field(default_factory=Backoff)
    due: float = 0.0
    task: asyncio.Task[None] | None = None  # a connect in progress
    peer: Peer | None = None


class _Transport:
    """A peer's socket as this driver holds it (``Peer.handle``)."""

    __slots__ = ("connector", "fd", "raw", "reading", "sock", "writing")

    def __init__(self, sock: RawSocket, connector: _Connector | None) -> None:
        self.sock = sock
        self.raw = sock.raw
        self.fd = sock.fd
        self.connector = connector
        self.reading = False  # the reader callback is registered
        self.writing = False  # the writer callback is registered (the last write hit EAGAIN)


class Driver:
    """Moves one :class:`SocketCore`'s bytes and time on one event loop."""

    def __init__(
        self,
        core: SocketCore,
        loop: asyncio.AbstractEventLoop,
        *,
        reconnect: tuple[float, float] = (0.1, 2.0),
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.core = core
        self.loop = loop
        self.reconnect = reconnect
        self.note = note
        self.listeners: list[_Listener] = []
        self.connectors: list[_Connector] = []
        self.closed = False
        #: Futures of tasks waiting for a message (recv, poll)
        self.readable: list[asyncio.Future[Any]] = []
        #: Futures of tasks waiting for room, peers or drained output
        self.changed: list[asyncio.Future[Any]] = []
        self.paused: set[Peer] = set()  # peers not read while their inbox is full
        self.flush_count = max(1, core.sndhwm // 2)
        self._view = memoryview(read_buffer())
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._flush_handle: asyncio.Handle | None = None

    # ---- listeners and connects

    def bind(self, ep: ZmqEndpoint) -> ZmqEndpoint:
        """Listen on ``ep``; returns it with the port a bind to port 0 got."""
        factory = mechanism_factory(ep)  # key files are read (and checked) now
        sock = dial.listen(ep.target)
        try:
            sock.setblocking(False)
            if ep.transport == "tcp":
                ep = ep.with_port(int(sock.getsockname()[1]))
            listener = _Listener(sock, ep, factory)
            self._listen(listener)
        except BaseException:
            sock.close()
            raise
        self.listeners.append(listener)
        return ep

    def _listen(self, listener: _Listener) -> None:
        listener.resume = None
        if not listener.reading and not self.closed:
            self.loop.add_reader(listener.sock.fd, self._on_accept, listener)
            listener.reading = True

    def _pause(self, listener: _Listener, seconds: float | None) -> None:
        if listener.reading:
            self.loop.remove_reader(listener.sock.fd)
            listener.reading = False
        if seconds is not None:
            listener.resume = self.loop.call_later(seconds, self._listen, listener)

    def connect(self, ep: ZmqEndpoint) -> None:
        """Connect to ``ep`` now, and again whenever the connection is lost."""
        if ep.host_any:
            raise AddressError(f"connect to {ep.display()}", "* means every interface: bind only")
        connector = _Connector(ep, mechanism_factory(ep), Backoff(*self.reconnect))
        self.connectors.append(connector)
        self._start_connect(connector)

    def _start_connect(self, connector: _Connector) -> None:
        connector.task = self.loop.create_task(self._dial(connector))

    async def _dial(self, connector: _Connector) -> None:
        """One connect attempt; cancelled by :meth:`abort` (``aio.dial`` closes the socket)."""
        try:
            sock = await aio_dial.connect(connector.ep.target)
        except SockwireError as exc:
            connector.task = None
            self._connect_failed(connector, exc)
            return
        connector.task = None
        if self.closed:  # pragma: no cover - abort() cancels the task first
            sock.close()
            return
        tcp = connector.ep.transport == "tcp"
        try:
            self._adopt(sock, connector.factory(False), connector, connector.ep.display(), tcp=tcp)
        except OSError as exc:  # the peer reset it before we set it up: as a failed connect
            sock.close()
            self._connect_failed(connector, translate(exc, "connect", connector.ep.display()))

    def _connect_failed(self, connector: _Connector, exc: SockwireError) -> None:
        delay = connector.backoff.next()
        connector.due = self.loop.time() + delay
        self._note(f"connect {connector.ep.display()}: {exc}; again in {delay:g} s")
        self._arm(connector.due)

    def _on_accept(self, listener: _Listener) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, who = listener.sock.accept()
            except SockwireError as exc:
                action = on_accept_error(exc)
                if action == "again":
                    return
                if action == "skip":
                    continue
                log.warning("zmq %s accept on %s: %s", self.core.type, listener.ep.display(), exc)
                # backoff: out of descriptors; raise: the listener is unusable
                self._pause(listener, ACCEPT_BACKOFF if action == "backoff" else None)
                return
            label = f"{listener.ep.display()} <- {printable(str(who))}"  # peer-chosen name
            tcp = listener.ep.transport == "tcp"
            try:
                self._adopt(sock, listener.factory(True), None, label, tcp=tcp)
            except OSError as exc:  # reset before we set it up: that one connection only
                sock.close()
                log.info("zmq %s accept %s: %s", self.core.type, label, exc)

    def _adopt(
        self,
        sock: RawSocket,
        mechanism: zmtp.Mechanism,
        connector: _Connector | None,
        label: str,
        *,
        tcp: bool,
    ) -> None:
        """A connected transport: attached to the core, read, greeted.

        OSError only from setting it up, before anything is attached.
        """
        sock.raw.setblocking(False)
        if tcp:
            sock.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as libzmq does
        transport = _Transport(sock, connector)
        now = self.loop.time()
        peer = self.core.attach(transport, now, mechanism=mechanism, label=label)
        if connector is not None:
            connector.peer = peer  # before the first write: a failing one reconnects
        self.loop.add_reader(transport.fd, self._on_readable, peer)
        transport.reading = True
        self._arm(now + self.core.handshake_timeout)
        self._write(peer)  # the greeting

    # ---- a peer's bytes

    def _on_readable(self, peer: Peer) -> None:
        transport: _Transport = peer.handle  # type: ignore[assignment]
        core = self.core
        was_ready, ttl = peer.ready, peer.peer_ttl
        view = self._view
        recv_into = transport.raw.recv_into
        now = self.loop.time()
        for _ in range(READS_PER_WAKEUP):
            try:
                size = recv_into(view, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                peer.closing = peer.closing or translate(exc, "recv", peer.label).message
                break
            core.received(peer, view[:size].tobytes(), now)  # b"" at EOF
            if size < READ_SIZE or not peer.wants_input:
                break  # drained, closing, or its inbox is full
        if peer.closing:
            self.drop(peer)
            return
        if peer.out and not transport.writing:
            self._write(peer)  # handshake steps, PONGs, subscriptions for a new peer
        if not peer.wants_input and peer in core.peers:
            self.loop.remove_reader(transport.fd)
            transport.reading = False
            self.paused.add(peer)
        if peer.ready and not was_ready:
            if transport.connector is not None:
                transport.connector.backoff.reset()
            self._arm(peer.next_ping)
            wake(self.changed)
        if peer.peer_ttl and peer.peer_ttl != ttl:
            self._arm(peer.last_in + peer.peer_ttl)
        if self.readable and core.can_recv():
            wake(self.readable)

    def resume(self) -> None:
        """After a ``recv``: read again the peers whose inbox went below ``rcvhwm``."""
        for peer in [p for p in self.paused if p.wants_input]:
            self.paused.discard(peer)
            transport: _Transport = peer.handle  # type: ignore[assignment]
            self.loop.add_reader(transport.fd, self._on_readable, peer)
            transport.reading = True

    def _write(self, peer: Peer) -> None:
        """Write ``peer.out`` until the kernel stops taking it (then wait for writability)."""
        transport: _Transport = peer.handle  # type: ignore[assignment]
        out = peer.conn.outgoing
        send = transport.raw.send
        wrote = self.core.wrote
        try:
            while out:
                wrote(peer, send(out, _NOSIGNAL))
        except BlockingIOError:
            if not transport.writing:
                self.loop.add_writer(transport.fd, self._write, peer)
                transport.writing = True
            return
        except OSError as exc:
            peer.closing = peer.closing or translate(exc, "send", peer.label).message
            out.clear()
            self.drop(peer)
            return
        if transport.writing:
            self.loop.remove_writer(transport.fd)
            transport.writing = False
        if self.changed:
            wake(self.changed)  # room for a send, a flush or a linger done

    def sent(self, peer: Peer) -> None:
        """The core queued a message for ``peer``: write now when enough waits, else soon."""
        if peer.queued >= self.flush_count or len(peer.conn.outgoing) >= FLUSH_AT:
            if not peer.handle.writing:  # type: ignore[attr-defined]
                self._write(peer)
        elif self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def sent_all(self) -> None:
        """The core queued for any number of peers (PUB, ROUTER, REP, XSUB)."""
        for peer in list(self.core.peers):
            if peer.conn.outgoing:
                self.sent(peer)

    def flush(self) -> None:
        """Write what every peer has queued (the once-per-iteration call)."""
        self._flush_handle = None
        for peer in list(self.core.peers):
            if peer.conn.outgoing and not peer.handle.writing:  # type: ignore[attr-defined]
                self._write(peer)

    def flush_soon(self) -> None:
        if self._flush_handle is None and not self.closed:
            self._flush_handle = self.loop.call_soon(self.flush)

    # ---- time

    def _arm(self, when: float | None) -> None:
        """Make sure the timer fires by ``when`` (it may fire earlier and re-arm)."""
        if when is None or self.closed:
            return
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        # a loop may run a timer up to its clock's resolution early: it is on time
        now = max(self.loop.time(), self._timer_at)
        for connector in self.connectors:
            if connector.peer is None and connector.task is None and now >= connector.due:
                self._start_connect(connector)
        self.core.tick(now)
        for peer in list(self.core.peers):
            if peer.closing:
                self.drop(peer)
            elif peer.out and not peer.handle.writing:  # type: ignore[attr-defined]
                self._write(peer)  # PINGs
        self._arm(self._next_deadline())

    def _next_deadline(self) -> float | None:
        soonest = self.core.next_deadline()
        for connector in self.connectors:
            idle = connector.peer is None and connector.task is None
            if idle and (soonest is None or connector.due < soonest):
                soonest = connector.due
        return soonest

    # ---- closing

    def reap(self) -> None:
        """Drop the peers the core marked for closing (outside a callback: a REQ's abandon)."""
        for peer in [p for p in self.core.peers if p.closing]:
            self.drop(peer)

    def drop(self, peer: Peer, *, reconnect: bool = True) -> None:
        """Close ``peer``'s transport, detach it, and connect again if it was ours."""
        core = self.core
        if peer not in core.peers:
            return
        transport: _Transport = peer.handle  # type: ignore[assignment]
        if peer.out and peer.closing:
            # best effort, once: an ERROR command the peer should see; it may be gone
            with contextlib.suppress(OSError):
                transport.raw.send(peer.out, _NOSIGNAL | socket.MSG_DONTWAIT)
        if peer.closing and not self.closed:
            level = logging.WARNING if peer.failed else logging.INFO
            log.log(level, "zmq %s peer %s: %s", core.type, peer.label, peer.closing)
            self._note(f"drop {peer.label}: {peer.closing}")
        if transport.reading:
            self.loop.remove_reader(transport.fd)
            transport.reading = False
        if transport.writing:
            self.loop.remove_writer(transport.fd)
            transport.writing = False
        transport.sock.close()
        core.detach(peer)
        self.paused.discard(peer)
        connector = transport.connector
        if connector is not None and connector.peer is peer:
            connector.peer = None
            if reconnect and not self.closed:
                connector.due = self.loop.time() + connector.backoff.next()
                self._arm(connector.due)
        wake(self.changed)
        wake(self.readable)  # its last messages stay readable; a REQ learns its reply is lost

    def abort(self) -> list[asyncio.Task[None]]:
        """Close everything now; returns the connect tasks it cancelled (to await)."""
        if self.closed:
            return []
        self.closed = True
        for handle in (self._timer, self._flush_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._flush_handle = None
        for peer in list(self.core.peers):
            self.drop(peer, reconnect=False)
        tasks = []
        for connector in self.connectors:
            if connector.task is not None:
                connector.task.cancel()
                tasks.append(connector.task)
                connector.task = None
        for listener in self.listeners:
            self._pause(listener, None)
            if listener.resume is not None:
                listener.resume.cancel()
            listener.sock.close()
        self.listeners.clear()
        self.connectors.clear()
        wake(self.changed)
        wake(self.readable)
        return tasks

    def _note(self, text: str) -> None:
        if self.note is not None:
            self.note(text)
