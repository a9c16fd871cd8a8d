"""NETLINK_SOCK_DIAG: the kernel's own list of sockets, as ``ss`` reads it.

Why not /proc/net: a socket name is printed there byte for byte, so a name
holding a newline and a well-formed line forges a socket (see
:mod:`sockwire.procnet`); here every name is a length-delimited attribute.
The kernel also says more: queue lengths, a UNIX socket's peer inode (to
match the two ends of a pair), the inode of its socket file (to tell who
holds a path without connecting to it), its uid.

Two layers, as in :mod:`sockwire.netlink`:

* sans-IO: :func:`unix_request`, :func:`inet_request`,
  :func:`netlink_request` build the request bytes; a :class:`Dump` takes
  the reply datagrams and returns :class:`~sockwire.procnet.Entry` records
  until NLMSG_DONE. Malformed bytes raise :class:`~sockwire.errors.BadFrame`
  and nothing else.
* blocking: :func:`unix_sockets`, :func:`inet_sockets`,
  :func:`netlink_sockets` and :func:`sockets` over a traced Socket.

Kernel facts (include/uapi/linux/{sock_diag,unix_diag,inet_diag,netlink_diag}.h,
net/unix/diag.c, net/ipv4/inet_diag.c, net/ipv4/raw_diag.c):

* One request type, SOCK_DIAG_BY_FAMILY (20), whose first byte picks the
  handler: AF_UNIX, AF_INET/AF_INET6 (the protocol byte then picks TCP, UDP
  or raw), AF_NETLINK. A handler that is not built (CONFIG_UNIX_DIAG=n,
  raw_diag not loaded) answers ENOENT: :class:`~sockwire.errors.UnsupportedError`
  here, and the caller falls back to /proc/net.
* A dump covers the reader's network namespace only, and every user's
  sockets (no privilege needed), as /proc/net does.
* UNIX states are TCP's numbers: 10 LISTEN, 1 connected, 7 unconnected.
  For a listener the queue pair is (pending connections, backlog); for the
  others (bytes queued in, bytes queued out); a datagram socket's "in" is
  the length of the first queued datagram.
* UNIX_DIAG_NAME is the bound name: a path with its trailing NUL, an
  abstract name with its leading NUL (and any NULs inside it, exactly).
* UNIX_DIAG_VFS gives the socket file's inode and the kernel's dev_t
  (major << 20 | minor), not stat()'s encoding.
* Raw sockets: the request's pad byte is the protocol to match
  (``sdiag_raw_protocol``; IPPROTO_RAW matches all) and a raw socket's
  "port" is its protocol number.
* Addresses in inet_diag_sockid are network byte order; ports too.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from .errors import BadFrame, SockwireError, TimeoutError, UnsupportedError
from .netlink import (
    KERNEL,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NOOP,
    NLMSG_OVERRUN,
    parse_attrs,
    parse_messages,
    raise_nlmsg_error,
)
from .procnet import NETLINK_PROTOCOLS, TCP_STATES, Entry
from .sock import Socket

__all__ = [
    "NETLINK_SOCK_DIAG",
    "Dump",
    "bound_to",
    "decode_inet",
    "decode_netlink",
    "decode_unix",
    "inet_request",
    "inet_sockets",
    "kernel_dev",
    "netlink_request",
    "netlink_sockets",
    "open_diag_socket",
    "sockets",
    "unix_request",
    "unix_sockets",
]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
ALL_STATES = 0xFFFFFFFF

# <linux/unix_diag.h>
UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, UDIAG_SHOW_PEER, UDIAG_SHOW_ICONS = 0x1, 0x2, 0x4, 0x8
UDIAG_SHOW_RQLEN, UDIAG_SHOW_UID = 0x10, 0x40
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 0, 1, 2, 3
UNIX_DIAG_RQLEN, UNIX_DIAG_SHUTDOWN, UNIX_DIAG_UID = 4, 6, 7
UNIX_SHOW = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID

# <linux/netlink_diag.h>
NDIAG_PROTO_ALL = 255
NDIAG_SHOW_GROUPS = 0x4
NETLINK_DIAG_GROUPS = 1

_NLMSGHDR = struct.Struct("=IHHII")
_UNIX_REQ = struct.Struct("=BBHIII2I")  # family, protocol, pad, states, ino, show, cookie
_UNIX_MSG = struct.Struct("=BBBxI2I")  # family, type, state, ino, cookie
_INET_REQ = struct.Struct("=BBBBI")  # family, protocol, ext, pad (raw protocol), states
_SOCKID = struct.Struct(">HH16s16sI2I")  # sport, dport, src, dst, if, cookie (ports: BE)
_INET_MSG_HEAD = struct.Struct("=BBBB")  # family, state, timer, retrans
_INET_MSG_TAIL = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode
_NETLINK_REQ = struct.Struct("=BBHII2I")  # family, protocol, pad, ino, show, cookie
_NETLINK_MSG = struct.Struct("=BBBBIIII2I")  # family type protocol state portid dst dgroup ino
_U32 = struct.Struct("=I")
_U32X2 = struct.Struct("=II")

_NOCOOKIE = (0xFFFFFFFF, 0xFFFFFFFF)
#: Bound on the sockets one dump may return.
MAX_ITEMS = 1_000_000
#: Read buffer: the kernel fills dump datagrams of up to 32 KiB.
RECV_BUFFER = 65536

UNIX_TYPES = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "dgram"}
UNIX_TYPES[socket.SOCK_SEQPACKET] = "seqpacket"
_NETIDS = {"stream": "u_str", "dgram": "u_dgr", "seqpacket": "u_seq"}
_TCP_LISTEN, _TCP_ESTABLISHED, _TCP_CLOSE = 10, 1, 7
_PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "raw": socket.IPPROTO_RAW}
_PROTOCOL_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 255: "raw"}


# --------------------------------------------------------------------------
# requests
# --------------------------------------------------------------------------


def _request(body: bytes, seq: int) -> bytes:
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    return header + body


def unix_request(seq: int, *, show: int = UNIX_SHOW, states: int = ALL_STATES) -> bytes:
    """A dump of every UNIX socket of this network namespace, with ``show``'s attributes."""
    return _request(_UNIX_REQ.pack(socket.AF_UNIX, 0, 0, states, 0, show, *_NOCOOKIE), seq)


