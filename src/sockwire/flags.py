"""Message flags and the names of socket constants, as the kernel spells them.

``MsgFlag`` is the ``flags`` argument of send/recv and the ``msg_flags`` of a
received message. The name tables turn numbers back into the names strace and
the man pages use (``AF_UNIX``, ``SOCK_SEQPACKET``), which is what the trace
and the tour print.
"""

from __future__ import annotations

import enum
import socket

__all__ = [
    "FAMILY_NAMES",
    "MsgFlag",
    "family_name",
    "level_name",
    "option_name",
    "parse_msg_flags",
    "protocol_name",
    "shutdown_name",
    "type_name",
]


class MsgFlag(enum.IntFlag):
    """Flags for send/recv (``MSG_*``), with Linux values."""

    NONE = 0
    OOB = socket.MSG_OOB  # out-of-band (urgent) data, stream sockets only
    PEEK = socket.MSG_PEEK  # read without consuming
    DONTROUTE = socket.MSG_DONTROUTE  # only directly connected networks
    CTRUNC = socket.MSG_CTRUNC  # ancillary data was cut short (received flag)
    TRUNC = socket.MSG_TRUNC  # the message was longer than the buffer (received flag)
    DONTWAIT = socket.MSG_DONTWAIT  # this call only: do not block
    EOR = socket.MSG_EOR  # end of record
    WAITALL = socket.MSG_WAITALL  # wait for the full amount (streams)
    NOSIGNAL = socket.MSG_NOSIGNAL  # EPIPE instead of SIGPIPE
    CMSG_CLOEXEC = socket.MSG_CMSG_CLOEXEC  # received fds get O_CLOEXEC

    def __str__(self) -> str:
        """``MSG_PEEK|MSG_DONTWAIT``, or ``0`` when empty, as strace prints it."""
        if not self.value:
            return "0"
        names = [f"MSG_{f.name}" for f in MsgFlag if f.value and f in self and f.name]
        return "|".join(names)


def parse_msg_flags(text: str) -> MsgFlag:
    """``"OOB,DONTWAIT"`` or ``"MSG_OOB|MSG_DONTWAIT"`` -> ``MsgFlag``.

    Raises ValueError naming the unknown flag and the valid ones.
    """
    result = MsgFlag.NONE
    for raw in text.replace("|", ",").split(","):
        name = raw.strip().upper().removeprefix("MSG_")
        if not name:
            continue
        try:
            result |= MsgFlag[name]
        except KeyError:
            valid = ", ".join(f.name for f in MsgFlag if f.value and f.name)
            raise ValueError(f"unknown message flag {raw.strip()!r}; valid: {valid}") from None
    return result


# Linux's address families (include/linux/socket.h). The socket module lacks
# several, and a family number alone is no use to a reader.
FAMILY_NAMES: dict[int, str] = {
    0: "AF_UNSPEC",
    1: "AF_UNIX",
    2: "AF_INET",
    3: "AF_AX25",
    4: "AF_IPX",
    5: "AF_APPLETALK",
    6: "AF_NETROM",
    7: "AF_BRIDGE",
    8: "AF_ATMPVC",
    9: "AF_X25",
    10: "AF_INET6",
    11: "AF_ROSE",
    12: "AF_DECnet",
    13: "AF_NETBEUI",
    14: "AF_SECURITY",
    15: "AF_KEY",
    16: "AF_NETLINK",
    17: "AF_PACKET",
    18: "AF_ASH",
    19: "AF_ECONET",
    20: "AF_ATMSVC",
    21: "AF_RDS",
    22: "AF_SNA",
    23: "AF_IRDA",
    24: "AF_PPPOX",
    25: "AF_WANPIPE",
    26: "AF_LLC",
    27: "AF_IB",
    28: "AF_MPLS",
    29: "AF_CAN",
    30: "AF_TIPC",
    31: "AF_BLUETOOTH",
    32: "AF_IUCV",
    33: "AF_RXRPC",
    34: "AF_ISDN",
    35: "AF_PHONET",
    36: "AF_IEEE802154",
    37: "AF_CAIF",
    38: "AF_ALG",
    39: "AF_NFC",
    40: "AF_VSOCK",
    41: "AF_KCM",
    42: "AF_QIPCRTR",
    43: "AF_SMC",
    44: "AF_XDP",
    45: "AF_MCTP",
}

