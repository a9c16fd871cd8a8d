"""NETLINK_ROUTE ("ROUTE" in the notes): dump links, addresses and routes, decoded.

Two layers, in the style of h11:

* sans-IO: :func:`dump_request` builds the request bytes; :class:`Dump`
  takes the kernel's reply datagrams with :meth:`Dump.feed` and returns
  decoded :class:`Link`, :class:`Addr` and :class:`Route` values until
  NLMSG_DONE. :func:`parse_messages` and :func:`parse_attrs` are the framing
  underneath. Malformed bytes raise :class:`~sockwire.errors.BadFrame` and
  nothing else; an NLMSG_ERROR from the kernel becomes the matching
  :mod:`sockwire.errors` class.
* blocking: :func:`open_route_socket` and :func:`dump` (and the shorthands
  :func:`links`, :func:`addresses`, :func:`routes`) drive it over a
  :class:`~sockwire.sock.Socket`, so every call is traced.

Platform knowledge, written where it is used:

* Netlink messages are in host byte order; attributes are 4-byte aligned
  and their type carries two flag bits (NLA_F_NESTED, NLA_F_NET_BYTEORDER)
  that must be masked off.
* The kernel is port 0; our socket's port id is assigned at bind() (the
  first netlink socket of a process gets its pid).
* A dump reply may span many datagrams of up to 32 KiB each; we read with a
  64 KiB buffer, and truncation is an error, never silent (MSG_TRUNC).
* NLM_F_DUMP_INTR on a reply means the table changed during the dump; the
  result is still returned, with :attr:`Dump.interrupted` set.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from .errors import BadFrame, TimeoutError, translate
from .sock import Socket

__all__ = [
    "Addr",
    "Dump",
    "DumpKind",
    "Link",
    "NlMessage",
    "Route",
    "addresses",
    "dump",
    "dump_request",
    "links",
    "open_route_socket",
    "parse_attrs",
    "parse_messages",
    "raise_nlmsg_error",
    "routes",
]

# <linux/netlink.h>
NETLINK_ROUTE = 0
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR = 0x1, 0x2, 0x10
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

# <linux/rtnetlink.h>
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_OPERSTATE, IFLA_LINKINFO = 1, 3, 4, 16, 18
IFLA_INFO_KIND = 1
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
_RTATTR = struct.Struct("=HH")
_I32 = struct.Struct("=i")
_U32 = struct.Struct("=I")

#: Read buffer for dump replies: the kernel sends at most 32 KiB per datagram.
RECV_BUFFER = 65536
#: Bound on the values one dump may return (a full Internet table is ~1M routes).
MAX_ITEMS = 2_000_000

IFF_NAMES = {
    0x1: "UP",
    0x2: "BROADCAST",
    0x8: "LOOPBACK",
    0x10: "POINTOPOINT",
    0x40: "RUNNING",
    0x80: "NOARP",
    0x100: "PROMISC",
    0x1000: "MULTICAST",
    0x10000: "LOWER_UP",
}
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
TABLES = {253: "default", 254: "main", 255: "local"}
PROTOCOLS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 16: "dhcp"}
ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast"}
ROUTE_TYPES.update({6: "blackhole", 7: "unreachable", 8: "prohibit"})

DumpKind: TypeAlias = Literal["links", "addresses", "routes"]
_REQUESTS: dict[str, tuple[int, int]] = {
    "links": (RTM_GETLINK, RTM_NEWLINK),
    "addresses": (RTM_GETADDR, RTM_NEWADDR),
    "routes": (RTM_GETROUTE, RTM_NEWROUTE),
}


# --------------------------------------------------------------------------
# framing: messages and attributes
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NlMessage:
    """One netlink message: its header fields and payload (after the 16-byte header)."""

    type: int
    flags: int
    seq: int
    pid: int
    payload: bytes


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_messages(data: bytes) -> list[NlMessage]:
    """Split one datagram into netlink messages (BadFrame when a length is wrong)."""
    data = bytes(data)
    out = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _NLMSGHDR.size:
            raise BadFrame(
                f"netlink message header of {len(data) - offset} bytes",
                f"a header has {_NLMSGHDR.size} bytes",
            )
        length, kind, flags, seq, pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or length > len(data) - offset:
            raise BadFrame(
                f"netlink message length {length}",
                f"must be {_NLMSGHDR.size}..{len(data) - offset} at offset {offset}",
            )
        out.append(
            NlMessage(kind, flags, seq, pid, data[offset + _NLMSGHDR.size : offset + length])
        )
        offset += _align(length)
    return out


def parse_attrs(data: bytes) -> list[tuple[int, bytes]]:
    """Split route attributes (rtattr/nlattr) into (type, value) pairs, flag bits masked."""
    data = bytes(data)
    out = []
    offset = 0
    while len(data) - offset >= _RTATTR.size:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or length > len(data) - offset:
            raise BadFrame(
                f"netlink attribute length {length}",
                f"must be {_RTATTR.size}..{len(data) - offset} at offset {offset}",
            )
        out.append((kind & NLA_TYPE_MASK, data[offset + _RTATTR.size : offset + length]))
        offset += _align(length)
    return out


def dump_request(kind: DumpKind, seq: int, family: int = socket.AF_UNSPEC) -> bytes:
    """The bytes of an RTM_GET* dump request for ``kind``."""
    if kind not in _REQUESTS:
        raise ValueError(f"unknown dump kind {kind!r}; valid: {', '.join(_REQUESTS)}")
    msg_type = _REQUESTS[kind][0]
    if kind == "links":
        body = _IFINFOMSG.pack(family, 0, 0, 0, 0)
    elif kind == "addresses":
        body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
    else:
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    return header + body


# --------------------------------------------------------------------------
# decoded values
# --------------------------------------------------------------------------


def _flag_names(flags: int, names: dict[int, str]) -> list[str]:
    return [name for bit, name in names.items() if flags & bit]


def _format_address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if family == socket.AF_INET6 and len(raw) == 16:
        return str(ipaddress.IPv6Address(raw))
    return raw.hex(":")


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _u32(raw: bytes, what: str) -> int:
    if len(raw) < 4:
        raise BadFrame(f"{what} attribute of {len(raw)} bytes", "expected a 32-bit value")
    return int(_U32.unpack_from(raw)[0])


@dataclass(frozen=True, slots=True)
class Link:
    """A network interface (RTM_NEWLINK)."""

    index: int
    name: str
    flags: int
    mtu: int | None = None
    mac: str | None = None
    kind: str | None = None  # "veth", "bridge", ... from IFLA_LINKINFO
    operstate: str | None = None

    @property
    def flag_names(self) -> list[str]:
        return _flag_names(self.flags, IFF_NAMES)

    @property
    def up(self) -> bool:
        return bool(self.flags & 0x1)

    def __str__(self) -> str:
        text = f"{self.index}: {self.name} <{','.join(self.flag_names)}>"
        if self.mtu is not None:
            text += f" mtu {self.mtu}"
        if self.kind:
            text += f" {self.kind}"
        if self.mac:
            text += f" link {self.mac}"
        return text


@dataclass(frozen=True, slots=True)
class Addr:
    """An address on an interface (RTM_NEWADDR)."""

    family: int
    address: str
    prefixlen: int
    ifindex: int
    scope: int
    label: str | None = None

    @property
    def scope_name(self) -> str:
        return SCOPES.get(self.scope, str(self.scope))

    def __str__(self) -> str:
        inet = "inet6" if self.family == socket.AF_INET6 else "inet"
        text = f"{inet} {self.address}/{self.prefixlen} scope {self.scope_name}"
        text += f" ifindex {self.ifindex}"
        return f"{text} {self.label}" if self.label else text


@dataclass(frozen=True, slots=True)
class Route:
    """A route (RTM_NEWROUTE). ``dst`` is None for the default route."""

    family: int
    dst: str | None
    prefixlen: int
    table: int
    protocol: int
    scope: int
    type: int
    gateway: str | None = None
    oif: int | None = None
    prefsrc: str | None = None
    priority: int | None = None

    @property
    def table_name(self) -> str:
        return TABLES.get(self.table, str(self.table))

    @property
    def protocol_name(self) -> str:
        return PROTOCOLS.get(self.protocol, str(self.protocol))

    @property
    def type_name(self) -> str:
        return ROUTE_TYPES.get(self.type, str(self.type))

    @property
    def scope_name(self) -> str:
        return SCOPES.get(self.scope, str(self.scope))

    def __str__(self) -> str:
        dst = "default" if self.dst is None else f"{self.dst}/{self.prefixlen}"
        text = f"{self.type_name} {dst}" if self.type != 1 else dst
        if self.gateway:
            text += f" via {self.gateway}"
        if self.oif is not None:
            text += f" oif {self.oif}"
        text += f" table {self.table_name} proto {self.protocol_name}"
        if self.prefsrc:
            text += f" src {self.prefsrc}"
        return text


def decode_link(payload: bytes) -> Link:
    """An RTM_NEWLINK payload (ifinfomsg + attributes) as a :class:`Link`."""
    if len(payload) < _IFINFOMSG.size:
        raise BadFrame(f"ifinfomsg of {len(payload)} bytes", f"expected {_IFINFOMSG.size}")
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    name, mtu, mac, kind, operstate = "", None, None, None, None
    for attr, value in parse_attrs(payload[_IFINFOMSG.size :]):
        if attr == IFLA_IFNAME:
            name = _cstring(value)
        elif attr == IFLA_MTU:
            mtu = _u32(value, "IFLA_MTU")
        elif attr == IFLA_ADDRESS:
            mac = value.hex(":")
        elif attr == IFLA_OPERSTATE and value:
            operstate = OPERSTATES[value[0]] if value[0] < len(OPERSTATES) else str(value[0])
        elif attr == IFLA_LINKINFO:
            for inner, inner_value in parse_attrs(value):
                if inner == IFLA_INFO_KIND:
                    kind = _cstring(inner_value)
    return Link(index, name, flags, mtu, mac, kind, operstate)


def decode_addr(payload: bytes) -> Addr:
    """An RTM_NEWADDR payload (ifaddrmsg + attributes) as an :class:`Addr`.

    IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
    point-to-point links, so LOCAL wins when both are present.
    """
    if len(payload) < _IFADDRMSG.size:
        raise BadFrame(f"ifaddrmsg of {len(payload)} bytes", f"expected {_IFADDRMSG.size}")
    family, prefixlen, _flags, scope, index = _IFADDRMSG.unpack_from(payload)
    local = address = label = None
    for attr, value in parse_attrs(payload[_IFADDRMSG.size :]):
        if attr == IFA_LOCAL:
            local = _format_address(family, value)
        elif attr == IFA_ADDRESS:
            address = _format_address(family, value)
        elif attr == IFA_LABEL:
            label = _cstring(value)
    return Addr(family, local or address or "", prefixlen, index, scope, label)


def decode_route(payload: bytes) -> Route:
    """An RTM_NEWROUTE payload (rtmsg + attributes) as a :class:`Route`."""
    if len(payload) < _RTMSG.size:
        raise BadFrame(f"rtmsg of {len(payload)} bytes", f"expected {_RTMSG.size}")
    family, dst_len, _src_len, _tos, table, proto, scope, rtype, _flags = _RTMSG.unpack_from(
        payload
    )
    dst = gateway = prefsrc = None
    oif = priority = None
    for attr, value in parse_attrs(payload[_RTMSG.size :]):
        if attr == RTA_DST:
            dst = _format_address(family, value)
        elif attr == RTA_GATEWAY:
            gateway = _format_address(family, value)
        elif attr == RTA_OIF:
            oif = _u32(value, "RTA_OIF")
        elif attr == RTA_TABLE:
            table = _u32(value, "RTA_TABLE")  # the 8-bit rtm_table cannot say > 255
        elif attr == RTA_PREFSRC:
            prefsrc = _format_address(family, value)
        elif attr == RTA_PRIORITY:
            priority = _u32(value, "RTA_PRIORITY")
    return Route(family, dst, dst_len, table, proto, scope, rtype, gateway, oif, prefsrc, priority)


Item: TypeAlias = Link | Addr | Route

_DECODERS: dict[int, Callable[[bytes], Item]] = {
    RTM_NEWLINK: decode_link,
    RTM_NEWADDR: decode_addr,
    RTM_NEWROUTE: decode_route,
}


# --------------------------------------------------------------------------
# the sans-IO dump state machine
# --------------------------------------------------------------------------


@dataclass
class Dump:
    """One dump conversation: ``request()`` bytes out, ``feed(datagram)`` values back.

    States: waiting -> done (NLMSG_DONE seen) or failed (NLMSG_ERROR raised).
    Messages with another sequence number (a notification sharing the
    socket) are counted in ``ignored`` and skipped. ``feed`` after done is
    a caller bug (ValueError).
    """

    kind: DumpKind
    seq: int
    family: int = socket.AF_UNSPEC
    done: bool = False
    interrupted: bool = False
    ignored: int = 0
    messages: int = 0
    items: int = field(default=0)

    def request(self) -> bytes:
        return dump_request(self.kind, self.seq, self.family)

    def feed(self, datagram: bytes) -> list[Item]:
        if self.done:
            raise ValueError("this dump is already complete")
        want = _REQUESTS[self.kind][1]
        out: list[Item] = []
        for message in parse_messages(datagram):
            if message.seq != self.seq:
                self.ignored += 1
                continue
            self.messages += 1
            if message.flags & NLM_F_DUMP_INTR:
                self.interrupted = True
            if message.type == NLMSG_DONE:
                self.done = True
                break
            if message.type == NLMSG_ERROR:
                _raise_error(message.payload, self.kind)
                self.done = True  # an ACK (error 0) ends the conversation too
                break
            if message.type in (NLMSG_NOOP, NLMSG_OVERRUN):
                continue
            if message.type != want:
                raise BadFrame(
                    f"netlink message type {message.type} in a {self.kind} dump",
                    f"expected type {want}",
                )
            self.items += 1
            if self.items > MAX_ITEMS:
                raise BadFrame(
                    f"a dump of over {MAX_ITEMS} {self.kind}", "refusing to grow further"
                )
            out.append(_DECODERS[want](message.payload))
        return out


def _raise_error(payload: bytes, kind: str) -> None:
    raise_nlmsg_error(payload, f"netlink {kind} dump", "NETLINK_ROUTE")


def raise_nlmsg_error(payload: bytes, what: str, target: str = "") -> None:
    """NLMSG_ERROR (or an NLMSG_DONE carrying one): a negative errno, raised as the
    error tree's class; 0 is an acknowledgement and returns."""
    if len(payload) < _I32.size:
        raise BadFrame(f"NLMSG_ERROR of {len(payload)} bytes", "expected at least an errno")
    (error,) = _I32.unpack_from(payload)
    if error == 0:
        return
    code = -error
    if not 0 < code < 4096:  # the kernel's MAX_ERRNO
        raise BadFrame(f"NLMSG_ERROR with error {error}", "expected a negative errno")
    exc = OSError(code, os.strerror(code))
    raise translate(exc, what, target) from exc


