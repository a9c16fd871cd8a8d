"""What a connect decides, for both drivers: checks, the retry policy, back-off, the Channel.

:func:`sockwire.connect` (blocking) and :func:`sockwire.aio.connect` make
the same attempts in the same order and retry the same failures; only the
waiting differs (``time.sleep`` and a blocking dial and handshake there,
``asyncio.sleep`` and awaited ones here). One attempt is: configuration
checks (:func:`check_once`), the dial, the security handshakes on
connection-oriented sockets (bounded by :func:`handshake_timeout`), then
the Channel (:func:`channel`).

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from . import secure
from .address import Endpoint
from .codecs import Codec, get_codec
from .errors import (
    ConnectionRefused,
    InvalidOperation,
    NotFound,
    SockwireError,
    TimeoutError,
    WouldBlock,
)

__all__ = [
    "DEFAULT_BACKOFF",
    "Backoff",
    "channel",
    "check_connect",
    "check_once",
    "handshake_timeout",
    "needs_handshake",
    "retry_pause",
    "retryable",
]

log = logging.getLogger("sockwire")

#: A handshake's bound when neither the caller nor the endpoint gives one.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

T = TypeVar("T")


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


def check_connect(ep: Endpoint, retries: int, codec: str | Codec) -> None:
    """connect()'s own checks, before the first attempt; their errors are never retried."""
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


def retry_pause(
    ep: Endpoint, error: SockwireError, attempt: int, retries: int, pauses: Iterator[float]
) -> float | None:
    """After ``attempt`` retries, ``error``: the pause before the next one (logged), or None.

    None: give up (no retries left, or one would not help); the caller raises ``error``.
    """
    if attempt >= retries or not retryable(ep, error):
        return None
    pause = next(pauses)
    log.info(
        "connect %s failed (%s); retry %d of %d in %.3f s",
        ep.display(),
        error,
        attempt + 1,
        retries,
        pause,
    )
    return pause


def check_once(ep: Endpoint, codec: str | Codec, authenticated: bool) -> None:
    """One attempt's checks before any connect: pickle where no peer can be proven,
    missing key files and certificates."""
    get_codec(codec, authenticated=authenticated or secure.can_authenticate(ep))
    secure.check_client(ep)


def needs_handshake(ep: Endpoint) -> bool:
    """Whether a connected ``ep`` has a connection to secure (datagrams have none)."""
    return ep.type != socket.SOCK_DGRAM


def handshake_timeout(ep: Endpoint, handshake: float | None, timeout: float | None) -> float:
    """The handshakes' bound: ``handshake``, else the connect's ``timeout``, else the
    endpoint's ``?timeout=``, else 10 s."""
    shake = handshake if handshake is not None else timeout
    if shake is None:
        shake = ep.get("timeout")
    return shake if shake is not None else DEFAULT_HANDSHAKE_TIMEOUT


def channel(
    from_socket: Callable[..., T],
    sock: Any,
    ep: Endpoint,
    *,
    framing: str | None,
    codec: str | Codec,
    authenticated: bool,
    max_size: int,
) -> T:
    """The Channel (of the driver's ``from_socket``) over the connected, secured ``sock``."""
    return from_socket(
        sock,
        framing=framing or ep.option("framing"),
        codec=codec,
        authenticated=authenticated,
        max_size=max_size,
        label=ep.display(),
    )
