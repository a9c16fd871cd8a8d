"""Endpoint -> Socket: connect to it, listen on it, bind a datagram receiver, adopt an fd.

The one place that knows how an endpoint becomes system calls, so the CLI,
``serve``/``connect`` and the tour agree. Each entry point first checks the
endpoint for its side (:func:`sockwire.address.check_side`: ``?mode=`` on
a client or ``?bind=`` on a listener is an AddressError, never ignored),
then makes the socket and the setsockopt calls its options stand for
(``rcvbuf``, ``nodelay``, ``keepalive``, ``ttl``, ``join``, ... declared in
:mod:`sockwire.schemes`), all before bind/connect: a listener's accepted
sockets inherit them. A refused option is an error naming it
(``?bindtodevice=eth9 on udp://...``). TLS (``tls+tcp``) is wrapped by the
layer above; here it is plain TCP.

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
from typing import Any

from . import unix
from .address import CONNECT, LISTEN, OPTIONS, Endpoint, check_side, parse
from .errors import (
    ConnectError,
    InvalidOperation,
    SockwireError,
    TimeoutError,
    UnsupportedError,
    translate,
)
from .sock import Socket

__all__ = [
    "DEFAULT_BACKLOG",
    "adopt",
    "apply_options",
    "bind",
    "client_socket",
    "connect",
    "listen",
    "open_socket",
]

#: ``?backlog=``'s default, as the registry declares it (kept for callers of 0.1)
DEFAULT_BACKLOG: int = OPTIONS["backlog"].default
_INET = (socket.AF_INET, socket.AF_INET6)


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
        apply_options(sock, ep)
    except BaseException:
        sock.close()
        raise
    return sock


def apply_options(sock: Socket, endpoint: Endpoint | str) -> None:
    """Make the setsockopt calls the endpoint's socket options stand for.

    A call the kernel refuses is raised as the error ``translate`` gives,
    its ``what`` naming the option (``?ttl=0 on udp://...``).
    """
    ep = parse(endpoint)
    options = ep.spec.options
    for name, text, value in ep.items():
        build = options[name].sockopts
        if build is None:
            continue
        try:
            for level, optname, optval in build(value, sock.family):
                sock.setsockopt(level, optname, optval)
        except SockwireError as exc:
            raise _naming(exc, name, text, ep) from exc
        except OSError as exc:  # if_nametoindex for ?join=GROUP@IF
            raise _naming(translate(exc, "if_nametoindex", text), name, text, ep) from exc


def _naming(exc: SockwireError, name: str, text: str, ep: Endpoint) -> SockwireError:
    """The same error, saying which option of which endpoint it was."""
    what = f"?{name}={text} on {ep.display()}"
    try:
        named = type(exc)(what, exc.hint, errno=exc.errno)
    except TypeError:  # a class with another constructor
        named = SockwireError(what, exc.hint, errno=exc.errno)
    named.__cause__ = exc.__cause__
    return named


def _addresses(ep: Endpoint) -> list[tuple[int, Any]]:
    """(family, sockaddr) pairs to try, host names resolved."""
    try:
        return ep.addresses()
    except OSError as exc:
        error = translate(exc, "resolve", ep.display())
        family = ep.option("family")
        if family is not None and isinstance(exc, socket.gaierror):
            error = type(error)(
                error.what,
                f"{ep.host} has no IPv{family} address (?family={family}, -{family}); "
                "without it, any address of the name is tried",
                errno=error.errno,
                errno_name=error.errno_name,
            )
        raise error from exc


def client_socket(endpoint: Endpoint | str, family: int | None = None) -> Socket:
    """A Socket ready to connect to ``endpoint``: options set, source bound; not connected.

    ``family``: of the address to be tried (from :meth:`Endpoint.addresses`).
    A UNIX datagram client is autobound (an unnamed sender cannot be
    answered: the receiver's sendto gets EINVAL); an inet client is bound
    to ``?bind=ADDR``/``?sourceport=N`` when given. For a caller that
    connects without blocking (the CLI's relay); :func:`connect` uses it too.
    """
    ep = check_side(endpoint, CONNECT)
    sock = open_socket(ep, family)
    try:
        if ep.is_unix and ep.type == socket.SOCK_DGRAM:
            unix.autobind(sock)
        elif sock.family in _INET:
            _bind_source(sock, ep)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_source(sock: Socket, ep: Endpoint) -> None:
    """``?bind=ADDR`` / ``?sourceport=N``: where a client connects from."""
    source: str | None = ep.get("bind")
    port: int | None = ep.get("sourceport")
    if source is None and port is None:
        return
    wildcard = "::" if sock.family == socket.AF_INET6 else "0.0.0.0"
    name = "bind" if source is not None else "sourceport"
    try:
        sock.bind((source or wildcard, port or 0))
    except SockwireError as exc:
        raise _naming(exc, name, str(ep.option(name)), ep) from exc


def connect(endpoint: Endpoint | str, *, timeout: float | None = None) -> Socket:
    """A Socket connected to ``endpoint`` (for datagrams: its default peer).

    Host names are resolved and each address is tried in turn; ``timeout``
    (or ``?timeout=``) bounds the whole attempt. Netlink sockets are bound
    rather than connected (the kernel is the peer).
    """
    ep = check_side(endpoint, CONNECT)
    if ep.scheme in ("fd", "systemd"):
        raise InvalidOperation(f"connect {ep}", "an inherited socket is already set up")
    deadline_s = timeout if timeout is not None else ep.get("timeout")
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
        left = None if deadline_s is None else deadline_s - (time.monotonic() - started)
        if left is not None and left <= 0:
            last = TimeoutError(f"connect {ep.display()}", "no time left to try")
            break
        sock = client_socket(ep, family)
        try:
            if left is not None:
                sock.settimeout(left)
            sock.connect(address)
        except SockwireError as exc:
            sock.close()
            last = exc
            if not isinstance(exc, ConnectError | TimeoutError):
                raise
        except BaseException:
            sock.close()
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
    ep = check_side(endpoint, LISTEN)
    if ep.scheme in ("fd", "systemd"):
        return _adopted(ep, listening=True)
    if ep.type not in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
        raise InvalidOperation(
            f"listen on {ep}",
            "only stream and seqpacket sockets listen; a datagram receiver just binds",
        )
    sock = bind(ep)
    try:
        sock.listen(backlog if backlog is not None else int(ep.get("backlog")))
    except BaseException:
        sock.close()
        raise
    return sock


def bind(endpoint: Endpoint | str) -> Socket:
    """A Socket bound to ``endpoint`` (a datagram receiver, or a listener before listen()).

    ``fd:N`` and ``systemd:[NAME]`` are adopted as they are (already bound).
    """
    ep = check_side(endpoint, LISTEN)
    if ep.scheme in ("fd", "systemd"):
        return _adopted(ep)
    family, address = _addresses(ep)[0]
    sock = open_socket(ep, family)
    try:
        if family in _INET and ep.is_stream and ep.get("reuseaddr") is None:
            # a restarted server must not wait out its old connections'
            # TIME_WAIT; ?reuseaddr=0 opts out
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if isinstance(sock, unix.UnixSocket):
            _bind_unix(sock, ep)
        else:
            sock.bind(address)
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
            mode=ep.get("mode"),
            owner=ep.get("owner"),
            group=ep.get("group"),
            unsafe_dir=bool(ep.get("unsafe_dir")),
        )
    sock.peer_filter = unix.peer_filter_from(ep)


def _adopted(ep: Endpoint, listening: bool | None = None) -> Socket:
    sock = unix.adopt(ep, listening=listening)
    try:
        apply_options(sock, ep)
    except BaseException:
        sock.detach()  # as unix.adopt does: a failed check leaves the fd open
        raise
    return sock


def adopt(endpoint: Endpoint | str) -> Socket:
    """The inherited socket named by ``fd:N`` or ``systemd:[NAME]``, checked (unix.adopt)."""
    ep = parse(endpoint)
    if ep.scheme not in ("fd", "systemd"):
        raise UnsupportedError(f"adopt {ep}", "only fd:N and systemd:[NAME] are inherited")
    return _adopted(ep)
