"""pipe(): two connected asyncio Channels over socketpair()."""

from __future__ import annotations

import socket

from ..codecs import Codec
from ..errors import InvalidOperation
from ..framing import DEFAULT_MAX_SIZE
from ..sock import socketpair
from .channel import Channel

__all__ = ["pipe"]

_TYPES = {
    "stream": socket.SOCK_STREAM,
    "seqpacket": socket.SOCK_SEQPACKET,
    "dgram": socket.SOCK_DGRAM,
}


def pipe(
    type: int | str = "stream",  # the socketpair's type, as sockwire.pipe names it
    *,
    framing: str | None = None,
    codec: str | Codec = "bytes",
    max_size: int = DEFAULT_MAX_SIZE,
    authenticated: bool = False,
) -> tuple[Channel, Channel]:
    """Two connected asyncio Channels over ``socketpair()``: :func:`sockwire.pipe`, awaitable.

    The arguments are :func:`sockwire.pipe`'s. The Channels bind to the loop
    that first uses them, so the pair may be made before ``fork()``.
    """
    if isinstance(type, str):
        if type not in _TYPES:
            raise InvalidOperation(f"pipe(type={type!r})", "type is one of: " + ", ".join(_TYPES))
        sock_type: int = _TYPES[type]
    else:
        sock_type = int(type)
    a, b = socketpair(sock_type)
    ends: list[Channel] = []
    try:
        for sock in (a, b):
            ends.append(
                Channel.from_socket(
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
            end.abort()
        b.close()  # from_socket closed the one it failed on; close is idempotent
        raise
    return ends[0], ends[1]
