"""connect(endpoint): a Channel to a server, with bounded retries, backoff and jitter.

One attempt is: resolve and connect (:func:`sockwire.dial.connect`, bounded
by ``timeout``), then :func:`sockwire.secure.secure_client` on
connection-oriented sockets (TLS for ``tls+tcp://``, the HMAC handshake for
``?authfile=``), then the Channel, ``authenticated`` as the handshake said.
Which failures are retried, and the back-off between attempts, are
:mod:`sockwire.connecting`'s (shared with :func:`sockwire.aio.connect`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import connecting, dial, secure
from .address import Endpoint, parse
from .channel import Channel
from .codecs import Codec
from .connecting import DEFAULT_BACKOFF, Backoff, retryable
from .errors import SockwireError
from .framing import DEFAULT_MAX_SIZE

__all__ = ["DEFAULT_BACKOFF", "Backoff", "connect", "retryable"]


def connect(
    endpoint: Endpoint | str,
    *,
    timeout: float | None = 10.0,
    retries: int = 0,
    backoff: Backoff = DEFAULT_BACKOFF,
    codec: str | Codec = "bytes",
    framing: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    handshake_timeout: float | None = None,
    on_retry: Callable[[int, SockwireError, float], None] | None = None,
) -> Channel:
    """A Channel connected to ``endpoint``, retrying up to ``retries`` times.

    ``timeout`` bounds each attempt's connect (and, unless
    ``handshake_timeout`` is given, its handshake). ``framing`` defaults to
    the endpoint's ``?framing=`` (else len32). ``on_retry(attempt, error,
    pause)`` is called before each pause (logging, tests). Datagram
    endpoints give a Channel whose default peer is the server (a
    ``unix+dgram`` client binds an abstract return address for replies).
    """
    ep = parse(endpoint)
    connecting.check_connect(ep, retries, codec)
    pauses = backoff.delays()
    attempt = 0
    while True:
        try:
            return connect_once(
                ep,
                timeout=timeout,
                codec=codec,
                framing=framing,
                max_size=max_size,
                handshake_timeout=handshake_timeout,
            )
        except SockwireError as exc:
            pause = connecting.retry_pause(ep, exc, attempt, retries, pauses)
            if pause is None:
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, exc, pause)
            time.sleep(pause)  # a bounded pause between attempts, not synchronisation


def connect_once(
    endpoint: Endpoint | str,
    *,
    timeout: float | None = 10.0,
    codec: str | Codec = "bytes",
    framing: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    handshake_timeout: float | None = None,
    authenticated: bool = False,
) -> Channel:
    """One attempt of :func:`connect`: the one place an endpoint becomes a Channel.

    Configuration first (pickle where no peer can be proven, missing key
    files and certificates: errors before any connect), then
    :func:`sockwire.dial.connect`, :func:`sockwire.secure.secure_client` on
    connection-oriented sockets, and the Channel, ``authenticated`` when
    the handshake proved the peer or the caller vouches for it.
    ``timeout`` None: the endpoint's ``?timeout=`` for the connect, 10 s
    for a handshake.
    """
    ep = parse(endpoint)
    connecting.check_once(ep, codec, authenticated)
    sock = dial.connect(ep, timeout=timeout)
    try:
        if connecting.needs_handshake(ep):
            shake = connecting.handshake_timeout(ep, handshake_timeout, timeout)
            sock, proven = secure.secure_client(sock, ep, timeout=shake)
            authenticated = authenticated or proven
    except BaseException:
        sock.close()
        raise
    return connecting.channel(
        Channel.from_socket,
        sock,
        ep,
        framing=framing,
        codec=codec,
        authenticated=authenticated,
        max_size=max_size,
    )