def inet_request(seq: int, family: int, protocol: str, *, states: int = ALL_STATES) -> bytes:
    """A dump of ``protocol`` (tcp, udp, raw) sockets of ``family`` (AF_INET, AF_INET6)."""
    number = _PROTOCOLS[protocol]
    raw_protocol = socket.IPPROTO_RAW if protocol == "raw" else 0  # raw: match every protocol
    body = _INET_REQ.pack(family, number, 0, raw_protocol, states)
    body += _SOCKID.pack(0, 0, bytes(16), bytes(16), 0, *_NOCOOKIE)
    return _request(body, seq)


def netlink_request(seq: int) -> bytes:
    """A dump of every netlink socket, with its multicast groups."""
    body = _NETLINK_REQ.pack(
        socket.AF_NETLINK, NDIAG_PROTO_ALL, 0, 0, NDIAG_SHOW_GROUPS, *_NOCOOKIE
    )
    return _request(body, seq)


# --------------------------------------------------------------------------
# decoding one reply message
# --------------------------------------------------------------------------


def _short(what: str, got: int, need: int) -> BadFrame:
    return BadFrame(f"{what} of {got} bytes", f"expected at least {need}")


def _u32(raw: bytes, what: str) -> int:
    if len(raw) < _U32.size:
        raise _short(what, len(raw), _U32.size)
    return int(_U32.unpack_from(raw)[0])


