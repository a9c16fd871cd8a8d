"""The commands' security: peer filters, ``?authfile=`` and ``tls+tcp://``, around the pump.

The same three steps as the library's :mod:`sockwire.secure`, in the same
order and before any application byte moves: peer credentials
(``?allowed_uids=``/``?allowed_gids=``, UNIX), TLS, the HMAC handshake.

Clients run them at once, blocking, right after connect (bounded by
``--timeout`` or 10 s): a refused certificate or a wrong key is the
command's one-line error and exit code. Servers check credentials at
accept (no I/O: SO_PEERCRED was taken at connect). A handshake, though,
needs the client's bytes, and a slow or silent client must not hold up the
others, so it runs in the connection's *tunnel* thread.

Why a tunnel: the pump (:mod:`.pump`) moves bytes between plain descriptors
with poll(2) and splice(2), and TLS is neither pollable (records decrypted
inside OpenSSL do not wake poll) nor spliceable. A tunnel is a socketpair:
the pump gets the outer end, an ordinary stream socket, and one thread per
connection runs the handshakes, then moves bytes between the inner end and
the network socket with one bounded buffer (:data:`CHUNK`) each way. The
pump stays single-threaded and TLS-unaware.

Half-close through a TLS tunnel: EOF from the pump's side sends TLS
close_notify (the way TLS says "no more data"; TLS 1.3 lets the other
direction go on), and the peer's close_notify becomes shutdown(SHUT_WR) of
the inner end, which the pump reads as EOF. A peer that drops TCP without
close_notify may have been cut short by someone on the path: that is an
error (ConnectionLost), not an EOF.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable

from .. import secure, tls
from ..address import Endpoint
from ..errors import ConnectionLost, PermissionDenied, SockwireError, translate
from ..sock import Peer, Socket
from .observe import say

log = logging.getLogger("sockwire")

__all__ = [
    "CHUNK",
    "HANDSHAKE_TIMEOUT",
    "Guard",
    "Handshake",
    "Tunnel",
    "end_writes",
    "is_tls",
    "needed",
    "secure_accepted",
    "secure_connected",
]

#: Bytes a tunnel holds per direction (one recv's worth).
CHUNK = 256 * 1024
#: Seconds the security handshakes may take when no --timeout is given.
HANDSHAKE_TIMEOUT = 10.0

_IN, _OUT = select.POLLIN, select.POLLOUT
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


def needed(ep: Endpoint) -> bool:
    """Does ``ep`` ask for any of the three steps?"""
    return ep.scheme == "tls+tcp" or any(
        ep.option(name) is not None for name in ("authfile", "allowed_uids", "allowed_gids")
    )


def _io_needed(ep: Endpoint) -> bool:
    """A step that reads the peer's bytes (TLS, HMAC), unlike the credentials check."""
    return ep.scheme == "tls+tcp" or ep.option("authfile") is not None


def is_tls(sock: Socket) -> bool:
    return isinstance(sock.raw, ssl.SSLSocket)


