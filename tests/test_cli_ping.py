"""sockwire ping: the reply matcher fed crafted packets, and the command against real sockets.

Network rule: only 127.0.0.1, ::1, and addresses inside network namespaces
these tests create (``unshare -n``, as root).
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sockwire
from sockwire import icmp
from sockwire.cli.ping import Corrupt, Failure, Reply, Session, payload_for
from sockwire.cli.ping_cmd import ping_group_range
from tests.helpers import as_nobody, need, need_root, need_tool

SOCKWIRE = [sys.executable, "-m", "sockwire"]
IDENT = 0x4242
TARGET = "127.0.0.1"


# --------------------------------------------------------------------------
# crafting packets as the kernel delivers them
# --------------------------------------------------------------------------


def _ipv4(payload: bytes, src: str = TARGET, dst: str = TARGET, ttl: int = 64) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0x1234,
        0x4000,
        ttl,
        1,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header[:10] + struct.pack("!H", icmp.checksum(header)) + header[12:] + payload


def _icmp(kind: int, code: int, ident: int, seq: int, payload: bytes) -> bytes:
    body = struct.pack("!BBHHH", kind, code, 0, ident, seq) + payload
    return body[:2] + struct.pack("!H", icmp.checksum(body)) + body[4:]


def _reply(seq: int, *, ident: int = IDENT, size: int = 56, src: str = TARGET) -> bytes:
    return _ipv4(_icmp(icmp.ECHO_REPLY, 0, ident, seq, payload_for(size)), src=src)


def _unreachable(
    seq: int, *, ident: int = IDENT, code: int = 1, router: str = "10.0.0.1"
) -> bytes:
    request = icmp.echo_request(ident, seq, payload_for(56))
    quoted = _ipv4(request, src="10.0.0.2", dst=TARGET)[: 20 + 8]  # IP header + 8 bytes
    body = struct.pack("!BBHI", icmp.DEST_UNREACHABLE, code, 0, 0) + quoted
    body = body[:2] + struct.pack("!H", icmp.checksum(body)) + body[4:]
    return _ipv4(body, src=router)


def _session(**changes: object) -> Session:
    options: dict[str, object] = {
        "ipv6": False,
        "ident": IDENT,
        "size": 56,
        "count": 3,
        "interval": 1.0,
        "wait": 2.0,
        "started": 100.0,
        "ip_header": True,
    }
    options.update(changes)
    return Session(TARGET, **options)  # type: ignore[arg-type]


def _send(session: Session, n: int, start: float = 100.0) -> list[bytes]:
    return [session.request(start + i) for i in range(n)]


# --------------------------------------------------------------------------
# the matcher
# --------------------------------------------------------------------------


def test_a_reply_is_matched_timed_and_counted() -> None:
    session = _session()
    request = _send(session, 1)[0]
    assert request[0] == icmp.ECHO_REQUEST and icmp.checksum(request) == 0
    event = session.receive(_reply(1), TARGET, 100.0015)
    assert isinstance(event, Reply)
    assert (event.seq, event.size, event.ttl, event.duplicate) == (1, 64, 64, False)
    assert event.rtt == pytest.approx(0.0015)
    assert event.line() == "64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=1.500 ms"
    assert session.received == 1


def test_bad_icmp_checksum_is_corrupt_and_not_a_reply() -> None:
    session = _session()
    _send(session, 1)
    packet = bytearray(_reply(1))
    packet[20 + 2] ^= 0xFF  # the ICMP checksum
    event = session.receive(bytes(packet), TARGET, 100.001)
    assert isinstance(event, Corrupt) and "BAD CHECKSUM (ICMP)" in event.line()
    assert (session.received, session.corrupt) == (0, 1)


def test_bad_ip_header_checksum_is_corrupt() -> None:
    session = _session()
    _send(session, 1)
    packet = bytearray(_reply(1))
    packet[10] ^= 0x01
    event = session.receive(bytes(packet), TARGET, 100.001)
    assert isinstance(event, Corrupt) and "IPv4 header" in event.reason


def test_wrong_data_is_corrupt() -> None:
    session = _session()
    _send(session, 1)
    payload = bytearray(payload_for(56))
    payload[10] ^= 1
    packet = _ipv4(_icmp(icmp.ECHO_REPLY, 0, IDENT, 1, bytes(payload)))
    event = session.receive(packet, TARGET, 100.001)
    assert isinstance(event, Corrupt) and "first difference at byte 10" in event.reason
    assert session.received == 0


@pytest.mark.parametrize(
    ("packet", "source", "why"),
    [
        (_reply(1, ident=IDENT + 1), TARGET, "another program's ident"),
        (_reply(1, src="127.0.0.2"), "127.0.0.2", "another host"),
        (_reply(9), TARGET, "a seq we never sent"),
        (_ipv4(icmp.echo_request(IDENT, 1, payload_for(56))), TARGET, "our own request"),
        (_ipv4(_icmp(13, 0, IDENT, 1, b"")), TARGET, "a timestamp request"),
        (b"\x45\x00", "127.0.0.2", "garbage from someone else"),
    ],
)
def test_what_is_not_about_us_is_ignored(packet: bytes, source: str, why: str) -> None:
    session = _session()
    _send(session, 1)
    assert session.receive(packet, source, 100.001) is None, why
    assert (session.received, session.corrupt, session.errors) == (0, 0, 0)


def test_malformed_packet_from_the_target_is_reported() -> None:
    session = _session()
    _send(session, 1)
    event = session.receive(_ipv4(b"\x00\x00\x00"), TARGET, 100.001)
    assert isinstance(event, Corrupt) and "malformed ICMP" in event.reason


def test_a_second_reply_is_a_duplicate_and_not_timed() -> None:
    session = _session()
    _send(session, 1)
    assert isinstance(session.receive(_reply(1), TARGET, 100.001), Reply)
    dup = session.receive(_reply(1), TARGET, 100.5)
    assert isinstance(dup, Reply) and dup.duplicate and "(DUP!)" in dup.line()
    assert (session.received, session.duplicates) == (1, 1)
    stats = session.rtt()
    assert stats is not None and stats[2] == pytest.approx(0.001)


def test_destination_unreachable_quoting_our_request_is_an_error() -> None:
    session = _session()
    _send(session, 2)
    event = session.receive(_unreachable(2), "10.0.0.1", 100.2)
    assert isinstance(event, Failure)
    assert event.line() == "From 10.0.0.1 icmp_seq=2 Destination Host Unreachable"
    assert session.errors == 1
    assert session.receive(_unreachable(2, ident=7), "10.0.0.1", 100.2) is None
    truncated = _unreachable(1)[:-6]  # the quote loses the echo header's end
    assert session.receive(truncated, "10.0.0.1", 100.2) is None


def test_unanswered_requests_expire_once_and_late_replies_still_count() -> None:
    session = _session(count=2, wait=0.5)
    _send(session, 2)
    assert session.expire(100.4) == []
    assert session.expire(100.6) == [1]
    assert session.expire(100.7) == []
    late = session.receive(_reply(1), TARGET, 100.8)
    assert isinstance(late, Reply) and late.late and "late" in late.line()
    assert session.received == 1
    assert not session.finished(101.2)
    assert session.expire(101.6) == [2]
    assert session.finished(101.6)


def test_schedule_and_end() -> None:
    session = _session(count=3, interval=0.25, wait=1.0, ip_header=True)
    assert session.due(100.0) and session.next_send == 100.0
    session.request(100.0)
    assert not session.due(100.1) and session.next_send == 100.25
    assert session.wake_at() == 100.25
    for i in (1, 2):
        session.request(100.0 + 0.25 * i)
    assert session.next_send is None and not session.finished(100.6)
    for seq in (1, 2, 3):
        session.receive(_reply(seq), TARGET, 100.7)
    assert session.finished(100.7)


def test_deadline_ends_the_session() -> None:
    session = _session(count=1000, deadline=2.0)
    assert not session.finished(101.9)
    assert session.finished(102.0)


def test_summary_and_mdev_like_iputils() -> None:
    session = _session(count=4)
    _send(session, 4)
    for seq, rtt in ((1, 0.001), (2, 0.002), (3, 0.003)):
        session.receive(_reply(seq), TARGET, 100.0 + (seq - 1) + rtt)
    lines = session.summary("127.0.0.1", 3.5)
    assert lines[0] == "--- 127.0.0.1 ping statistics ---"
    assert lines[1] == "4 packets transmitted, 3 received, 25% packet loss, time 3500ms"
    # population standard deviation of 1, 2, 3 ms: sqrt(2/3) = 0.816
    assert lines[2] == "rtt min/avg/max/mdev = 1.000/2.000/3.000/0.816 ms"


def test_a_ping_socket_reply_needs_no_ident_match() -> None:
    # the kernel rewrites the ident of a SOCK_DGRAM ping and matches replies itself
    session = _session(match_ident=False, ip_header=False)
    _send(session, 1)
    event = session.receive(_icmp(icmp.ECHO_REPLY, 0, 999, 1, payload_for(56)), TARGET, 100.001)
    assert isinstance(event, Reply) and event.ttl is None


def _icmp6(kind: int, ident: int, seq: int, payload: bytes, src: str, dst: str) -> bytes:
    body = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    return body[:2] + struct.pack("!H", icmp.checksum_ipv6(src, dst, body)) + body[4:]


def test_ipv6_reply_checksum_uses_the_pseudo_header() -> None:
    session = Session(
        "::1", ipv6=True, ident=IDENT, size=8, count=1, interval=1, wait=1, started=0.0
    )
    request = session.request(0.0)
    assert request[0] == icmp.ECHO6_REQUEST and request[2:4] == b"\0\0"  # the kernel fills it
    good = _icmp6(icmp.ECHO6_REPLY, IDENT, 1, payload_for(8), "::1", "::1")
    bad = bytearray(good)
    bad[3] ^= 1
    assert isinstance(session.receive(bytes(bad), "::1", 0.001, local="::1"), Corrupt)
    event = session.receive(good, "::1", 0.002, ttl=64, local="::1")
    assert isinstance(event, Reply) and event.ttl == 64


def test_ipv6_unreachable_quoting_our_request() -> None:
    session = Session(
        "fd00::9", ipv6=True, ident=IDENT, size=8, count=1, interval=1, wait=1, started=0.0
    )
    request = session.request(0.0)
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(request), 58, 64, b"\0" * 15 + b"\1",
                      socket.inet_pton(socket.AF_INET6, "fd00::9"))  # fmt: skip
    error = _icmp6(icmp.DEST6_UNREACHABLE, 0, 0, ip6 + request, "fd00::1", "fd00::2")
    error = error[:1] + b"\x03" + error[2:]  # code 3: address unreachable (checksum not checked)
    event = session.receive(error, "fd00::1", 0.5)
    assert isinstance(event, Failure) and "Address unreachable" in event.text


@given(st.binary(max_size=200))
def test_any_bytes_from_the_target_never_raise(data: bytes) -> None:
    session = _session()
    _send(session, 1)
    event = session.receive(data, TARGET, 100.001)
    assert event is None or isinstance(event, Reply | Failure | Corrupt)


def test_no_single_byte_corruption_of_a_reply_passes_as_a_reply() -> None:
    # exhaustive: every byte, every flip. The IPv4 header checksum covers every
    # header byte, the ICMP checksum the rest, and a flip is never a multiple of 0xffff
    clean = _reply(1)
    for offset in range(len(clean)):
        for flip in range(1, 256):
            session = _session()
            session.request(100.0)
            packet = bytearray(clean)
            packet[offset] ^= flip
            event = session.receive(bytes(packet), TARGET, 100.001)
            assert not isinstance(event, Reply), (offset, flip)


def test_quoted_echo_rejects_a_short_quote() -> None:
    error = icmp.parse(_unreachable(1), ip_header=True)
    assert icmp.quoted_echo(error) == icmp.Quoted(TARGET, IDENT, 1)
    short = icmp.IcmpPacket(3, 1, 0, 0, 0, error.payload[:24], True)
    with pytest.raises(sockwire.errors.BadFrame):
        icmp.quoted_echo(short)


# --------------------------------------------------------------------------
# the command, with real sockets
# --------------------------------------------------------------------------


def _ping(*args: str, timeout: float = 30, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SOCKWIRE, "ping", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


def _check_summary(out: str, sent: int, received: int) -> None:
    assert f"{sent} packets transmitted, {received} received" in out
    if received:
        match = re.search(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
        assert match is not None, out
        low, avg, high, _ = (float(v) for v in match.groups())
        assert low <= avg <= high


@pytest.mark.timeout(30)
def test_ping_127_0_0_1_three_times_as_root() -> None:
    need_root()
    proc = _ping("127.0.0.1", "-c", "3", "-i", "0.05")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data."
    replies = [line for line in lines if "bytes from 127.0.0.1" in line]
    assert [re.search(r"icmp_seq=(\d+)", line)[1] for line in replies] == ["1", "2", "3"]  # type: ignore[index]
    assert all("ttl=64" in line and line.endswith(" ms") for line in replies)
    assert "--- 127.0.0.1 ping statistics ---" in proc.stdout
    _check_summary(proc.stdout, 3, 3)
    assert "0% packet loss" in proc.stdout
    value, admitted = ping_group_range()
    if admitted is False:  # this machine: "1 0" admits nobody, so we fell back and said why
        assert proc.stderr.count("\n") == 1
        assert f'net.ipv4.ping_group_range is "{value}"' in proc.stderr
        assert "using a raw socket" in proc.stderr


@pytest.mark.timeout(30)
def test_ping_ipv6_loopback() -> None:
    need_root()
    need(socket.has_ipv6 and _has_ipv6_loopback(), "needs ::1 on lo")
    proc = _ping("::1", "-c", "2", "-i", "0.05", "--trace")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("PING ::1 (::1) 56 data bytes")
    _check_summary(proc.stdout, 2, 2)
    assert "corrupt" not in proc.stdout  # the pseudo-header checksum verified every reply
    assert "IPPROTO_ICMPV6" in proc.stderr and "sendto(" in proc.stderr


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _in_netns(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``script`` under sh in a new, private network namespace (root only)."""
    need_root()
    need_tool("unshare")
    need_tool("ip")
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-ec", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "SW": " ".join(SOCKWIRE)},
    )
    need("unshare failed" not in proc.stderr, f"no private network namespace: {proc.stderr}")
    return proc


