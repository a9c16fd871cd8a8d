"""sock_diag: the sans-IO decoders (property-tested, fuzzed) and dumps of real sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockwire import procnet, sock_diag
from sockwire.errors import BadFrame, SockwireError
from sockwire.escape import exact, one_line, printable

_HDR = struct.Struct("=IHHII")


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def _message(seq: int, payload: bytes, kind: int = sock_diag.SOCK_DIAG_BY_FAMILY) -> bytes:
    raw = _HDR.pack(_HDR.size + len(payload), kind, 2, seq, 0) + payload
    return raw + bytes(-len(raw) % 4)


def _done(seq: int, error: int = 0) -> bytes:
    return _message(seq, struct.pack("=i", error), kind=3)


def unix_payload(
    sock_type: int, state: int, inode: int, name: bytes | None, **extra: int
) -> bytes:
    payload = struct.pack("=BBBxI2I", socket.AF_UNIX, sock_type, state, inode, 0, 0)
    if name is not None:
        payload += _attr(sock_diag.UNIX_DIAG_NAME, name)
    if "peer" in extra:
        payload += _attr(sock_diag.UNIX_DIAG_PEER, struct.pack("=I", extra["peer"]))
    if "rq" in extra:
        payload += _attr(sock_diag.UNIX_DIAG_RQLEN, struct.pack("=II", extra["rq"], extra["wq"]))
    if "ino" in extra:
        payload += _attr(sock_diag.UNIX_DIAG_VFS, struct.pack("=II", extra["ino"], extra["dev"]))
    return payload


names = st.one_of(
    st.binary(max_size=107).map(lambda b: b"\0" + b[:106]),  # abstract: any bytes at all
    st.binary(min_size=1, max_size=100)
    .filter(lambda b: b"\0" not in b)
    .map(lambda b: b"/" + b + b"\0"),  # a path, with the kernel's trailing NUL
)


@given(
    sock_type=st.sampled_from([1, 2, 5]),
    state=st.sampled_from([1, 7, 10]),
    inode=st.integers(0, 2**32 - 1),
    name=names,
    peer=st.integers(0, 2**32 - 1),
    rq=st.integers(0, 2**32 - 1),
    wq=st.integers(0, 2**32 - 1),
)
def test_unix_messages_round_trip(
    sock_type: int, state: int, inode: int, name: bytes, peer: int, rq: int, wq: int
) -> None:
    payload = unix_payload(sock_type, state, inode, name, peer=peer, rq=rq, wq=wq)
    entry = sock_diag.decode_unix(payload)
    assert entry.inode == inode and entry.peer_inode == (peer or None)
    assert (entry.recv_q, entry.send_q) == (rq, wq)
    assert entry.type == {1: "stream", 2: "dgram", 5: "seqpacket"}[sock_type]
    assert entry.state == {1: "ESTAB", 7: "UNCONN", 10: "LISTEN"}[state]
    if name.startswith(b"\0"):
        assert entry.local == "@" + exact(name[1:])
        assert entry.local[1:].encode("utf-8", "surrogateescape") == name[1:]  # exact
    else:
        assert entry.local == exact(name[:-1])
    shown = printable(entry.local)
    assert shown.isprintable() and one_line(shown) == shown  # one inert line


@given(
    v6=st.booleans(),
    src=st.binary(min_size=16, max_size=16),
    dst=st.binary(min_size=16, max_size=16),
    ports=st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
    state=st.integers(1, 12),
    queues=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    inode=st.integers(0, 2**32 - 1),
)
def test_inet_messages_round_trip(
    v6: bool,
    src: bytes,
    dst: bytes,
    ports: tuple[int, int],
    state: int,
    queues: tuple[int, int],
    inode: int,
) -> None:
    family = socket.AF_INET6 if v6 else socket.AF_INET
    payload = struct.pack("=BBBB", family, state, 0, 0)
    payload += struct.pack(">HH16s16sI2I", ports[0], ports[1], src, dst, 0, 0, 0)
    payload += struct.pack("=IIIII", 0, queues[0], queues[1], 1000, inode)
    entry = sock_diag.decode_inet(payload, "tcp")
    assert entry.port == ports[0] and entry.inode == inode and entry.uid == 1000
    assert (entry.recv_q, entry.send_q) == queues
    host = f"[{socket.inet_ntop(family, src)}]" if v6 else socket.inet_ntop(family, src[:4])
    assert entry.local == f"{host}:{ports[0]}"
    assert entry.netid == ("tcp6" if v6 else "tcp")


@given(st.binary(max_size=300))
def test_decoders_raise_only_bad_frame(garbage: bytes) -> None:
    for decode in (
        sock_diag.decode_unix,
        lambda p: sock_diag.decode_inet(p, "udp"),
        sock_diag.decode_netlink,
    ):
        with contextlib.suppress(BadFrame):
            decode(garbage)


@given(st.lists(st.binary(max_size=200), max_size=5), st.integers(0, 2**32 - 1))
def test_a_dump_fed_garbage_raises_only_documented_errors(chunks: list[bytes], seq: int) -> None:
    dump = sock_diag.Dump(seq, sock_diag.decode_unix, "unix_diag dump")
    for chunk in chunks:
        try:
            dump.feed(chunk)
        except SockwireError:  # BadFrame, or an NLMSG_ERROR the bytes spelled out
            return
        if dump.done:
            return


def test_a_dump_until_done_skipping_other_conversations() -> None:
    dump = sock_diag.Dump(7, sock_diag.decode_unix, "unix_diag dump")
    one = _message(7, unix_payload(1, 10, 11, b"/a\0"))
    other = _message(8, unix_payload(1, 10, 12, b"/b\0"))
    assert [e.local for e in dump.feed(one + other)] == ["/a"] and dump.ignored == 1
    assert dump.feed(_done(7)) == [] and dump.done
    with pytest.raises(ValueError):
        dump.feed(one)
    failing = sock_diag.Dump(9, sock_diag.decode_unix, "unix_diag dump")
    with pytest.raises(SockwireError, match="ENOENT"):
        failing.feed(_done(9, -2))


def test_requests_have_the_kernel_layout() -> None:
    unix = sock_diag.unix_request(5)
    length, kind, flags, seq, _ = _HDR.unpack_from(unix)
    assert (length, kind, seq) == (len(unix), 20, 5) and flags & 0x300
    assert len(unix) == 16 + 24
    assert len(sock_diag.inet_request(5, socket.AF_INET, "tcp")) == 16 + 56
    assert sock_diag.inet_request(5, socket.AF_INET, "raw")[16 + 3] == socket.IPPROTO_RAW
    assert len(sock_diag.netlink_request(5)) == 16 + 20


# ---- against the kernel


def test_dump_finds_our_sockets_with_peers_files_and_queues(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    left, right = socket.socketpair()
    with left, right, socket.socket(socket.AF_UNIX) as server, socket.socket() as tcp:
        server.bind(path)
        server.listen(3)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(2)
        left.send(b"12345")
        entries, _missing = sock_diag.sockets(("unix", "tcp"))
        by_inode = {e.inode: e for e in entries}
        li, ri = (os.fstat(s.fileno()).st_ino for s in (left, right))
        assert by_inode[li].peer_inode == ri and by_inode[ri].peer_inode == li
        assert by_inode[ri].recv_q == 5 and by_inode[li].state == "ESTAB"
        listener = by_inode[os.fstat(server.fileno()).st_ino]
        assert listener.local == path and listener.state == "LISTEN"
        assert (listener.recv_q, listener.send_q) == (0, 3)
        assert sock_diag.bound_to(os.lstat(path), entries) == [listener]
        port = tcp.getsockname()[1]
        mine = [e for e in entries if e.kind == "tcp" and e.port == port]
        assert [(e.state, e.send_q) for e in mine] == [("LISTEN", 2)]


def test_procnet_fallback_folds_a_name_that_spans_lines() -> None:
    """/proc/net/unix prints names raw: a malformed line after a name is its tail."""
    name = b"\0sockwire-fold-" + str(os.getpid()).encode() + b"\nnot a socket line\x1b[2J"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(name)
        with open("/proc/net/unix", encoding="utf-8", errors="surrogateescape") as f:
            entries = procnet.parse_unix(f.read())
    assert "@" + name[1:].decode() in {e.local for e in entries}
