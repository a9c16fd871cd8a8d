"""``Socket``: one class for every family x type, named after the system calls.

A thin typed layer over ``socket.socket`` that keeps the names of the notes
(``bind``, ``listen``, ``accept``, ``connect``, ``read``/``write``,
``send``/``recv``, ``sendto``/``recvfrom``, ``sendmsg``/``recvmsg``,
``shutdown``, ``close``) and adds three things the stdlib leaves to you:

* every ``OSError`` becomes a :mod:`sockwire.errors` error with a hint, in
  :meth:`Socket._fail`, the one place this layer translates;
* every call is reported to :mod:`sockwire.trace` hooks (strace-like lines);
* truncation is never silent: on datagram and seqpacket sockets ``recv``,
  ``recvfrom`` and ``recv_into`` raise :class:`TruncatedError` carrying the
  head and the full size, and ``recvmsg`` reports ``MSG_TRUNC``/``MSG_CTRUNC``
  on the returned :class:`Message`; ``read`` does the same on message sockets,
  where read(2) would cut a message silently;
* a passed fd is never leaked: ``recvmsg`` closes every fd beyond ``maxfds``
  that the control buffer happened to have room for.

``send``/``sendto``/``sendmsg`` always add ``MSG_NOSIGNAL``, so a dead peer is
an error (``ConnectionLost``), never a SIGPIPE that kills the process.

Platform notes, written where the decisions are made:

* Never pass MSG_TRUNC to Python's ``recv()``/``recvmsg()``: they size the
  returned bytes by the syscall's result, which with MSG_TRUNC is the *full*
  length, so the tail is uninitialised memory. We pass it to
  ``recvmsg_into`` on a fixed buffer instead, which only reports the length.
* EINTR is retried by Python itself (PEP 475); it never reaches us.
* AF_UNIX SOCK_RAW silently becomes SOCK_DGRAM; ``type`` reads SO_TYPE so it
  shows what the kernel made, not what was asked.
"""

from __future__ import annotations

import array
import contextlib
import errno as _errno
import fcntl
import os
import select
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeAlias

from . import escape as _escape
from . import trace
from .errors import (
    ClosedError,
    InvalidOperation,
    TruncatedError,
    errno_name,
    translate,
)
from .flags import (
    FAMILY_NAMES,
    MsgFlag,
    family_name,
    level_name,
    option_name,
    protocol_name,
    shutdown_name,
    type_name,
)
from .trace import Event, preview
from .trace import installed as _hooks

__all__ = [
    "SCM_MAX_FD",
    "Address",
    "Creds",
    "FamilyInfo",
    "Message",
    "Peer",
    "Socket",
    "families",
    "format_address",
    "parse_ucred",
    "socketpair",
]

Address: TypeAlias = str | bytes | tuple[Any, ...]

#: The kernel's limit of descriptors in one SCM_RIGHTS message.
SCM_MAX_FD = 253
SIOCATMARK = 0x8905
#: struct ucred {pid_t pid; uid_t uid; gid_t gid}: a signed pid, unsigned ids, native
#: byte order (SO_PEERCRED and SCM_CREDENTIALS both carry it); read by parse_ucred only
UCRED = struct.Struct("=iII")
#: the "no such id" the kernel reports ((uid_t)-1, e.g. SO_PEERCRED of an unconnected socket)
NO_ID = 0xFFFFFFFF
_MESSAGE_TYPES = frozenset({socket.SOCK_DGRAM, socket.SOCK_SEQPACKET, socket.SOCK_RAW})


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FdLike: TypeAlias = int | _HasFileno


