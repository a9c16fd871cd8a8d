"""R18: fd passing abuse on every receive path: limits, truncation, and no leaks.

Numbers to hold: 10,000 messages of 10 unrequested fds on every receive path
(plain recv, recvmsg with room for credentials or other ancillary data,
recvfrom_peer, read, the Channel on each type, and datagram servers bound
here, inherited through fd: and through systemd:): 0 fds of growth; 253 fds
pass and 254 are refused; MSG_CTRUNC closes every fd that did arrive.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

import sockwire
from sockwire import Socket, dial, socketpair, unix
from sockwire.errors import TooManyFdsInFlight
from sockwire.sock import close_fds
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
    kind: int, data_file: IO[bytes], report: Callable[..., None]
) -> None:
    a, b = socketpair(kind)
    with a, b:
        before = _open_fds()
        unix.send_fds(a, b"max", [data_file] * unix.SCM_MAX_FD)
        msg = unix.recv_fds(b)
        assert len(msg.fds) == 253
        close_fds(msg.fds)
        with pytest.raises(sockwire.InvalidOperation, match="SCM_MAX_FD") as info:
            unix.send_fds(a, b"one too many", [data_file] * (unix.SCM_MAX_FD + 1))
        assert info.value.errno_name == "EINVAL"
        assert _open_fds() == before
    report("R18", fds_253_passed=1, fds_254_refused=1)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize(("sent", "room"), [(3, 1), (3, 2), (2, 1), (10, 0)])
def test_ctrunc_closes_every_fd_that_arrived(
    kind: int, sent: int, room: int, data_file: IO[bytes], report: Callable[..., None]
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
    report("R18", ctrunc_cases=1)


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
    kind: int, data_file: IO[bytes], report: Callable[..., None]
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
    report("R18", unrequested_fds=200_000, fd_growth=0)


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


# --------------------------------------------------------------------------
# Every receive path, 10,000 messages of 10 fds nobody asked for
# --------------------------------------------------------------------------

MESSAGES = 10_000


def _wire_of(kind: int, msg: bytes) -> bytes:
    """What a Channel of ``kind`` puts on the wire for ``msg`` (one write or packet)."""
    from sockwire.channel import Channel

    x, y = socketpair(kind)
    with x, y:
        sender = Channel.from_socket(x)
        sender.send(msg)
        sender.flush()
        wire = y.recv(1 << 16)
        sender.close()
    return wire


def _socket_path(name: str) -> Callable[[Socket], bytes]:
    return {
        "recv": lambda s: s.recv(64),
        "recv_into": lambda s: bytes(_into(s)),
        "recvfrom": lambda s: s.recvfrom(64)[0],
        "read": lambda s: s.read(64),
        "recvmsg-creds": lambda s: s.recvmsg(64, creds=True).data,
        "recvmsg-ancillary": lambda s: s.recvmsg(64, ancillary=64).data,
        "recvmsg-2fds-of-10": _two_of_ten,
        "recvfrom_peer": lambda s: unix.recvfrom_peer(s, 64)[0],
    }[name]


def _into(sock: Socket) -> bytearray:
    buf = bytearray(64)
    return buf[: sock.recv_into(buf)]


def _two_of_ten(sock: Socket) -> bytes:
    with pytest.raises(sockwire.TruncatedError, match="MSG_CTRUNC"):
        unix.recv_fds(sock, 64, maxfds=2)
    return b"m"


SOCKET_PATHS = [
    (path, kind)
    for path in (
        "recv",
        "recv_into",
        "recvfrom",
        "read",
        "recvmsg-creds",
        "recvmsg-ancillary",
        "recvmsg-2fds-of-10",
        "recvfrom_peer",
    )
    for kind in TYPES
    if path != "recvfrom_peer" or kind == socket.SOCK_DGRAM
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("path", "kind"), SOCKET_PATHS)
def test_r18_every_socket_receive_path_closes_unrequested_fds(
    path: str, kind: int, data_file: IO[bytes], report: Callable[..., None]
) -> None:
    receive = _socket_path(path)
    ten = [data_file] * 10
    a, b = socketpair(kind)
    with a, b:
        before = _open_fds()
        for _ in range(MESSAGES):
            unix.send_fds(a, b"m", ten)
            assert receive(b) == b"m"
        assert _open_fds() == before
    report("R18", receive_paths=1, unrequested_fds=10 * MESSAGES, fd_growth=0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", TYPES)
def test_r18_channel_recv_closes_unrequested_fds(
    kind: int, data_file: IO[bytes], report: Callable[..., None]
) -> None:
    from sockwire.channel import Channel

    wire = _wire_of(kind, b"message")
    ten = [data_file] * 10
    a, b = socketpair(kind)
    with a:
        channel = Channel.from_socket(b)
        with channel:
            before = _open_fds()
            for _ in range(MESSAGES):
                unix.send_fds(a, wire, ten)
                assert channel.recv(timeout=10) == b"message"
            assert _open_fds() == before
    report("R18", receive_paths=1, unrequested_fds=10 * MESSAGES, fd_growth=0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["bound", "fd"])
def test_r18_datagram_servers_close_unrequested_fds(
    how: str, data_file: IO[bytes], report: Callable[..., None]
) -> None:
    from sockwire.server import serve
    from tests.test_security_defects import DATAGRAM, _Counter

    with tempfile.TemporaryDirectory(prefix="sw-r18-") as tmp:
        path = f"{tmp}/d.sock"
        if how == "bound":
            endpoint = f"unix+dgram:{path}"
        else:
            endpoint = f"fd:{dial.bind(f'unix+dgram:{path}').detach()}"
        counter = _Counter(MESSAGES + 1)
        with (
            serve(endpoint, counter).start() as server,
            Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender,
        ):
            sender.sendto(DATAGRAM, path)
            before = _open_fds()
            for _ in range(MESSAGES):
                unix.send_fds(sender, DATAGRAM, [data_file] * 10, address=path)
            assert counter.done.wait(60), f"served {counter.count}"
            assert _open_fds() == before
            assert server.stats.fds_refused == MESSAGES
    report("R18", receive_paths=1, unrequested_fds=10 * MESSAGES, fd_growth=0)


@pytest.mark.timeout(120)
def test_r18_systemd_datagram_server_closes_unrequested_fds(
    data_file: IO[bytes], report: Callable[..., None]
) -> None:
    import subprocess
    import sys

    from tests.test_security_defects import DATAGRAM, SYSTEMD_DGRAM_CHILD, TRAMPOLINE

    with tempfile.TemporaryDirectory(prefix="sw-r18-") as tmp:
        path = f"{tmp}/logs.sock"
        high = dial.bind(f"unix+dgram:{path}").detach()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", TRAMPOLINE, str(high), SYSTEMD_DGRAM_CHILD, str(MESSAGES)],
                pass_fds=[high],
                stdout=subprocess.PIPE,
                text=True,
            )
        finally:
            os.close(high)
        try:
            assert proc.stdout is not None
            before = int(proc.stdout.readline())
            with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                for _ in range(MESSAGES):
                    unix.send_fds(sender, DATAGRAM, [data_file] * 10, address=path)
            out, _ = proc.communicate(timeout=60)
            seen, after, refused = map(int, out.split())
        finally:
            proc.kill()
            proc.communicate()
    assert (seen, refused) == (MESSAGES, MESSAGES)
    assert after == before
    report("R18", receive_paths=1, unrequested_fds=10 * MESSAGES, fd_growth=after - before)