_TYPE_NAMES: dict[int, str] = {
    socket.SOCK_STREAM: "SOCK_STREAM",
    socket.SOCK_DGRAM: "SOCK_DGRAM",
    socket.SOCK_SEQPACKET: "SOCK_SEQPACKET",
    socket.SOCK_RAW: "SOCK_RAW",
    socket.SOCK_RDM: "SOCK_RDM",
}

_PROTOCOL_NAMES: dict[int, str] = {
    socket.IPPROTO_IP: "0",
    socket.IPPROTO_ICMP: "IPPROTO_ICMP",
    socket.IPPROTO_TCP: "IPPROTO_TCP",
    socket.IPPROTO_UDP: "IPPROTO_UDP",
    socket.IPPROTO_ICMPV6: "IPPROTO_ICMPV6",
    socket.IPPROTO_RAW: "IPPROTO_RAW",
}

_SHUTDOWN_NAMES: dict[int, str] = {
    socket.SHUT_RD: "SHUT_RD",
    socket.SHUT_WR: "SHUT_WR",
    socket.SHUT_RDWR: "SHUT_RDWR",
}


def family_name(family: int) -> str:
    """``1 -> 'AF_UNIX'``; unknown numbers as ``'AF_<n>'``."""
    return FAMILY_NAMES.get(int(family), f"AF_{int(family)}")


def type_name(sock_type: int) -> str:
    """``5 -> 'SOCK_SEQPACKET'`` (flags such as SOCK_CLOEXEC are stripped)."""
    base = int(sock_type) & 0xF
    return _TYPE_NAMES.get(base, f"SOCK_{base}")


def protocol_name(proto: int, family: int | None = None) -> str:
    """``6 -> 'IPPROTO_TCP'``; for AF_NETLINK ``0 -> 'NETLINK_ROUTE'``."""
    if family == socket.AF_NETLINK:
        return {0: "NETLINK_ROUTE", 4: "NETLINK_SOCK_DIAG", 16: "NETLINK_GENERIC"}.get(
            proto, str(proto)
        )
    if family == socket.AF_UNIX:
        return str(proto)
    return _PROTOCOL_NAMES.get(proto, str(proto))


def shutdown_name(how: int) -> str:
    """``1 -> 'SHUT_WR'``."""
    return _SHUTDOWN_NAMES.get(how, str(how))


_LEVEL_NAMES: dict[int, str] = {
    socket.SOL_SOCKET: "SOL_SOCKET",
    socket.IPPROTO_TCP: "IPPROTO_TCP",
    socket.IPPROTO_IP: "IPPROTO_IP",
    socket.IPPROTO_IPV6: "IPPROTO_IPV6",
    socket.IPPROTO_UDP: "IPPROTO_UDP",
}

_OPTION_NAMES: dict[tuple[int, int], str] = {
    (socket.SOL_SOCKET, getattr(socket, name)): name
    for name in (
        "SO_ACCEPTCONN",
        "SO_BROADCAST",
        "SO_DOMAIN",
        "SO_DONTROUTE",
        "SO_ERROR",
        "SO_KEEPALIVE",
        "SO_LINGER",
        "SO_OOBINLINE",
        "SO_PASSCRED",
        "SO_PEERCRED",
        "SO_PROTOCOL",
        "SO_RCVBUF",
        "SO_RCVLOWAT",
        "SO_RCVTIMEO",
        "SO_REUSEADDR",
        "SO_REUSEPORT",
        "SO_SNDBUF",
        "SO_SNDTIMEO",
        "SO_TYPE",
    )
    if hasattr(socket, name)
}
_OPTION_NAMES.update(
    {
        (socket.IPPROTO_TCP, socket.TCP_NODELAY): "TCP_NODELAY",
        (socket.IPPROTO_IP, socket.IP_TTL): "IP_TTL",
        (socket.IPPROTO_IP, socket.IP_HDRINCL): "IP_HDRINCL",
        (socket.IPPROTO_IP, 11): "IP_RECVERR",  # not exported by the socket module
        (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY): "IPV6_V6ONLY",
    }
)


def level_name(level: int) -> str:
    """``1 -> 'SOL_SOCKET'``."""
    return _LEVEL_NAMES.get(level, str(level))


def option_name(level: int, option: int) -> str:
    """``(SOL_SOCKET, 8) -> 'SO_RCVBUF'``."""
    return _OPTION_NAMES.get((level, option), str(option))
