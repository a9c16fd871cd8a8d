"""Endpoint -> Socket: connect to it, listen on it, bind a datagram receiver, adopt an fd.

The one place that knows how each scheme becomes system calls, so the CLI,
``serve``/``connect`` and the tour agree. Options of the endpoint
(``rcvbuf``, ``sndbuf``, ``reuseaddr``, ``reuseport``, ``backlog``, ``mode``,
``timeout``) are applied here. TLS (``tls+tcp``) is wrapped by the layer
above; here it is plain TCP.

UNIX endpoints become :class:`~sockwire.unix.UnixSocket` objects (still a
``Socket``): a path is bound with :func:`sockwire.unix.bind_path` (a stale
file is replaced, a live one or a non-socket refused; ``mode``, ``owner`` and
``group`` in force before anyone can connect; the file is removed on close
while it is still ours), an abstract name with ``bind_abstract``, and
``?allowed_uids=``/``?allowed_gids=`` make ``accept()`` close refused peers
before a byte is read. ``fd:N`` and ``systemd:[NAME]`` are adopted and checked
(see :func:`sockwire.unix.adopt`). A ``unix+dgram`` client autobinds an
abstract return address so the receiver can reply.
"""

from __future__ import annotations

import socket
import time

from . import unix
from .address import Endpoint, parse
from .errors import (
    ConnectError,
    InvalidOperation,
    SockwireError,
    TimeoutError,
    UnsupportedError,
    translate,
)
from .sock import Socket

__all__ = ["DEFAULT_BACKLOG", "adopt", "bind", "connect", "listen", "open_socket"]

DEFAULT_BACKLOG = 128


def open_socket(endpoint: Endpoint | str, family: int | None = None) -> Socket:
    """A new, unbound Socket of the endpoint's family, type and protocol, options applied."""
    ep = parse(endpoint)
    if ep.scheme in ("fd", "systemd"):
        raise InvalidOperation(
            f"open {ep}", "fd: and systemd: name inherited sockets; use adopt() instead"
        )
    cls = unix.UnixSocket if ep.is_unix else Socket
    sock = cls(family or ep.family, ep.type, ep.protocol, label=ep.display())
    try:
        _apply_buffers(sock, ep)
    except BaseException:
        sock.close()
        raise
    return sock


def _apply_buffers(sock: Socket, ep: Endpoint) -> None:
    for name, option in (("rcvbuf", socket.SO_RCVBUF), ("sndbuf", socket.SO_SNDBUF)):
        value = ep.option(name)
        if value is not None:
            sock.setsockopt(socket.SOL_SOCKET, option, int(value))


def _addresses(ep: Endpoint) -> list[tuple[int, object]]:
    """(family, sockaddr) pairs to try, resolving host names."""
    if ep.host is None:
        return [(ep.family, ep.sockaddr)]
    if ep.family == socket.AF_INET6 or all(c.isdigit() or c == "." for c in ep.host):
        return [(ep.family, ep.sockaddr)]
    try:
        return [(family, addr) for family, addr in ep.resolve()]
    except OSError as exc:
        raise translate(exc, "resolve", ep.display()) from exc


def connect(endpoint: Endpoint | str, *, timeout: float | None = None) -> Socket:
    """A Socket connected to ``endpoint`` (for datagrams: its default peer).

    Host names are resolved and each address is tried in turn; ``timeout``
    (or ``?timeout=``) bounds the whole attempt. Netlink sockets are bound
    rather than connected (the kernel is the peer).
    """
    ep = parse(endpoint)
    if ep.scheme in ("fd", "systemd"):
        raise InvalidOperation(f"connect {ep}", "an inherited socket is already set up")
    deadline_s = timeout if timeout is not None else ep.float_option("timeout", None)
    if ep.scheme == "netlink":
        sock = open_socket(ep)
        try:
            sock.bind(ep.sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock
    started = time.monotonic()
    last: SockwireError | None = None
    for family, address in _addresses(ep):
        sock = open_socket(ep, family)
        try:
            if deadline_s is not None:
                left = deadline_s - (time.monotonic() - started)
                if left <= 0:
                    raise TimeoutError(f"connect {ep.display()}", "no time left to try")
                sock.settimeout(left)
            if ep.is_unix and ep.type == socket.SOCK_DGRAM:
                # a return address, so the receiver can reply (an unnamed
                # sender cannot be answered: sendto gets EINVAL)
                unix.autobind(sock)
            sock.connect(address)  # type: ignore[arg-type]
        except SockwireError as exc:
            sock.close()
            last = exc
            if not isinstance(exc, ConnectError | TimeoutError):
                raise
        else:
            sock.settimeout(None)
            return sock
    assert last is not None
    if ep.is_unix and ep.path is not None and not ep.is_abstract:
        raise unix.explain_connect(last, ep.path)
    raise last


def listen(endpoint: Endpoint | str, *, backlog: int | None = None) -> Socket:
    """A listening Socket on a stream or seqpacket endpoint (or an inherited listener).

    ``fd:N`` and ``systemd:[NAME]`` must already listen (SO_ACCEPTCONN);
    they are adopted, not set up again.
    """
    ep = parse(endpoint)
    if ep.scheme in ("fd", "systemd"):
        return unix.adopt(ep, listening=True)
    if ep.type not in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
        raise InvalidOperation(
            f"listen on {ep}",
            "only stream and seqpacket sockets listen; a datagram receiver just binds",
        )
    sock = bind(ep)
    try:
        sock.listen(backlog if backlog is not None else ep.int_option("backlog", DEFAULT_BACKLOG))
    except BaseException:
        sock.close()
        raise
    return sock


def bind(endpoint: Endpoint | str) -> Socket:
    """A Socket bound to ``endpoint`` (a datagram receiver, or a listener before listen()).

    ``fd:N`` and ``systemd:[NAME]`` are adopted as they are (already bound).
    """
    ep = parse(endpoint)
    if ep.scheme in ("fd", "systemd"):
        return unix.adopt(ep)
    family, address = _addresses(ep)[0]
    sock = open_socket(ep, family)
    try:
        if ep.family in (socket.AF_INET, socket.AF_INET6) and ep.scheme != "raw":
            if ep.bool_option("reuseaddr", ep.is_stream):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if ep.bool_option("reuseport", False):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if isinstance(sock, unix.UnixSocket):
            _bind_unix(sock, ep)
        else:
            sock.bind(address)  # type: ignore[arg-type]
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_unix(sock: unix.UnixSocket, ep: Endpoint) -> None:
    assert ep.path is not None
    if ep.is_abstract:
        unix.bind_abstract(sock, ep.path)
    else:
        sock.socket_file = unix.bind_path(
            sock,
            ep.path,
            mode=ep.mode,
            owner=ep.option("owner"),
            group=ep.option("group"),
            unsafe_dir=ep.bool_option("unsafe_dir", False),
        )
    sock.peer_filter = unix.peer_filter_from(ep)


def adopt(endpoint: Endpoint | str) -> Socket:
    """The inherited socket named by ``fd:N`` or ``systemd:[NAME]``, checked (unix.adopt)."""
    ep = parse(endpoint)
    if ep.scheme not in ("fd", "systemd"):
        raise UnsupportedError(f"adopt {ep}", "only fd:N and systemd:[NAME] are inherited")
    return unix.adopt(ep)
