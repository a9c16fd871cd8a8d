"""Endpoint -> Socket: connect to it, listen on it, bind a datagram receiver, adopt an fd.

The one place that knows how each scheme becomes system calls, so the CLI,
``serve``/``connect`` and the tour agree. Options of the endpoint
(``rcvbuf``, ``sndbuf``, ``reuseaddr``, ``reuseport``, ``backlog``, ``mode``,
``timeout``) are applied here. TLS (``tls+tcp``) is wrapped by the layer
above; here it is plain TCP.

UNIX socket files: the mode is set with fchmod() *before* bind(), so the
file is created with it and nobody can connect in a window before a chmod.
An existing path is never unlinked here: see :mod:`sockwire.unix` for the
stale-socket policy.
"""

from __future__ import annotations

import os
import socket
import time

from .address import Endpoint, parse
from .errors import (
    AddressInUse,
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
    sock = Socket(family or ep.family, ep.type, ep.protocol, label=ep.display())
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
    raise last


def listen(endpoint: Endpoint | str, *, backlog: int | None = None) -> Socket:
    """A listening Socket on a stream or seqpacket endpoint."""
    ep = parse(endpoint)
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
    """A Socket bound to ``endpoint`` (a datagram receiver, or a listener before listen())."""
    ep = parse(endpoint)
    if ep.scheme in ("fd", "systemd"):
        raise InvalidOperation(f"bind {ep}", "an inherited socket is already bound")
    family, address = _addresses(ep)[0]
    sock = open_socket(ep, family)
    try:
        if ep.family in (socket.AF_INET, socket.AF_INET6) and ep.scheme != "raw":
            if ep.bool_option("reuseaddr", ep.is_stream):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if ep.bool_option("reuseport", False):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if ep.is_unix and not ep.is_abstract:
            _bind_unix_path(sock, ep)
        else:
            sock.bind(address)  # type: ignore[arg-type]
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_unix_path(sock: Socket, ep: Endpoint) -> None:
    assert ep.path is not None
    if os.path.lexists(ep.path):
        raise AddressInUse(
            f"bind {ep.display()}",
            f"{ep.path} already exists; sockwire never removes it for you here "
            "(stop the other server, or remove a stale file yourself)",
            errno_name="EADDRINUSE",
        )
    mode = ep.mode
    if mode is not None:
        # fchmod on the unbound socket sets the inode mode bind() creates the
        # file with: the mode is in force before anyone can connect.
        try:
            os.fchmod(sock.fd, mode)
        except OSError as exc:
            raise translate(exc, "fchmod", ep.display()) from exc
    sock.bind(ep.path)


def adopt(endpoint: Endpoint | str) -> Socket:
    """The inherited socket named by ``fd:N`` (systemd activation lives in unix.py)."""
    ep = parse(endpoint)
    if ep.scheme != "fd" or ep.fd is None:
        raise UnsupportedError(f"adopt {ep}", "only fd:N is handled here")
    sock = Socket.from_fd(ep.fd, label=str(ep))
    if ep.type and sock.type != ep.type:
        sock.detach()
        raise InvalidOperation(
            f"adopt {ep}", f"fd {ep.fd} is a socket of another type than ?type= says"
        )
    return sock
