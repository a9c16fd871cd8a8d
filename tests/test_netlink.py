"""netlink.py: rtnetlink framing and decoding, fuzzed, and a dump from the real kernel."""

from __future__ import annotations

import contextlib
import errno
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockwire import netlink
from sockwire.errors import BadFrame, PermissionDenied, ProtocolError, SockwireError


def _attr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * (-length % 4)


def _msg(kind: int, body: bytes, seq: int = 7, flags: int = netlink.NLM_F_MULTI) -> bytes:
    length = 16 + len(body)
    return struct.pack("=IHHII", length, kind, flags, seq, 0) + body + b"\0" * (-length % 4)


def _link(index: int, name: str, flags: int = 0x49, mtu: int = 1500, kind: str = "") -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0)
    body += _attr(netlink.IFLA_IFNAME, name.encode() + b"\0")
    body += _attr(netlink.IFLA_MTU, struct.pack("=I", mtu))
    body += _attr(netlink.IFLA_ADDRESS, bytes.fromhex("02fc00000001"))
    if kind:
        # IFLA_LINKINFO is nested: NLA_F_NESTED (0x8000) must be masked off
        body += _attr(netlink.IFLA_LINKINFO | 0x8000, _attr(1, kind.encode() + b"\0"))
    return _msg(netlink.RTM_NEWLINK, body)


def _addr(address: str, prefix: int, index: int, label: str) -> bytes:
    body = struct.pack("=BBBBI", socket.AF_INET, prefix, 0, 254, index)
    body += _attr(netlink.IFA_ADDRESS, socket.inet_aton(address))
    body += _attr(netlink.IFA_LOCAL, socket.inet_aton(address))
    body += _attr(netlink.IFA_LABEL, label.encode() + b"\0")
    return _msg(netlink.RTM_NEWADDR, body)


def _route(dst: str | None, prefix: int, gateway: str | None, oif: int, table: int = 254) -> bytes:
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, prefix, 0, 0, table, 4, 0, 1, 0)
    if dst is not None:
        body += _attr(netlink.RTA_DST, socket.inet_aton(dst))
    if gateway is not None:
        body += _attr(netlink.RTA_GATEWAY, socket.inet_aton(gateway))
    body += _attr(netlink.RTA_OIF, struct.pack("=I", oif))
    body += _attr(netlink.RTA_TABLE, struct.pack("=I", table))
    return _msg(netlink.RTM_NEWROUTE, body)


DONE = _msg(netlink.NLMSG_DONE, struct.pack("=i", 0))


def test_dump_request_is_a_well_formed_message() -> None:
    data = netlink.dump_request("routes", seq=42, family=socket.AF_INET)
    (message,) = netlink.parse_messages(data)
    assert message.type == netlink.RTM_GETROUTE
    assert message.flags == netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP
    assert message.seq == 42
    assert message.payload[0] == socket.AF_INET
    with pytest.raises(ValueError, match="unknown dump kind"):
        netlink.dump_request("neighbours", seq=1)  # type: ignore[arg-type]


def test_a_link_dump_decodes_across_datagrams() -> None:
    dump = netlink.Dump("links", seq=7)
    first = dump.feed(_link(1, "lo", flags=0x49, mtu=65536) + _link(2, "veth0", kind="veth"))
    assert not dump.done
    assert dump.feed(DONE) == []
    assert dump.done
    lo, veth = first
    assert isinstance(lo, netlink.Link) and isinstance(veth, netlink.Link)
    assert (lo.index, lo.name, lo.mtu, lo.up) == (1, "lo", 65536, True)
    assert lo.flag_names == ["UP", "LOOPBACK", "RUNNING"]
    assert lo.mac == "02:fc:00:00:00:01"
    assert veth.kind == "veth"
    assert "veth0" in str(veth)
    with pytest.raises(ValueError, match="already complete"):
        dump.feed(DONE)


def test_addresses_and_routes_decode() -> None:
    dump = netlink.Dump("addresses", seq=7)
    (addr,) = dump.feed(_addr("198.51.100.1", 24, 3, "sw-near") + DONE)
    assert addr == netlink.Addr(socket.AF_INET, "198.51.100.1", 24, 3, 254, "sw-near")
    assert addr.scope_name == "host"
    dump = netlink.Dump("routes", seq=7)
    default, via = dump.feed(
        _route(None, 0, "198.51.100.2", 3) + _route("203.0.113.1", 32, "198.51.100.2", 3) + DONE
    )
    assert isinstance(default, netlink.Route) and isinstance(via, netlink.Route)
    assert default.dst is None and str(default).startswith("default via 198.51.100.2")
    assert (via.dst, via.prefixlen, via.gateway, via.oif) == ("203.0.113.1", 32, "198.51.100.2", 3)
    assert (via.table_name, via.protocol_name, via.type_name) == ("main", "static", "unicast")


def test_messages_of_another_sequence_are_skipped() -> None:
    dump = netlink.Dump("links", seq=7)
    items = dump.feed(_msg(netlink.RTM_NEWLINK, b"\0" * 16, seq=8) + _link(1, "lo") + DONE)
    assert [i.name for i in items if isinstance(i, netlink.Link)] == ["lo"]
    assert dump.ignored == 1 and dump.done


