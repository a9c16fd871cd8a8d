"""The machine's sockets as /proc/net lists them, and which processes own them.

Sans-IO parsers (text in, records out; they never open a file) for
``/proc/net/unix``, ``tcp``, ``tcp6``, ``udp``, ``udp6``, ``raw``, ``raw6``
and ``netlink``, plus a small reader (:func:`read_sockets`) that feeds them
and maps socket inodes to processes through ``/proc/PID/fd`` (the links
read ``socket:[INODE]``), which is what ``ss -p`` does.

Kernel facts the parsers rely on (net/unix/af_unix.c, net/ipv4/tcp_ipv4.c,
net/ipv4/udp.c, net/netlink/af_netlink.c):

* unix: ``Num RefCount Protocol Flags Type St Inode [Path]``, hex except
  the inode; Flags bit ``__SO_ACCEPTCON`` (0x10000) marks a listener; St
  is SS_CONNECTED (03) for a datagram socket that is connected *or that
  another socket connected to* (6.x kernels; ss agrees), so UNCONN (01)
  is a datagram socket nobody is tied to; an
  abstract name is printed with ``@`` for its leading NUL (and for NULs
  inside it); a path is printed as given to bind(), relative or not.
* inet: addresses are ``HEX:PORT`` with the IP in the kernel's byte order
  (four 32-bit words in host order, little-endian here); ``st`` is the TCP
  state number; UDP/raw use 07 (CLOSE) for an unconnected socket and 01
  for a connected one.
* Everything is per network namespace: /proc/net shows the reader's.
* Lines appear and vanish while we read; a process may exit between
  listing /proc and reading its fds. Both are normal, never errors.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "TCP_STATES",
    "UNIX_STATES",
    "Entry",
    "ParseError",
    "Proc",
    "parse_inet",
    "parse_inet_address",
    "parse_netlink",
    "parse_socket_link",
    "parse_unix",
    "read_sockets",
    "socket_owners",
]

SO_ACCEPTCON = 0x10000

TCP_STATES = {
    1: "ESTAB",
    2: "SYN-SENT",
    3: "SYN-RECV",
    4: "FIN-WAIT-1",
    5: "FIN-WAIT-2",
    6: "TIME-WAIT",
    7: "UNCONN",
    8: "CLOSE-WAIT",
    9: "LAST-ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW-SYN-RECV",
}
#: socket_state of include/uapi/linux/net.h, as /proc/net/unix prints it
UNIX_STATES = {0: "FREE", 1: "UNCONN", 2: "CONNECTING", 3: "ESTAB", 4: "DISCONNECTING"}
UNIX_TYPES = {1: "stream", 2: "dgram", 3: "raw", 5: "seqpacket"}
NETLINK_PROTOCOLS = {
    0: "route",
    2: "usersock",
    4: "sock_diag",
    6: "xfrm",
    7: "selinux",
    9: "audit",
    10: "fib_lookup",
    11: "connector",
    12: "netfilter",
    15: "kobject_uevent",
    16: "generic",
}


class ParseError(ValueError):
    """A line of /proc/net that does not have the documented shape."""


@dataclass(frozen=True)
class Proc:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"{self.command}({self.pid})"


@dataclass
class Entry:
    """One socket: ``netid`` as ss names it (u_str, tcp, udp6, nl, ...).

    ``local`` is the name exactly as bound (a UNIX name is whatever its
    owner chose: escape it with :func:`sockwire.escape.printable` before
    printing; JSON keeps it exact). The fields after ``procs`` come from
    sock_diag (:mod:`sockwire.sock_diag`); /proc/net leaves them None.
    """

    netid: str
    state: str
    local: str
    peer: str
    inode: int
    kind: str  # unix | tcp | udp | raw | netlink
    type: str  # stream | dgram | seqpacket | raw
    listening: bool = False
    uid: int | None = None
    procs: list[Proc] = field(default_factory=list)
    recv_q: int | None = None  # a listener: pending connections; else bytes queued in
    send_q: int | None = None  # a listener: its backlog; else bytes queued out
    peer_inode: int | None = None  # UNIX: the other end of a connected pair
    vfs: tuple[int, int] | None = None  # UNIX: (kernel dev_t, inode) of its socket file
    port: int | None = None  # tcp/udp: the local port
    peer_port: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "netid": self.netid,
            "kind": self.kind,
            "type": self.type,
            "state": self.state,
            "listening": self.listening,
            "local": self.local,
            "peer": self.peer,
            "inode": self.inode,
            "peer_inode": self.peer_inode,
            "recv_q": self.recv_q,
            "send_q": self.send_q,
            "uid": self.uid,
            "processes": [{"pid": p.pid, "command": p.command} for p in self.procs],
        }


def _lines(text: str) -> list[str]:
    """The data lines: split on newlines only (str.splitlines also splits on
    \x1c-\x1e, \x85 and U+2028, which a socket path may hold)."""
    return [line for line in text.split("\n")[1:] if line.strip(" \t")]


def _fields(line: str, maxsplit: int = -1) -> list[str]:
    """Fields separated by ASCII spaces only (str.split() also splits on
    Unicode spaces such as U+0085 or U+00A0 inside a path)."""
    if maxsplit < 0:
        return [part for part in line.split(" ") if part]
    rest = line.lstrip(" ")
    out: list[str] = []
    while rest and len(out) < maxsplit:
        field, _, rest = rest.partition(" ")
        out.append(field)
        rest = rest.lstrip(" ")
    if rest:
        out.append(rest)
    return out


def _hex(text: str, what: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise ParseError(f"{what} {text[:40]!r} is not hexadecimal") from None


def _dec(text: str, what: str) -> int:
    if not text.isdigit():
        raise ParseError(f"{what} {text[:40]!r} is not a number")
    return int(text)


# --------------------------------------------------------------------------
# unix
# --------------------------------------------------------------------------


def parse_unix(text: str) -> list[Entry]:
    """``/proc/net/unix`` -> entries. The header line is skipped; bad lines raise.

    The kernel prints a name byte for byte, newlines included, so anyone who
    binds ``@x\nanything`` splits its line in two. A line that does not
    parse, after a named socket, is taken for the rest of that name (folded
    back, ``\n`` and all) rather than an error. A *well-formed* line inside
    a name cannot be told from a real one in this text: that is why
    ``inspect`` reads sockets over sock_diag and comes here only where
    sock_diag is missing.
    """
    entries: list[Entry] = []
    for line in _lines(text):
        try:
            entries.append(_unix_line(line))
        except ParseError:
            if not entries or entries[-1].local == "*":
                raise
            entries[-1].local += "\n" + line
    return entries


def _unix_line(line: str) -> Entry:
    # the path is everything after the 7th field, and may hold spaces
    parts = _fields(line, 7)
    if len(parts) < 7 or not parts[0].endswith(":"):
        raise ParseError(f"unix line has {len(parts)} fields: {line[:80]!r}")
    _, _refcount, _protocol, flags_s, type_s, state_s, inode_s = parts[:7]
    path = parts[7] if len(parts) == 8 else ""
    flags = _hex(flags_s, "flags")
    sock_type = _hex(type_s, "type")
    state = _hex(state_s, "state")
    inode = _dec(inode_s, "inode")
    type_text = UNIX_TYPES.get(sock_type, str(sock_type))
    # as `ss -l` counts them: listeners, and datagram sockets nobody is
    # connected to or from (UNCONN), which receive from anyone
    listening = bool(flags & SO_ACCEPTCON) or (type_text == "dgram" and state == 1)
    netid = {"stream": "u_str", "dgram": "u_dgr", "seqpacket": "u_seq"}.get(type_text, "u_???")
    state_text = "LISTEN" if flags & SO_ACCEPTCON else UNIX_STATES.get(state, str(state))
    return Entry(
        netid=netid,
        state=state_text,
        local=path or "*",
        peer="*",
        inode=inode,
        kind="unix",
        type=type_text,
        listening=listening,
    )


# --------------------------------------------------------------------------
# inet
# --------------------------------------------------------------------------


def parse_inet_address(text: str, *, little_endian: bool = sys.byteorder == "little") -> str:
    """``0100007F:1F90`` -> ``127.0.0.1:8080``; IPv6 as ``[::1]:8080``."""
    addr_hex, colon, port_hex = text.partition(":")
    if not colon or len(port_hex) != 4:
        raise ParseError(f"address {text[:60]!r} is not HEX:PORT")
    port = _hex(port_hex, "port")
    if len(addr_hex) not in (8, 32):
        raise ParseError(f"address {addr_hex[:40]!r} has {len(addr_hex)} hex digits, not 8 or 32")
    raw = bytes.fromhex(addr_hex) if all(c in "0123456789abcdefABCDEF" for c in addr_hex) else b""
    if len(raw) * 2 != len(addr_hex):
        raise ParseError(f"address {addr_hex[:40]!r} is not hexadecimal")
    # the kernel prints each 32-bit word with %08X of its host-order value
    fmt = "<I" if little_endian else ">I"
    words = [struct.unpack(fmt, raw[i : i + 4])[0] for i in range(0, len(raw), 4)]
    packed = b"".join(struct.pack(">I", w) for w in words)
    if len(packed) == 4:
        return f"{ipaddress.IPv4Address(packed)}:{port}"
    return f"[{ipaddress.IPv6Address(packed)}]:{port}"


def parse_inet(text: str, kind: str, *, v6: bool = False) -> list[Entry]:
    """``/proc/net/{tcp,udp,raw}[6]`` -> entries (``kind``: tcp, udp or raw)."""
    entries = []
    for line in _lines(text):
        entries.append(_inet_line(line, kind, v6))
    return entries


def _inet_line(line: str, kind: str, v6: bool) -> Entry:
    parts = _fields(line)
    if len(parts) < 10 or not parts[0].endswith(":"):
        raise ParseError(f"{kind} line has {len(parts)} fields: {line[:80]!r}")
    local = parse_inet_address(parts[1])
    peer = parse_inet_address(parts[2])
    state = _hex(parts[3], "state")
    uid = _dec(parts[7], "uid")
    inode = _dec(parts[9], "inode")
    if kind == "tcp":
        state_text = TCP_STATES.get(state, str(state))
        listening = state == 10
    else:
        state_text = "UNCONN" if state == 7 else "ESTAB" if state == 1 else str(state)
        listening = state == 7
    if peer.endswith(":0") and peer.split(":")[0] in ("0.0.0.0", "[::]"):
        peer = "*"
    netid = kind + ("6" if v6 else "")
    sock_type = {"tcp": "stream", "udp": "dgram"}.get(kind, "raw")
    return Entry(netid, state_text, local, peer, inode, kind, sock_type, listening, uid)


# --------------------------------------------------------------------------
# netlink
# --------------------------------------------------------------------------


def parse_netlink(text: str) -> list[Entry]:
    """``/proc/net/netlink`` -> entries (local is ``PROTOCOL:PORTID``)."""
    entries = []
    for line in _lines(text):
        parts = _fields(line)
        if len(parts) < 10:
            raise ParseError(f"netlink line has {len(parts)} fields: {line[:80]!r}")
        protocol = _dec(parts[1], "protocol")
        portid = _dec(parts[2], "port id")
        groups = _hex(parts[3], "groups")
        inode = _dec(parts[9], "inode")
        name = NETLINK_PROTOCOLS.get(protocol, str(protocol))
        local = f"{name}:{portid}" + (f" groups=0x{groups:x}" if groups else "")
        entries.append(Entry("nl", "UNCONN", local, "*", inode, "netlink", "raw"))
    return entries


# --------------------------------------------------------------------------
# owners
# --------------------------------------------------------------------------


def parse_socket_link(target: str) -> int | None:
    """``socket:[12345]`` (a /proc/PID/fd link) -> 12345; anything else -> None."""
    if target.startswith("socket:[") and target.endswith("]"):
        inner = target[8:-1]
        if inner.isdigit():
            return int(inner)
    return None


def socket_owners(proc: str = "/proc") -> dict[int, list[Proc]]:
    """inode -> the processes holding it, from every readable /proc/PID/fd.

    Processes of other users are invisible without root, as with ``ss -p``.
    """
    owners: dict[int, list[Proc]] = {}
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return owners
    for pid_text in pids:
        fd_dir = f"{proc}/{pid_text}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            continue
        inodes = set()
        for fd in fds:
            try:
                inode = parse_socket_link(os.readlink(f"{fd_dir}/{fd}"))
            except OSError:
                continue
            if inode is not None:
                inodes.add(inode)
        if not inodes:
            continue
        try:
            with open(f"{proc}/{pid_text}/comm", encoding="utf-8", errors="replace") as handle:
                command = handle.read().strip()
        except OSError:
            command = "?"
        owner = Proc(int(pid_text), command)
        for inode in inodes:
            owners.setdefault(inode, []).append(owner)
    return owners


_SOURCES: tuple[tuple[str, str, str, bool], ...] = (
    ("unix", "unix", "unix", False),
    ("tcp", "tcp", "tcp", False),
    ("tcp6", "tcp", "tcp", True),
    ("udp", "udp", "udp", False),
    ("udp6", "udp", "udp", True),
    ("raw", "raw", "raw", False),
    ("raw6", "raw", "raw", True),
    ("netlink", "netlink", "netlink", False),
)
KINDS = ("unix", "tcp", "udp", "raw", "netlink")


def read_sockets(
    kinds: Iterable[str] = KINDS,
    *,
    proc: str = "/proc",
    owners: bool = True,
) -> Iterator[Entry]:
    """The sockets of this network namespace, with their processes when ``owners``."""
    wanted = set(kinds)
    found: list[Entry] = []
    for filename, kind, parser, v6 in _SOURCES:
        if kind not in wanted:
            continue
        try:
            with open(f"{proc}/net/{filename}", encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError:  # no IPv6, or no such table in this kernel
            continue
        if parser == "unix":
            found.extend(parse_unix(text))
        elif parser == "netlink":
            found.extend(parse_netlink(text))
        else:
            found.extend(parse_inet(text, kind, v6=v6))
    owner_map = socket_owners(proc) if owners else {}
    for entry in found:
        entry.procs = sorted(owner_map.get(entry.inode, []), key=lambda p: p.pid)
        yield entry