class TlsSession:
    """TLS over memory BIOs: OpenSSL sees exactly the bytes this code feeds it.

    Why not ``ssl.SSLSocket``: its unwrap() calls SSL_shutdown twice, and
    the second call reads the socket; application data already there is
    then a fatal APPLICATION_DATA_AFTER_CLOSE_NOTIFY. Seen every time
    against ``socat OPENSSL:`` when our EOF crossed the client's first
    bytes. With BIOs, close_notify is sent only once everything fed in has
    been read out, so a half-close (TLS 1.3 allows one) never races.
    Every byte from the peer goes through :meth:`feed`, so a
    :class:`~sockwire.tls.RecordWatch` sees the records too (where a ragged
    end fell; whether a certificate was asked for).
    """

    def __init__(self, ep: Endpoint, *, server_side: bool, label: str) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.watch = tls.RecordWatch()
        self.sent_cert = not server_side and ep.option("certfile") is not None
        self.started = time.monotonic()
        self.side = "server" if server_side else "client"
        self.where = f"TLS handshake ({self.side}) with {label}"
        if server_side:
            context, hostname = tls.server_context(ep), None
        else:
            context, hostname = tls.client_context(ep), tls.server_hostname(ep)
        self.obj = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=hostname
        )

    def feed(self, data: bytes) -> None:
        """Bytes from the peer, for OpenSSL and the record watch; b"" is TCP's EOF."""
        if data:
            self.watch.feed(data)
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    def failed(self, exc: OSError, timeout: float) -> SockwireError:
        return tls.handshake_failed(
            exc, self.where, self.side, timeout, watch=self.watch, sent_cert=self.sent_cert
        )

    def handshake(self, raw: socket.socket, timeout: float) -> None:
        """Blocking, within ``timeout`` s in all; errors as the library's TLS gives them."""
        self.started = time.monotonic()
        deadline = self.started + timeout
        try:
            while True:
                try:
                    self.obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush(raw, deadline)
                    raw.settimeout(max(0.001, deadline - time.monotonic()))
                    self.feed(raw.recv(CHUNK))
            self._flush(raw, deadline)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._flush(raw, time.monotonic() + 0.1)  # our alert: the peer's log says why
            raise self.failed(exc, timeout) from exc
        tls.handshake_done(self.side, self.obj, self.started)

    def _flush(self, raw: socket.socket, deadline: float) -> None:
        data = self.outgoing.read()
        if data:
            raw.settimeout(max(0.001, deadline - time.monotonic()))
            raw.sendall(data)


class Handshake:
    """A TLS server handshake driven by the pump's poll loop: no thread, never blocking.

    For ``listen``: a client is only a client once its handshake is done.
    Until then it gets nothing from stdin (a failed health check must not
    take what was meant for the real client) and it does not count as the
    one client of a one-shot listener. ``on_done(socket, session)`` then
    gets the established session; ``on_fail(error)`` a failure (the socket
    closed). Bounded by ``timeout`` s (``--timeout``, else 10 s) and one
    pending flight of records.
    """

    def __init__(
        self,
        sock: Socket,
        session: TlsSession,
        timeout: float,
        *,
        on_done: Callable[[Socket, TlsSession], None],
        on_fail: Callable[[SockwireError], None],
    ) -> None:
        self.sock: Socket | None = sock
        self.session = session
        self.timeout = timeout
        self.started = time.monotonic()
        self.on_done = on_done
        self.on_fail = on_fail
        self.want = _IN
        self.out = b""
        self.established = False
        #: told to go by a server's fail-safe gate (cli/admit.py): closed at the next turn
        self.evicted = False
        sock.setblocking(False)

    def interest(self) -> list[tuple[int, int]]:
        return [] if self.sock is None else [(self.sock.fd, self.want)]

    def ready(self, fd: int, revents: int) -> None:
        if self.sock is None or self.evicted or fd != self.sock.fd:
            return
        try:
            self._step(self.sock)
        except OSError as exc:  # ssl.SSLError included; EPIPE, ECONNRESET
            self._flush(self.sock)  # our alert, if it fits: the peer's log says why
            self._fail(self.session.failed(exc, self.timeout))

    def _step(self, sock: Socket) -> None:
        while True:
            if not self._flush(sock):
                self.want = _OUT
                return
            if self.established:
                self.sock = None  # handed over
                tls.handshake_done(self.session.side, self.session.obj, self.started)
                self.on_done(sock, self.session)
                return
            try:
                self.session.obj.do_handshake()
                self.established = True  # flush the last flight first
                continue
            except ssl.SSLWantReadError:
                pass
            if self.session.outgoing.pending:
                continue
            try:
                data = sock.raw.recv(CHUNK)
            except BlockingIOError:
                self.want = _IN
                return
            self.session.feed(data)

    def _flush(self, sock: Socket) -> bool:
        """Send what OpenSSL wrote; False while some of it waits for room."""
        self.out += self.session.outgoing.read()
        while self.out:
            try:
                sent = sock.raw.send(self.out, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                return False
            except OSError:
                if not self.established:
                    self.out = b""
                    return True  # the failure shows at the next read, with its reason
                raise
            self.out = self.out[sent:]
        return True

    def _fail(self, error: SockwireError) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.on_fail(error)

    def deadline(self) -> float | None:
        return None if self.sock is None else self.started + self.timeout

    def expire(self, now: float) -> None:
        if self.sock is not None and not self.evicted and now >= self.started + self.timeout:
            # a builtin TimeoutError, as a socket timeout raises it: translated to ours
            late = TimeoutError(f"no handshake within {self.timeout:g} s")
            self._fail(self.session.failed(late, self.timeout))

    def evict(self) -> None:
        """End it unread and unreported: the loop closes it at its next turn (no
        descriptor number is reused within a turn), and ``on_fail`` is not called."""
        self.evicted = True

    @property
    def done(self) -> bool:
        return self.sock is None or self.evicted

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Tunnel:
    """One connection's thread: [handshakes], then bytes between ``sock`` and the pump.

    ``outer`` is the pump's end. A failure of the handshakes or the
    connection goes to ``on_error`` before the inner end closes, so the
    pump's EOF comes after it. ``handshake`` runs first, in the thread (a server's
    steps); it returns the TLS session to use, if any.
    """

    def __init__(
        self,
        sock: Socket,
        *,
        label: str,
        session: TlsSession | None,
        handshake: Callable[[Socket], TlsSession | None] | None,
        on_error: Callable[[Tunnel, SockwireError], None],
    ) -> None:
        outer, inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.outer = Socket.adopt(outer, label=f"{label} (tunnel)")
        self.label = label
        self._inner = inner
        self._sock = sock
        self._session = session
        self._handshake = handshake
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name=f"tunnel {label}", daemon=True)

    def start(self) -> Socket:
        self._thread.start()
        return self.outer

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            session = self._session
            if self._handshake is not None:
                session = self._handshake(self._sock)
            _Shuttle(self._sock.raw, self._inner, session, self.label).run()
        except SockwireError as exc:
            self._on_error(self, exc)
        except OSError as exc:
            self._on_error(self, translate(exc, "TLS with", self.label))
        finally:
            self._sock.close()
            self._inner.close()


