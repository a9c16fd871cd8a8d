"""The one security seam between a fresh connection and its Channel.

``serve`` calls :func:`secure_server` on every accepted socket and
``connect`` (and ``Channel.connect``) calls :func:`secure_client` on every
connected one, *before* any application byte is read or written. In order:

1. **Peer credentials** (UNIX sockets with ``?allowed_uids=`` /
   ``?allowed_gids=``): SO_PEERCRED, taken by the kernel at connect() and
   unforgeable, is checked against the lists. A server checks its client
   (again: the listener already closed refused peers unread, but the
   verdict here must not depend on how the socket was accepted); a client
   checks its *server* (``unix:/run/app.sock?allowed_uids=0``: "only talk
   to a server run by root"). A refused peer is PermissionDenied.
2. **TLS** for ``tls+tcp://`` (:mod:`sockwire.tls`).
3. **The HMAC challenge handshake** when ``?authfile=`` names a key file
   (:mod:`sockwire.auth`); over TLS it runs inside the TLS connection.

They return the socket to build the Channel on (a new one after TLS) and
whether the peer is **authenticated**, which is what the pickle codec
requires. Authenticated means the peer proved an identity that *your*
configuration names as trusted:

* the HMAC handshake succeeded (the peer holds the key in ``authfile=``);
* TLS verified the peer's certificate against the ``cafile=`` you gave (a
  server with ``cafile=`` requires client certificates: mutual TLS; a
  client with ``cafile=`` trusts that CA only). The system CA store proves
  a public host name, not that the peer is yours: not authenticated;
* on UNIX sockets, SO_PEERCRED matched ``allowed_uids=``/``allowed_gids=``:
  the kernel vouches for the peer's user, which is authentication by the
  operating system (the same trust ``pipe(authenticated=True)`` gives a
  forked child). A ``peer_filter`` *predicate* given to ``serve`` is policy,
  not identity, and does not count.

With none of them, the socket comes back unchanged with ``False``. On any
failure the socket is closed (it is consumed either way) and the error
raised: PermissionDenied (wrong key, refused certificate or credentials),
ProtocolError (the peer speaks something else), TimeoutError (``timeout``
seconds bound all the steps together), ConnectionLost. Secrets never
appear in errors, logs or traces: options name files, and only file names
are ever shown.
"""

from __future__ import annotations

import functools
import logging
import socket
import time

from . import auth, unix
from .address import Endpoint
from .errors import PermissionDenied, SockwireError, TimeoutError
from .sock import Socket, format_address

__all__ = [
    "can_authenticate",
    "check_client",
    "check_server",
    "handshake_key",
    "nodelay_for_handshakes",
    "peer_creds_checked",
    "peer_text",
    "secure_client",
    "secure_server",
]

log = logging.getLogger("sockwire")


@functools.lru_cache(maxsize=64)
def _filter_for(uids: str | None, gids: str | None) -> unix.PeerFilter:
    """One PeerFilter per rule (names resolve once, counters add up)."""
    return unix.PeerFilter(
        uids=None if uids is None else uids.split(","),
        gids=None if gids is None else gids.split(","),
    )


def peer_creds_checked(sock: Socket, ep: Endpoint, peer_role: str) -> bool:
    """Step 1. True when a uid/gid rule admitted the peer; False with no rule.

    No waiting (SO_PEERCRED is read, not received): the asyncio driver calls it too.
    """
    uids, gids = ep.option("allowed_uids"), ep.option("allowed_gids")
    if uids is None and gids is None:
        return False
    peer_filter = _filter_for(uids, gids)
    if sock.family != socket.AF_UNIX:
        raise PermissionDenied(
            f"allowed_uids/allowed_gids on {ep.display()}",
            "peer credentials exist only on UNIX sockets; use ?authfile= or TLS here",
        )
    peer = sock.peer()
    if peer_filter(peer):  # counts, and logs a refusal
        return True
    creds = peer.creds
    who = f"uid {creds.uid} gid {creds.gid} pid {creds.pid}" if creds else "no credentials"
    raise PermissionDenied(
        f"the {peer_role} of {ep.display()} ({who})",
        f"refused: {peer_filter.refusal(peer)}",
    )


