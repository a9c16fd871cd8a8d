"""connect(endpoint): an asyncio Channel to a server, with the blocking client's retry policy.

:func:`connect_once` is the asyncio twin of :func:`sockwire.client.connect_once`
(the one place an endpoint becomes a connected, secured Channel): the same
configuration checks first, then :func:`sockwire.aio.dial.connect`,
:func:`sockwire.aio.secure.secure_client` on connection-oriented sockets,
and the Channel. The checks, what is worth retrying, the back-off (jitter
included) and the handshake's bound are :mod:`sockwire.connecting`'s, as
for the blocking client; this module awaits where that one blocks
(``asyncio.sleep`` between attempts).

Both are awaitable and async context managers::

    channel = await aio.connect("unix:/run/app.sock")
    async with aio.connect("unix:/run/app.sock") as channel: ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Protocol, TypeVar

from .. import connecting
from ..address import Endpoint, parse
from ..codecs import Codec
from ..connecting import DEFAULT_BACKOFF, Backoff
from ..errors import SockwireError
from ..framing import DEFAULT_MAX_SIZE
from . import dial
from .channel import Channel
from .secure import secure_client

__all__ = ["Opening", "connect", "connect_once"]

T = TypeVar("T", bound="_Closable")


class _Closable(Protocol):
    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


class Opening(Coroutine[Any, Any, T]):
    """``await`` it for the object, or ``async with`` it to have the object's own
    ``async with`` around the block (a Channel closes, a Server shuts down).

    It is a coroutine itself (it drives the one it wraps), so a task made
    from it and cancelled before it ran closes it cleanly.
    """

    __slots__ = ("_coro", "_value")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._value: T | None = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    async def __aenter__(self) -> T:
        self._value = await self._coro
        await self._value.__aenter__()
        return self._value

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._value is not None:
            await self._value.__aexit__(exc_type, exc, tb)


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
    on_retry: Callable[[int, SockwireError, float], Awaitable[None] | None] | None = None,
) -> Opening[Channel]:
    """A Channel connected to ``endpoint``: :func:`sockwire.connect`, awaitable.

    The arguments and the retry policy are :func:`sockwire.connect`'s;
    ``on_retry`` may be a coroutine function.
    """
    return Opening(
        _connect(
            endpoint,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            codec=codec,
            framing=framing,
            max_size=max_size,
            handshake_timeout=handshake_timeout,
            on_retry=on_retry,
        )
    )


async def _connect(
    endpoint: Endpoint | str,
    *,
    timeout: float | None,
    retries: int,
    backoff: Backoff,
    codec: str | Codec,
    framing: str | None,
    max_size: int,
    handshake_timeout: float | None,
    on_retry: Callable[[int, SockwireError, float], Awaitable[None] | None] | None,
) -> Channel:
    ep = parse(endpoint)
    connecting.check_connect(ep, retries, codec)
    pauses = backoff.delays()
    attempt = 0
    while True:
        try:
            return await connect_once(
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
                result = on_retry(attempt, exc, pause)
                if result is not None:
                    await result
            await asyncio.sleep(pause)  # a bounded pause between attempts


async def connect_once(
    endpoint: Endpoint | str,
    *,
    timeout: float | None = 10.0,
    codec: str | Codec = "bytes",
    framing: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    handshake_timeout: float | None = None,
    authenticated: bool = False,
) -> Channel:
    """One attempt of :func:`connect` (:func:`sockwire.client.connect_once`, awaitable)."""
    ep = parse(endpoint)
    connecting.check_once(ep, codec, authenticated)
    sock = await dial.connect(ep, timeout=timeout)
    try:
        if connecting.needs_handshake(ep):
            shake = connecting.handshake_timeout(ep, handshake_timeout, timeout)
            sock, proven = await secure_client(sock, ep, timeout=shake)
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
