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
    """

    def __init__(self, ep: Endpoint, *, server_side: bool, label: str) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.side = "server" if server_side else "client"
        self.where = f"TLS handshake ({self.side}) with {label}"
        if server_side:
            context, hostname = tls.server_context(ep), None
        else:
            context, hostname = tls.client_context(ep), tls.server_hostname(ep)
        self.obj = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=hostname
        )

    def handshake(self, raw: socket.socket, timeout: float) -> None:
        """Blocking, within ``timeout`` s in all; errors as the library's TLS gives them."""
        started = time.monotonic()
        deadline = started + timeout
        try:
            while True:
                try:
                    self.obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush(raw, deadline)
                    raw.settimeout(max(0.001, deadline - time.monotonic()))
                    data = raw.recv(CHUNK)
                    if data:
                        self.incoming.write(data)
                    else:
                        self.incoming.write_eof()
            self._flush(raw, deadline)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._flush(raw, time.monotonic() + 0.1)  # our alert: the peer's log says why
            raise tls.handshake_failed(exc, self.where, self.side, timeout) from exc
        tls.handshake_done(self.side, self.obj, started)

    def _flush(self, raw: socket.socket, deadline: float) -> None:
        data = self.outgoing.read()
        if data:
            raw.settimeout(max(0.001, deadline - time.monotonic()))
            raw.sendall(data)


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
            self._on_error(self, translate(exc, "tunnel", self.label))
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
                raise ConnectionLost(
                    f"TLS from {self.label}",
                    "the peer closed TCP without close_notify; what it sent last may be cut short",
                ) from None
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
            self.tls.incoming.write(data)
        else:
            self.tcp_eof = True
            self.tls.incoming.write_eof()
        return True

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
            say("eof", self.label, "TLS close_notify" if self.tls else "EOF")
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
    return ep.float_option("timeout", None) or HANDSHAKE_TIMEOUT


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
