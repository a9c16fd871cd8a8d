"""aio.Socket and aio.unix: the system calls awaitable, with what asyncio itself cannot do.

SEQPACKET listen/accept/connect, sendmsg/recvmsg with descriptors and
credentials, per-datagram credentials, peer filters on accept, and the same
errors as the blocking Socket.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from sockwire import aio
from sockwire.aio import unix as aio_unix
from sockwire.errors import (
    ClosedError,
    ConnectionLost,
    ConnectionRefused,
    InvalidOperation,
    NotFound,
    PermissionDenied,
    TimeoutError,
    TruncatedError,
)
from sockwire.flags import MsgFlag

pytestmark = pytest.mark.timeout(30)


async def test_asyncio_itself_has_no_seqpacket() -> None:
    """Why aio.Socket exists: asyncio's transports refuse SEQPACKET."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with left, right, pytest.raises(ValueError, match="Stream Socket"):
        await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, left)


async def test_seqpacket_listen_accept_connect_send_recv(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with aio.Socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind(path)
        listener.listen(8)
        accepting = asyncio.create_task(listener.accept())
        with aio.Socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as client:
            await client.connect(path)
            conn, peer = await accepting
            with conn:
                assert peer.pid == os.getpid()
                assert conn.peercred() is not None
                await client.send(b"one")
                await client.send(b"two")
                assert await conn.recv(100) == b"one"  # boundaries kept
                assert await conn.recv(100) == b"two"
                await conn.sendall(b"back")
                assert await client.recv(100) == b"back"
                await client.send(b"x" * 50)
                with pytest.raises(TruncatedError):  # never cut silently
                    await conn.recv(10)


async def test_two_readers_and_a_writer_wait_on_one_socket() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with aio.Socket.wrap(left) as a, aio.Socket.wrap(right) as b:
        readers = [asyncio.create_task(b.recv(10)) for _ in range(2)]
        await asyncio.sleep(0)
        await a.send(b"1")
        await a.send(b"2")
        assert sorted(await asyncio.gather(*readers)) == [b"1", b"2"]


async def test_close_wakes_waiters_with_closed_error() -> None:
    left, right = socket.socketpair()
    with left:
        sock = aio.Socket.wrap(right)
        waiting = asyncio.create_task(sock.recv(10))
        await asyncio.sleep(0)
        sock.close()
        with pytest.raises(ClosedError):
            await waiting


async def test_connect_errors_are_the_blocking_ones(tmp_path: Path) -> None:
    with aio.Socket(socket.AF_UNIX) as sock, pytest.raises(NotFound):
        await sock.connect(str(tmp_path / "nobody.sock"))
    with aio.Socket(socket.AF_INET) as sock:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        with pytest.raises(ConnectionRefused):
            await sock.connect(("127.0.0.1", port))


async def test_connect_to_a_full_backlog_waits_then_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(0)
        held = []
        try:
            for _ in range(5):  # fill the backlog (0 admits one or two)
                sock = aio.Socket(socket.AF_UNIX)
                held.append(sock)
                try:
                    await sock.connect(path, timeout=0.1)
                except TimeoutError:
                    break
            else:
                pytest.fail("the backlog never filled")
        finally:
            for sock in held:
                sock.close()


async def test_fd_passing_on_every_type() -> None:
    for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET, socket.SOCK_DGRAM):
        left, right = socket.socketpair(socket.AF_UNIX, kind)
        with aio.Socket.wrap(left) as a, aio.Socket.wrap(right) as b:
            r, w = os.pipe()
            try:
                await aio_unix.send_fds(a, b"with a pipe", [w])
                msg = await aio_unix.recv_fds(b, 100, maxfds=4)
                assert msg.data == b"with a pipe"
                assert len(msg.fds) == 1
                os.write(msg.fds[0], b"through the passed fd")
                os.close(msg.fds[0])
                assert os.read(r, 100) == b"through the passed fd"
            finally:
                os.close(r)
                os.close(w)


async def test_too_many_fds_are_all_closed_never_leaked() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with aio.Socket.wrap(left) as a, aio.Socket.wrap(right) as b:
        before = len(os.listdir("/proc/self/fd"))
        fds = [os.dup(0) for _ in range(6)]
        try:
            await aio_unix.send_fds(a, b"six", fds)
        finally:
            for fd in fds:
                os.close(fd)
        with pytest.raises(TruncatedError, match="closed"):
            await aio_unix.recv_fds(b, 100, maxfds=2)
        assert len(os.listdir("/proc/self/fd")) == before
        fds = [os.dup(0) for _ in range(3)]
        try:
            await aio_unix.send_fds(a, b"three", fds)
        finally:
            for fd in fds:
                os.close(fd)
        msg, closed = await aio_unix.recv_discarding_fds(b, 100)
        assert (msg.data, closed) == (b"three", 3)
        assert len(os.listdir("/proc/self/fd")) == before


async def test_send_fds_refuses_an_empty_stream_message() -> None:
    left, right = socket.socketpair()
    with aio.Socket.wrap(left) as a, right, pytest.raises(InvalidOperation, match="at least one"):
        await aio_unix.send_fds(a, b"", [0])


async def test_datagram_credentials_filter_and_reply(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    with aio.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        aio_unix.enable_passcred(server.sock)
        with aio.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            aio_unix.autobind(client.sock)
            await client.sendto(b"hello", path)
            data, peer = await aio_unix.recvfrom_peer(server)
            assert data == b"hello"
            assert (peer.pid, peer.uid) == (os.getpid(), os.getuid())
            await aio_unix.reply(server, peer, b"hi")
            assert await client.recv(100) == b"hi"
            for i in range(3):
                await client.sendto(b"%d" % i, path)
            refused = aio_unix.PeerFilter(uids=[54321])
            with pytest.raises(PermissionDenied, match="in a row"):
                await aio_unix.recv_checked(server, refused, limit=3)
        with aio.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed:
            await unnamed.sendto(b"anonymous", path)
            _, peer = await aio_unix.recvfrom_peer(server)
            assert peer.unnamed
            with pytest.raises(InvalidOperation, match="unnamed"):
                await aio_unix.reply(server, peer, b"no")


async def test_recvmsg_reports_truncation_and_credentials() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with aio.Socket.wrap(left) as a, aio.Socket.wrap(right) as b:
        b.tell_empty_from_eof()
        await a.sendmsg([b"abc", b"defgh"])
        msg = await b.recvmsg(4, creds=True)
        assert msg.data == b"abcd" and msg.size == 8
        assert msg.flags & MsgFlag.TRUNC
        assert msg.creds is not None and msg.creds.pid == os.getpid()


async def test_accept_checked_closes_refused_peers_unread(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with aio.Socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(8)
        first = aio.Socket(socket.AF_UNIX)
        second = aio.Socket(socket.AF_UNIX)
        with first, second:
            await first.connect(path)
            await first.send(b"refused: never read")
            await second.connect(path)
            order = iter([False, True])
            conn, _ = await aio_unix.accept_checked(listener, lambda peer: next(order))
            with conn:
                await second.send(b"admitted")
                assert await conn.recv(100) == b"admitted"
            with pytest.raises(ConnectionLost) as info:  # closed with its bytes unread
                await first.recv(100)
            assert info.value.errno_name == "ECONNRESET"
