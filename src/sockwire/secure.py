"""The one security seam between a fresh connection and its Channel.

``serve`` calls :func:`secure_server` on every accepted socket and
``connect`` calls :func:`secure_client` on every connected one, *before*
any application byte is read or written. They do TLS for ``tls+tcp://``
endpoints and the shared-key HMAC challenge handshake when the endpoint
names a key file (``?authfile=``), and return the socket to build the
Channel on and whether the peer is authenticated (which the pickle codec
requires). With neither, they return the socket unchanged and ``False``.
"""

from __future__ import annotations

from .address import Endpoint
from .errors import UnsupportedError
from .sock import Socket

__all__ = ["secure_client", "secure_server"]


def _unsupported(ep: Endpoint) -> UnsupportedError:
    return UnsupportedError(
        f"secure {ep.display()}", "TLS and the HMAC handshake are not in this build yet"
    )


def secure_client(sock: Socket, ep: Endpoint, *, timeout: float = 10.0) -> tuple[Socket, bool]:
    """Client side: TLS (tls+tcp) then HMAC auth (?authfile=); returns (socket, authenticated)."""
    if ep.scheme == "tls+tcp" or ep.option("authfile") is not None:
        raise _unsupported(ep)
    return sock, False


def secure_server(sock: Socket, ep: Endpoint, *, timeout: float = 10.0) -> tuple[Socket, bool]:
    """Server side, on an accepted socket, before any application byte is read."""
    if ep.scheme == "tls+tcp" or ep.option("authfile") is not None:
        raise _unsupported(ep)
    return sock, False