@dataclass(frozen=True, slots=True)
class Creds:
    """Process credentials of a peer: SO_PEERCRED or SCM_CREDENTIALS."""

    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"pid={self.pid} uid={self.uid} gid={self.gid}"


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end: its address and, on UNIX sockets, its credentials.

    ``address`` is None for an unnamed UNIX peer (a socket that never bound a
    name): that is normal, not an error.
    """

    address: Address | None
    family: int
    creds: Creds | None = None

    @property
    def pid(self) -> int | None:
        return self.creds.pid if self.creds else None

    @property
    def uid(self) -> int | None:
        return self.creds.uid if self.creds else None

    @property
    def gid(self) -> int | None:
        return self.creds.gid if self.creds else None

    @property
    def unnamed(self) -> bool:
        return self.address is None

    def __str__(self) -> str:
        text = format_address(self.family, self.address)
        return f"{text} ({self.creds})" if self.creds else text


@dataclass(slots=True)
class Message:
    """What ``recvmsg`` returns: data, passed fds, credentials, flags, sender.

    ``size`` is the full length of the message as the kernel reported it;
    when ``truncated`` it is larger than ``len(data)`` and the rest is gone.
    ``ctruncated`` means ancillary data (fds, credentials) was cut short.
    """

    data: bytes
    fds: list[int] = field(default_factory=list)
    creds: Creds | None = None
    flags: MsgFlag = MsgFlag.NONE
    address: Address | None = None
    size: int = 0
    #: control messages other than fds and credentials: (level, type, data)
    ancillary: list[tuple[int, int, bytes]] = field(default_factory=list)
    #: passed fds that arrived beyond ``maxfds`` and were closed unread
    discarded: int = 0

    @property
    def truncated(self) -> bool:
        return bool(self.flags & MsgFlag.TRUNC)

    @property
    def ctruncated(self) -> bool:
        return bool(self.flags & MsgFlag.CTRUNC)


def format_address(family: int, address: Address | None, *, exact: bool = False) -> str:
    """Addresses as people write them: ``/run/x.sock``, ``@name``, ``[::1]:80``.

    A UNIX name is whatever its owner chose, newlines and terminal escapes
    included: it comes back escaped (:func:`sockwire.escape.printable`), safe
    to print or log. ``exact``: the name itself, for JSON (invalid UTF-8 as
    lone surrogates, see :func:`sockwire.escape.exact`).
    """
    if address is None or address in ("", b""):
        return "unnamed"
    if family == socket.AF_UNIX and isinstance(address, bytes | str):
        show = _escape.exact if exact else _escape.printable
        if isinstance(address, bytes):
            if address.startswith(b"\0"):
                return "@" + show(address[1:])
            return show(address)
        if address.startswith("\0"):
            return "@" + show(address[1:])
        return show(address)
    if isinstance(address, tuple):
        if family == socket.AF_INET6 and len(address) >= 2:
            return f"[{address[0]}]:{address[1]}"
        if family == socket.AF_INET and len(address) == 2:
            return f"{address[0]}:{address[1]}"
        if family == socket.AF_NETLINK and len(address) == 2:
            return f"netlink pid={address[0]} groups={address[1]}"
    from .address import format_sockaddr  # a registered scheme may know the family

    return format_sockaddr(family, address) or str(address)


def _quote_address(family: int, address: Address | None) -> str:
    if family == socket.AF_UNIX and address in ("", b""):
        return "{sa_family=AF_UNIX} (autobind)"  # as strace shows an empty sun_path
    text = format_address(family, address)
    return f'"{text}"' if family == socket.AF_UNIX else text


def _fd_of(item: FdLike) -> int:
    return item if isinstance(item, int) else item.fileno()


class Socket:
    """A socket of any family and type, with system-call names and typed errors."""

    __slots__ = ("_family", "_fd", "_nosignal", "_sock", "_type", "label")

    def __init__(
        self,
        family: int = socket.AF_UNIX,
        type: int = socket.SOCK_STREAM,  # the syscall's own name
        proto: int = 0,
        *,
        label: str | None = None,
    ) -> None:
        self.label = label
        try:
            sock = socket.socket(family, type, proto)
        except OSError as exc:
            if _hooks:
                args = (family_name(family), type_name(type), protocol_name(proto, family))
                trace.emit(Event("socket", args, "-1", _ename(exc)))
            raise translate(
                exc, "socket", f"{family_name(family)} {type_name(type)}", family=family
            ) from exc
        self._attach(sock)
        if _hooks:
            args = (family_name(family), type_name(type), protocol_name(proto, family))
            trace.emit(Event("socket", args, str(self._fd), fd=self._fd))

    def _attach(self, sock: socket.socket) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._family = int(sock.family)
        # ssl.SSLSocket refuses any flag (and Python ignores SIGPIPE anyway)
        self._nosignal = 0 if type(sock).__name__ == "SSLSocket" else socket.MSG_NOSIGNAL
        try:
            self._type = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        except OSError:  # not every family answers SO_TYPE; fall back to what was asked
            self._type = int(sock.type)

    @classmethod
    def adopt(cls, sock: socket.socket, *, label: str | None = None) -> Socket:
        """Wrap an existing ``socket.socket`` (it now belongs to the Socket)."""
        self = cls.__new__(cls)
        self.label = label
        self._attach(sock)
        return self

    @classmethod
    def from_fd(cls, fd: int, *, label: str | None = None) -> Socket:
        """Take over descriptor ``fd`` (e.g. inherited); family and type come from the kernel."""
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise translate(exc, "adopt", label or f"fd {fd}") from exc
        return cls.adopt(sock, label=label)

    # ---- what it is

    @property
    def fd(self) -> int:
        """The descriptor number (-1 once closed)."""
        return self._fd

    def fileno(self) -> int:
        return self._fd

    @property
    def family(self) -> int:
        return self._family

    @property
    def type(self) -> int:
        """SO_TYPE as the kernel reports it (AF_UNIX SOCK_RAW reads SOCK_DGRAM)."""
        return self._type

    @property
    def protocol(self) -> int:
        """SO_PROTOCOL: the protocol the kernel chose, even when 0 was asked for."""
        return int(self.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL))

    @property
    def closed(self) -> bool:
        return self._fd < 0

    @property
    def raw(self) -> socket.socket:
        """The underlying ``socket.socket``: the hot-path escape hatch.

        Calls on it bypass tracing and error translation; the Channel uses it
        for its inner loop and translates errors at its own boundary.
        """
        self._check_open("raw")
        return self._sock

    def __repr__(self) -> str:
        if self.closed:
            return "<Socket closed>"
        return f"<Socket fd={self._fd} {family_name(self._family)} {type_name(self._type)}>"

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- naming and connecting

    def bind(self, address: Address) -> None:
        """bind(2): give the socket a name (a path, ``b"\\0abstract"``, (host, port))."""
        self._check_open("bind")
        try:
            self._sock.bind(address)
        except OSError as exc:
            self._fail("bind", (_quote_address(self._family, address),), exc, address)
        if _hooks:
            self._emit("bind", (_quote_address(self._family, address),), "0")

    def listen(self, backlog: int = 128) -> None:
        """listen(2): accept connections; ``backlog`` bounds the queue of finished handshakes."""
        self._check_open("listen")
        try:
            self._sock.listen(backlog)
        except OSError as exc:
            self._fail("listen", (str(backlog),), exc)
        if _hooks:
            self._emit("listen", (str(backlog),), "0")

    def accept(self) -> tuple[Socket, Peer]:
        """accept(2): a *new* socket for this one connection, and who the peer is."""
        self._check_open("accept")
        try:
            conn, address = self._sock.accept()
        except OSError as exc:
            self._fail("accept", (), exc)
        new = Socket.adopt(conn, label=self.label)
        peer = Peer(address if address not in ("", b"") else None, self._family, new.peercred())
        if _hooks:
            extra: dict[str, Any] = {"peer": format_address(self._family, peer.address)}
            if peer.creds:
                extra.update(pid=peer.creds.pid, uid=peer.creds.uid, gid=peer.creds.gid)
            self._emit("accept", (), str(new.fd), **extra)
        return new, peer

    def connect(self, address: Address) -> None:
        """connect(2): to a listener (streams) or to fix the default peer (datagrams)."""
        self._check_open("connect")
        started = time.monotonic() if _hooks else 0.0  # when the peer may see it
        try:
            self._sock.connect(address)
        except OSError as exc:
            self._fail("connect", (_quote_address(self._family, address),), exc, address)
        if _hooks:
            self._emit("connect", (_quote_address(self._family, address),), "0", at=started)

    def shutdown(self, how: int = socket.SHUT_WR) -> None:
        """shutdown(2): end one direction; the peer reads EOF after SHUT_WR."""
        self._check_open("shutdown")
        started = time.monotonic() if _hooks else 0.0  # when the peer may see it
        try:
            self._sock.shutdown(how)
        except OSError as exc:
            self._fail("shutdown", (shutdown_name(how),), exc)
        if _hooks:
            self._emit("shutdown", (shutdown_name(how),), "0", at=started)

    def close(self) -> None:
        """close(2). Idempotent: closing twice is harmless."""
        if self._fd < 0:
            return
        fd = self._fd
        self._fd = -1
        started = time.monotonic() if _hooks else 0.0  # when the peer may see it
        self._sock.close()
        if _hooks:
            trace.emit(Event("close", (str(fd),), "0", fd=fd, time=started or time.monotonic()))

    def detach(self) -> int:
        """Give up the descriptor without closing it; the Socket is closed afterwards."""
        self._check_open("detach")
        self._fd = -1
        return self._sock.detach()

    # ---- names

    def getsockname(self) -> Address:
        self._check_open("getsockname")
        try:
            return self._sock.getsockname()  # type: ignore[no-any-return]
        except OSError as exc:
            self._fail("getsockname", (), exc)

    def getpeername(self) -> Address:
        self._check_open("getpeername")
        try:
            return self._sock.getpeername()  # type: ignore[no-any-return]
        except OSError as exc:
            self._fail("getpeername", (), exc)

    def peercred(self) -> Creds | None:
        """SO_PEERCRED of a connected UNIX socket, else None.

        Stream and seqpacket sockets get it at connect() (both ends); a
        socketpair() of any type gets it at creation. A datagram socket that
        connect()ed reads pid 0 / uid -1 here: None, per-message credentials
        (SCM_CREDENTIALS) are its source instead.
        """
        if self._family != socket.AF_UNIX:
            return None
        try:
            raw = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size)
        except OSError:
            return None  # not connected (yet): no credentials to report
        creds = parse_ucred(raw)
        return None if creds.pid == 0 and creds.uid == NO_ID else creds

    def peer(self) -> Peer:
        """Who is on the other end of this connected socket (either side of it).

        The address is None for an unnamed peer (a client that never bound,
        or a socketpair end); on UNIX sockets ``creds`` is SO_PEERCRED.
        """
        address = self.getpeername()
        return Peer(_none_if_unnamed(address), self._family, self.peercred())

    # ---- options

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._check_open("setsockopt")
        args = (level_name(level), option_name(level, option), str(value))
        try:
            self._sock.setsockopt(level, option, value)
        except OSError as exc:
            self._fail("setsockopt", args, exc)
        if _hooks:
            self._emit("setsockopt", args, "0")

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        self._check_open("getsockopt")
        args = (level_name(level), option_name(level, option))
        try:
            value: int | bytes = (
                self._sock.getsockopt(level, option, buflen)
                if buflen
                else self._sock.getsockopt(level, option)
            )
        except OSError as exc:
            self._fail("getsockopt", args, exc)
        if _hooks:
            self._emit("getsockopt", args, str(value))
        return value

    def setblocking(self, flag: bool) -> None:
        self._check_open("setblocking")
        self._sock.setblocking(flag)

    def settimeout(self, seconds: float | None) -> None:
        """A deadline for each blocking call (None: block forever; 0: non-blocking)."""
        self._check_open("settimeout")
        self._sock.settimeout(seconds)

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()

    def at_mark(self) -> bool:
        """SIOCATMARK: is the next byte to read the urgent (OOB) one?"""
        self._check_open("ioctl")
        try:
            raw = fcntl.ioctl(self._fd, SIOCATMARK, b"\0\0\0\0")
        except OSError as exc:
            self._fail("ioctl", ("SIOCATMARK",), exc)
        (value,) = struct.unpack("i", raw)
        if _hooks:
            self._emit("ioctl", ("SIOCATMARK",), str(value))
        return bool(value)

    # ---- plain descriptor I/O

    def read(self, size: int) -> bytes:
        """read(2) on the descriptor: a socket is a file descriptor like any other.

        On datagram and seqpacket sockets read(2) discards the rest of a longer
        message without a word; here that is a :class:`TruncatedError`, as
        for ``recv`` (the same call underneath: read(2) is recv(2) without flags).
        """
        self._check_open("read")
        if self._type in _MESSAGE_TYPES:
            buf = bytearray(size)
            count, _, mflags, _ = self._recvmsg_into("read", buf, 0, 0, (str(size),))
            data = bytes(buf[: min(count, size)])
            self._check_trunc("read", data, count, size, mflags, (str(size),))
            return data
        try:
            data = os.read(self._fd, size)
        except OSError as exc:
            self._fail("read", (str(size),), exc)
        if _hooks:
            self._emit("read", (str(size),), str(len(data)), data=data)
        return data

    def write(self, data: bytes) -> int:
        """write(2). Unlike send(), a dead peer raises SIGPIPE (Python ignores it: EPIPE)."""
        self._check_open("write")
        started = time.monotonic() if _hooks else 0.0  # when the peer may see it
        try:
            count = os.write(self._fd, data)
        except OSError as exc:
            self._fail("write", (preview(data), str(len(data))), exc)
        if _hooks:
            self._emit(
                "write", (preview(data), str(len(data))), str(count), data=data[:count], at=started
            )
        return count

    # ---- send family

    def send(self, data: bytes, flags: int = 0) -> int:
        """send(2) with MSG_NOSIGNAL added. May send less than ``data`` on streams."""
        self._check_open("send")
        flags = int(flags) | self._nosignal
        started = time.monotonic() if _hooks else 0.0  # when the peer may see it
        try:
            count = self._sock.send(data, flags)
        except OSError as exc:
            self._fail("send", (preview(data), str(len(data)), str(MsgFlag(flags))), exc)
        if _hooks:
            args = (preview(data), str(len(data)), str(MsgFlag(flags)))
            self._emit("send", args, str(count), data=bytes(data[:count]), at=started)
        return count

    def sendall(self, data: bytes, flags: int = 0) -> None:
        """send(2) until everything is sent (streams); one event per call made."""
        view = memoryview(data)
        while view:
            sent = self.send(view, flags)  # type: ignore[arg-type]
            view = view[sent:]

    def sendto(self, data: bytes, address: Address, flags: int = 0) -> int:
        """sendto(2): a datagram to ``address`` (no connection needed)."""
        self._check_open("sendto")
        flags = int(flags) | socket.MSG_NOSIGNAL
        args = (
            preview(data),
            str(len(data)),
            str(MsgFlag(flags)),
            _quote_address(self._family, address),
        )
        started = time.monotonic() if _hooks else 0.0  # when the peer may see it
        try:
            count = self._sock.sendto(data, flags, address)
        except OSError as exc:
            self._fail("sendto", args, exc, address)
        if _hooks:
            self._emit("sendto", args, str(count), data=bytes(data[:count]), at=started)
        return count

    def sendmsg(
        self,
        buffers: Sequence[bytes | bytearray | memoryview] | bytes,
        *,
        fds: Iterable[FdLike] = (),
        creds: Creds | None = None,
        flags: int = 0,
        address: Address | None = None,
        ancdata: Iterable[tuple[int, int, bytes]] = (),
    ) -> int:
        """sendmsg(2): scatter-gather data plus ancillary data (fds, credentials).

        ``fds`` accepts ints and objects with ``fileno()``; at most
        :data:`SCM_MAX_FD` per message (the kernel answers more with EINVAL).
        """
        self._check_open("sendmsg")
        bufs = [buffers] if isinstance(buffers, bytes | bytearray | memoryview) else list(buffers)
        anc = list(ancdata)
        fd_list = [_fd_of(item) for item in fds]
        if fd_list:
            anc.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fd_list).tobytes()))
        if creds is not None:
            anc.append(
                (
                    socket.SOL_SOCKET,
                    socket.SCM_CREDENTIALS,
                    UCRED.pack(creds.pid, creds.uid & NO_ID, creds.gid & NO_ID),
                )
            )
        flags = int(flags) | socket.MSG_NOSIGNAL
        total = sum(len(b) for b in bufs)

        def args() -> tuple[str, ...]:
            parts = ["[" + ", ".join(preview(bytes(b)) for b in bufs) + "]", str(total)]
            if fd_list:
                parts.append("fds=" + _fd_text(fd_list))
            if creds is not None:
                parts.append(f"creds={{{creds}}}")
            parts.append(str(MsgFlag(flags)))
            if address is not None:
                parts.append(_quote_address(self._family, address))
            return tuple(parts)

        started = time.monotonic() if _hooks else 0.0  # when the peer may see it
        try:
            if address is None:
                count = self._sock.sendmsg(bufs, anc, flags)
            else:
                count = self._sock.sendmsg(bufs, anc, flags, address)
        except OSError as exc:
            if exc.errno == _errno.EINVAL and len(fd_list) > SCM_MAX_FD:
                err = InvalidOperation(
                    f"sendmsg with {len(fd_list)} fds",
                    f"at most {SCM_MAX_FD} fds fit in one message (SCM_MAX_FD); "
                    "send them in several messages",
                    errno=exc.errno,
                )
                if _hooks:
                    self._emit("sendmsg", args(), "-1", errno="EINVAL")
                raise err from exc
            self._fail("sendmsg", args(), exc, address)
        if _hooks:
            joined = b"".join(bytes(b) for b in bufs)[:count]
            self._emit("sendmsg", args(), str(count), data=joined, at=started)
        return count

    # ---- recv family

    def recv(self, size: int, flags: int = 0) -> bytes:
        """recv(2). ``b""`` means EOF on a stream (and an empty message on seqpacket/dgram).

        On message sockets a message longer than ``size`` raises
        :class:`TruncatedError` (with the head and the full size): never silent.
        """
        self._check_open("recv")
        flags = int(flags)
        if flags & socket.MSG_TRUNC:
            raise InvalidOperation(
                "recv with MSG_TRUNC",
                "Python's recv() returns uninitialised bytes with MSG_TRUNC; use "
                "recv_into() or recvmsg(), which report the full length",
            )
        if self._type in _MESSAGE_TYPES:
            buf = bytearray(size)
            count, _, mflags, _ = self._recvmsg_into("recv", buf, 0, flags, (str(size),))
            data = bytes(buf[: min(count, size)])
            self._check_trunc("recv", data, count, size, mflags, (str(size),))
            return data
        try:
            data = self._sock.recv(size, flags)
        except OSError as exc:
            self._fail("recv", (str(size), str(MsgFlag(flags))), exc)
        if _hooks:
            self._emit("recv", (str(size), str(MsgFlag(flags))), str(len(data)), data=data)
        return data

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0) -> int:
        """recv(2) into ``buffer``. With MSG_TRUNC (asked for) returns the *full* length."""
        self._check_open("recv_into")
        flags = int(flags)
        size = nbytes or len(buffer)
        if self._type in _MESSAGE_TYPES and not flags & socket.MSG_TRUNC:
            view = memoryview(buffer)[:size]
            count, _, mflags, _ = self._recvmsg_into("recv_into", view, 0, flags, (str(size),))
            self._check_trunc(
                "recv_into", bytes(view[: min(count, size)]), count, size, mflags, (str(size),)
            )
            return count
        try:
            count = self._sock.recv_into(buffer, size, flags)
        except OSError as exc:
            self._fail("recv_into", (str(size), str(MsgFlag(flags))), exc)
        if _hooks:
            data = bytes(memoryview(buffer)[: min(count, size)])
            self._emit("recv_into", (str(size), str(MsgFlag(flags))), str(count), data=data)
        return count

    def recvfrom(self, size: int, flags: int = 0) -> tuple[bytes, Address | None]:
        """recvfrom(2): data and the sender's address (None when the sender is unnamed)."""
        self._check_open("recvfrom")
        flags = int(flags)
        if flags & socket.MSG_TRUNC:
            raise InvalidOperation(
                "recvfrom with MSG_TRUNC", "use recvmsg(), which reports the full length"
            )
        buf = bytearray(size)
        if self._type in _MESSAGE_TYPES:
            count, _, mflags, address = self._recvmsg_into("recvfrom", buf, 0, flags, (str(size),))
            data = bytes(buf[: min(count, size)])
            self._check_trunc("recvfrom", data, count, size, mflags, (str(size),))
            return data, _none_if_unnamed(address)
        try:
            count, address = self._sock.recvfrom_into(buf, size, flags)
        except OSError as exc:
            self._fail("recvfrom", (str(size), str(MsgFlag(flags))), exc)
        data = bytes(buf[:count])
        if _hooks:
            self._emit(
                "recvfrom",
                (str(size), str(MsgFlag(flags))),
                f"{count} from {format_address(self._family, address)}",
                data=data,
            )
        return data, _none_if_unnamed(address)

    def recvmsg(
        self,
        bufsize: int = 65536,
        *,
        maxfds: int = 0,
        creds: bool = False,
        flags: int = 0,
        ancillary: int = 0,
        buffer: bytearray | None = None,
    ) -> Message:
        """recvmsg(2): data, up to ``maxfds`` passed fds, sender credentials, flags.

        Truncation is reported on the Message (``truncated``/``ctruncated``),
        with ``size`` the full length; up to ``maxfds`` fds that arrive belong
        to the caller, any beyond them (even with ``maxfds=0``) are closed
        here, counted in ``Message.discarded`` and flagged ``MSG_CTRUNC``.
        ``ancillary``: room in bytes for other control messages (e.g. the TTL
        or hop limit of IP_RECVTTL/IPV6_RECVHOPLIMIT), returned in
        ``Message.ancillary``. ``buffer``: a reusable bytearray of at least
        ``bufsize`` bytes to receive into, instead of a new one per call (a
        relay's hot loop); ``Message.data`` is still a copy of what arrived.
        """
        self._check_open("recvmsg")
        flags = int(flags)
        ancbufsize = max(0, int(ancillary))
        if maxfds:
            ancbufsize += socket.CMSG_SPACE(maxfds * 4)
        if creds:
            ancbufsize += socket.CMSG_SPACE(UCRED.size)
        # MSG_CMSG_CLOEXEC: received fds are close-on-exec, like every fd
        # Python opens (PEP 446); without it they leak into exec'd children.
        kernel_flags = flags | socket.MSG_CMSG_CLOEXEC if maxfds else flags
        if buffer is not None and len(buffer) >= bufsize:
            buf: bytearray | memoryview = memoryview(buffer)[:bufsize]
        else:
            buf = bytearray(bufsize)
        count, ancdata, mflags, address = self._recvmsg_into(
            "recvmsg", buf, ancbufsize, kernel_flags, (str(bufsize),), emit=False
        )
        message = Message(
            data=bytes(buf[: min(count, bufsize)]),
            flags=MsgFlag(mflags & ~socket.MSG_CMSG_CLOEXEC),  # our request, echoed back
            address=_none_if_unnamed(address),
            size=count,
        )
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                message.fds.extend(array.array("i", payload[:usable]))
            elif level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                message.creds = parse_ucred(payload)
            else:
                message.ancillary.append((level, kind, payload))
        if len(message.fds) > maxfds:
            # Any room in the control buffer takes passed fds: the room left
            # for credentials when SO_PASSCRED is off (4 fds), ``ancillary``,
            # the 8-byte alignment slack of CMSG_SPACE. The kernel installs
            # what fits; fds nobody asked for are closed here, never leaked,
            # and reported as the kernel reports the ones that did not fit.
            unasked = message.fds[maxfds:]
            del message.fds[maxfds:]
            message.discarded = close_fds(unasked)
            message.flags |= MsgFlag.CTRUNC
        if _hooks:
            result = str(count)
            extra: dict[str, Any] = {"flags": str(message.flags)}
            if message.flags & (MsgFlag.TRUNC | MsgFlag.CTRUNC):
                result += f" flags={message.flags}"
            if message.fds:
                result += " fds=" + _fd_text(message.fds)
            if message.creds:
                result += f" creds={{{message.creds}}}"
                extra.update(pid=message.creds.pid, uid=message.creds.uid)
            if address not in (None, "", b""):
                result += f" from {format_address(self._family, address)}"
            extra["peer"] = format_address(self._family, message.address)
            self._emit(
                "recvmsg",
                (str(bufsize), str(MsgFlag(flags))),
                result,
                data=message.data,
                **extra,
            )
        return message

    def _recvmsg_into(
        self,
        call: str,
        buf: bytearray | memoryview,
        ancbufsize: int,
        flags: int,
        args: tuple[str, ...],
        *,
        emit: bool = True,
    ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        # MSG_TRUNC makes the kernel return the full length of a datagram or
        # seqpacket message; on a stream socket it would discard data, so it
        # is added only for message types.
        kernel_flags = flags | socket.MSG_TRUNC if self._type in _MESSAGE_TYPES else flags
        try:
            count, ancdata, mflags, address = self._sock.recvmsg_into(
                [buf], ancbufsize, kernel_flags
            )
        except OSError as exc:
            self._fail(call, (*args, str(MsgFlag(flags))), exc)
        if emit and _hooks:
            shown = bytes(memoryview(buf)[: min(count, len(buf))])
            result = str(count)
            if mflags & socket.MSG_TRUNC:
                result += f" flags={MsgFlag(mflags)}"
            if address not in (None, "", b""):
                result += f" from {format_address(self._family, address)}"
            self._emit(call, (*args, str(MsgFlag(flags))), result, data=shown)
        return count, ancdata, mflags, address

    def _check_trunc(
        self,
        call: str,
        head: bytes,
        count: int,
        size: int,
        mflags: int,
        args: tuple[str, ...],
    ) -> None:
        if mflags & socket.MSG_TRUNC or count > size:
            raise TruncatedError(
                f"{call} on fd {self._fd}",
                f"the message was {count} bytes but the buffer held {size}; the rest is "
                "discarded (read with a larger buffer, or size it first with "
                "recv_into(buf, flags=MSG_PEEK|MSG_TRUNC))",
                data=head,
                size=count,
                errno_name="MSG_TRUNC",
            )

    # ---- limits and liveness

    def packet_limit(self) -> int | None:
        """The largest message one send() of this socket carries whole; None on a stream.

        UDP: 65,507 bytes over IPv4, 65,527 over IPv6 (64 KiB minus the IP
        and UDP headers; IPv6 jumbograms aside). AF_UNIX seqpacket and
        datagram: SO_SNDBUF minus 32 bytes (measured on Linux: the kernel
        charges its skb overhead to the send buffer), so the limit follows a
        ``?sndbuf=`` the endpoint set. Other families: None (not known).
        """
        sock_type = self.type
        if sock_type not in (socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
            return None
        family = self.family
        if family == socket.AF_UNIX:
            return int(self.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)) - 32
        from .address import static_packet_limit  # the one table of protocol limits

        return static_packet_limit(family, sock_type)

    def tell_empty_from_eof(self) -> bool:
        """On a UNIX seqpacket socket: make an empty message distinguishable from EOF.

        A seqpacket recv of 0 bytes is EOF *or* an empty message. With
        SO_PASSCRED on, every packet that arrives, an empty one included,
        carries SCM_CREDENTIALS, and EOF carries none (measured on Linux 6.x;
        poll's POLLRDHUP only says the peer closed, not whether an empty
        message is still queued). After this, ``recvmsg(creds=True)``
        returning size 0 with ``creds`` None is the end. True when it
        applies (a UNIX seqpacket socket), False otherwise.
        """
        if self.family != socket.AF_UNIX or self.type != socket.SOCK_SEQPACKET:
            return False
        self.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        return True

    # ---- waiting

    def wait_readable(self, timeout: float | None) -> bool:
        """poll(2) for input (or EOF/error); False when ``timeout`` passed first."""
        return self._poll(select.POLLIN | select.POLLPRI, timeout)

    def wait_writable(self, timeout: float | None) -> bool:
        """poll(2) for room to send; False when ``timeout`` passed first."""
        return self._poll(select.POLLOUT, timeout)

    def _poll(self, events: int, timeout: float | None) -> bool:
        self._check_open("poll")
        poller = select.poll()
        poller.register(self._fd, events)
        return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))

    # ---- the one translation point

    def _check_open(self, call: str) -> None:
        if self._fd < 0:
            raise ClosedError(
                f"{call} on a closed socket", "this Socket was closed earlier; a caller bug"
            )

    def _emit(
        self,
        call: str,
        args: tuple[str, ...],
        result: str,
        *,
        errno: str | None = None,
        data: bytes | None = None,
        at: float | None = None,
        **extra: Any,
    ) -> None:
        """Report one call. ``at`` is when it started, for calls whose effect on the
        peer begins then (send, connect, close): listed by start, a send comes
        before the recv it completes, even when the receiver finishes first."""
        event = Event(
            call, (str(self._fd), *args), result, errno, self._fd, data=data, extra=extra
        )
        if at:  # 0.0: no hook was installed when the call started
            event.time = at
        trace.emit(event)

    def _fail(
        self,
        call: str,
        args: tuple[str, ...],
        exc: OSError,
        address: Address | None = None,
    ) -> NoReturn:
        """Record the failed call, then raise it translated (original as __cause__)."""
        if _hooks:
            self._emit(call, args, "-1", errno=_ename(exc))
        target: object = self.label
        path: str | bytes | None = None
        if address is not None:
            target = format_address(self._family, address)
            if self._family == socket.AF_UNIX and isinstance(address, str | bytes):
                path = address
        limit = None
        if exc.errno == _errno.EMSGSIZE and self._family == socket.AF_UNIX:
            with contextlib.suppress(OSError):  # only a better hint is at stake
                limit = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 32
        raise translate(
            exc,
            call,
            target,
            family=self._family,
            sock_type=self._type,
            path=path,
            limit=limit,
        ) from exc


