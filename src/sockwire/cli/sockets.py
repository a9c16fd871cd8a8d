"""Opening the commands' sockets: clients, servers, inherited ones, and socket-file cleanup.

A server command removes the socket file it created when it exits (like
socat's ``unlink-close``), but only if the path still names the file it
created: a file someone replaced in the meantime is left alone.

Inherited sockets (``fd:N``, ``systemd:[NAME]``) are adopted first, by
:func:`inherited`, because until then nobody knows their type: the
endpoint comes back with ``?type=`` set from SO_TYPE, so each command picks
its stream, seqpacket or datagram behaviour as for any other endpoint. An
inherited *listening* socket is served like one the command opened; an
inherited *connected* one (inetd style, systemd's ``Accept=yes``) is the one
connection the command serves.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from .. import dial, secure
from ..address import Endpoint
from ..errors import InvalidOperation
from ..flags import type_name
from ..sock import Socket
from . import secured
from .observe import line, say

__all__ = [
    "bound_address",
    "connect_socket",
    "inherited",
    "is_listening",
    "is_unix",
    "server_socket",
]

_TYPE_NAMES: dict[int, str] = {
    int(socket.SOCK_STREAM): "stream",
    int(socket.SOCK_DGRAM): "dgram",
    int(socket.SOCK_SEQPACKET): "seqpacket",
}


@contextlib.contextmanager
def inherited(ep: Endpoint) -> Iterator[tuple[Endpoint, Socket | None]]:
    """For ``fd:``/``systemd:``: the adopted Socket, and the endpoint with its real ``?type=``.

    Other endpoints pass through with None. The Socket is closed on the way
    out (close is idempotent, so a command may close it earlier).
    """
    if ep.scheme not in ("fd", "systemd"):
        yield ep, None
        return
    sock = dial.adopt(ep)
    try:
        name = _TYPE_NAMES.get(sock.type)
        if name is None:
            from .exitcodes import UsageError

            raise UsageError(
                f"{ep} is a {type_name(sock.type)} socket",
                "the commands handle inherited stream, seqpacket and dgram sockets",
            )
        yield ep.with_options(type=name), sock
    finally:
        sock.close()


def is_unix(ep: Endpoint, adopted: Socket | None) -> bool:
    """An AF_UNIX socket, by its scheme or, when inherited, by what the kernel says."""
    return adopted.family == socket.AF_UNIX if adopted is not None else ep.is_unix


def is_listening(sock: Socket) -> bool:
    """SO_ACCEPTCONN: an inherited socket that listen() was called on."""
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def connect_socket(ep: Endpoint, adopted: Socket | None = None, *, tls: bool = True) -> Socket:
    """A Socket connected to ``ep`` (for datagrams: its default peer).

    A UNIX datagram client is autobound first (bind with an empty address
    gives it a kernel-chosen abstract name): an unnamed socket could send
    but never get an answer. A stream client runs the endpoint's security
    steps (peer credentials, TLS, ``?authfile=``) before it is returned.
    ``adopted``: the socket :func:`inherited` gave. ``tls=False``: a
    ``tls+tcp`` socket comes back plain, for :class:`.secured.Guard` to
    tunnel (the pump's commands).
    """
    if adopted is not None:
        return adopted
    if ep.scheme in ("fd", "systemd"):
        return dial.adopt(ep)
    if ep.scheme == "unix+dgram":
        return dial.connect(ep)  # autobinds, then connects
    if secured.needed(ep):
        secure.check_client(ep)  # a missing key file is not worth a connect
    sock = dial.connect(ep)
    if ep.scheme == "tls+tcp" and not tls:
        return sock
    return secured.secure_connected(sock, ep)


@contextlib.contextmanager
def server_socket(
    ep: Endpoint, *, passcred: bool = False, adopted: Socket | None = None
) -> Iterator[Socket]:
    """A listening (stream, seqpacket) or bound (datagram) Socket for ``ep``.

    Announces itself with a ``listening``/``bound`` note carrying the real
    address (the port the kernel chose for ``:0``), which is also what tests
    wait for instead of sleeping. ``passcred`` turns on SO_PASSCRED on a
    UNIX datagram socket, so every message carries its sender's pid/uid/gid
    (SCM_CREDENTIALS), even from an unnamed sender. ``adopted``: the
    socket :func:`inherited` gave, which must then be listening (or a datagram).
    """
    datagram = ep.type in (socket.SOCK_DGRAM, socket.SOCK_RAW)
    if adopted is not None or ep.scheme in ("fd", "systemd"):
        sock = adopted if adopted is not None else dial.adopt(ep)
        if not datagram and not is_listening(sock):
            fd = sock.fd
            sock.detach()
            raise InvalidOperation(f"listen on {ep}", f"fd {fd} is not a listening socket")
    elif datagram:
        sock = dial.bind(ep)
    elif secured.needed(ep):
        secure.check_server(ep)  # certificate and key files, before anyone connects
        sock = dial.listen(ep)
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
        address = bound_address(ep, sock)
        say("listening" if not datagram else "bound", address, f"fd={sock.fd}")
        # always, not only under --trace: with port 0 the chosen port is news
        line("listening", f"listening on {address}", address=address)
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
    """The endpoint as really bound: ``tcp://127.0.0.1:0`` becomes the chosen port.

    An inherited socket (``fd:``, ``systemd:``) is named by what it is bound to,
    e.g. ``unix:/run/app.sock``, so a trace says where it listens.
    """
    if ep.scheme in ("fd", "systemd"):
        return _inherited_address(sock) or ep.display()
    if ep.host is None or ep.port != 0:
        return ep.display()
    try:
        name = sock.getsockname()
    except Exception:  # noqa: BLE001  # only a nicer display is at stake
        return ep.display()
    return ep.bound(name).display()  # the scheme writes its own address back


def _inherited_address(sock: Socket) -> str | None:
    from ..sock import format_address

    try:
        name = sock.getsockname()
    except Exception:  # noqa: BLE001  # only a nicer display is at stake
        return None
    kind = _TYPE_NAMES.get(sock.type, "")
    if sock.family == socket.AF_UNIX:
        scheme = "unix" if kind == "stream" else f"unix+{kind}"
        text = format_address(sock.family, name)
        return None if text == "unnamed" else f"{scheme}:{text}"
    if sock.family in (socket.AF_INET, socket.AF_INET6) and kind in ("stream", "dgram"):
        scheme = "tcp" if kind == "stream" else "udp"
        return f"{scheme}://{format_address(sock.family, name)}"
    return None