def kernel_dev(st_dev: int) -> int:
    """stat()'s st_dev as the kernel's dev_t (major << 20 | minor), which UNIX_DIAG_VFS uses."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def decode_unix(payload: bytes) -> Entry:
    """One unix_diag_msg and its attributes -> an Entry (``local``: the exact name)."""
    if len(payload) < _UNIX_MSG.size:
        raise _short("unix_diag_msg", len(payload), _UNIX_MSG.size)
    _family, sock_type, state, inode, _c0, _c1 = _UNIX_MSG.unpack_from(payload)
    type_text = UNIX_TYPES.get(sock_type, str(sock_type))
    entry = Entry(
        netid=_NETIDS.get(type_text, "u_???"),
        state=_unix_state(state),
        local="*",
        peer="*",
        inode=inode,
        kind="unix",
        type=type_text,
        listening=state == _TCP_LISTEN or (type_text == "dgram" and state == _TCP_CLOSE),
    )
    for kind, value in parse_attrs(payload[_UNIX_MSG.size :]):
        if kind == UNIX_DIAG_NAME:
            entry.local = unix_name(value)
        elif kind == UNIX_DIAG_VFS:
            if len(value) < _U32X2.size:
                raise _short("UNIX_DIAG_VFS", len(value), _U32X2.size)
            vfs_ino, vfs_dev = _U32X2.unpack_from(value)
            entry.vfs = (vfs_dev, vfs_ino)
        elif kind == UNIX_DIAG_PEER:
            entry.peer_inode = _u32(value, "UNIX_DIAG_PEER") or None
        elif kind == UNIX_DIAG_RQLEN:
            if len(value) < _U32X2.size:
                raise _short("UNIX_DIAG_RQLEN", len(value), _U32X2.size)
            entry.recv_q, entry.send_q = _U32X2.unpack_from(value)
        elif kind == UNIX_DIAG_UID:
            entry.uid = _u32(value, "UNIX_DIAG_UID")
    return entry


def unix_name(raw: bytes) -> str:
    """A sun_path as the kernel keeps it -> ``/path`` or ``@abstract``, exactly.

    Invalid UTF-8 survives as lone surrogates (see :func:`sockwire.escape.exact`);
    escape it before printing.
    """
    if raw.startswith(b"\0"):
        return "@" + raw[1:].decode("utf-8", "surrogateescape")
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") or "*"


def _unix_state(state: int) -> str:
    if state == _TCP_LISTEN:
        return "LISTEN"
    if state == _TCP_ESTABLISHED:
        return "ESTAB"
    if state == _TCP_CLOSE:
        return "UNCONN"
    return TCP_STATES.get(state, str(state))


def decode_inet(payload: bytes, protocol: str) -> Entry:
    """One inet_diag_msg -> an Entry (tcp, udp or raw; v4 or v6)."""
    need = _INET_MSG_HEAD.size + _SOCKID.size + _INET_MSG_TAIL.size
    if len(payload) < need:
        raise _short("inet_diag_msg", len(payload), need)
    family, state, _timer, _retrans = _INET_MSG_HEAD.unpack_from(payload)
    sport, dport, src, dst, _if, _c0, _c1 = _SOCKID.unpack_from(payload, _INET_MSG_HEAD.size)
    _expires, rqueue, wqueue, uid, inode = _INET_MSG_TAIL.unpack_from(
        payload, _INET_MSG_HEAD.size + _SOCKID.size
    )
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise BadFrame(f"inet_diag_msg of family {family}", "expected AF_INET or AF_INET6")
    v6 = family == socket.AF_INET6
    if protocol == "tcp":
        state_text = TCP_STATES.get(state, str(state))
        listening = state == _TCP_LISTEN
    else:
        state_text = "ESTAB" if state == _TCP_ESTABLISHED else "UNCONN"
        listening = state != _TCP_ESTABLISHED
    if protocol == "raw":
        local = f"{_host(src, v6)}:{_PROTOCOL_NAMES.get(sport, str(sport))}"
        peer = "*" if not any(dst) else f"{_host(dst, v6)}:*"
    else:
        local = f"{_host(src, v6)}:{sport}"
        peer = "*" if dport == 0 and not any(dst) else f"{_host(dst, v6)}:{dport}"
    return Entry(
        netid=protocol + ("6" if v6 else ""),
        state=state_text,
        local=local,
        peer=peer,
        inode=inode,
        kind=protocol,
        type={"tcp": "stream", "udp": "dgram"}.get(protocol, "raw"),
        listening=listening,
        uid=uid,
        recv_q=rqueue,
        send_q=wqueue,
        port=sport if protocol != "raw" else None,
        peer_port=dport if protocol != "raw" and dport else None,
    )


def _host(raw: bytes, v6: bool) -> str:
    if v6:
        return f"[{ipaddress.IPv6Address(raw)}]"
    return str(ipaddress.IPv4Address(raw[:4]))


def decode_netlink(payload: bytes) -> Entry:
    """One netlink_diag_msg -> an Entry (``local``: PROTOCOL:PORTID [groups=0x..])."""
    if len(payload) < _NETLINK_MSG.size:
        raise _short("netlink_diag_msg", len(payload), _NETLINK_MSG.size)
    fields = _NETLINK_MSG.unpack_from(payload)
    protocol, portid, inode = fields[2], fields[4], fields[7]
    groups = 0
    for kind, value in parse_attrs(payload[_NETLINK_MSG.size :]):
        if kind == NETLINK_DIAG_GROUPS:
            groups = int.from_bytes(value[:8], "little")
    name = NETLINK_PROTOCOLS.get(protocol, str(protocol))
    local = f"{name}:{portid}" + (f" groups=0x{groups:x}" if groups else "")
    return Entry("nl", "UNCONN", local, "*", inode, "netlink", "raw")


# --------------------------------------------------------------------------
# one dump conversation
# --------------------------------------------------------------------------

T = TypeVar("T")


class Dump:
    """``feed(datagram)`` -> Entries, until NLMSG_DONE (``done``).

    States: waiting -> done (NLMSG_DONE) or failed (NLMSG_ERROR, or a DONE
    carrying a negative errno, raised). Messages of another sequence number
    are skipped and counted in ``ignored``. ``feed`` after done is a caller
    bug (ValueError).
    """

    def __init__(self, seq: int, decode: Callable[[bytes], Entry], what: str) -> None:
        self.seq = seq
        self.decode = decode
        self.what = what
        self.done = False
        self.ignored = 0
        self.items = 0

    def feed(self, datagram: bytes) -> list[Entry]:
        if self.done:
            raise ValueError("this dump is already complete")
        out: list[Entry] = []
        for message in parse_messages(datagram):
            if message.seq != self.seq:
                self.ignored += 1
                continue
            if message.type == NLMSG_DONE:
                if len(message.payload) >= 4 and struct.unpack_from("=i", message.payload)[0] < 0:
                    raise_nlmsg_error(message.payload, self.what)
                self.done = True
                break
            if message.type == NLMSG_ERROR:
                raise_nlmsg_error(message.payload, self.what)
                self.done = True  # an acknowledgement (error 0) ends it too
                break
            if message.type in (NLMSG_NOOP, NLMSG_OVERRUN):
                continue
            if message.type != SOCK_DIAG_BY_FAMILY:
                raise BadFrame(
                    f"netlink message type {message.type} in a {self.what}",
                    f"expected type {SOCK_DIAG_BY_FAMILY}",
                )
            self.items += 1
            if self.items > MAX_ITEMS:
                raise BadFrame(f"a {self.what} of over {MAX_ITEMS} sockets", "refusing to grow")
            out.append(self.decode(message.payload))
        return out


# --------------------------------------------------------------------------
# the blocking driver
# --------------------------------------------------------------------------

_seqs: Iterator[int] = itertools.count(int(time.time()) & 0xFFFF)


def open_diag_socket() -> Socket:
    """A NETLINK_SOCK_DIAG socket; UnsupportedError where the kernel has none."""
    try:
        sock = Socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG, label="sock_diag")
    except SockwireError as exc:
        raise UnsupportedError(
            "NETLINK_SOCK_DIAG", f"this kernel offers no socket diagnostics ({exc})"
        ) from exc
    return sock


def dump(
    sock: Socket, request: bytes, decode: Callable[[bytes], Entry], what: str, timeout: float
) -> list[Entry]:
    """Send one dump request, read until NLMSG_DONE within ``timeout`` s.

    A handler the kernel lacks (ENOENT, EINVAL, EOPNOTSUPP) is UnsupportedError.
    """
    (seq,) = struct.unpack_from("=I", request, 8)
    state = Dump(seq, decode, what)
    sock.sendto(request, KERNEL)
    deadline = time.monotonic() + timeout
    out: list[Entry] = []
    try:
        while not state.done:
            if not sock.wait_readable(deadline - time.monotonic()):
                raise TimeoutError(what, f"no NLMSG_DONE within {timeout:g} s")
            data, _ = sock.recvfrom(RECV_BUFFER)
            out.extend(state.feed(data))
    except SockwireError as exc:
        if exc.errno_name in ("ENOENT", "EINVAL", "EOPNOTSUPP", "EPROTONOSUPPORT"):
            raise UnsupportedError(
                what, f"this kernel has no sock_diag handler for it ({exc.errno_name})"
            ) from exc
        raise
    return out


def _next_seq() -> int:
    return next(_seqs) & 0xFFFFFFFF


def _with_socket(run: Callable[[Socket], list[T]], sock: Socket | None) -> list[T]:
    if sock is not None:
        return run(sock)
    with open_diag_socket() as own:
        return run(own)


def unix_sockets(sock: Socket | None = None, *, timeout: float = 5.0) -> list[Entry]:
    """Every UNIX socket of this network namespace, with names, peers, queues and uids."""
    return _with_socket(
        lambda s: dump(s, unix_request(_next_seq()), decode_unix, "unix_diag dump", timeout),
        sock,
    )


def inet_sockets(
    protocol: str, sock: Socket | None = None, *, timeout: float = 5.0
) -> list[Entry]:
    """Every ``protocol`` (tcp, udp, raw) socket, IPv4 then IPv6 (a kernel without IPv6:
    IPv4 only)."""

    def run(s: Socket) -> list[Entry]:
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            request = inet_request(_next_seq(), family, protocol)
            what = f"{protocol} dump"
            try:
                out.extend(dump(s, request, lambda p: decode_inet(p, protocol), what, timeout))
            except UnsupportedError:
                if family == socket.AF_INET:
                    raise
        return out

    return _with_socket(run, sock)


def netlink_sockets(sock: Socket | None = None, *, timeout: float = 5.0) -> list[Entry]:
    """Every netlink socket of this network namespace (netlink_diag)."""
    return _with_socket(
        lambda s: dump(s, netlink_request(_next_seq()), decode_netlink, "netlink dump", timeout),
        sock,
    )


KINDS = ("unix", "tcp", "udp", "raw", "netlink")


def sockets(kinds: Iterable[str] = KINDS) -> tuple[list[Entry], list[str]]:
    """The sockets of ``kinds`` over one sock_diag socket: (entries, kinds it could not list).

    A kind whose handler the kernel lacks is returned in the second list,
    for the caller to read from /proc/net instead.
    """
    wanted = [k for k in KINDS if k in set(kinds)]
    found: list[Entry] = []
    missing: list[str] = []
    try:
        diag = open_diag_socket()
    except UnsupportedError:
        return [], wanted
    with diag:
        for kind in wanted:
            try:
                if kind == "unix":
                    found.extend(unix_sockets(diag))
                elif kind == "netlink":
                    found.extend(netlink_sockets(diag))
                else:
                    found.extend(inet_sockets(kind, diag))
            except UnsupportedError:
                missing.append(kind)
    return found, missing


def bound_to(st: os.stat_result, entries: Iterable[Entry]) -> list[Entry]:
    """The UNIX sockets among ``entries`` bound to the socket file ``st`` describes.

    Empty means none *in this network namespace*: a process in another one
    may still hold it (the filesystem is shared, sock_diag is not).
    """
    want = (kernel_dev(st.st_dev), st.st_ino)
    return [e for e in entries if e.vfs == want]
