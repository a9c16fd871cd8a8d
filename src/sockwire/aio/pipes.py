"""pipe(): two connected asyncio Channels over socketpair() (:func:`sockwire.pipe`'s code)."""

from __future__ import annotations

from ..channel.pipes import pipe_of
from ..codecs import Codec
from ..framing import DEFAULT_MAX_SIZE
from .channel import Channel

__all__ = ["pipe"]


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
    return pipe_of(
        Channel.from_socket,
        Channel.abort,
        type,
        framing=framing,
        codec=codec,
        max_size=max_size,
        authenticated=authenticated,
    )