@pytest.mark.timeout(60)
def test_ping_socket_is_used_where_ping_group_range_allows_it() -> None:
    # the sysctl is per network namespace: in our own, allow gid 0 and no raw socket is needed
    proc = _in_netns(
        'ip link set lo up; echo "0 0" > /proc/sys/net/ipv4/ping_group_range\n'
        "$SW ping 127.0.0.1 -c 2 -i 0.05 --trace\n"
        "$SW ping ::1 -c 2 -i 0.05 --socket dgram --json\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("2 packets transmitted, 2 received") == 2
    assert "socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) = " in proc.stderr
    assert "fell back" not in proc.stderr and "using a raw socket" not in proc.stderr
    docs = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(d["call"] == "reply" for d in docs)


_NEIGHBOURS = (
    "ip link set lo up\n"
    "ip link add swa type veth peer name swb\n"
    "ip addr add 10.99.0.1/24 dev swa\n"
    "ip link set swa up; ip link set swb up\n"
    # neighbour discovery gives up after one probe of 100 ms
    "sysctl -qw net.ipv4.neigh.swa.mcast_solicit=1 net.ipv4.neigh.swa.retrans_time_ms=100\n"
    # 10.99.0.3 'is' at a MAC nobody has: its packets leave and nobody answers
    "ip neigh add 10.99.0.3 lladdr 02:00:00:00:00:01 dev swa nud permanent\n"
)


@pytest.mark.timeout(60)
def test_silence_is_a_bounded_timeout_exit_4() -> None:
    started = time.monotonic()
    proc = _in_netns(_NEIGHBOURS + "$SW ping 10.99.0.3 -c 2 -i 0.1 -W 0.3 || echo rc=$?")
    assert "rc=4" in proc.stdout, proc.stderr
    assert "no answer yet for icmp_seq=1 (waited 0.3 s)" in proc.stdout
    _check_summary(proc.stdout, 2, 0)
    assert "100% packet loss" in proc.stdout and "rtt" not in proc.stdout
    assert time.monotonic() - started < 3 * 5.0


@pytest.mark.timeout(60)
def test_destination_unreachable_from_the_kernel_is_exit_3() -> None:
    proc = _in_netns(_NEIGHBOURS + "$SW ping 10.99.0.2 -c 2 -i 0.1 -W 3 || echo rc=$?")
    assert "rc=3" in proc.stdout, proc.stderr
    assert "From 10.99.0.1 icmp_seq=1 Destination Host Unreachable" in proc.stdout
    assert "+2 errors" in proc.stdout


@pytest.mark.timeout(60)
def test_no_route_is_one_line_exit_3() -> None:
    proc = _in_netns("ip link set lo up\n$SW ping 10.98.0.2 -c 2 || echo rc=$?")
    assert "rc=3" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("sockwire: ping 10")]
    assert errors == [
        "sockwire: ping 10.98.0.2 (ENETUNREACH): no route to this address from here; "
        "see `sockwire route`"
    ]
    assert "Traceback" not in proc.stderr and "statistics" not in proc.stdout


