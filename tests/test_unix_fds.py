"""fd passing on stream, seqpacket and datagram: limits, truncation, and no leaks."""

from __future__ import annotations

import fcntl
import json
import os
import resource
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import sockwire
from sockwire import Socket, dial, socketpair, unix
from sockwire.errors import TooManyFdsInFlight
from tests.helpers import need_root

TYPES = [socket.SOCK_STREAM, socket.SOCK_SEQPACKET, socket.SOCK_DGRAM]
NOBODY = 65534


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def data_file(tmp_path: Path) -> Iterator[IO[bytes]]:
    path = tmp_path / "data"
    path.write_bytes(b"passed by descriptor")
    with open(path, "rb") as handle:
        yield handle


@pytest.mark.parametrize("kind", TYPES)
def test_ints_and_file_objects_travel_and_arrive_close_on_exec(
    kind: int, data_file: IO[bytes]
) -> None:
    a, b = socketpair(kind)
    with a, b:
        assert unix.send_fds(a, b"two", [data_file, data_file.fileno()]) == 3
        msg = unix.recv_fds(b, maxfds=2)
        assert msg.data == b"two" and len(msg.fds) == 2
        for fd in msg.fds:
            assert os.pread(fd, 100, 0) == b"passed by descriptor"
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            os.close(fd)


def test_datagram_fds_to_an_address(tmp_path: Path, data_file: IO[bytes]) -> None:
    path = str(tmp_path / "d.sock")
    with dial.bind(f"unix+dgram:{path}") as receiver:
        with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            unix.send_fds(sender, b"to you", [data_file], address=path)
        msg = unix.recv_fds(receiver)
        assert msg.data == b"to you" and msg.address is None and len(msg.fds) == 1
        os.close(msg.fds[0])


def test_stream_needs_a_byte_to_carry_fds(data_file: IO[bytes]) -> None:
    a, b = socketpair()
    with a, b, pytest.raises(sockwire.InvalidOperation, match="at least one byte"):
        unix.send_fds(a, b"", [data_file])


@pytest.mark.parametrize("kind", TYPES)
def test_253_fds_pass_and_254_are_refused_naming_the_limit(
    kind: int, data_file: IO[bytes]
) -> None:
    a, b = socketpair(kind)
    with a, b:
        before = _open_fds()
        unix.send_fds(a, b"max", [data_file] * unix.SCM_MAX_FD)
        msg = unix.recv_fds(b)
        assert len(msg.fds) == 253
        unix._close_all(msg.fds)
        with pytest.raises(sockwire.InvalidOperation, match="SCM_MAX_FD") as info:
            unix.send_fds(a, b"one too many", [data_file] * (unix.SCM_MAX_FD + 1))
        assert info.value.errno_name == "EINVAL"
        assert _open_fds() == before


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize(("sent", "room"), [(3, 1), (3, 2), (2, 1), (10, 0)])
def test_ctrunc_closes_every_fd_that_arrived(
    kind: int, sent: int, room: int, data_file: IO[bytes]
) -> None:
    """(2, 1): the ancillary buffer's 8-byte alignment has room for 2, so no
    MSG_CTRUNC from the kernel; more than asked is treated the same."""
    a, b = socketpair(kind)
    with a, b:
        before = _open_fds()
        unix.send_fds(a, b"x", [data_file] * sent)
        with pytest.raises(sockwire.TruncatedError, match="MSG_CTRUNC") as info:
            unix.recv_fds(b, maxfds=room)
        assert info.value.data == b"x"
        assert _open_fds() == before


@pytest.mark.parametrize("kind", [socket.SOCK_SEQPACKET, socket.SOCK_DGRAM])
def test_cut_message_closes_its_fds(kind: int, data_file: IO[bytes]) -> None:
    a, b = socketpair(kind)
    with a, b:
        before = _open_fds()
        unix.send_fds(a, b"a longer message", [data_file] * 4)
        with pytest.raises(sockwire.TruncatedError, match="MSG_TRUNC") as info:
            unix.recv_fds(b, 4)
        assert info.value.size == 16
        assert _open_fds() == before


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", TYPES)
def test_10000_messages_of_10_fds_to_a_receiver_that_asked_for_none(
    kind: int, data_file: IO[bytes]
) -> None:
    """Zero net fd growth. Plain recv(): the kernel closes them itself; and
    to count them, receive with room for 253, close and count the extras."""
    a, b = socketpair(kind)
    ten = [data_file] * 10
    with a, b:
        before = _open_fds()
        for _ in range(10_000):
            unix.send_fds(a, b"m", ten)
            assert b.recv(16) == b"m"
        assert _open_fds() == before
        counted = 0
        for _ in range(10_000):
            unix.send_fds(a, b"m", ten)
            msg, closed = unix.recv_discarding_fds(b, 16)
            assert msg.data == b"m" and msg.fds == []
            counted += closed
        assert counted == 100_000
        assert _open_fds() == before
        unix.send_fds(a, b"m", ten)
        flagged = b.recvmsg(16)  # no room for fds: MSG_CTRUNC is the only sign
        assert flagged.ctruncated and flagged.fds == []
        assert _open_fds() == before


def test_too_many_fds_in_flight_is_a_typed_error() -> None:
    """ETOOMANYREFS: an unprivileged sender (uid 65534, ulimit -n 64) whose
    receiver does not read. Root is exempt, so a forked child drops to 65534."""
    need_root()
    a, b = socketpair()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody with a small fd limit, send until refused
        code = 1
        try:
            os.close(report_r)
            b.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            result: dict[str, object] = {"sent": 0, "error": None}
            for sent in range(300):  # bounded; the kernel refuses near 64
                try:
                    unix.send_fds(a, b"x", [a])
                except TooManyFdsInFlight as exc:
                    result = {
                        "sent": sent,
                        "error": str(exc),
                        "resource": isinstance(exc, sockwire.ResourceExhausted),
                    }
                    break
            os.write(report_w, json.dumps(result).encode())
            code = 0
        except BaseException as exc:
            os.write(report_w, json.dumps({"sent": -1, "error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(report_w)
    with a, b:
        report = json.loads(os.read(report_r, 4096))
        os.close(report_r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report["error"] is not None, f"no ETOOMANYREFS after {report['sent']} fds"
    assert "ETOOMANYREFS" in report["error"] and report["resource"]
    assert 60 <= report["sent"] <= 80