def _ename(exc: OSError) -> str:
    if exc.errno is None:
        return "ETIMEDOUT (timeout)" if isinstance(exc, TimeoutError) else type(exc).__name__
    return errno_name(exc.errno)


def _fd_text(fds: Sequence[int], shown: int = 8) -> str:
    """``[5, 6]``, or ``[5, 6, ..., 9] (253 fds)`` for long lists: traces stay readable."""
    if len(fds) <= shown:
        return "[" + ", ".join(map(str, fds)) + "]"
    head = ", ".join(map(str, fds[: shown - 1]))
    return f"[{head}, ..., {fds[-1]}] ({len(fds)} fds)"


def close_fds(fds: Iterable[int]) -> int:
    """Close received fds nobody asked for (an error there is not ours); how many."""
    count = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
        count += 1
    return count


def _none_if_unnamed(address: Any) -> Address | None:
    return None if address in (None, "", b"") else address


def parse_ucred(data: bytes) -> Creds:
    """A ``struct ucred`` (SO_PEERCRED, SCM_CREDENTIALS) as Creds: the one parser of it."""
    pid, uid, gid = UCRED.unpack_from(data)
    return Creds(pid, uid, gid)


def socketpair(sock_type: int = socket.SOCK_STREAM) -> tuple[Socket, Socket]:
    """socketpair(2): two connected AF_UNIX sockets, for a parent and its child."""
    try:
        left, right = socket.socketpair(socket.AF_UNIX, sock_type)
    except OSError as exc:
        raise translate(exc, "socketpair", type_name(sock_type), family=socket.AF_UNIX) from exc
    a, b = Socket.adopt(left), Socket.adopt(right)
    if _hooks:
        trace.emit(
            Event(
                "socketpair",
                ("AF_UNIX", type_name(sock_type), "0"),
                f"[{a.fd}, {b.fd}]",
            )
        )
    return a, b


