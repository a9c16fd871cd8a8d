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
import socket

from .. import dial, unix
from ..address import Endpoint, parse
from ..errors import ConnectError, InvalidOperation, SockwireError, TimeoutError, translate
from ..sock import Socket
from .socket import connect_socket

__all__ = ["connect"]


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
            await connect_socket(sock, address, deadline, ep.display())
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
