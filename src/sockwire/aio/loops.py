"""Event loops, readiness and the read buffer every asyncio driver of sockwire shares.

* :func:`run`: ``sockwire.aio.run(main, loop="uvloop")`` runs a coroutine on
  a fresh loop of the kind asked for (``"asyncio"``, the default, or
  ``"uvloop"``) and closes it. Everything else in ``sockwire.aio`` works on
  whatever loop is running, the user's own included: it only uses
  ``add_reader``/``add_writer``, ``call_at``/``call_soon`` and Futures.
* :func:`wait_fd`: wait until one descriptor is readable or writable, or a
  deadline passes (the handshakes and connects, which own their socket).
* :func:`read_buffer`: the one read buffer of a thread. Every read a driver
  makes is copied out of it before the next, so thousands of connections of
  one loop share 256 KiB instead of holding 256 KiB each (10,000 connections
  would otherwise touch 2.5 GB).

Deadlines are instants of ``loop.time()`` (monotonic; uvloop's has
millisecond resolution and is read once per loop iteration).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import InvalidOperation, UnsupportedError
from ..framing import READ_SIZE
from ..packet import MAX_PACKET

__all__ = ["LOOPS", "loop_factory", "read_buffer", "run", "wait_fd"]

T = TypeVar("T")

#: The loop kinds :func:`run` knows.
LOOPS = ("asyncio", "uvloop")

_local = threading.local()


def loop_factory(loop: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function that makes a new event loop of kind ``loop`` (None: ``asyncio``)."""
    kind = loop or "asyncio"
    if kind == "asyncio":
        return asyncio.new_event_loop
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            raise UnsupportedError(
                "loop='uvloop'", "uvloop is not installed: pip install 'sockwire[uvloop]'"
            ) from None
        return uvloop.new_event_loop
    raise InvalidOperation(f"loop={loop!r}", "one of: " + ", ".join(LOOPS))


def run(
    main: Coroutine[Any, Any, T] | Callable[[], Coroutine[Any, Any, T]],
    *,
    loop: str | None = None,
    debug: bool | None = None,
) -> T:
    """Run ``main`` (a coroutine, or a function returning one) on a new loop; its result.

    ``loop``: ``"asyncio"`` (default) or ``"uvloop"``. The loop, its
    default executor and every task left running are closed afterwards, as
    :func:`asyncio.run` does.
    """
    try:
        factory = loop_factory(loop)
    except BaseException:
        if not callable(main):
            main.close()  # never started: no "never awaited" warning on top of the error
        raise
    coro = main() if callable(main) else main
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(coro)


def read_buffer() -> bytearray:
    """This thread's shared read buffer (READ_SIZE bytes, enough for one packet too)."""
    buf: bytearray | None = getattr(_local, "buffer", None)
    if buf is None:
        buf = _local.buffer = bytearray(max(READ_SIZE, MAX_PACKET))
    return buf


def _wake(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


async def wait_fd(fd: int, *, writable: bool = False, deadline: float | None = None) -> bool:
    """Wait until ``fd`` is readable (or writable); False when ``deadline`` passed first.

    The caller owns ``fd``: its reader (writer) callback is replaced for the
    wait and removed afterwards, also when the wait is cancelled.
    """
    loop = asyncio.get_running_loop()
    if deadline is not None and deadline <= loop.time():
        return False
    fut: asyncio.Future[bool] = loop.create_future()
    if writable:
        loop.add_writer(fd, _wake, fut, True)
    else:
        loop.add_reader(fd, _wake, fut, True)
    timer = None if deadline is None else loop.call_at(deadline, _wake, fut, False)
    try:
        return await fut
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
        if timer is not None:
            timer.cancel()