# --------------------------------------------------------------------------
# families(): what this kernel really supports, probed with socket()
# --------------------------------------------------------------------------

_PROBE_TYPES = (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET, socket.SOCK_RAW)
#: A raw INET socket needs a real protocol: protocol 0 is EPROTONOSUPPORT even for root.
_PROBE_PROTOCOLS: dict[tuple[int, int], int] = {
    (socket.AF_INET, socket.SOCK_RAW): socket.IPPROTO_ICMP,
    (socket.AF_INET6, socket.SOCK_RAW): socket.IPPROTO_ICMPV6,
}


@dataclass(frozen=True, slots=True)
class FamilyInfo:
    """One address family as this kernel answered a socket() probe.

    ``types`` maps each socket type to ``"ok"`` or the errno name the probe
    got. EPERM/EACCES mean the family exists but needs a capability.
    """

    number: int
    name: str
    types: dict[str, str]

    @property
    def supported(self) -> bool:
        return any(v != "EAFNOSUPPORT" for v in self.types.values())

    @property
    def needs_capability(self) -> bool:
        return self.supported and not any(v == "ok" for v in self.types.values())


def families(*, include_unsupported: bool = False) -> list[FamilyInfo]:
    """Probe every Linux address family with socket() and report what exists.

    A family counts as supported when the kernel knows it: socket() works, or
    fails for a reason other than EAFNOSUPPORT (EPERM: needs a capability;
    ESOCKTNOSUPPORT: exists but not with that type).
    """
    result = []
    for number, name in FAMILY_NAMES.items():
        if number == socket.AF_UNSPEC:
            continue
        types: dict[str, str] = {}
        for sock_type in _PROBE_TYPES:
            try:
                probe = socket.socket(
                    number, sock_type, _PROBE_PROTOCOLS.get((number, sock_type), 0)
                )
            except OSError as exc:
                types[type_name(sock_type)] = errno_name(exc.errno)
                continue
            with probe:
                got = probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
            # AF_UNIX accepts SOCK_RAW and makes it SOCK_DGRAM (net/unix/af_unix.c,
            # unix_create: "case SOCK_RAW: sock->type = SOCK_DGRAM"): not a raw socket
            types[type_name(sock_type)] = "ok" if got == sock_type else f"is {type_name(got)}"
        info = FamilyInfo(number, name, types)
        if include_unsupported or info.supported:
            result.append(info)
    return result
