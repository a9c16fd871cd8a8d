"""Opening the commands' sockets: clients, servers, and cleaning up socket files.

A server command removes the socket file it created when it exits (like
socat's ``unlink-close``), but only if the path still names the file it
created: a file someone replaced in the meantime is left alone.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from .. import dial
from ..address import Endpoint
from ..errors import InvalidOperation
from ..sock import Socket
from .observe import say

__all__ = ["bound_address", "connect_socket", "server_socket"]


def connect_socket(ep: Endpoint) -> Socket:
    """A Socket connected to ``ep`` (for datagrams: its default peer).

    A UNIX datagram client is autobound first (bind with an empty address
    gives it a kernel-chosen abstract name): an unnamed socket could send
    but never get an answer.
    """
    if ep.scheme == "fd":
        return dial.adopt(ep)
    if ep.scheme == "unix+dgram":
        sock = dial.open_socket(ep)
        try:
            sock.bind("")
            sock.connect(ep.sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock
    return dial.connect(ep)


@contextlib.contextmanager
def server_socket(ep: Endpoint, *, passcred: bool = False) -> Iterator[Socket]:
    """A listening (stream, seqpacket) or bound (datagram) Socket for ``ep``.

    Announces itself with a ``listening``/``bound`` note carrying the real
    address (the port the kernel chose for ``:0``), which is also what tests
    wait for instead of sleeping. ``passcred`` turns on SO_PASSCRED on a
    UNIX datagram socket, so every message carries its sender's pid/uid/gid
    (SCM_CREDENTIALS), even from an unnamed sender.
    """
    datagram = ep.type in (socket.SOCK_DGRAM, socket.SOCK_RAW)
    if ep.scheme == "fd":
        sock = dial.adopt(ep)
        if not datagram and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            sock.detach()
            raise InvalidOperation(f"listen on {ep}", f"fd {ep.fd} is not a listening socket")
    elif datagram:
        sock = dial.bind(ep)
    else:
        sock = dial.listen(ep)
    created = None
    if ep.is_unix and not ep.is_abstract and ep.path is not None:
        with contextlib.suppress(OSError):
            info = os.lstat(ep.path)
            created = (info.st_dev, info.st_ino)
    try:
        if passcred and sock.family == socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        say("listening" if not datagram else "bound", bound_address(ep, sock), f"fd={sock.fd}")
        yield sock
    finally:
        sock.close()
        if created is not None and ep.path is not None:
            _remove_if_ours(ep.path, created)


def _remove_if_ours(path: str, created: tuple[int, int]) -> None:
    with contextlib.suppress(OSError):
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == created:
            os.unlink(path)
            say("unlink", path)


def bound_address(ep: Endpoint, sock: Socket) -> str:
    """The endpoint as really bound: ``tcp://127.0.0.1:0`` becomes the chosen port."""
    if ep.host is None or ep.port != 0:
        return ep.display()
    try:
        name = sock.getsockname()
    except Exception:  # noqa: BLE001  # only a nicer display is at stake
        return ep.display()
    if isinstance(name, tuple) and len(name) >= 2:
        host = f"[{name[0]}]" if ":" in str(name[0]) else str(name[0])
        return f"{ep.scheme}://{host}:{name[1]}"
    return ep.display()