# --------------------------------------------------------------------------
# the blocking driver, over a traced Socket
# --------------------------------------------------------------------------

_seqs: Iterator[int] = itertools.count(int(time.time()) & 0xFFFF)
KERNEL = (0, 0)  # the kernel's netlink address: port 0, no groups


def open_route_socket() -> Socket:
    """A NETLINK_ROUTE socket, bound (the kernel assigns our port id)."""
    sock = Socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, label="netlink:route")
    try:
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def dump(
    sock: Socket,
    kind: DumpKind,
    *,
    family: int = socket.AF_UNSPEC,
    timeout: float = 2.0,
) -> list[Item]:
    """Ask the kernel for every link, address or route; block until NLMSG_DONE.

    ``timeout`` bounds the whole dump (a live kernel answers in microseconds).
    """
    state = Dump(kind, next(_seqs) & 0xFFFFFFFF, family)
    sock.sendto(state.request(), KERNEL)
    deadline = time.monotonic() + timeout
    out: list[Item] = []
    while not state.done:
        if not sock.wait_readable(deadline - time.monotonic()):
            raise TimeoutError(f"netlink {kind} dump", f"no NLMSG_DONE within {timeout:g} s")
        data, _ = sock.recvfrom(RECV_BUFFER)
        out.extend(state.feed(data))
    return out


def _with_socket(kind: DumpKind, sock: Socket | None, family: int) -> list[Item]:
    if sock is not None:
        return dump(sock, kind, family=family)
    with open_route_socket() as own:
        return dump(own, kind, family=family)


def links(sock: Socket | None = None) -> list[Link]:
    """Every network interface of this network namespace."""
    return [i for i in _with_socket("links", sock, socket.AF_UNSPEC) if isinstance(i, Link)]


def addresses(sock: Socket | None = None, family: int = socket.AF_UNSPEC) -> list[Addr]:
    """Every interface address (``family`` AF_INET or AF_INET6 to narrow it)."""
    return [i for i in _with_socket("addresses", sock, family) if isinstance(i, Addr)]


def routes(sock: Socket | None = None, family: int = socket.AF_UNSPEC) -> list[Route]:
    """Every route of every table (``family`` AF_INET or AF_INET6 to narrow it)."""
    return [i for i in _with_socket("routes", sock, family) if isinstance(i, Route)]
