"""UNIX domain, awaitable: fd passing, per-message credentials and peer filters on ``aio.Socket``.

The same functions as :mod:`sockwire.unix`, under the same names, taking an
:class:`~sockwire.aio.socket.Socket`: each one is the blocking function
itself, run again after readiness when the kernel says EAGAIN before
anything happened (so the 253-fd limit, the close-on-exec flag, closing every
fd of a truncated message, credentials and refusal logging are
:mod:`sockwire.unix`'s). Nothing here waits that did not have to.

What needs no waiting is :mod:`sockwire.unix`'s own and re-exported:
``bind_path`` (a live socket file is never replaced or unlinked, unlike
asyncio's ``start_unix_server``), ``bind_abstract``, ``autobind``,
``enable_passcred``, ``PeerFilter``, ``adopt``, ``listen_fds``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

from .. import unix as _unix
from ..errors import InvalidOperation, PermissionDenied
from ..sock import SCM_MAX_FD, Address, FdLike, Message, Peer
from ..unix import (
    Passed,
    PeerFilter,
    adopt,
    autobind,
    bind_abstract,
    bind_path,
    enable_passcred,
    listen_fds,
)
from .socket import Socket

__all__ = [
    "SCM_MAX_FD",
    "Passed",
    "PeerFilter",
    "accept_checked",
    "adopt",
    "autobind",
    "bind_abstract",
    "bind_path",
    "enable_passcred",
    "listen_fds",
    "recv_checked",
    "recv_discarding_fds",
    "recv_fds",
    "recvfrom_peer",
    "reply",
    "send_fds",
]


async def send_fds(
    sock: Socket, data: bytes, fds: Sequence[FdLike], *, address: Address | None = None
) -> int:
    """:func:`sockwire.unix.send_fds`, awaitable: ``data`` with ``fds`` as SCM_RIGHTS.

    On a stream the fds ride on the first byte sent and the rest of ``data``
    follows (awaiting room), so all of ``data`` is sent.
    """
    if sock.type == socket.SOCK_STREAM and not data:
        # the blocking function's own check, before anything is sent
        _unix.send_fds(sock.sock, data, fds)
    count = await sock.sendmsg([data], fds=fds, address=address)
    if sock.type == socket.SOCK_STREAM and count < len(data):
        await sock.sendall(data[count:])
        count = len(data)
    return count


async def recv_fds(
    sock: Socket, bufsize: int = 65536, *, maxfds: int = SCM_MAX_FD, flags: int = 0
) -> Message:
    """:func:`sockwire.unix.recv_fds`, awaitable (truncation closes every fd that came)."""
    return await sock._call(False, _unix.recv_fds, sock.sock, bufsize, maxfds=maxfds, flags=flags)


async def recv_discarding_fds(
    sock: Socket, bufsize: int = 65536, *, flags: int = 0
) -> tuple[Message, int]:
    """:func:`sockwire.unix.recv_discarding_fds`, awaitable: fds that came are closed, counted."""
    return await sock._call(False, _unix.recv_discarding_fds, sock.sock, bufsize, flags=flags)


async def recvfrom_peer(
    sock: Socket, bufsize: int = 65536, *, flags: int = 0
) -> tuple[bytes, Peer]:
    """:func:`sockwire.unix.recvfrom_peer`, awaitable: one datagram, its sender and credentials."""
    return await sock._call(False, _unix.recvfrom_peer, sock.sock, bufsize, flags=flags)


async def recv_checked(
    sock: Socket,
    peer_filter: Callable[[Peer], bool],
    bufsize: int = 65536,
    *,
    limit: int = 1000,
) -> tuple[bytes, Peer]:
    """:func:`sockwire.unix.recv_checked`, awaitable: the next datagram ``peer_filter`` admits.

    At most ``limit`` refused datagrams are dropped per call (then
    PermissionDenied), as in the blocking function.
    """
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED):
        enable_passcred(sock.sock)
    for _ in range(limit):
        data, peer = await recvfrom_peer(sock, bufsize)
        if peer_filter(peer):
            return data, peer
    raise PermissionDenied(
        f"recv on fd {sock.fd}", f"{limit} datagrams in a row came from refused senders"
    )


async def reply(sock: Socket, peer: Peer, data: bytes) -> int:
    """:func:`sockwire.unix.reply`, awaitable: ``data`` back to the datagram sender ``peer``."""
    if peer.address is None:
        _unix.reply(sock.sock, peer, data)  # raises its clear InvalidOperation
        raise InvalidOperation("reply to an unnamed sender", "it never bound a name")
    return await sock.sendto(data, peer.address)


async def accept_checked(
    listener: Socket, peer_filter: Callable[[Peer], bool]
) -> tuple[Socket, Peer]:
    """:func:`sockwire.unix.accept_checked`, awaitable: the next peer ``peer_filter`` admits.

    Refused peers are closed before any of their bytes is read.
    """
    conn, peer = await listener._call(False, _unix.accept_checked, listener.sock, peer_filter)
    return Socket.wrap(conn), peer