def handshake_key(ep: Endpoint) -> bytes | None:
    """The ``?authfile=`` key (checked and loaded), or None without one."""
    path = ep.option("authfile")
    return None if path is None else auth.load_key(path)


def can_authenticate(ep: Endpoint) -> bool:
    """Would a successful :func:`secure_client`/:func:`secure_server` on ``ep`` prove the peer?"""
    return (
        ep.option("authfile") is not None
        or ep.option("allowed_uids") is not None
        or ep.option("allowed_gids") is not None
        or (ep.scheme == "tls+tcp" and ep.option("cafile") is not None)
    )


def check_client(ep: Endpoint) -> None:
    """Load what :func:`secure_client` will need (key file, TLS context) now, so a
    configuration error surfaces before connecting rather than after."""
    handshake_key(ep)
    if ep.scheme == "tls+tcp":
        from . import tls

        tls.client_context(ep)


def check_server(ep: Endpoint) -> None:
    """The same for a listener: call before listening, so a bad ``certfile=`` or
    ``authfile=`` fails at startup, not at each accept."""
    handshake_key(ep)
    if ep.scheme == "tls+tcp":
        from . import tls

        tls.server_context(ep)


def peer_text(sock: Socket, ep: Endpoint) -> str:
    try:
        return f"{format_address(sock.family, sock.getpeername())} on {ep.display()}"
    except SockwireError:
        return ep.display()


def nodelay_for_handshakes(sock: Socket, ep: Endpoint) -> None:
    """TCP_NODELAY before the handshakes (the Channel sets it later anyway).

    Without it, a side that writes twice in a row (a TLS 1.3 client's
    Finished, then the HMAC HELLO) has its second write held by Nagle until
    the peer's delayed ACK: 40 ms per connection, measured on loopback.
    """
    tcp = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
    if tcp and (ep.scheme == "tls+tcp" or ep.option("authfile") is not None):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _left(deadline: float, what: str, timeout: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(what, f"the security handshakes took over {timeout:g} s")
    return remaining


def secure_client(sock: Socket, ep: Endpoint, *, timeout: float = 10.0) -> tuple[Socket, bool]:
    """Client side: credentials, TLS (tls+tcp), HMAC (?authfile=); (socket, authenticated)."""
    deadline = time.monotonic() + timeout
    what = f"secure {ep.display()}"
    try:
        proven = peer_creds_checked(sock, ep, "server")
        key = handshake_key(ep)
        nodelay_for_handshakes(sock, ep)
        if ep.scheme == "tls+tcp":
            from . import tls

            sock = tls.wrap_client(sock, ep, timeout=_left(deadline, what, timeout))
            proven = proven or tls.peer_authenticated(ep)
        if key is not None:
            auth.client_handshake(
                sock, key, timeout=_left(deadline, what, timeout), label=ep.display()
            )
            proven = True
    except BaseException:
        sock.close()
        raise
    return sock, proven


def secure_server(sock: Socket, ep: Endpoint, *, timeout: float = 10.0) -> tuple[Socket, bool]:
    """Server side, on an accepted socket, before any application byte is read.

    Refusals (PermissionDenied) are logged at WARNING with the peer's
    address and the reason (never a secret), then raised.
    """
    deadline = time.monotonic() + timeout
    what = f"secure {ep.display()}"
    peer = peer_text(sock, ep)
    try:
        proven = peer_creds_checked(sock, ep, "client")
    except BaseException:
        sock.close()  # a refusal was logged by the peer filter, with pid/uid/gid
        raise
    try:
        key = handshake_key(ep)
        nodelay_for_handshakes(sock, ep)
        if ep.scheme == "tls+tcp":
            from . import tls

            sock = tls.wrap_server(sock, ep, timeout=_left(deadline, what, timeout))
            proven = proven or tls.peer_authenticated(ep)
        if key is not None:
            auth.server_handshake(sock, key, timeout=_left(deadline, what, timeout), label=peer)
            proven = True
    except PermissionDenied as exc:
        sock.close()
        log.warning("refused %s: %s", peer, exc)
        raise
    except BaseException:
        sock.close()
        raise
    return sock, proven