class _Shuttle:
    """Both directions, non-blocking, until both ended or the pump closed its end.

    Each direction holds at most :data:`CHUNK` bytes in Python, plus what
    one recv fed OpenSSL: a slow side slows the other (backpressure).
    """

    def __init__(
        self, raw: socket.socket, inner: socket.socket, tls: TlsSession | None, label: str
    ) -> None:
        self.raw, self.inner, self.tls, self.label = raw, inner, tls, label
        self.up = b""  # from the network (decrypted), for the pump
        self.down = b""  # from the pump, for the network (plain sockets)
        self.wire = b""  # TLS records waiting for the network
        self.net_eof = self.tcp_eof = self.pump_eof = False
        self.told_pump = self.told_net = self.gone = self.pump_gone = False
        self.want_net = self.want_inner = 0

    def run(self) -> None:
        self.raw.setblocking(False)
        self.inner.setblocking(False)
        while not self.gone:
            self.want_net = self.want_inner = 0
            moved = self._from_net()
            moved = self._to_pump() or moved
            moved = self._from_pump() or moved
            moved = self._to_net() or moved
            flushed = self.told_net and not (self.down or self.wire)
            if flushed and (self.pump_gone or (self.net_eof and not self.up)):
                return
            if moved or self.gone:
                continue
            poller = select.poll()
            poller.register(self.raw.fileno(), self.want_net)
            if not self.pump_gone:  # 0 still reports POLLHUP, level-triggered
                poller.register(self.inner.fileno(), self.want_inner)
            for fd, revents in poller.poll():
                if fd == self.inner.fileno() and revents & _GONE and self.pump_eof:
                    # the pump closed its end entirely: finish sending, then go
                    self.pump_gone = True

    def _from_net(self) -> bool:
        if self.up or self.net_eof or self.pump_gone:
            return False
        if self.tls is None:
            try:
                self.up = self.raw.recv(CHUNK)
            except BlockingIOError:
                self.want_net |= _IN
                return False
            self.net_eof = not self.up
            return True
        try:
            self.up = self.tls.obj.read(CHUNK)
        except ssl.SSLZeroReturnError:  # the peer's close_notify
            self.net_eof = True
            return True
        except ssl.SSLWantReadError:
            if self.tcp_eof:
                self._ragged_end()
                return True
        else:
            # b"": the peer's close_notify (SSLZeroReturnError instead once ours went out)
            self.net_eof = not self.up
            return True
        try:
            data = self.raw.recv(CHUNK)
        except BlockingIOError:
            self.want_net |= _IN
            return False
        if data:
            self.tls.feed(data)
        else:
            self.tcp_eof = True  # not OpenSSL's EOF: _ragged_end judges it
        return True

    def _ragged_end(self) -> None:
        """TCP ended without close_notify, and OpenSSL holds nothing more to read.

        ncat --ssl and many other peers end a session this way. If the
        stream stopped after a whole record, every record the peer sent
        arrived: its end, with a note for --trace. Stopped inside a record,
        the stream was provably cut short: ConnectionLost. (A truncation at
        a record boundary cannot be told from this; a framed stream still
        catches an incomplete frame.)
        """
        assert self.tls is not None
        if not self.tls.watch.at_boundary:
            raise ConnectionLost(
                f"TLS from {self.label}",
                "the stream was cut short: TCP ended inside a TLS record, without "
                "close_notify; the rest of that record never arrived",
            )
        say(
            "note",
            self.label,
            "the peer closed TCP without TLS close_notify, after whole records: taken as its end",
        )
        self.net_eof = True

    def _peer_alert(self) -> None:
        """After EPIPE/ECONNRESET on a send: the peer that dropped us often said why
        first, in an alert still queued here (its RST came after it). Read what is
        left (bounded) and raise the alert, if there is one."""
        if self.tls is None:
            return
        for _ in range(64):
            try:
                data = self.raw.recv(CHUNK)
            except OSError:  # EAGAIN: all read; ECONNRESET: nothing more
                break
            if not data:
                break
            self.tls.feed(data)
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            self.tls.obj.read(CHUNK)  # an alert raises its SSLError here

    def _to_pump(self) -> bool:
        moved = False
        if self.up:
            try:
                sent = self.inner.send(self.up)
            except BlockingIOError:
                self.want_inner |= _OUT
                return False
            except (BrokenPipeError, ConnectionResetError):
                self.pump_gone = True  # it closed this connection: nobody reads this
                self.up = b""
                return True
            self.up = self.up[sent:]
            moved = True
        if self.net_eof and not self.up and not self.told_pump:
            how = "EOF" if self.tls is None else "TCP EOF" if self.tcp_eof else "TLS close_notify"
            say("eof", self.label, how)
            with contextlib.suppress(OSError):
                self.inner.shutdown(socket.SHUT_WR)
            self.told_pump = moved = True
        return moved

    def _from_pump(self) -> bool:
        if self.down or self.pump_eof or self.wire:
            return False
        try:
            self.down = self.inner.recv(CHUNK)
        except BlockingIOError:
            self.want_inner |= _IN
            return False
        except ConnectionResetError:
            self.pump_gone = self.pump_eof = True
            return True
        self.pump_eof = not self.down
        return True

    def _to_net(self) -> bool:
        moved = False
        if self.tls is not None and self.down:
            self.tls.obj.write(self.down)  # into the BIO: all of it
            self.down = b""
            moved = True
        if self.pump_eof and not self.down and not self.told_net and self._quiet():
            self.told_net = moved = True
            if self.tls is None:
                with contextlib.suppress(OSError):
                    self.raw.shutdown(socket.SHUT_WR)
            else:
                with contextlib.suppress(ssl.SSLWantReadError):
                    self.tls.obj.unwrap()  # close_notify now; the peer's may come later
        if self.tls is not None and not self.wire:
            self.wire = self.tls.outgoing.read()
        pending = self.wire if self.tls is not None else self.down
        if not pending:
            return moved
        try:
            sent = self.raw.send(pending, socket.MSG_NOSIGNAL)
        except BlockingIOError:
            self.want_net |= _OUT
            return moved
        except (BrokenPipeError, ConnectionResetError):
            if self.net_eof:  # it said it was done, then closed: nothing is lost
                self.gone = True
                return False
            self._peer_alert()
            raise
        if self.tls is not None:
            self.wire = self.wire[sent:]
        else:
            self.down = self.down[sent:]
        return True

    def _quiet(self) -> bool:
        """Safe to send close_notify: OpenSSL holds no unread bytes we fed it."""
        if self.tls is None or self.net_eof:
            return True
        return self.tls.incoming.pending == 0 and self.tls.obj.pending() == 0 and not self.up