def test_an_error_reply_becomes_the_matching_error() -> None:
    dump = netlink.Dump("routes", seq=7)
    reply = _msg(netlink.NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + b"\0" * 16)
    with pytest.raises(PermissionDenied, match="EPERM") as info:
        dump.feed(reply)
    assert isinstance(info.value.__cause__, OSError)
    ack = netlink.Dump("routes", seq=7)
    assert ack.feed(_msg(netlink.NLMSG_ERROR, struct.pack("=i", 0))) == []
    assert ack.done


def test_an_interrupted_dump_is_flagged() -> None:
    dump = netlink.Dump("links", seq=7)
    dump.feed(_msg(netlink.NLMSG_DONE, struct.pack("=i", 0), flags=netlink.NLM_F_DUMP_INTR))
    assert dump.done and dump.interrupted


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x10\x00\x00", "header of 3 bytes"),
        (struct.pack("=IHHII", 8, 16, 0, 0, 0), "message length 8"),
        (struct.pack("=IHHII", 64, 16, 0, 0, 0), "message length 64"),
    ],
)
def test_bad_framing_raises_bad_frame(data: bytes, match: str) -> None:
    with pytest.raises(BadFrame, match=match):
        netlink.parse_messages(data)


def test_bad_payloads_raise_bad_frame() -> None:
    with pytest.raises(BadFrame, match="ifinfomsg"):
        netlink.decode_link(b"\0" * 4)
    with pytest.raises(BadFrame, match="attribute length"):
        netlink.parse_attrs(struct.pack("=HH", 200, 1))
    with pytest.raises(BadFrame, match="IFLA_MTU"):
        netlink.decode_link(struct.pack("=BxHiII", 0, 0, 1, 0, 0) + _attr(netlink.IFLA_MTU, b"\1"))
    with pytest.raises(BadFrame, match="type 99"):
        netlink.Dump("links", seq=7).feed(_msg(99, b""))
    with pytest.raises(BadFrame, match="error 5"):
        netlink.Dump("links", seq=7).feed(_msg(netlink.NLMSG_ERROR, struct.pack("=i", 5)))


@given(st.binary(max_size=300))
def test_any_bytes_frame_or_raise_bad_frame(data: bytes) -> None:
    try:
        messages = netlink.parse_messages(data)
    except BadFrame:
        return
    assert all(isinstance(m, netlink.NlMessage) for m in messages)


@given(st.binary(max_size=200))
def test_any_payload_decodes_or_raises_a_protocol_error(data: bytes) -> None:
    for decode in (netlink.decode_link, netlink.decode_addr, netlink.decode_route):
        with contextlib.suppress(ProtocolError):
            decode(data)


@given(
    st.sampled_from(["links", "addresses", "routes"]),
    st.lists(st.binary(max_size=120), max_size=4),
    st.sampled_from([7, 8]),
    st.sampled_from([netlink.NLMSG_DONE, netlink.NLMSG_ERROR, netlink.NLMSG_NOOP, 16, 20, 24, 99]),
)
def test_a_dump_fed_anything_returns_values_or_a_sockwire_error(
    kind: netlink.DumpKind, bodies: list[bytes], seq: int, msg_type: int
) -> None:
    """Well-framed messages with random bodies: only typed errors may escape."""
    dump = netlink.Dump(kind, seq=7)
    try:
        for body in bodies:
            if dump.done:
                break
            dump.feed(_msg(msg_type, body, seq=seq))
    except SockwireError:
        pass  # BadFrame for bad bytes; a translated errno for NLMSG_ERROR


@given(st.lists(st.tuples(st.integers(1, 2**31 - 1), st.text(max_size=15)), max_size=5))
def test_links_round_trip(links: list[tuple[int, str]]) -> None:
    names = [name.replace("\0", "") for _, name in links]
    data = b"".join(_link(index, name) for (index, _), name in zip(links, names, strict=True))
    items = netlink.Dump("links", seq=7).feed(data + DONE)
    assert [(i.index, i.name) for i in items if isinstance(i, netlink.Link)] == [
        (index, name) for (index, _), name in zip(links, names, strict=True)
    ]


@pytest.mark.timeout(10)
def test_a_real_dump_finds_lo() -> None:
    with netlink.open_route_socket() as sock:
        name = sock.getsockname()
        assert isinstance(name, tuple) and name[0] > 0  # the kernel assigned a port id
        links = netlink.links(sock)
        addrs = netlink.addresses(sock, family=socket.AF_INET)
        routes = netlink.routes(sock, family=socket.AF_INET)
    lo = next(link for link in links if link.name == "lo")
    assert lo.flags & 0x8 and lo.up and lo.mtu
    assert any(a.address == "127.0.0.1" and a.ifindex == lo.index for a in addrs)
    assert all(a.family == socket.AF_INET for a in addrs)
    assert any(
        r.dst == "127.0.0.0" and r.prefixlen == 8 and r.table_name == "local" and r.oif == lo.index
        for r in routes
    )


@pytest.mark.timeout(10)
def test_the_shorthands_open_their_own_socket() -> None:
    assert any(link.name == "lo" for link in netlink.links())