@pytest.mark.timeout(60)
def test_unprivileged_without_ping_group_range_names_both_ways_out() -> None:
    value, _ = ping_group_range()
    need(value == "1 0", f"needs net.ipv4.ping_group_range = 1 0 (it is {value})")
    with as_nobody() as nobody:
        runs = {
            mode: subprocess.run(
                [*nobody.argv, "ping", "127.0.0.1", "-c", "1", "--socket", mode],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                cwd=nobody.cwd,
                env=nobody.env,
            )
            for mode in ("auto", "dgram")
        }
    auto = runs["auto"]
    assert auto.returncode == 5, auto.stderr
    assert auto.stdout == ""
    assert auto.stderr.count("\n") == 1 and "Traceback" not in auto.stderr
    line = auto.stderr.strip()
    assert line.startswith("sockwire: ping: no ICMP socket (EPERM): ")
    assert "CAP_NET_RAW" in line
    assert 'gid 65534 in net.ipv4.ping_group_range, which is "1 0"' in line
    dgram = runs["dgram"]
    assert dgram.returncode == 5
    assert dgram.stderr.startswith("sockwire: ping: no ICMP datagram socket (EACCES): ")


@pytest.mark.parametrize(
    "args",
    [
        ["127.0.0.1", "-c", "0"],
        ["127.0.0.1", "-c", "-1"],
        ["127.0.0.1", "-c", str(10**7)],
        ["127.0.0.1", "-i", "0"],
        ["127.0.0.1", "-i", "nan"],
        ["127.0.0.1", "-W", "-1"],
        ["127.0.0.1", "-s", "70000"],
        ["x" * 10_000],
        ["127.0.0.1", "-4", "-6"],
    ],
)
def test_bad_arguments_are_one_line_usage_errors(args: list[str]) -> None:
    proc = _ping(*args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith("sockwire: ")
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 2000


def test_help_documents_the_exit_codes_and_the_bounded_default() -> None:
    proc = _ping("--help")
    assert proc.returncode == 0
    assert "exit codes:" in proc.stdout
    assert "4    no reply at all" in proc.stdout and "5    no raw socket" in proc.stdout
    assert "default 4" in proc.stdout


@pytest.mark.timeout(30)
def test_ctrl_c_prints_the_statistics_and_exits_130() -> None:
    import signal

    from tests.cli_helpers import run

    need_root()
    with run("ping", "127.0.0.1", "-c", "1000", "-i", "0.05") as proc:
        proc.wait_out(b"icmp_seq=2 ")
        assert proc.stop(signal.SIGINT) == 130
    out = proc.out.decode()
    assert "--- 127.0.0.1 ping statistics ---" in out and "rtt min/avg/max/mdev" in out
    assert "Traceback" not in proc.text
