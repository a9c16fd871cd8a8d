"""connect(endpoint): a Channel to a server, with bounded retries, backoff and jitter.

One attempt is: resolve and connect (:func:`sockwire.dial.connect`, bounded
by ``timeout``), then :func:`sockwire.secure.secure_client` on
connection-oriented sockets (TLS for ``tls+tcp://``, the HMAC handshake for
``?authfile=``), then the Channel, ``authenticated`` as the handshake said.

Which failures are retried (the decision, by what each one means):

* ConnectionRefused (ECONNREFUSED): nobody listens *yet*; a server that is
  starting or restarting. Retried.
* NotFound for a UNIX socket path (ENOENT): the server has not created its
  socket file yet. Retried. NotFound from name resolution is a typo, not a
  race: not retried.
* TimeoutError, and WouldBlock (EAGAIN: a UNIX listener's backlog is full):
  the server is alive but busy. Retried.
* Everything else (AddressError, PermissionDenied, a failed handshake,
  Unreachable, UnsupportedError, ...) needs someone to change something:
  raised at once, never retried.

Retries are bounded (``retries``), and the pause before each grows
geometrically (:class:`Backoff`) with jitter, so a fleet of clients that
lost the same server does not reconnect in lockstep.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import dial, secure
from .address import Endpoint, parse
from .channel import Channel
from .codecs import Codec, get_codec
from .errors import (
    ConnectionRefused,
    InvalidOperation,
    NotFound,
    SockwireError,
    TimeoutError,
    WouldBlock,
)
from .framing import DEFAULT_MAX_SIZE

__all__ = ["DEFAULT_BACKOFF", "Backoff", "connect", "retryable"]

log = logging.getLogger("sockwire")


@dataclass(frozen=True)
class Backoff:
    """Pauses between attempts: ``initial``, times ``factor`` each time, at most ``maximum``.

    Each pause is scaled by a random factor in ``[1 - jitter, 1]``, so the
    bounds are known (tests rely on them) and clients spread out.
    """

    initial: float = 0.05
    maximum: float = 2.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial or self.factor < 1:
            raise InvalidOperation(f"{self!r}", "need 0 <= initial <= maximum and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise InvalidOperation(f"{self!r}", "jitter is a fraction from 0 to 1")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The pauses, forever (callers bound the count)."""
        uniform = (rng or random).random
        delay = self.initial
        while True:
            yield delay * (1.0 - self.jitter * uniform())
            delay = min(self.maximum, delay * self.factor)


DEFAULT_BACKOFF = Backoff()


def retryable(ep: Endpoint, error: BaseException) -> bool:
    """Whether a failed attempt to reach ``ep`` is worth repeating (see the module docstring)."""
    if isinstance(error, ConnectionRefused | TimeoutError | WouldBlock):
        return True
    return isinstance(error, NotFound) and ep.is_unix and not ep.is_abstract


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
    if ep.scheme in ("fd", "systemd"):
        raise InvalidOperation(
            f"connect {ep}", "an inherited socket is already connected; use Channel.from_socket"
        )
    if retries < 0:
        raise InvalidOperation(f"connect retries={retries}", "give 0 or more")
    # configuration errors first, never retried: pickle where no peer can be
    # proven; a missing key file (NotFound, which would look like a socket
    # file not there yet) or certificate
    get_codec(codec, authenticated=secure.can_authenticate(ep))
    secure.check_client(ep)
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
            if attempt >= retries or not retryable(ep, exc):
                raise
            attempt += 1
            pause = next(pauses)
            log.info(
                "connect %s failed (%s); retry %d of %d in %.3f s",
                ep.display(),
                exc,
                attempt,
                retries,
                pause,
            )
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
    get_codec(codec, authenticated=authenticated or secure.can_authenticate(ep))
    secure.check_client(ep)
    sock = dial.connect(ep, timeout=timeout)
    try:
        if ep.type != socket.SOCK_DGRAM:  # no connection to secure
            shake = handshake_timeout if handshake_timeout is not None else timeout
            if shake is None:
                shake = ep.get("timeout")
            sock, proven = secure.secure_client(
                sock, ep, timeout=shake if shake is not None else 10.0
            )
            authenticated = authenticated or proven
    except BaseException:
        sock.close()
        raise
    return Channel.from_socket(
        sock,
        framing=framing or ep.option("framing"),
        codec=codec,
        authenticated=authenticated,
        max_size=max_size,
        label=ep.display(),
    )
