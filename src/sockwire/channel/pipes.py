"""pipe(): two connected Channels over socketpair(), multiprocessing.Pipe for sockets."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

from ..codecs import Codec
from ..errors import InvalidOperation
from ..framing import DEFAULT_MAX_SIZE
from ..sock import socketpair
from .blocking import Channel

__all__ = ["pipe", "pipe_of"]

_TYPES = {
    "stream": socket.SOCK_STREAM,
    "seqpacket": socket.SOCK_SEQPACKET,
    "dgram": socket.SOCK_DGRAM,
}

T = TypeVar("T")


def pipe(
    type: int | str = "stream",  # the socketpair's type, as the issue names it
    *,
    framing: str | None = None,
    codec: str | Codec = "bytes",
    max_size: int = DEFAULT_MAX_SIZE,
    authenticated: bool = False,
) -> tuple[Channel, Channel]:
    """Two connected Channels over ``socketpair()``: multiprocessing.Pipe for sockets.

    ``type`` is "stream" (framed), "seqpacket" or "dgram" (or a SOCK_*
    constant); ``framing`` as for an endpoint's ``?framing=`` (on packet
    types ``sockwire`` adds the sockwire header). Fork, then let each
    process close the end it does not use. A socketpair's only peer is a
    process you forked, so you may declare the pair ``authenticated``
    (which is what the pickle codec asks for).
    """
    return pipe_of(
        Channel.from_socket,
        Channel.close,
        type,
        framing=framing,
        codec=codec,
        max_size=max_size,
        authenticated=authenticated,
    )


def pipe_of(
    from_socket: Callable[..., T],
    discard: Callable[[T], object],
    type: int | str,
    *,
    framing: str | None,
    codec: str | Codec,
    max_size: int,
    authenticated: bool,
) -> tuple[T, T]:
    """pipe() for any driver: its ``from_socket``, and ``discard`` to close an end at once
    should the other fail (nothing is left open either way)."""
    if isinstance(type, str):
        if type not in _TYPES:
            raise InvalidOperation(f"pipe(type={type!r})", "type is one of: " + ", ".join(_TYPES))
        sock_type: int = _TYPES[type]
    else:
        sock_type = int(type)
    a, b = socketpair(sock_type)
    ends: list[T] = []
    try:
        for sock in (a, b):
            ends.append(
                from_socket(
                    sock,
                    framing=framing,
                    codec=codec,
                    authenticated=authenticated,
                    max_size=max_size,
                    label="pipe",
                )
            )
    except BaseException:
        for end in ends:
            discard(end)
        b.close()  # from_socket closed the one it failed on; close is idempotent
        raise
    return ends[0], ends[1]
