"""procnet: the /proc/net parsers (property-tested) and the reader against real sockets."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockwire import procnet
from sockwire.procnet import (
    ParseError,
    parse_inet,
    parse_inet_address,
    parse_netlink,
    parse_socket_link,
    parse_unix,
    read_sockets,
)

UNIX_HEADER = "Num       RefCount Protocol Flags    Type St Inode Path\n"
INET_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
    "   uid  timeout inode\n"
)
NETLINK_HEADER = (
    "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n"
)


# ---- how the kernel writes the lines (net/unix/af_unix.c, net/ipv4/tcp_ipv4.c)


def unix_line(flags: int, sock_type: int, state: int, inode: int, path: str) -> str:
    line = (
        f"0000000000000000: 00000002 00000000 {flags:08X} {sock_type:04X} {state:02X} {inode:5d}"
    )
    return line + (f" {path}" if path else "")


def kernel_hex(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    packed = address.packed
    words = [struct.unpack(">I", packed[i : i + 4])[0] for i in range(0, len(packed), 4)]
    fmt = "<I" if sys.byteorder == "little" else ">I"
    return "".join(f"{struct.unpack('>I', struct.pack(fmt, w))[0]:08X}" for w in words)


def inet_line(local: str, peer: str, state: int, uid: int, inode: int) -> str:
    return (
        f"   0: {local} {peer} {state:02X} 00000000:00000000 00:00000000 00000000 "
        f"{uid:5d}        0 {inode} 1 0000000000000000 100 0 0 10 0"
    )


paths = st.one_of(
    st.just(""),
    st.text(st.characters(blacklist_characters="\n\r\0", min_codepoint=0x21), max_size=60).map(
        lambda s: "/" + s
    ),
    st.text(st.characters(blacklist_characters="\n\r\0", min_codepoint=0x21), max_size=30).map(
        lambda s: "@" + s
    ),
    st.just("/tmp/with space.sock"),
    st.just("/tmp/\x85\u2028\xa0odd"),
)


@given(
    flags=st.sampled_from([0, 0x10000]),
    sock_type=st.sampled_from([1, 2, 5]),
    state=st.integers(0, 4),
    inode=st.integers(0, 2**32),
    path=paths,
)
def test_unix_lines_round_trip(
    flags: int, sock_type: int, state: int, inode: int, path: str
) -> None:
    (entry,) = parse_unix(UNIX_HEADER + unix_line(flags, sock_type, state, inode, path) + "\n")
    assert entry.inode == inode
    assert entry.local == (path or "*")
    assert entry.listening == (bool(flags) or (sock_type == 2 and state == 1))
    assert entry.type == {1: "stream", 2: "dgram", 5: "seqpacket"}[sock_type]
    assert entry.state == ("LISTEN" if flags else procnet.UNIX_STATES[state])


@given(
    v6=st.booleans(),
    a=st.integers(0, 2**128 - 1),
    b=st.integers(0, 2**128 - 1),
    ports=st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
    state=st.integers(1, 12),
    uid=st.integers(0, 2**31),
    inode=st.integers(0, 2**40),
    kind=st.sampled_from(["tcp", "udp", "raw"]),
)
def test_inet_lines_round_trip(
    v6: bool,
    a: int,
    b: int,
    ports: tuple[int, int],
    state: int,
    uid: int,
    inode: int,
    kind: str,
) -> None:
    make = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    mask = 2**128 - 1 if v6 else 2**32 - 1
    local, peer = make(a & mask), make(b & mask)
    text = inet_line(
        f"{kernel_hex(local)}:{ports[0]:04X}",
        f"{kernel_hex(peer)}:{ports[1]:04X}",
        state,
        uid,
        inode,
    )
    (entry,) = parse_inet(INET_HEADER + text + "\n", kind, v6=v6)
    shown = f"[{local}]" if v6 else str(local)
    assert entry.local == f"{shown}:{ports[0]}"
    if not (int(peer) == 0 and ports[1] == 0):
        assert entry.peer == (f"[{peer}]" if v6 else str(peer)) + f":{ports[1]}"
    assert entry.uid == uid and entry.inode == inode
    assert entry.netid == kind + ("6" if v6 else "")
    if kind == "tcp":
        assert entry.listening == (state == 10)


def test_known_kernel_lines() -> None:
    (tcp,) = parse_inet(
        INET_HEADER + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "     0        0 1065 1 0000000054682946 100 0 0 10 0\n",
        "tcp",
    )
    assert (tcp.local, tcp.peer, tcp.state, tcp.listening) == (
        "127.0.0.1:8080",
        "*",
        "LISTEN",
        True,
    )
    (tcp6,) = parse_inet(
        INET_HEADER
        + "   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A"
        " 00000000:00000000 00:00000000 00000000     0        0 99 1 0 100 0 0 10 0\n",
        "tcp",
        v6=True,
    )
    assert tcp6.local == "[::1]:22" and tcp6.netid == "tcp6"
    (nl,) = parse_netlink(
        NETLINK_HEADER
        + "00000000773e39eb 0   4242       00000011 0        0        0     2  0  560\n"
    )
    assert nl.local == "route:4242 groups=0x11" and nl.inode == 560


@given(st.text(max_size=200))
def test_parsers_raise_only_parse_error(garbage: str) -> None:
    for parse in (
        lambda t: parse_unix(UNIX_HEADER + t),
        lambda t: parse_inet(INET_HEADER + t, "tcp"),
        lambda t: parse_netlink(NETLINK_HEADER + t),
    ):
        with contextlib.suppress(ParseError):
            parse(garbage)


@given(st.text(max_size=40))
def test_parse_inet_address_rejects_garbage(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_inet_address(text)


@given(st.integers(0, 2**64))
def test_socket_links(inode: int) -> None:
    assert parse_socket_link(f"socket:[{inode}]") == inode
    assert parse_socket_link(f"pipe:[{inode}]") is None
    assert parse_socket_link("/dev/null") is None


def test_reader_finds_our_own_sockets(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sock")
    with socket.socket(socket.AF_UNIX) as unix, socket.socket() as tcp:
        unix.bind(path)
        unix.listen(1)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        port = tcp.getsockname()[1]
        entries = list(read_sockets(("unix", "tcp")))
    by_local = {e.local: e for e in entries}
    me = procnet.Proc(os.getpid(), "")
    assert by_local[path].listening and by_local[path].type == "stream"
    assert os.getpid() in {p.pid for p in by_local[path].procs}
    assert by_local[f"127.0.0.1:{port}"].state == "LISTEN"
    assert os.getpid() in {p.pid for p in by_local[f"127.0.0.1:{port}"].procs}
    assert me.pid == os.getpid()


def test_reader_without_owners_and_missing_tables(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "unix").write_text(UNIX_HEADER + unix_line(0x10000, 1, 1, 7, "/x") + "\n")
    entries = list(read_sockets(proc=str(tmp_path), owners=True))
    assert [(e.local, e.procs) for e in entries] == [("/x", [])]


@pytest.mark.parametrize("bad", ["0000: 1 2", "x: 1 2 3 4 5 notanumber", "0: 1 2 ZZ 1 1 1 /p"])
def test_bad_unix_lines(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_unix(UNIX_HEADER + bad + "\n")
