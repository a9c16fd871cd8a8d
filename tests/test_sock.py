"""Socket over every family x type, against the real kernel: names, flags, truncation, trace."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import sockwire
from sockwire import MsgFlag, Socket, socketpair, trace
from tests.helpers import need_root

UNIX, INET, INET6 = socket.AF_UNIX, socket.AF_INET, socket.AF_INET6
STREAM, DGRAM, SEQ, RAW = (
    socket.SOCK_STREAM,
    socket.SOCK_DGRAM,
    socket.SOCK_SEQPACKET,
    socket.SOCK_RAW,
)


@pytest.mark.parametrize(
    ("family", "kind", "proto", "want_type", "want_proto"),
    [
        (UNIX, STREAM, 0, STREAM, 0),
        (UNIX, DGRAM, 0, DGRAM, 0),
        (UNIX, SEQ, 0, SEQ, 0),
        (UNIX, RAW, 0, DGRAM, 0),  # AF_UNIX SOCK_RAW silently becomes SOCK_DGRAM
        (INET, STREAM, 0, STREAM, socket.IPPROTO_TCP),
        (INET, DGRAM, 0, DGRAM, socket.IPPROTO_UDP),
        (INET6, STREAM, 0, STREAM, socket.IPPROTO_TCP),
        (INET6, DGRAM, 0, DGRAM, socket.IPPROTO_UDP),
        (socket.AF_NETLINK, RAW, 0, RAW, 0),
    ],
)
def test_every_family_and_type(
    family: int, kind: int, proto: int, want_type: int, want_proto: int
) -> None:
    with Socket(family, kind, proto) as s:
        assert s.family == family
        assert s.type == want_type
        assert s.protocol == want_proto
        assert s.fd >= 0
    assert s.closed


def test_raw_inet_socket_needs_a_protocol() -> None:
    need_root()
    with pytest.raises(sockwire.UnsupportedError, match="EPROTONOSUPPORT"):
        Socket(INET, RAW, 0)
    with Socket(INET, RAW, socket.IPPROTO_ICMP) as s:
        assert s.protocol == socket.IPPROTO_ICMP


def test_seqpacket_for_inet_is_unsupported() -> None:
    with pytest.raises(sockwire.UnsupportedError, match="ESOCKTNOSUPPORT"):
        Socket(INET, SEQ)


@pytest.mark.parametrize(
    ("family", "kind", "where"),
    [
        (UNIX, STREAM, "path"),
        (UNIX, SEQ, "path"),
        (UNIX, STREAM, "abstract"),
        (INET, STREAM, ("127.0.0.1", 0)),
        (INET6, STREAM, ("::1", 0)),
    ],
)
def test_bind_listen_connect_accept(tmp_path: Path, family: int, kind: int, where: object) -> None:
    if where == "path":
        address: object = str(tmp_path / "s.sock")
    elif where == "abstract":
        address = b"\0sockwire-test-" + os.urandom(6).hex().encode()
    else:
        address = where
    server = Socket(family, kind)
    server.bind(address)  # type: ignore[arg-type]
    server.listen(4)
    with server, Socket(family, kind) as client:
        client.connect(server.getsockname())
        conn, peer = server.accept()
        with conn:
            assert conn.fd not in (server.fd, client.fd)  # accept gives a new socket
            client.sendall(b"ping")
            assert conn.recv(10) == b"ping"
            conn.sendall(b"pong")
            assert client.recv(10) == b"pong"
            if family == UNIX:
                assert peer.pid == os.getpid()
                assert peer.uid == os.getuid()
                assert peer.unnamed
                assert "unnamed" in str(peer)
            else:
                assert peer.address is not None
                assert peer.creds is None


def test_send_to_dead_peer_is_connection_lost_not_sigpipe() -> None:
    a, b = socketpair()
    b.close()
    with a, pytest.raises(sockwire.ConnectionLost) as info:
        a.send(b"x")
    assert info.value.errno_name == "EPIPE"


def test_message_truncation_is_never_silent() -> None:
    a, b = socketpair(DGRAM)
    with a, b:
        b.send(b"0123456789")
        with pytest.raises(sockwire.TruncatedError) as info:
            a.recv(4)
        assert info.value.data == b"0123"
        assert info.value.size == 10
        b.send(b"abcdef")
        buf = bytearray(3)
        with pytest.raises(sockwire.TruncatedError):
            a.recv_into(buf)
        assert bytes(buf) == b"abc"
        b.send(b"xyz123")
        with pytest.raises(sockwire.TruncatedError):
            a.recvfrom(2)
        b.send(b"peeked")
        assert a.recv_into(bytearray(1), flags=MsgFlag.PEEK | MsgFlag.TRUNC) == 6
        msg = a.recvmsg(2)
        assert msg.truncated and msg.size == 6 and msg.data == b"pe"
        with pytest.raises(sockwire.InvalidOperation, match="MSG_TRUNC"):
            a.recv(4, MsgFlag.TRUNC)


def test_seqpacket_keeps_boundaries_and_empty_message_reads_like_eof() -> None:
    a, b = socketpair(SEQ)
    with a, b:
        for record in (b"one", b"", b"three"):
            b.send(record)
        assert [a.recv(100) for _ in range(3)] == [b"one", b"", b"three"]


def test_fd_passing_and_ctrunc(tmp_path: Path) -> None:
    a, b = socketpair()
    with a, b, open(tmp_path / "f", "w+b") as handle:
        handle.write(b"hello")
        handle.flush()
        b.sendmsg([b"x"], fds=[handle, handle.fileno()])
        msg = a.recvmsg(10, maxfds=2)
        assert msg.data == b"x" and len(msg.fds) == 2 and not msg.ctruncated
        for fd in msg.fds:
            assert os.pread(fd, 5, 0) == b"hello"
            os.close(fd)
        b.sendmsg([b"y"], fds=[handle.fileno()] * 3)
        short = a.recvmsg(10, maxfds=1)
        assert short.ctruncated
        for fd in short.fds:
            os.close(fd)


def test_too_many_fds_names_the_limit() -> None:
    a, b = socketpair()
    with a, b, pytest.raises(sockwire.InvalidOperation, match="253"):
        b.sendmsg([b"x"], fds=[a.fd] * 254)


def test_credentials_per_message_on_unix_dgram() -> None:
    a, b = socketpair(DGRAM)
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        b.send(b"who")
        msg = a.recvmsg(10, creds=True)
        assert msg.creds is not None
        assert (msg.creds.pid, msg.creds.uid) == (os.getpid(), os.getuid())


def test_unnamed_datagram_sender_reads_as_none(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    with Socket(UNIX, DGRAM) as receiver, Socket(UNIX, DGRAM) as sender:
        receiver.bind(path)
        sender.sendto(b"hi", path)
        data, address = receiver.recvfrom(10)
        assert (data, address) == (b"hi", None)


def test_read_write_on_the_descriptor() -> None:
    a, b = socketpair()
    with a, b:
        assert a.write(b"plain fd") == 8
        assert b.read(100) == b"plain fd"
        assert os.write(b.fd, b"os") == 2
        assert os.read(a.fd, 10) == b"os"


def test_oob_and_at_mark() -> None:
    with Socket(INET) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with Socket(INET) as client:
            client.connect(server.getsockname())
            conn, _ = server.accept()
            with conn:
                client.send(b"abc")
                client.send(b"!", MsgFlag.OOB)
                assert conn.wait_readable(5)
                assert conn.recv(100) == b"abc"
                assert conn.at_mark()
                assert conn.recv(1, MsgFlag.OOB) == b"!"
                with pytest.raises(sockwire.InvalidOperation):
                    conn.recv(1, MsgFlag.OOB)


def test_dontwait_and_timeout() -> None:
    a, b = socketpair()
    with a, b:
        with pytest.raises(sockwire.WouldBlock):
            a.recv(1, MsgFlag.DONTWAIT)
        a.settimeout(0.01)
        with pytest.raises(sockwire.TimeoutError):
            a.recv(1)


def test_closed_socket_is_a_caller_bug() -> None:
    a, b = socketpair()
    b.close()
    a.close()
    a.close()  # idempotent
    with pytest.raises(sockwire.ClosedError):
        a.send(b"x")


def test_trace_records_calls_like_strace(tmp_path: Path) -> None:
    with trace.recording() as events:
        a, b = socketpair(SEQ)
        b.send(b"hello")
        a.recv(100)
        with Socket() as lonely, pytest.raises(sockwire.ConnectError):
            lonely.connect(str(tmp_path / "none"))
        a.close()
        b.close()
    texts = [str(e) for e in events]
    assert texts[0].startswith("socketpair(AF_UNIX, SOCK_SEQPACKET, 0) = [")
    assert 'b"hello", 5, MSG_NOSIGNAL) = 5' in texts[1]
    assert texts[2].endswith('= 5 b"hello"')
    assert any(t.startswith("socket(AF_UNIX, SOCK_STREAM, 0) = ") for t in texts)
    assert any("connect(" in t and t.endswith("= -1 ENOENT") for t in texts)
    assert sum(t.startswith("close(") for t in texts) >= 2
    assert not trace.installed


def test_trace_hook_that_raises_is_removed() -> None:
    def broken(event: trace.Event) -> None:
        raise RuntimeError("boom")

    trace.add_hook(broken)
    a, b = socketpair()
    a.close()
    b.close()
    assert broken not in trace.installed


def test_families_reports_the_kernel() -> None:
    names = {f.name for f in sockwire.families()}
    assert {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} <= names
    assert "AF_DECnet" not in names
    every = sockwire.families(include_unsupported=True)
    assert len(every) == 45


def test_adopt_fd_keeps_family_and_type() -> None:
    a, b = socketpair(SEQ)
    with a, b:
        dup = os.dup(a.fd)
        with Socket.from_fd(dup) as again:
            assert again.type == SEQ and again.family == UNIX