def _send_eof(raw: socket.socket) -> None:
    """close_notify on an ``ssl.SSLSocket`` (``send``'s end: nothing more is read after)."""
    if isinstance(raw, ssl.SSLSocket):
        select.select([], [raw], [], HANDSHAKE_TIMEOUT)  # room for the record, bounded
        raw.setblocking(False)
        # the first SSL_shutdown sent it; the second only looks for the peer's,
        # which may already have closed (a receiver with --count): no matter
        with contextlib.suppress(OSError):
            raw.unwrap()


class Guard:
    """One command's security: checks at accept, tunnels for TLS, their errors.

    ``raise_errors`` (a client, a one-shot listener): the first failure is
    the command's error, raised by :meth:`check` once the pump is done.
    Otherwise (a server that goes on) each failure is one line on stderr.
    """

    def __init__(
        self,
        ep: Endpoint,
        *,
        report: Callable[[str], None],
        raise_errors: bool,
        timeout: float | None = None,
    ) -> None:
        if ep.scheme == "tls+tcp" and ep.option("authfile") is not None:
            from .exitcodes import UsageError

            raise UsageError(
                f"?authfile= on {ep.display()}",
                "the command line does TLS or the key handshake, not both on one endpoint; "
                "mutual TLS (?cafile= on the listener, ?certfile=&keyfile= on the client) "
                "authenticates both ends",
            )
        self.ep = ep
        self.report = report
        self.raise_errors = raise_errors
        self.timeout = timeout or handshake_timeout(ep)
        self.tunnels: list[Tunnel] = []
        self._lock = threading.Lock()
        self._first_error: SockwireError | None = None

    def accepted(self, sock: Socket, peer: Peer) -> Socket | None:
        """The socket for the pump, or None when the peer was refused (and closed).

        A refusal is logged by the peer filter (logger ``sockwire``) with
        pid/uid/gid; a one-shot listener raises it.
        """
        if not needed(self.ep):
            return sock
        if not _io_needed(self.ep):
            try:
                sock, _ = secure.secure_server(sock, self.ep, timeout=self.timeout)
            except PermissionDenied:
                if self.raise_errors:
                    raise
                return None
            return sock
        label = f"{self.ep.display()} peer {peer}"

        def steps(accepted: Socket) -> TlsSession | None:
            accepted.setblocking(True)
            if self.ep.scheme != "tls+tcp":
                secure.secure_server(accepted, self.ep, timeout=self.timeout)  # the HMAC one
                return None
            session = TlsSession(self.ep, server_side=True, label=label)
            try:
                session.handshake(accepted.raw, self.timeout)
            except PermissionDenied as exc:
                log.warning("refused %s: %s", label, exc)  # as the library's serve() does
                raise
            return session

        tunnel = Tunnel(sock, label=label, session=None, handshake=steps, on_error=self._failed)
        return self._start(tunnel)

    def handshake(
        self,
        sock: Socket,
        peer: Peer,
        *,
        on_client: Callable[[Socket], None],
        on_refused: Callable[[], None],
    ) -> Handshake:
        """A :class:`Handshake` for the pump's loop (``listen`` on ``tls+tcp``).

        ``on_client(sock)``: the pump's end of the established session's
        tunnel. ``on_refused()``: the handshake failed; it is logged as one
        line and the listener goes on, one-shot or not (a health check or a
        plain HTTP request is not the client it waits for).
        """
        label = f"{self.ep.display()} peer {peer}"
        session = TlsSession(self.ep, server_side=True, label=label)

        def done(established: Socket, session: TlsSession) -> None:
            established.setblocking(True)
            tunnel = Tunnel(
                established, label=label, session=session, handshake=None, on_error=self._failed
            )
            on_client(self._start(tunnel))

        def fail(exc: SockwireError) -> None:
            say("error", label, str(exc))
            if isinstance(exc, PermissionDenied):
                log.warning("refused %s: %s", label, exc)  # as the library's serve() does
            else:
                self.report(str(exc))  # its "what" names the peer already
            on_refused()

        return Handshake(sock, session, self.timeout, on_done=done, on_fail=fail)

    def connected(self, sock: Socket, label: str) -> Socket:
        """A connected client socket for the pump: TLS runs here, blocking, then a tunnel.

        Give it what ``connect_socket(ep, tls=False)`` returned (credentials
        and ``?authfile=`` are done there).
        """
        if self.ep.scheme != "tls+tcp":
            return sock
        try:
            session = TlsSession(self.ep, server_side=False, label=label)
            session.handshake(sock.raw, self.timeout)
        except BaseException:
            sock.close()
            raise
        tunnel = Tunnel(sock, label=label, session=session, handshake=None, on_error=self._failed)
        return self._start(tunnel)

    def connected_later(self, sock: Socket, label: str) -> Socket:
        """Like :meth:`connected`, but the handshakes run in the tunnel's thread.

        For a server's loop (relay's TARGET): a slow or silent peer must not
        hold up the other clients. Credentials alone need no I/O and are
        checked here; a failure of the rest reaches ``on_error`` and the
        pump sees the tunnel end.
        """
        if not needed(self.ep):
            return sock
        ep, timeout = self.ep, self.timeout
        if not _io_needed(ep):
            sock, _ = secure.secure_client(sock, ep, timeout=timeout)
            return sock

        def steps(connected: Socket) -> TlsSession | None:
            connected.setblocking(True)
            if ep.scheme != "tls+tcp":
                secure.secure_client(connected, ep, timeout=timeout)  # credentials, HMAC
                return None
            session = TlsSession(ep, server_side=False, label=label)
            session.handshake(connected.raw, timeout)
            return session

        tunnel = Tunnel(sock, label=label, session=None, handshake=steps, on_error=self._failed)
        return self._start(tunnel)

    def _start(self, tunnel: Tunnel) -> Socket:
        # a server runs for days: keep only the tunnels still running
        self.tunnels = [t for t in self.tunnels if t.alive]
        self.tunnels.append(tunnel)
        return tunnel.start()

    def _failed(self, tunnel: Tunnel, exc: SockwireError) -> None:
        say("error", tunnel.label, str(exc))
        with self._lock:
            if self._first_error is None:
                self._first_error = exc
        if not self.raise_errors and not isinstance(exc, PermissionDenied):
            from .pump import labelled

            self.report(labelled(tunnel.label, exc))  # a refusal was logged with its reason

    def check(self) -> None:
        """After the pump: raise the first tunnel failure (``raise_errors`` only)."""
        for tunnel in self.tunnels:
            tunnel.join(1.0)  # its inner end is closed: the thread is on its way out
        with self._lock:
            first = self._first_error
        if first is not None and self.raise_errors:
            raise first

    def close(self) -> None:
        """Close every tunnel's outer end; the threads see it and end."""
        for tunnel in self.tunnels:
            tunnel.outer.close()
        for tunnel in self.tunnels:
            tunnel.join(1.0)


def handshake_timeout(ep: Endpoint) -> float:
    """``?timeout=``/--timeout bounds the handshakes too; else :data:`HANDSHAKE_TIMEOUT`."""
    return ep.get("timeout") or HANDSHAKE_TIMEOUT


def secure_connected(sock: Socket, ep: Endpoint) -> Socket:
    """A client's steps, blocking, right after connect (the socket is consumed on failure)."""
    if not needed(ep):
        return sock
    sock, _ = secure.secure_client(sock, ep, timeout=handshake_timeout(ep))
    return sock


def secure_accepted(sock: Socket, ep: Endpoint) -> Socket:
    """A server's steps, blocking, for commands without a pump (``recv``)."""
    if not needed(ep):
        return sock
    sock.setblocking(True)
    sock, _ = secure.secure_server(sock, ep, timeout=handshake_timeout(ep))
    return sock


def end_writes(sock: Socket) -> None:
    """The command's EOF: the peer reads a clean end (close_notify over TLS)."""
    if is_tls(sock):
        _send_eof(sock.raw)
    else:
        sock.shutdown(socket.SHUT_WR)
