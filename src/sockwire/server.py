"""serve(endpoint, handler): a bounded, gracefully stoppable server for every socket type.

Connection-oriented endpoints (``unix:``, ``unix+seqpacket:``, ``tcp://``,
``tls+tcp://``, and ``fd:``/``systemd:`` listeners) call
``handler(channel, peer)`` once per connection, in its own thread; the
server closes the Channel when the handler returns. Datagram endpoints
(``unix+dgram:``, ``udp://``) call ``handler(message, peer)`` once per
message and send back what it returns (None: no reply).

What happens to a new connection, in order (nothing is read before step 3)::

    1. accept(2)                        the listener is non-blocking, polled with a stop pipe
    2. peer filter                      ?allowed_uids=/?allowed_gids= and peer_filter=: a
                                        refused peer is closed unread (SO_PEERCRED only)
    3. secure.secure_server()           TLS (tls+tcp) and the HMAC handshake (?authfile=),
                                        bounded by handshake_timeout, in the connection's
                                        thread (a slow client never stalls accept)
    4. Channel(authenticated=...)       codec, framing, max_size; read limits: idle timeout,
                                        frame deadline, the stop signal
    5. handler(channel, peer)           then channel.close()

**Concurrency.** One thread per connection, at most ``max_connections`` of
them: the Channel is a blocking API, and a thread per connection keeps a
handler a plain function that may block (on the peer, a database, a lock)
without stalling the others. The bound is enforced *before* accept(): at the
limit new clients wait in the kernel's listen backlog (``?backlog=``).
Thousands of connections are the asyncio driver's job (``aio/``), not this
one's.

**Failing safe when full** (:mod:`sockwire.admission`). Slots held by
connections that send nothing, or one empty frame now and then, must not
lock well-behaved clients out. So, by default:

* a new connection's first message must arrive within
  ``first_message_timeout`` (10 s) of accept, or it is closed;
* a connection with nothing to read for ``idle_timeout`` (300 s) between
  messages is closed (the Channel's read limit);
* at the limit, while someone waits to connect, the **idle** connection
  that has waited longest for its peer is **evicted** (idle: silent for
  0.25 s since accept, or quiet for 0.25 s since its last message): its
  reading side is shut down, so its handler sees the end of input at its
  next ``recv`` (what was already queued is still read; a message it cuts
  short is dropped, never delivered in part; replies may still be sent),
  and the newcomer takes the slot at once.
  A handler at work, or one whose peer was active in the last 0.25 s, is
  never chosen; then the newcomer waits in the backlog. Measured: a good
  client behind 1,000 connections that trickle 2 bytes a second and
  reconnect the moment they are cut is served in about 4 s.

``evict=False`` keeps the old rule (wait in the backlog, never evict); the
patterns use it, since their links are live by heartbeat and a subscriber
that only listens must not be cut. Counted in ``stats.evicted`` and
``stats.no_first_message``.

**Shutdown** (:meth:`Server.shutdown`): stop accepting (the listener is closed,
a UNIX socket file removed); every handler waiting *between* messages sees
its ``recv`` end (ConnectionLost; iteration stops) while one in the middle
of a message still gets it whole; handlers get ``timeout`` seconds to
return, then their Channels are closed (a blocked ``recv``/``send`` raises
ClosedError) and their threads joined.

**accept(2) errors**: :mod:`sockwire.accepting` decides (one policy with
the command line): skip a connection that died in the queue, back off
``ACCEPT_BACKOFF`` when out of descriptors (logged at WARNING, then every
100th; still woken at once by shutdown), end serve_forever on anything else
unless we are stopping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from . import secure
from .accepting import ACCEPT_BACKOFF, on_accept_error
from .address import Endpoint
from .admission import DEFAULT_IDLE_TIMEOUT, FIRST_MESSAGE_TIMEOUT, Admission, Slot
from .channel import MAX_PACKET, Channel, ReadLimits
from .codecs import Codec, get_codec
from .errors import ClosedError, InvalidOperation, SockwireError, TimeoutError
from .framing import DEFAULT_MAX_SIZE
from .serving import (
    ABORT_WAIT,
    DEFAULT_GRACE,
    DROPPED,
    ServerBase,
    ServerStats,
    datagram_ancillary,
    datagram_core,
    recv_datagram,
)
from .sock import Peer, Socket

__all__ = [
    "ACCEPT_BACKOFF",
    "DEFAULT_GRACE",
    "Handler",
    "Server",
    "ServerStats",
    "serve",
]

log = logging.getLogger("sockwire")

#: Full: how long to wait for an evicted connection to leave before choosing another.
EVICT_WAIT = 0.5

#: ``handler(channel, peer)`` for connections, ``handler(message, peer) -> reply`` for datagrams.
Handler = Callable[[Any, Peer], Any]


class _Conn:
    """One accepted connection: its thread, its slot, and its socket/Channel for shutdown."""

    __slots__ = ("channel", "peer", "slot", "sock", "thread")

    def __init__(self, sock: Socket, peer: Peer, slot: Slot) -> None:
        self.sock = sock
        self.peer = peer
        self.slot = slot
        self.channel: Channel | None = None
        self.thread: threading.Thread | None = None

    def evict(self) -> None:
        """End its input (server lock held, so its thread cannot be closing the socket).

        In the handshake both directions are shut down (the handshake fails);
        after it only the reading side: the handler's next ``recv`` between
        messages sees the end, what is queued is still read, replies still go.
        ``socket.socket.shutdown`` on purpose: ``SSLSocket.shutdown`` would
        also drop the TLS session that a last reply still needs.
        """
        how = socket.SHUT_RD if self.channel is not None else socket.SHUT_RDWR
        with contextlib.suppress(OSError, SockwireError):
            socket.socket.shutdown(self.sock.raw, how)

    def abort(self) -> None:
        """Wake and close what the handler blocks on (from the shutdown thread)."""
        channel = self.channel
        if channel is not None:
            channel.close()
            return
        # still in the handshake: wake it; its own thread closes the fd
        with contextlib.suppress(OSError, SockwireError):
            self.sock.raw.shutdown(socket.SHUT_RDWR)


class Server(ServerBase):
    """A listening (or bound) endpoint and its handlers; build it with :func:`serve`.

    ``serve_forever()`` runs the accept (or receive) loop in the calling
    thread until :meth:`shutdown`; :meth:`start` runs it in a background
    thread. The socket is bound and listening as soon as the Server exists,
    so a client may connect before the loop starts (it waits in the backlog).
    ``with serve(...) as server:`` shuts down (grace period ``grace``) on exit.
    """

    def __init__(
        self,
        endpoint: Endpoint | str,
        handler: Handler,
        *,
        max_connections: int = 64,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        frame_deadline: float | None = 60.0,
        peer_filter: Callable[[Peer], bool] | None = None,
        codec: str | Codec = "bytes",
        framing: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        handshake_timeout: float = 10.0,
        backlog: int | None = None,
        grace: float = DEFAULT_GRACE,
        name: str | None = None,
        first_message_timeout: float | None = FIRST_MESSAGE_TIMEOUT,
        evict: bool = True,
    ) -> None:
        self._configure(
            endpoint,
            handler,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            frame_deadline=frame_deadline,
            first_message_timeout=first_message_timeout,
            codec=codec,
            framing=framing,
            max_size=max_size,
            handshake_timeout=handshake_timeout,
            grace=grace,
        )
        self.evict = evict
        # the idle limit is the Channel's own (ReadLimits); the policy does the rest
        self._admission = Admission(max_connections, first_message=first_message_timeout)
        self._cond = threading.Condition()
        self._conns: dict[int, _Conn] = {}
        self._done: list[threading.Thread] = []
        self._loop_running = False
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._thread: threading.Thread | None = None
        self._next_id = 0
        self._open(backlog, name, peer_filter)

    def _opened(self) -> None:
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stop_fds: tuple[int, ...] = (self._stop_r, self._stop_w)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(self.grace)

    # ---- running

    def start(self) -> Server:
        """Run :meth:`serve_forever` in a background thread; returns self."""
        with self._cond:
            if self._thread is not None or self._loop_running:
                raise InvalidOperation(f"start {self.name}", "it is already running")
            thread = threading.Thread(target=self._run_quietly, name=self.name, daemon=True)
            self._thread = thread
        thread.start()
        return self

    def _run_quietly(self) -> None:
        try:
            self.serve_forever()
        except Exception:
            log.exception("%s: the server loop failed", self.name)

    def serve_forever(self) -> None:
        """Accept connections (or receive datagrams) until :meth:`shutdown`."""
        with self._cond:
            if self._closed or self._stopping:
                raise ClosedError(f"serve_forever on {self.name}", "the server was shut down")
            if self._loop_running:
                raise InvalidOperation(f"serve_forever on {self.name}", "it is already running")
            self._loop_running = True
            self._loop_done.clear()
        try:
            if self.kind == "dgram":
                self._datagram_loop()
            else:
                self._accept_loop()
        finally:
            with self._cond:
                self._loop_running = False
            self._loop_done.set()

    def _wait_stop(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` for shutdown(); True when it came."""
        poller = select.poll()
        poller.register(self._stop_r, select.POLLIN)
        return bool(poller.poll(None if timeout is None else timeout * 1000))

    def _accept_loop(self) -> None:
        listener = self._sock
        listener.setblocking(False)
        poller = select.poll()
        poller.register(listener.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        stats = self.stats
        admission = self._admission
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                for slot in admission.expired(now):
                    self._evict(slot)
                full = self._full()
                deadline = admission.next_deadline()
            wait_ms = None if deadline is None else max(0.0, deadline - now) * 1000 + 1
            ready = {fd for fd, _ in poller.poll(wait_ms)}
            if self._stop_r in ready:
                return
            if listener.fd not in ready:
                continue  # a first-message deadline came: sweep
            if full:
                self._make_room()
                continue
            stats.accept_attempts += 1
            try:
                conn, peer = self._accept(listener)
            except SockwireError as exc:
                action = on_accept_error(exc)
                if action == "again":
                    continue  # taken by another process, or a refused peer was the only one
                if self.stopping:
                    return
                if action == "backoff":
                    self._count_backoff(exc)  # wait_for() callers may watch this count
                    if self._wait_stop(ACCEPT_BACKOFF):
                        return
                    continue
                if action == "skip":
                    log.debug("%s: a connection died before accept: %s", self.name, exc)
                    continue
                raise
            stats.accepted += 1
            self._reap()
            self._start_connection(conn, peer)

    def _full(self) -> bool:
        """No slot for a newcomer (lock held).

        A connection told to go still has its thread for a moment, but its
        slot is already the newcomer's: waiting for each evicted handler to
        finish would make every eviction cost a thread's exit, and a
        newcomer behind N reconnecting attackers wait N of them. Threads
        stay bounded: never more than twice ``max_connections``.
        """
        active = self.stats.active
        leaving = sum(1 for r in self._conns.values() if r.slot.evicted is not None)
        return active - leaving >= self.max_connections or active >= 2 * self.max_connections

    def _make_room(self) -> None:
        """Full, and someone waits to connect: evict one idle connection, or wait.

        After an eviction the loop accepts at once (see :meth:`_full`). With
        no idle connection, wait until one may become idle, a slot frees,
        or at most EVICT_WAIT, so that first-message deadlines are still
        swept.
        """
        with self._cond:
            now = time.monotonic()
            if self.evict and not self._stopping:
                victim = self._admission.victim(now)
                if victim is not None:
                    self._evict(victim)
                    if not self._full():
                        return
            wake = [now + EVICT_WAIT, self._admission.next_deadline()]
            if self.evict:
                wake.append(self._admission.next_victim())
            wait = max(0.0, min(t for t in wake if t is not None) - now)
            self._cond.wait_for(lambda: not self._full() or self._stopping, wait)

    def _evict(self, slot: Slot) -> None:
        """Tell the connection of ``slot`` (marked evicted) to go (lock held)."""
        record = self._conns.get(cast(int, slot.key))
        if record is None:
            return
        log.info("%s: %s: %s", self.name, record.peer, slot.evicted)
        record.evict()

    def _start_connection(self, conn: Socket, peer: Peer) -> None:
        with self._cond:
            key = self._next_id
            self._next_id += 1
            # the handshake waits for the peer too: it counts as waiting from accept
            record = _Conn(conn, peer, self._admission.add(key, time.monotonic()))
            self._conns[key] = record
            self._started()
        thread = threading.Thread(
            target=self._run_connection,
            args=(key, record),
            name=f"{self.name} conn {key}",
            daemon=True,
        )
        record.thread = thread
        try:
            thread.start()
        except BaseException:
            # RuntimeError: can't start new thread (out of memory or a limit)
            log.exception("%s: could not start a handler thread; connection closed", self.name)
            conn.close()
            self._finished(key)
            raise

    def _run_connection(self, key: int, record: _Conn) -> None:
        channel: Channel | None = None
        try:
            try:
                sock, authenticated = secure.secure_server(
                    record.sock, self._ep, timeout=self.handshake_timeout
                )
            except SockwireError as exc:
                self._handshake_failed(record.peer, exc)
                return
            record.slot.busy()  # until the handler asks for a message
            record.sock = sock
            try:
                channel = Channel.from_socket(
                    sock,
                    framing=self.framing,
                    codec=self.codec,
                    authenticated=authenticated,
                    max_size=self.max_size,
                    label=self._label(record.peer),
                )
            except SockwireError as exc:
                self._channel_refused(record.peer, exc)
                return
            channel.set_read_limits(
                ReadLimits(self.idle_timeout, self.frame_deadline, self._stop_r)
            )
            _watch_recv(channel, record.slot)
            with self._cond:
                record.channel = channel
            self.handler(channel, record.peer)
            self._count(self._ended_by_policy(record) or "handled")
        except ClosedError as exc:
            self._handler_stopped(record.peer, exc)
        except DROPPED as exc:
            self._dropped(record.peer, exc, self._ended_by_policy(record))
        except Exception:  # noqa: BLE001  # counted, logged with its traceback
            self._handler_failed(record.peer)
        finally:
            with self._cond:  # out of the policy's view: never evicted while being closed
                self._admission.remove(key)
            if channel is not None:
                channel.close()
            else:
                record.sock.close()
            self._finished(key)

    @staticmethod
    def _ended_by_policy(record: _Conn) -> str | None:
        """The stats field when the admission policy ended this connection, else None."""
        reason = record.slot.evicted
        if reason is None:
            return None
        return "no_first_message" if record.slot.messages == 0 and "first" in reason else "evicted"

    def _count(self, field: str) -> None:
        """One more of ``field`` in stats, from a handler thread (several run at once)."""
        with self._cond:
            setattr(self.stats, field, getattr(self.stats, field) + 1)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Server], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate(self)`` holds; False if ``timeout`` passed first.

        Re-checked whenever a connection ends or a handler's count changes
        (``server.wait_for(lambda s: s.stats.active == 0, 5)``): for tests,
        health checks and embedding, instead of polling ``stats``.
        """
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def _finished(self, key: int) -> None:
        with self._cond:
            if self._conns.pop(key, None) is not None:
                self.stats.active -= 1
            self._done.append(threading.current_thread())
            self._cond.notify_all()
            release = self._closed and not self._conns
        if release:  # shutdown() was called from a handler: the last one out closes
            self._release()

    def _reap(self) -> None:
        """Join handler threads that have finished (they are at their last line)."""
        me = threading.current_thread()
        with self._cond:
            done, self._done = self._done, []
        for thread in done:
            if thread is not me:
                thread.join()

    # ---- datagrams

    def _datagram_loop(self) -> None:
        sock = self._sock
        raw = sock.raw
        raw.setblocking(False)
        poller = select.poll()
        poller.register(sock.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        codec = get_codec(self.codec, authenticated=False)
        buf = memoryview(bytearray(MAX_PACKET))
        core = self._datagram_core = datagram_core(sock, self.framing, self.max_size)
        anc_size = datagram_ancillary(sock)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._stop_r in ready:
                return
            try:
                size, rflags, creds, address = recv_datagram(raw, buf, anc_size)
            except BlockingIOError:
                continue
            except OSError as exc:
                if self.stopping:
                    return
                self._receive_failed(exc)
                continue
            received = self._datagram_in(core, codec, buf, size, rflags, creds, address)
            if received is None:
                continue
            peer, msg = received
            try:
                reply = self.handler(msg, peer)
            except Exception:  # noqa: BLE001  # counted, logged with its traceback
                self._datagram_failed(peer)
                continue
            self._datagram_out(core, codec, reply, peer)

    # ---- stopping

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop accepting; give handlers ``timeout`` s (default ``grace``) to finish; close.

        Returns True when every handler returned within the grace period.
        Idempotent; safe from any thread, including a handler's own.
        """
        grace = self.grace if timeout is None else timeout
        with self._cond:
            if self._closed:
                return self.stats.active == 0
            first = not self._stopping
            self._stopping = True
            self._cond.notify_all()
        if first:
            with contextlib.suppress(OSError):
                os.write(self._stop_w, b"x")  # level-triggered: wakes every poll on it
        me = threading.current_thread()
        # The accept loop leaves at once; the datagram loop after the handler
        # call in progress, which gets the grace period like any handler.
        limit = max(0.0, grace) + ABORT_WAIT
        if me is not self._thread and self._loop_running and not self._loop_done.wait(limit):
            log.error("%s: the datagram handler did not return in %g s", self.name, limit)
        thread = self._thread
        if thread is not None and thread is not me:
            thread.join(limit)
        self._sock.close()  # no new connections; the socket file is removed
        deadline = time.monotonic() + max(0.0, grace)
        clean = self._wait_handlers(deadline)
        if not clean:
            with self._cond:
                left = [c for c in self._conns.values() if c.thread is not me]
            self._aborting([record.peer for record in left], grace)
            for record in left:
                record.abort()
            if not self._wait_handlers(time.monotonic() + ABORT_WAIT):
                with self._cond:
                    stuck = [c.peer for c in self._conns.values() if c.thread is not me]
                self._stuck(stuck)
        with self._cond:
            self._closed = True
            release = not self._conns
        self._reap()
        if release:
            self._release()
        return clean

    def _release(self) -> None:
        """Close the stop pipe, once no handler can poll it any more."""
        with self._cond:
            fds, self._stop_fds = self._stop_fds, ()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wait_handlers(self, deadline: float) -> bool:
        me = threading.current_thread()
        with self._cond:
            while True:
                others = [c for c in self._conns.values() if c.thread is not me]
                if not others:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Shut down at once: no grace period for handlers."""
        self.shutdown(0)


def serve(
    endpoint: Endpoint | str,
    handler: Handler,
    *,
    max_connections: int = 64,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    frame_deadline: float | None = 60.0,
    peer_filter: Callable[[Peer], bool] | None = None,
    codec: str | Codec = "bytes",
    framing: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    handshake_timeout: float = 10.0,
    backlog: int | None = None,
    grace: float = DEFAULT_GRACE,
    first_message_timeout: float | None = FIRST_MESSAGE_TIMEOUT,
    evict: bool = True,
) -> Server:
    """Listen on (or bind) ``endpoint`` and return a :class:`Server`, ready to run.

    ``handler(channel, peer)`` per connection; for ``unix+dgram:``/``udp://``
    ``handler(message, peer)`` per datagram, its return value (unless None)
    sent back. Run it with ``server.serve_forever()`` or ``server.start()``
    (background thread); stop it with ``server.shutdown(timeout)`` or a
    ``with`` block. Limits: ``max_connections`` handlers at once (at the
    limit the longest-waiting connection is evicted for a newcomer, unless
    ``evict=False``); ``first_message_timeout`` (10 s) closes a connection
    whose first message has not arrived by then; ``idle_timeout`` (300 s)
    ends a connection with nothing to read for that long;
    ``frame_deadline`` breaks one whose started message does not finish in
    time; ``peer_filter(peer)`` (with ``?allowed_uids=``/``?allowed_gids=``)
    refuses peers before any byte is read.
    """
    return Server(
        endpoint,
        handler,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        frame_deadline=frame_deadline,
        peer_filter=peer_filter,
        codec=codec,
        framing=framing,
        max_size=max_size,
        handshake_timeout=handshake_timeout,
        backlog=backlog,
        grace=grace,
        first_message_timeout=first_message_timeout,
        evict=evict,
    )


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _watch_recv(channel: Channel, slot: Slot) -> None:
    """Let the admission policy see when the handler waits for its peer.

    Wraps the Channel's ``recv`` on the instance (iteration calls it too):
    two attribute writes and a clock read per message. A TimeoutError of the
    handler's own ``timeout=`` leaves the slot waiting: it still waits for
    its peer, and a loop of short timeouts must not hide an idle connection.
    """
    inner = channel.recv
    monotonic = time.monotonic

    def recv(timeout: float | None = None) -> Any:
        if slot.waiting is None:
            slot.waiting = monotonic()
        try:
            msg = inner(timeout)
        except TimeoutError:
            raise
        except BaseException:
            slot.waiting = None
            raise
        slot.messages += 1
        slot.waiting = None
        return msg

    channel.recv = recv  # type: ignore[method-assign]
