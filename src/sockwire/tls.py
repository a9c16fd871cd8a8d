"""TLS for ``tls+tcp://`` endpoints: ssl contexts from endpoint options, wrapping with a deadline.

Options (file names, never secrets; see ``sockwire.address.OPTIONS``):

* client: ``cafile=`` (PEM CA bundle; without it the system store), host
  name checks always on (``servername=`` overrides the name checked and sent
  as SNI; by default the endpoint's host, and an IP address is checked
  against the certificate's IP SANs), ``certfile=``/``keyfile=`` to present
  a client certificate (mutual TLS).
* server: ``certfile=`` (and ``keyfile=`` unless the key is in the same PEM)
  required; ``cafile=`` makes a client certificate signed by that CA
  *required*.

Decisions, written where they are made:

* TLS 1.2 is the minimum (``TLSVersion.TLSv1_2``); the ssl module's default
  ciphers otherwise.
* ``num_tickets = 0`` on servers: sockwire clients never resume sessions,
  and TLS 1.3 tickets a client never reads sit in its receive queue, so its
  close() sends RST instead of FIN (the server may then see ECONNRESET).
* Wrapped sockets use ``suppress_ragged_eofs=False``: an EOF without TLS
  close_notify raises (ConnectionLost) instead of looking like a clean end,
  since an attacker on the path can forge a TCP FIN to cut a stream short.
  sockwire's TLS channel sends close_notify on close().
* Contexts are cached per (side, options, file identity): loading a chain
  costs a millisecond per accept; a changed file (new inode, size or mtime)
  is loaded afresh, so rotated certificates take effect on the next connection.
* A TLS peer counts as *authenticated* (what the pickle codec needs) when
  its certificate was verified against the ``cafile=`` you named: a server
  with ``cafile=`` requires and verifies client certificates; a client with
  ``cafile=`` trusts only that CA. The system store (no ``cafile=``) proves a
  host name to the public web's CAs, not that the peer is yours: not
  authenticated.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from . import trace
from .address import Endpoint
from .errors import (
    AddressError,
    ConnectionLost,
    NotFound,
    PermissionDenied,
    SockwireError,
    TimeoutError,
    translate,
)
from .sock import Socket

__all__ = [
    "Handshake",
    "RecordWatch",
    "begin",
    "client_certificate_required",
    "client_context",
    "handshake_done",
    "handshake_failed",
    "peer_authenticated",
    "server_context",
    "server_hostname",
    "wrap_client",
    "wrap_server",
]

_FILE_OPTIONS = ("cafile", "certfile", "keyfile")
_CACHE_SIZE = 32
_cache: OrderedDict[tuple[object, ...], ssl.SSLContext] = OrderedDict()
_cache_lock = threading.Lock()


def _identity(ep: Endpoint, side: str) -> tuple[object, ...] | None:
    """The cache key: options plus each named file's identity; None if one is missing."""
    key: list[object] = [side, ep.option("servername")]
    for name in _FILE_OPTIONS:
        path = ep.option(name)
        if path is None:
            key.append(None)
            continue
        try:
            info = os.stat(path)
        except OSError:
            return None  # let loading report it
        key.append((path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(key)


def _cached(ep: Endpoint, side: str) -> ssl.SSLContext:
    key = _identity(ep, side)
    if key is not None:
        with _cache_lock:
            ctx = _cache.get(key)
            if ctx is not None:
                _cache.move_to_end(key)
                return ctx
    ctx = _client_context(ep) if side == "client" else _server_context(ep)
    if key is not None:
        with _cache_lock:
            _cache[key] = ctx
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return ctx


def client_context(ep: Endpoint) -> ssl.SSLContext:
    """The context a client uses for ``ep`` (cached; see the module docstring)."""
    return _cached(ep, "client")


def server_context(ep: Endpoint) -> ssl.SSLContext:
    """The context a listener on ``ep`` uses (cached)."""
    return _cached(ep, "server")


def _file_error(exc: OSError, option: str, path: str) -> SockwireError:
    what = f"{option}={path}"
    if isinstance(exc, FileNotFoundError):
        return NotFound(what, f"no such file; fix ?{option}= (a PEM file)", errno=exc.errno)
    if isinstance(exc, PermissionError):
        return PermissionDenied(what, "this process may not read it", errno=exc.errno)
    if isinstance(exc, ssl.SSLError):
        return AddressError(
            f"cannot load {what}",
            f"not a usable PEM file ({(exc.reason or str(exc)).lower()}); "
            + (
                "is the key the one of certfile=?"
                if option in ("certfile", "keyfile")
                else "a CA bundle is PEM certificates"
            ),
            part=option,
        )
    return translate(exc, "load", what)


def _load_chain(ctx: ssl.SSLContext, ep: Endpoint) -> None:
    certfile = ep.option("certfile")
    keyfile = ep.option("keyfile")
    if certfile is None:
        if keyfile is not None:
            raise AddressError(
                f"keyfile= without certfile= in {ep.display()}",
                "give the certificate too: ?certfile=CERT.pem&keyfile=KEY.pem",
                part="keyfile",
            )
        return
    # ssl's own errors do not say which file is missing or unreadable: check first
    for option, path in (("certfile", certfile), ("keyfile", keyfile)):
        if path is not None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise _file_error(exc, option, path) from None
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except OSError as exc:  # ssl.SSLError is an OSError too
        if keyfile is not None and "KEY" in str(getattr(exc, "reason", "") or ""):
            raise _file_error(exc, "keyfile", keyfile) from None
        raise _file_error(exc, "certfile", certfile) from None


def _load_ca(ctx: ssl.SSLContext, cafile: str) -> None:
    try:
        ctx.load_verify_locations(cafile=cafile)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise _file_error(exc, "cafile", cafile) from None


def _client_context(ep: Endpoint) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname on
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cafile = ep.option("cafile")
    if cafile is not None:
        _load_ca(ctx, cafile)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    _load_chain(ctx, ep)
    return ctx


def _server_context(ep: Endpoint) -> ssl.SSLContext:
    if ep.option("certfile") is None:
        raise AddressError(
            f"a tls+tcp listener needs a certificate: {ep.display()}",
            "add ?certfile=CERT.pem&keyfile=KEY.pem",
            part="certfile",
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.num_tickets = 0  # see the module docstring
    _load_chain(ctx, ep)
    cafile = ep.option("cafile")
    if cafile is not None:
        _load_ca(ctx, cafile)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def peer_authenticated(ep: Endpoint) -> bool:
    """After a successful handshake on ``ep``: was the peer's certificate checked
    against a CA file the caller named (``?cafile=``)? See the module docstring."""
    return ep.option("cafile") is not None


def server_hostname(ep: Endpoint) -> str:
    """The name a client checks the certificate against (and sends as SNI)."""
    name = ep.option("servername") or ep.host
    if not name:
        raise AddressError(f"no host name to verify for {ep.display()}", part="servername")
    return name


def wrap_client(sock: Socket, ep: Endpoint, *, timeout: float = 10.0) -> Socket:
    """TLS client handshake on the connected ``sock`` within ``timeout`` s; the TLS Socket.

    ``sock`` is consumed either way (its descriptor moves into the new
    Socket, or is closed on failure).
    """
    return _handshake(begin(sock, ep, server_side=False), timeout)


def wrap_server(sock: Socket, ep: Endpoint, *, timeout: float = 10.0) -> Socket:
    """TLS server handshake on an accepted ``sock``; consumed like in :func:`wrap_client`."""
    return _handshake(begin(sock, ep, server_side=True), timeout)


@dataclass(frozen=True)
class Handshake:
    """A TLS handshake not yet done: the SSLSocket, and the names its outcome is told by."""

    tls: ssl.SSLSocket
    label: str
    side: str  # "client" or "server"
    where: str  # "TLS handshake (client) with <label>", for errors and traces


def begin(sock: Socket, ep: Endpoint, *, server_side: bool) -> Handshake:
    """The SSLSocket over ``sock`` with ``ep``'s context, before any handshake byte.

    Both drivers start here (blocking: :func:`wrap_client`/:func:`wrap_server`;
    asyncio: :mod:`sockwire.aio.secure`). ``sock`` is consumed either way: its
    descriptor moves into the SSLSocket, or is closed on failure.
    """
    try:
        if server_side:
            ctx, hostname = server_context(ep), None
        else:
            ctx, hostname = client_context(ep), server_hostname(ep)
    except BaseException:
        sock.close()
        raise
    label = sock.label or ep.display()
    # The ssl module moves the descriptor into a new SSLSocket and detaches
    # the socket object it was given; detach the Socket first so exactly one
    # object owns the fd at every moment.
    plain = socket.socket(sock.family, sock.type, 0, fileno=sock.detach())
    try:
        wrapped = ctx.wrap_socket(
            plain,
            server_side=server_side,
            server_hostname=hostname,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=False,
        )
    except BaseException:
        plain.close()
        raise
    side = "server" if server_side else "client"
    return Handshake(wrapped, label, side, f"TLS handshake ({side}) with {label}")


def _handshake(shake: Handshake, timeout: float) -> Socket:
    """The blocking handshake, within ``timeout`` s; the SSLSocket is closed on failure."""
    tls = shake.tls
    started = time.monotonic()
    try:
        tls.settimeout(timeout)
        tls.do_handshake()
        tls.settimeout(None)
    except OSError as exc:
        tls.close()
        raise handshake_failed(exc, shake.where, shake.side, timeout) from exc
    except BaseException:
        tls.close()
        raise
    handshake_done(shake.side, tls, started)
    return Socket.adopt(tls, label=shake.label)


def handshake_failed(
    exc: OSError,
    where: str,
    side: str,
    timeout: float,
    *,
    watch: RecordWatch | None = None,
    sent_cert: bool = False,
) -> SockwireError:
    """A failed handshake as the error tree says it (and the trace records it).

    ``watch``: what the peer's records showed, when the caller fed them
    through a :class:`RecordWatch` (the CLI's memory-BIO sessions), so a
    TLS 1.2 server's bare handshake_failure after asking for a certificate
    we did not send reads as what it is, not as "no version in common".
    """
    error = translate(exc, where)
    if isinstance(error, TimeoutError):
        error = TimeoutError(where, f"the peer did not finish it within {round(timeout, 2):g} s")
    elif isinstance(error, ConnectionLost) and error.errno is None:
        error = ConnectionLost(
            where,
            "the peer closed the connection during the TLS handshake (does it speak TLS? "
            "did it refuse what we offered? its log says)",
        )
    elif (
        side == "client"
        and watch is not None
        and watch.cert_requested
        and not sent_cert
        and _alert(exc) in ("SSLV3_ALERT_HANDSHAKE_FAILURE", "SSLV3_ALERT_BAD_CERTIFICATE")
    ):
        error = client_certificate_required(where)
    trace.note("tls", side, "handshake", result=f"failed: {type(error).__name__}")
    return error


def client_certificate_required(where: str) -> PermissionDenied:
    """The one diagnosis for a server that wants a certificate this client did not send."""
    return PermissionDenied(
        where, "the server requires a client certificate: add ?certfile=&keyfile="
    )


def _alert(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or "")


class RecordWatch:
    """The peer's TLS records as they arrive, before OpenSSL reads them: sans-IO.

    Two facts OpenSSL does not expose through the ssl module:

    * ``at_boundary``: the bytes so far end exactly after a whole record.
      A TCP EOF without close_notify there lost no byte that was sent as a
      record; inside a record it provably cut the stream short.
    * ``cert_requested``: a plaintext CertificateRequest (handshake type 13)
      came by. TLS 1.2 sends it in the clear, before ChangeCipherSpec; a
      TLS 1.3 server says the same with the certificate_required alert, so
      nothing encrypted needs reading.

    Record layer (RFC 8446 5.1, RFC 5246 6.2): type(1) version(2)
    length(2), then ``length`` bytes; handshake messages inside: type(1)
    length(3). Nothing is buffered beyond a 5-byte record header and a
    4-byte message header; message bodies are skipped, not kept.
    """

    HANDSHAKE, CHANGE_CIPHER_SPEC, APPLICATION_DATA = 22, 20, 23
    CERTIFICATE_REQUEST = 13

    def __init__(self) -> None:
        self._head = b""
        self._left = 0
        self._type = 0
        self._msg_head = b""
        self._msg_left = 0
        self.encrypted = False
        self.records = 0
        self.handshake_types: set[int] = set()

    @property
    def at_boundary(self) -> bool:
        return self._left == 0 and not self._head

    @property
    def cert_requested(self) -> bool:
        return self.CERTIFICATE_REQUEST in self.handshake_types

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        i = 0
        while i < len(view):
            if self._left == 0:
                take = min(5 - len(self._head), len(view) - i)
                self._head += bytes(view[i : i + take])
                i += take
                if len(self._head) < 5:
                    return
                self._type = self._head[0]
                self._left = int.from_bytes(self._head[3:5], "big")
                self._head = b""
                self.records += 1
                if self._type in (self.CHANGE_CIPHER_SPEC, self.APPLICATION_DATA):
                    self.encrypted = True  # what follows is not ours to read
                continue
            take = min(self._left, len(view) - i)
            if self._type == self.HANDSHAKE and not self.encrypted:
                self._messages(view[i : i + take])
            self._left -= take
            i += take

    def _messages(self, chunk: memoryview) -> None:
        j = 0
        while j < len(chunk):
            if self._msg_left == 0:
                take = min(4 - len(self._msg_head), len(chunk) - j)
                self._msg_head += bytes(chunk[j : j + take])
                j += take
                if len(self._msg_head) < 4:
                    return
                self.handshake_types.add(self._msg_head[0])
                self._msg_left = int.from_bytes(self._msg_head[1:4], "big")
                self._msg_head = b""
                continue
            skip = min(self._msg_left, len(chunk) - j)
            self._msg_left -= skip
            j += skip


def handshake_done(side: str, tls: ssl.SSLSocket | ssl.SSLObject, started: float) -> None:
    """The trace's record of a handshake: version, cipher, milliseconds."""
    trace.note(
        "tls",
        side,
        "handshake",
        result=f"{tls.version()} {(tls.cipher() or ('?',))[0]}",
        ms=round((time.monotonic() - started) * 1000, 1),
    )
