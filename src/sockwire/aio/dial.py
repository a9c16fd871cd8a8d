"""Endpoint -> connected Socket without blocking the loop: :func:`sockwire.dial.connect`, awaited.

The socket is made by :func:`sockwire.dial.open_socket` (the endpoint's
options applied), so only the waiting differs from the blocking dial:

* host names resolve in the loop's executor (:meth:`Endpoint.resolve`, the
  blocking dial's own resolver); each address is tried in turn;
* ``connect(2)`` on a non-blocking socket: EINPROGRESS (TCP) means wait for
  writability, then SO_ERROR is the verdict;
* a UNIX stream listener whose backlog is full answers EAGAIN instead of
  making the caller wait as a blocking connect does: the connect is retried
  after 1 ms, doubling up to 50 ms, until the deadline (bounded);
* ``timeout`` (or ``?timeout=``) bounds the whole attempt, as in the blocking dial.

Listening and binding need no waiting: :func:`sockwire.dial.listen` and
:func:`sockwire.dial.bind` serve both worlds.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import os
import socket

from .. import dial, unix
from ..address import Endpoint, parse
from ..errors import ConnectError, InvalidOperation, SockwireError, TimeoutError, translate
from ..sock import Socket
from .loops import wait_fd

__all__ = ["connect"]

#: The first and the longest pause between connects to a full UNIX backlog.
_BACKLOG_PAUSES = (0.001, 0.05)


async def _addresses(ep: Endpoint) -> list[tuple[int, object]]:
    """(family, sockaddr) pairs to try; names resolve in the executor."""
    if ep.host is None:
        return [(ep.family, ep.sockaddr)]
    if ep.family == socket.AF_INET6 or all(c.isdigit() or c == "." for c in ep.host):
        return [(ep.family, ep.sockaddr)]
    loop = asyncio.get_running_loop()
    try:
        found = await loop.run_in_executor(None, ep.resolve)
    except OSError as exc:
        raise translate(exc, "resolve", ep.display()) from exc
    return [(family, addr) for family, addr in found]


async def connect(endpoint: Endpoint | str, *, timeout: float | None = None) -> Socket:
    """A non-blocking Socket connected to ``endpoint`` (for datagrams: its default peer)."""
    ep = parse(endpoint)
    if ep.scheme in ("fd", "systemd"):
        raise InvalidOperation(f"connect {ep}", "an inherited socket is already set up")
    if ep.scheme == "netlink":
        return dial.connect(ep)  # bound, not connected: nothing to wait for
    loop = asyncio.get_running_loop()
    seconds = timeout if timeout is not None else ep.float_option("timeout", None)
    deadline = None if seconds is None else loop.time() + seconds
    last: SockwireError | None = None
    for family, address in await _addresses(ep):
        sock = dial.open_socket(ep, family)
        try:
            sock.setblocking(False)
            if ep.is_unix and ep.type == socket.SOCK_DGRAM:
                unix.autobind(sock)  # a return address, as the blocking dial makes
            await _connect(sock, address, ep, deadline)
        except SockwireError as exc:
            sock.close()
            last = exc
            if not isinstance(exc, ConnectError | TimeoutError):
                raise
        except BaseException:
            sock.close()
            raise
        else:
            return sock
    assert last is not None
    raise last


async def _connect(sock: Socket, address: object, ep: Endpoint, deadline: float | None) -> None:
    loop = asyncio.get_running_loop()
    pause, longest = _BACKLOG_PAUSES
    while True:
        try:
            sock.connect(address)  # type: ignore[arg-type]
        except SockwireError as exc:
            if exc.errno == errno.EINPROGRESS:
                break
            if exc.errno != errno.EAGAIN or not ep.is_unix:
                raise
        else:
            return
        # a UNIX listener's backlog is full: it is alive, only busy
        if deadline is not None and loop.time() + pause > deadline:
            raise _timed_out(sock, ep)
        await asyncio.sleep(pause)  # bounded backoff, not synchronisation
        pause = min(longest, pause * 2)
    if not await wait_fd(sock.fd, writable=True, deadline=deadline):
        raise _timed_out(sock, ep)
    code = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    if code:
        error = OSError(code, os.strerror(code))
        raise translate(
            error, "connect", ep.display(), family=sock.family, sock_type=sock.type
        ) from error


def _timed_out(sock: Socket, ep: Endpoint) -> SockwireError:
    return translate(
        builtins.TimeoutError("timed out"),
        "connect",
        ep.display(),
        family=sock.family,
        sock_type=sock.type,
    )
