"""The scheme registry's contents: every built-in scheme and option, declared once.

A scheme is a :class:`~sockwire.address.Scheme`: family, type, how its body
is written, its options and on which side each applies, its socket address,
its static packet limit and the error hints where its errors differ from
the general ones. Adding a scheme is one ``register_scheme(Scheme(...))``
here or in the module that owns the transport (ZMTP registers ``zmq+tcp``
and ``zmq+ipc`` that way).

Socket options (``?nodelay=1``, ``?keepalive=60,10,5``, ``?ttl=``,
``?join=GROUP@IF`` ...) are options whose ``sockopts`` say which
setsockopt(2) calls they stand for; :mod:`sockwire.dial` makes them on
every path (connect, listen, bind, adopt) before bind/connect, so a
listener's accepted sockets inherit them (Linux copies TCP_NODELAY,
SO_KEEPALIVE and the TCP_KEEP* timers, TOS and TTL from the listener).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
from dataclasses import replace
from typing import Any

from . import address_values as v
from .address import (
    CONNECT,
    FRAMINGS,
    LISTEN,
    PACKET_FRAMINGS,
    SOCKET_TYPES,
    STREAM_FRAMINGS,
    UNIX_PATH_MAX,
    Body,
    Endpoint,
    Option,
    Scheme,
    SockOpt,
    parse_host,
    parse_port,
    quote,
    register_option,
    register_scheme,
    split_authority,
    static_packet_limit,
    unquote,
)
from .errors import (
    AddressError,
    ConnectionRefused,
    MessageTooLarge,
    TimeoutError,
    Unreachable,
    UnsupportedError,
    rule,
)

__all__ = ["NETLINK_PROTOCOLS", "RAW_PROTOCOLS"]

_STREAM, _DGRAM, _SEQ, _RAW = (
    socket.SOCK_STREAM,
    socket.SOCK_DGRAM,
    socket.SOCK_SEQPACKET,
    socket.SOCK_RAW,
)
_INET = (socket.AF_INET, socket.AF_INET6)

NETLINK_PROTOCOLS: dict[str, int] = {
    "route": 0,  # NETLINK_ROUTE: links, addresses, routes (the notes' ROUTE domain)
    "sock_diag": 4,  # NETLINK_SOCK_DIAG: socket listings, as ss uses
    "generic": 16,  # NETLINK_GENERIC
    "kobject_uevent": 15,  # NETLINK_KOBJECT_UEVENT: device events
}

RAW_PROTOCOLS: dict[str, int] = {
    "icmp": socket.IPPROTO_ICMP,
    "icmpv6": socket.IPPROTO_ICMPV6,
    "tcp": socket.IPPROTO_TCP,
    "udp": socket.IPPROTO_UDP,
    "raw": socket.IPPROTO_RAW,
}


# --------------------------------------------------------------------------
# setsockopt builders: (typed value, socket family) -> calls
# --------------------------------------------------------------------------


def _sol(name: int) -> Any:
    def calls(value: Any, family: int) -> list[SockOpt]:
        return [(socket.SOL_SOCKET, name, int(value))]

    return calls


def _ip(v4: tuple[int, int], v6: tuple[int, int]) -> Any:
    """The same option under its IPv4 and IPv6 names (IP_TTL / IPV6_UNICAST_HOPS)."""

    def calls(value: Any, family: int) -> list[SockOpt]:
        level, name = v6 if family == socket.AF_INET6 else v4
        return [(level, name, int(value))]

    return calls


def _nodelay(value: bool, family: int) -> list[SockOpt]:
    return [(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(value))]


def _keepalive(value: tuple[int, int, int] | bool, family: int) -> list[SockOpt]:
    if isinstance(value, bool):
        return [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(value))]
    idle, interval, count = value
    return [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count),
    ]


def _bindtodevice(value: str, family: int) -> list[SockOpt]:
    # the kernel takes the name up to IFNAMSIZ; SO_BINDTODEVICE needs
    # CAP_NET_RAW before Linux 5.7 (EPERM), none since for an unbound socket
    return [(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, value.encode())]


def _ifindex(name: str | None) -> int:
    if name is None:
        return 0  # the kernel picks the interface from the route to the group
    if name.isdigit():
        return int(name)
    try:
        return socket.if_nametoindex(name)
    except OSError:
        # CPython raises without an errno here; the kernel's word is ENODEV
        raise OSError(errno.ENODEV, f"no interface named {name}") from None


def _join(value: tuple[str, str | None], family: int) -> list[SockOpt]:
    group, interface = value
    index = _ifindex(interface)
    if ":" in group:
        # struct ipv6_mreq: in6_addr + ifindex
        mreq6 = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
        return [(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)]
    # struct ip_mreqn: multiaddr, local address (any), ifindex
    mreqn = socket.inet_aton(group) + socket.inet_aton("0.0.0.0") + struct.pack("@i", index)
    return [(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)]


# --------------------------------------------------------------------------
# Shared options
# --------------------------------------------------------------------------


def _family_parse(text: str) -> int:
    if text in ("4", "inet", "ipv4"):
        return socket.AF_INET
    if text in ("6", "inet6", "ipv6"):
        return socket.AF_INET6
    raise ValueError("must be 4 (IPv4) or 6 (IPv6)")


_family_value = v.Value(
    _family_parse,
    lambda family: "6" if family == socket.AF_INET6 else "4",
    "4|6",
    ("4", "6"),
)


def _framing(choices: tuple[str, ...], reason: str) -> v.Value:
    """A framing name among ``choices``; any other known one is refused with ``reason``."""
    names = v.choice(*choices)

    def parse(text: str) -> str:
        lowered = text.lower()
        if lowered in FRAMINGS and lowered not in choices:
            raise ValueError(reason)
        return str(names.parse(text))

    return v.Value(parse, str, names.metavar, names.examples)


def _raw_proto(text: str) -> str:
    lowered = text.lower()
    if lowered in RAW_PROTOCOLS:
        return lowered
    if re.fullmatch(r"[0-9]{1,3}", text) and 0 < int(text) < 256:
        by_number = {number: name for name, number in RAW_PROTOCOLS.items()}
        return by_number.get(int(text), str(int(text)))
    raise ValueError(f"must be one of {', '.join(RAW_PROTOCOLS)} or a number from 1 to 255")


_options = [
    Option(
        "backlog",
        v.integer(0, 65535),
        "listen() queue length",
        sides=frozenset({LISTEN}),
        default=128,
    ),
    Option(
        "mode",
        v.mode,
        "file mode of the socket file (0 to 0777), in force before anyone can connect",
        sides=frozenset({LISTEN}),
        path_only=True,
    ),
    Option(
        "owner",
        v.name_or_id,
        "owner of the socket file",
        sides=frozenset({LISTEN}),
        path_only=True,
    ),
    Option(
        "group",
        v.name_or_id,
        "group of the socket file",
        sides=frozenset({LISTEN}),
        path_only=True,
    ),
    Option(
        "unsafe_dir",
        v.boolean,
        "allow a socket file in a directory others may write without the sticky bit "
        "(anyone there can replace it); refused by default",
        sides=frozenset({LISTEN}),
        path_only=True,
        default=False,
    ),
    Option(
        "allowed_uids",
        v.id_list,
        "admit only peers with these uids (SO_PEERCRED; names or numbers): a listener "
        "closes others before a byte is read, a client refuses such a server",
    ),
    Option(
        "allowed_gids",
        v.id_list,
        "admit only peers whose primary gid is one of these (SO_PEERCRED); with "
        "allowed_uids, matching either admits",
    ),
    Option(
        "reuseaddr",
        v.boolean,
        "SO_REUSEADDR (default 1 for stream listeners)",
        sockopts=_sol(socket.SO_REUSEADDR),
    ),
    Option(
        "reuseport",
        v.boolean,
        "SO_REUSEPORT: several sockets bind the same port",
        sockopts=_sol(socket.SO_REUSEPORT),
    ),
    Option(
        "rcvbuf",
        v.integer(1, 2**31 - 1),
        "SO_RCVBUF in bytes (the kernel doubles it, capped by net.core.rmem_max)",
        sockopts=_sol(socket.SO_RCVBUF),
    ),
    Option(
        "sndbuf",
        v.integer(1, 2**31 - 1),
        "SO_SNDBUF in bytes (the kernel doubles it, capped by net.core.wmem_max)",
        sockopts=_sol(socket.SO_SNDBUF),
    ),
    Option("timeout", v.seconds, "connect/IO timeout in seconds"),
    Option(
        "framing",
        _framing(
            STREAM_FRAMINGS,
            "the sockwire packet header is for seqpacket and datagram sockets; a byte "
            "stream takes " + ", ".join(STREAM_FRAMINGS),
        ),
        "message framing on a byte stream",
    ),
    Option(
        "proto",
        v.Value(
            _raw_proto,
            str,
            "NAME|N",
            ("icmp", "ICMP", "udp", "1", "17", "250"),
        ),
        "IP protocol of a raw socket: " + ", ".join(RAW_PROTOCOLS) + " or a number",
    ),
    Option("type", v.choice(*SOCKET_TYPES), "the socket type the inherited descriptor must have"),
    Option("groups", v.integer(0, 2**32 - 1), "netlink multicast group bitmask"),
    Option("certfile", v.file_path, "PEM certificate chain file"),
    Option("keyfile", v.file_path, "PEM private key file"),
    Option("cafile", v.file_path, "PEM CA bundle to verify the peer"),
    Option(
        "authfile",
        v.file_path,
        "file holding the shared key for the HMAC challenge handshake (never the key itself)",
    ),
    Option(
        "servername",
        v.host_name,
        "host name to verify in the server's certificate",
        sides=frozenset({CONNECT}),
    ),
    Option(
        "nodelay",
        v.boolean,
        "TCP_NODELAY: send small writes at once (no Nagle)",
        sockopts=_nodelay,
    ),
    Option(
        "keepalive",
        v.keepalive,
        "SO_KEEPALIVE, and with IDLE,INTVL,CNT the TCP_KEEPIDLE/KEEPINTVL/KEEPCNT timers",
        sockopts=_keepalive,
    ),
    Option(
        "broadcast",
        v.boolean,
        "SO_BROADCAST: may send to a broadcast address",
        sockopts=_sol(socket.SO_BROADCAST),
    ),
    Option(
        "ttl",
        v.integer(1, 255),
        "IP_TTL / IPV6_UNICAST_HOPS of outgoing packets",
        sockopts=_ip(
            (socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS)
        ),
    ),
    Option(
        "tos",
        v.integer(0, 255, hex_ok=True),
        "IP_TOS / IPV6_TCLASS byte (DSCP << 2 | ECN), decimal or 0x..",
        sockopts=_ip(
            (socket.IPPROTO_IP, socket.IP_TOS), (socket.IPPROTO_IPV6, socket.IPV6_TCLASS)
        ),
    ),
    Option(
        "bindtodevice",
        v.interface_name,
        "SO_BINDTODEVICE: use only this network interface",
        sockopts=_bindtodevice,
    ),
    Option(
        "join",
        v.multicast_group,
        "join a multicast group on interface IF (else the one the route names)",
        sides=frozenset({LISTEN}),
        repeatable=True,
        sockopts=_join,
    ),
    Option(
        "multicast_ttl",
        v.integer(0, 255),
        "IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS of multicast sent (default 1: this link)",
        sockopts=_ip(
            (socket.IPPROTO_IP, socket.IP_MULTICAST_TTL),
            (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS),
        ),
    ),
    Option(
        "multicast_loop",
        v.boolean,
        "IP_MULTICAST_LOOP: this host's own members get what it sends (default 1)",
        sockopts=_ip(
            (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP),
            (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP),
        ),
    ),
    Option(
        "bind",
        v.ip_literal,
        "source address to connect from (socat bind=, nc -s)",
        sides=frozenset({CONNECT}),
    ),
    Option(
        "sourceport",
        v.integer(1, 65535),
        "source port to connect from (nc -p)",
        sides=frozenset({CONNECT}),
    ),
    Option(
        "family",
        _family_value,
        "4 or 6: use only IPv4 or only IPv6 addresses of a host name (-4/-6)",
    ),
]


OPTIONS = {option.name: register_option(option) for option in _options}


def _pick(*names: str, **overrides: Option) -> dict[str, Option]:
    picked = {name: OPTIONS[name] for name in names}
    picked.update(overrides)
    return picked


#: On seqpacket and datagram sockets: the kernel's boundaries, or the sockwire header.
_PACKET_FRAMING = Option(
    "framing",
    _framing(
        PACKET_FRAMINGS,
        "seqpacket and datagram sockets keep message boundaries themselves: framing is none "
        "(the default) or sockwire (the sockwire header: fragments, sequence numbers)",
    ),
    "none: the kernel's message boundaries, nothing added (the default); sockwire: the "
    "sockwire packet header (messages over one packet, datagram loss counted)",
)
#: An inherited socket's type is known only once adopted: any framing name.
_INHERITED_FRAMING = Option(
    "framing",
    v.choice(*FRAMINGS),
    "framing for the inherited socket's type: a stream framing, or none/sockwire on a "
    "seqpacket or datagram socket",
)


# --------------------------------------------------------------------------
# unix, unix+seqpacket, unix+dgram
# --------------------------------------------------------------------------


def _unix_body(body: str, whole: str) -> Body:
    if body.startswith("//"):
        # accept the URL-ish unix:///abs/path; canonical form is unix:/abs/path
        if not body.startswith("///"):
            raise AddressError(
                f"ambiguous UNIX path in {whole!r}",
                "write unix:/absolute/path, unix:relative/path or unix:@abstract",
                part=body[:40],
            )
        body = body[2:]
    path = unquote(body, "the path", whole)
    if not path or path == "@":
        raise AddressError(
            f"missing path in {whole!r}",
            "write unix:/run/app.sock for a file or unix:@name for an abstract name",
            part="path",
        )
    if "\0" in path:
        raise AddressError(
            f"NUL byte in the path of {whole!r}",
            "UNIX socket paths cannot contain NUL",
            part="\\0",
        )
    size = len(os.fsencode(path[1:] if path.startswith("@") else path))
    if size > UNIX_PATH_MAX:
        kind = "abstract name" if path.startswith("@") else "path"
        raise AddressError(
            f"UNIX socket {kind} is {size} bytes, over the kernel limit of {UNIX_PATH_MAX} bytes",
            "use a shorter path, or an abstract name (unix:@name) that needs no file",
            part=path[:40] + "...",
        )
    return Body(path=path)


def _unix_format(ep: Endpoint) -> str:
    assert ep.path is not None
    # a path that itself starts with "//" is written unix:////x, since
    # unix://x is refused as ambiguous and unix:///x means /x
    lead = "//" if ep.path.startswith("//") else ""
    return lead + quote(ep.path)


def _unix_sockaddr(ep: Endpoint) -> str | bytes:
    assert ep.path is not None
    if ep.path.startswith("@"):
        return b"\0" + os.fsencode(ep.path[1:])
    return ep.path


_UNIX_FILE = ("mode", "owner", "group", "unsafe_dir")
_AF_UNIX = socket.AF_UNIX

register_scheme(
    Scheme(
        "unix",
        _AF_UNIX,
        _STREAM,
        "unix:PATH, unix:@NAME",
        "AF_UNIX SOCK_STREAM: a path in the filesystem, or @NAME in the abstract namespace",
        _unix_body,
        _unix_format,
        _pick(
            "backlog",
            *_UNIX_FILE,
            "allowed_uids",
            "allowed_gids",
            "rcvbuf",
            "sndbuf",
            "timeout",
            "framing",
            "authfile",
        ),
        sockaddr=_unix_sockaddr,
        examples=("unix:/run/app.sock", "unix:@name", "unix:rel/x.sock", "unix:/tmp/a%20b"),
    )
)
register_scheme(
    Scheme(
        "unix+seqpacket",
        _AF_UNIX,
        _SEQ,
        "unix+seqpacket:PATH",
        "AF_UNIX SOCK_SEQPACKET: connected, reliable, message boundaries kept",
        _unix_body,
        _unix_format,
        _pick(
            "backlog",
            *_UNIX_FILE,
            "allowed_uids",
            "allowed_gids",
            "rcvbuf",
            "sndbuf",
            "timeout",
            "authfile",
            framing=_PACKET_FRAMING,
        ),
        sockaddr=_unix_sockaddr,
        error_rules=(
            rule(
                errno.EMSGSIZE,
                MessageTooLarge,
                "a SEQPACKET message must fit the socket's send buffer (SO_SNDBUF minus 32 "
                "bytes{limit}): send smaller ones, or raise ?sndbuf= (net.core.wmem_max caps it)",
                family=_AF_UNIX,
                sock_type=_SEQ,
            ),
        ),
        examples=("unix+seqpacket:/run/app.sock", "unix+seqpacket:@svc"),
    )
)
register_scheme(
    Scheme(
        "unix+dgram",
        _AF_UNIX,
        _DGRAM,
        "unix+dgram:PATH",
        "AF_UNIX SOCK_DGRAM: datagrams, never lost (a full receiver holds the sender back)",
        _unix_body,
        _unix_format,
        _pick(*_UNIX_FILE, "rcvbuf", "sndbuf", "timeout", framing=_PACKET_FRAMING),
        sockaddr=_unix_sockaddr,
        error_rules=(
            rule(
                errno.EMSGSIZE,
                MessageTooLarge,
                "a UNIX datagram must fit the sender's send buffer (SO_SNDBUF minus 32 "
                "bytes{limit}; about 208 KiB by default): send smaller ones, raise ?sndbuf= "
                "(net.core.wmem_max caps it), or use a stream",
                family=_AF_UNIX,
                sock_type=_DGRAM,
            ),
        ),
        examples=("unix+dgram:/tmp/log.sock", "unix+dgram:@log"),
    )
)


# --------------------------------------------------------------------------
# tcp, udp, tls+tcp, raw
# --------------------------------------------------------------------------


def _inet_body(body: str, whole: str, scheme: str) -> Body:
    host_text, port_text = split_authority(scheme, body, whole)
    host = parse_host(host_text, whole)
    return Body(host=host, port=parse_port(scheme, host, port_text, whole))


def _inet_format(ep: Endpoint) -> str:
    assert ep.host is not None
    host = f"[{ep.host}]" if ":" in ep.host else ep.host
    return f"//{host}" if ep.port is None else f"//{host}:{ep.port}"


def _literal_family(host: str | None) -> int | None:
    if host is None:
        return None
    if ":" in host:
        return socket.AF_INET6
    if re.fullmatch(r"[0-9.]+", host):
        return socket.AF_INET
    return None


def _inet_family(ep: Endpoint) -> int:
    """A literal host decides; then ?family=, then a literal ?bind=; else AF_INET."""
    found = _literal_family(ep.host)
    if found is not None:
        return found
    chosen = ep.get("family") if "family" in ep.spec.options else None
    if chosen is not None:
        return int(chosen)
    bind = ep.option("bind")
    if bind is not None:
        return socket.AF_INET6 if ":" in bind else socket.AF_INET
    return socket.AF_INET


def _inet_sockaddr(ep: Endpoint) -> tuple[str, int]:
    assert ep.host is not None
    return (ep.host, ep.port or 0)


def _inet_addresses(ep: Endpoint) -> list[tuple[int, Any]]:
    """The literal address, or what getaddrinfo gives for the name (filtered by family)."""
    assert ep.host is not None
    if _literal_family(ep.host) is not None:
        return [(ep.family, (ep.host, ep.port or 0))]
    wanted: int = socket.AF_UNSPEC
    if ep.option("family") is not None or ep.option("bind") is not None:
        wanted = ep.family
    infos = socket.getaddrinfo(ep.host, ep.port or 0, family=wanted, type=ep.spec.type or _STREAM)
    seen: list[tuple[int, Any]] = []
    for family, _, _, _, addr in infos:
        item = (int(family), addr)
        if item not in seen:
            seen.append(item)
    return seen


def _inet_check(ep: Endpoint, whole: str) -> None:
    """Options that contradict the host or each other, at parse time."""
    literal = _literal_family(ep.host)
    names: dict[int, str] = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}
    family = ep.option("family")
    chosen = ep.get("family") if family is not None else None
    if chosen is not None and literal is not None and chosen != literal:
        raise AddressError(
            f"family={family} but the host {ep.host} is {names[literal]} in {whole!r}",
            "drop ?family= (a literal address decides) or give a host name",
            part="family&host",
        )
    bind = ep.option("bind")
    wanted = literal or chosen
    if bind is not None and wanted is not None:
        bind_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        if bind_family != wanted:
            raise AddressError(
                f"bind={bind} is {names[bind_family]} but {whole!r} connects over {names[wanted]}",
                "bind to an address of the same family as the target",
                part="bind&host",
            )
    for group, _ in ep.get("join") if "join" in ep.spec.options else ():
        group_family = socket.AF_INET6 if ":" in group else socket.AF_INET
        if wanted is not None and group_family != wanted:
            raise AddressError(
                f"join={group} is an {names[group_family]} group but {whole!r} is {names[wanted]}",
                "bind the receiver to an address of the group's family, e.g. "
                + ("udp://[::]:PORT" if group_family == socket.AF_INET6 else "udp://0.0.0.0:PORT"),
                part="join&host",
            )


def _inet_side(ep: Endpoint, side: str) -> None:
    if side == CONNECT and ep.port == 0:
        raise AddressError(
            f"connect to port 0 in {ep}",
            "port 0 only makes sense to bind (the kernel picks a free port); give the "
            "port the server listens on",
            part="port",
        )


def _inet_bound(ep: Endpoint, sockname: Any) -> Endpoint:
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return ep
    try:
        host = parse_host(str(sockname[0]), str(sockname[0]))
    except AddressError:  # a scoped link-local address (fe80::1%eth0)
        return replace(ep, port=int(sockname[1]))
    return replace(ep, host=host, port=int(sockname[1]))


def _udp_limit(ep: Endpoint) -> int | None:
    return static_packet_limit(ep.family, socket.SOCK_DGRAM)


_TCP_OPTIONS = (
    "backlog",
    "reuseaddr",
    "reuseport",
    "rcvbuf",
    "sndbuf",
    "timeout",
    "framing",
    "authfile",
    "nodelay",
    "keepalive",
    "ttl",
    "tos",
    "bindtodevice",
    "bind",
    "sourceport",
    "family",
)


def _inet_scheme(
    name: str,
    sock_type: int,
    options: tuple[str, ...],
    summary: str,
    own: dict[str, Option] | None = None,
    **more: Any,
) -> Scheme:
    return Scheme(
        name,
        socket.AF_INET,
        sock_type,
        f"{name}://HOST:PORT, {name}://[V6]:PORT",
        summary,
        lambda body, whole: _inet_body(body, whole, name),
        _inet_format,
        _pick(*options, **(own or {})),
        sockaddr=_inet_sockaddr,
        addresses=_inet_addresses,
        family_of=_inet_family,
        check=_inet_check,
        check_side=_inet_side,
        from_sockaddr=_inet_bound,
        examples=(
            f"{name}://127.0.0.1:7000",
            f"{name}://[::1]:7000",
            f"{name}://localhost:0",
            f"{name}://example.test:65535",
        ),
        **more,
    )


register_scheme(
    _inet_scheme(
        "tcp",
        _STREAM,
        _TCP_OPTIONS,
        "TCP over IPv4/IPv6 (port 0: any free port)",
    )
)
register_scheme(
    _inet_scheme(
        "udp",
        _DGRAM,
        (
            "reuseaddr",
            "reuseport",
            "rcvbuf",
            "sndbuf",
            "timeout",
            "broadcast",
            "ttl",
            "tos",
            "bindtodevice",
            "join",
            "multicast_ttl",
            "multicast_loop",
            "bind",
            "sourceport",
            "family",
        ),
        "UDP datagrams; ?join=GROUP[@IF] for multicast",
        {"framing": _PACKET_FRAMING},
        packet_limit=_udp_limit,
        error_rules=tuple(
            rule(
                errno.EMSGSIZE,
                MessageTooLarge,
                "a UDP datagram carries at most 65,507 bytes over IPv4 and 65,527 over "
                "IPv6: send smaller ones, or use ?framing=sockwire or a stream",
                family=family,
                sock_type=_DGRAM,
            )
            for family in _INET
        ),
    )
)
register_scheme(
    _inet_scheme(
        "tls+tcp",
        _STREAM,
        (*_TCP_OPTIONS, "certfile", "keyfile", "cafile", "servername"),
        "TCP with TLS (the ssl module)",
    )
)


def _raw_body(body: str, whole: str) -> Body:
    host_text, port_text = split_authority("raw", body, whole, example="HOST?proto=icmp")
    if port_text is not None:
        raise AddressError(
            f"raw endpoints have no port: {whole!r}",
            "write raw://HOST?proto=icmp",
            part=port_text[:40],
        )
    return Body(host=parse_host(host_text, whole))


def _raw_protocol(ep: Endpoint) -> int:
    proto = ep.option("proto") or "icmp"
    if proto == "icmp" and ep.family == socket.AF_INET6:
        return socket.IPPROTO_ICMPV6
    known = RAW_PROTOCOLS.get(proto)
    return known if known is not None else int(proto)


register_scheme(
    Scheme(
        "raw",
        socket.AF_INET,
        _RAW,
        "raw://HOST?proto=P",
        "SOCK_RAW for one IP protocol (needs CAP_NET_RAW)",
        _raw_body,
        _inet_format,
        _pick("proto", "rcvbuf", "sndbuf", "timeout", "ttl", "tos", "bindtodevice"),
        sockaddr=_inet_sockaddr,
        addresses=_inet_addresses,
        family_of=_inet_family,
        protocol_of=_raw_protocol,
        examples=("raw://127.0.0.1", "raw://localhost", "raw://[::1]"),
    )
)


# --------------------------------------------------------------------------
# netlink, fd, systemd
# --------------------------------------------------------------------------


def _netlink_body(body: str, whole: str) -> Body:
    name = body.lower()
    if name not in NETLINK_PROTOCOLS:
        shown = body if len(body) <= 40 else body[:37] + "..."
        raise AddressError(
            f"unknown netlink protocol {shown!r} in {whole!r}",
            "valid: " + ", ".join(NETLINK_PROTOCOLS),
            part=shown,
            valid=tuple(NETLINK_PROTOCOLS),
        )
    return Body(name=name)


register_scheme(
    Scheme(
        "netlink",
        socket.AF_NETLINK,
        _RAW,
        "netlink:PROTOCOL",
        "AF_NETLINK: " + ", ".join(NETLINK_PROTOCOLS) + " (route is the notes' ROUTE domain)",
        _netlink_body,
        lambda ep: str(ep.name),
        _pick("groups", "timeout"),
        sockaddr=lambda ep: (0, int(ep.get("groups") or 0)),
        protocol_of=lambda ep: NETLINK_PROTOCOLS[ep.name or "route"],
        examples=("netlink:route", "netlink:sock_diag", "netlink:generic"),
    )
)

_TYPES = {"stream": _STREAM, "dgram": _DGRAM, "seqpacket": _SEQ}


def _inherited_type(ep: Endpoint) -> int:
    return _TYPES.get(ep.option("type") or "", 0)


def _fd_body(body: str, whole: str) -> Body:
    if not re.fullmatch(r"[0-9]{1,10}", body) or int(body) > 2**31 - 1:
        raise AddressError(
            f"bad descriptor number {body[:40]!r} in {whole!r}",
            "write fd:N with N a whole number, e.g. fd:3",
            part=body[:40],
        )
    return Body(fd=int(body))


def _systemd_body(body: str, whole: str) -> Body:
    name = unquote(body, "the name", whole)
    if len(name) > 255 or ":" in name:
        raise AddressError(
            f"bad systemd socket name {body[:40]!r}",
            "a name from LISTEN_FDNAMES has at most 255 characters and no ':'",
            part=body[:40],
        )
    return Body(name=name or None)


_INHERITED = ("allowed_uids", "allowed_gids", "rcvbuf", "sndbuf", "timeout", "framing", "type")

register_scheme(
    Scheme(
        "fd",
        socket.AF_UNSPEC,
        0,
        "fd:N",
        "an inherited descriptor (checked: a socket, of ?type= if given)",
        _fd_body,
        lambda ep: str(ep.fd),
        _pick(*_INHERITED, framing=_INHERITED_FRAMING),
        type_of=_inherited_type,
        examples=("fd:3", "fd:0", "fd:2147483647"),
    )
)
register_scheme(
    Scheme(
        "systemd",
        socket.AF_UNSPEC,
        0,
        "systemd:, systemd:NAME",
        "systemd socket activation (LISTEN_FDS, LISTEN_FDNAMES)",
        _systemd_body,
        lambda ep: quote(ep.name or "", ":"),
        _pick(*_INHERITED, framing=_INHERITED_FRAMING),
        type_of=_inherited_type,
        examples=("systemd:", "systemd:web", "systemd:api.sock"),
    )
)


# --------------------------------------------------------------------------
# vsock: the proof that a scheme is one entry
# --------------------------------------------------------------------------
#
# Measured on this machine (a Firecracker guest, CID 3, no vsock_loopback):
# bind to CID 1 (VMADDR_CID_LOCAL) is EADDRNOTAVAIL, connect to our own CID
# is ENODEV, connect to CID 1 goes to the host transport and times out
# (ETIMEDOUT after the 2 s vsock connect timeout), the host (CID 2) answers
# a closed port with a reset (ECONNRESET), and SOCK_DGRAM is ENODEV at
# socket(). vsock port 0 is a real port; here, as for tcp, :0 means "any
# free port" (VMADDR_PORT_ANY).

_CID_ANY = 0xFFFFFFFF  # VMADDR_CID_ANY, also VMADDR_PORT_ANY
_CID_NAMES: dict[str, int] = {"any": _CID_ANY, "local": 1, "host": 2, "hypervisor": 0}
_AF_VSOCK = getattr(socket, "AF_VSOCK", 40)


def _vsock_body(body: str, whole: str) -> Body:
    host_text, port_text = split_authority("vsock", body, whole, example="CID:PORT")
    lowered = host_text.lower()
    if lowered in _CID_NAMES:
        cid = _CID_NAMES[lowered]
    elif re.fullmatch(r"[0-9]{1,10}", host_text) and int(host_text) <= _CID_ANY:
        cid = int(host_text)
    else:
        raise AddressError(
            f"bad vsock CID {host_text[:40]!r} in {whole!r}",
            "a CID is a number (2: the host, 1: this machine via vsock_loopback, a guest's "
            "own CID) or any, local, host",
            part=host_text[:40],
        )
    port = parse_port("vsock", host_text, port_text, whole, hi=_CID_ANY - 1)
    return Body(host="any" if cid == _CID_ANY else str(cid), port=port)


def _vsock_cid(ep: Endpoint) -> int:
    return _CID_ANY if ep.host == "any" else int(ep.host or 0)


def _vsock_side(ep: Endpoint, side: str) -> None:
    if side == CONNECT and (ep.host == "any" or ep.port == 0):
        raise AddressError(
            f"{ep.display()}: 'any' CID and port 0 only make sense to listen on",
            "connect to a CID (2: the host) and the port the server listens on",
            part="cid" if ep.host == "any" else "port",
        )


def _vsock_bound(ep: Endpoint, sockname: Any) -> Endpoint:
    if not isinstance(sockname, tuple) or len(sockname) != 2:
        return ep
    cid, port = int(sockname[0]), int(sockname[1])
    return replace(ep, host="any" if cid == _CID_ANY else str(cid), port=port)


def _vsock_format_sockaddr(sockaddr: Any) -> str:
    cid, port = (("any" if part == _CID_ANY else part) for part in sockaddr)
    return f"{cid}:{port}"


register_scheme(
    Scheme(
        "vsock",
        _AF_VSOCK,
        _STREAM,
        "vsock://CID:PORT",
        "AF_VSOCK between a VM and its host (CID 2; any: every CID of this machine)",
        _vsock_body,
        lambda ep: f"//{ep.host}:{ep.port}",
        _pick("backlog", "timeout", "framing"),
        sockaddr=lambda ep: (_vsock_cid(ep), ep.port or _CID_ANY),
        check_side=_vsock_side,
        from_sockaddr=_vsock_bound,
        format_sockaddr=_vsock_format_sockaddr,
        error_rules=(
            rule(
                errno.EADDRNOTAVAIL,
                Unreachable,
                "no vsock transport here serves {target}: the loopback CID 1 needs the "
                "vsock_loopback module, a guest has only its own CID; listen on "
                "vsock://any:PORT",
                "bind",
                _AF_VSOCK,
            ),
            rule(
                errno.ENODEV,
                Unreachable,
                "no vsock transport reaches {target} from here (a guest cannot connect to "
                "its own CID; CID 1 needs vsock_loopback)",
                "connect",
                _AF_VSOCK,
            ),
            rule(
                errno.ENODEV,
                UnsupportedError,
                "no vsock transport on this machine offers this socket type",
                "socket",
                _AF_VSOCK,
            ),
            rule(
                errno.EAFNOSUPPORT,
                UnsupportedError,
                "this kernel has no AF_VSOCK (load the vsock module and a transport)",
                None,
                _AF_VSOCK,
            ),
            rule(
                errno.ECONNRESET,
                ConnectionRefused,
                "nobody listens on {target} (vsock answers a closed port with a reset)",
                "connect",
                _AF_VSOCK,
            ),
            rule(
                errno.ETIMEDOUT,
                TimeoutError,
                "no answer from {target}: is that CID running, and does a transport reach it? "
                "(without vsock_loopback, CID 1 never answers)",
                "connect",
                _AF_VSOCK,
            ),
        ),
        examples=("vsock://2:5000", "vsock://any:5000", "vsock://3:0", "vsock://host:1024"),
    )
)

# ZeroMQ's zmq+tcp and zmq+ipc, built from tcp and unix (sockwire/zmq_schemes.py)
from . import zmq_schemes as _zmq_schemes  # noqa: E402, F401
