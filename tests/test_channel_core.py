"""The Channel package's shape (a pure core) and the deadlines of the blocking driver.

The core's arithmetic is tested with a ``now`` passed in (no waiting); the
driver's send and flush deadlines against real sockets whose buffers are
filled first, so "the peer takes nothing" is a fact, not a timing.
"""

from __future__ import annotations

import ast
import re
import socket
import struct
from pathlib import Path

import pytest

import sockwire
from sockwire.channel import Channel, ChannelCore, ReadLimits, ReadTimer, State, core
from sockwire.errors import ConnectionLost, TimeoutError

WAIT = 10.0
SHORT = 0.2


def _imports(path: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_core_is_pure() -> None:
    """core.py and packet.py take bytes and a now: no socket, thread, poll or clock."""
    from sockwire import packet

    for module in (core, packet):
        assert not _imports(module.__file__ or "") & {"socket", "threading", "select", "time"}
    assert "OSError" not in Path(core.__file__ or "").read_text()


def test_framing_internals_stay_in_framing() -> None:
    src = Path(sockwire.__file__).parent
    private = re.compile(r"\.(_tail|_need|_unpack_from|_pack|_header_only)\b|_STRUCTS")
    for path in src.rglob("*.py"):
        if path.name in ("framing.py", "auth.py"):  # auth.py's _need is its own
            continue
        assert not private.search(path.read_text()), path


# ---- the read deadlines as arithmetic


def test_read_timer_picks_the_nearest_deadline_and_says_why() -> None:
    timer = ReadTimer(ReadLimits(idle=5.0, frame=2.0), now=100.0)
    assert timer.until(101.0, None, mid=False) == (105.0, "idle")
    assert timer.until(101.0, 103.0, mid=False) == (103.0, "caller")
    assert timer.until(101.0, 110.0, mid=True) == (103.0, "frame")  # the frame began at 101
    assert timer.until(102.5, 110.0, mid=True) == (103.0, "frame")  # ... and still counts
    timer.received(104.0, mid_before=True, mid_after=True, delivered=True)
    assert timer.until(104.0, None, mid=True) == (106.0, "frame")  # a new message began
    timer.received(105.0, mid_before=True, mid_after=False, delivered=True)
    assert timer.until(105.0, None, mid=False) == (110.0, "idle")  # idle from the last byte


def test_read_timer_without_limits_is_the_callers_deadline() -> None:
    timer = ReadTimer(ReadLimits(), now=0.0)
    assert timer.until(1.0, None, mid=False) == (None, "caller")
    assert timer.until(1.0, 4.0, mid=True) == (4.0, "caller")


def test_expiry_errors_follow_the_state_table() -> None:
    limits = ReadLimits(idle=1.0, frame=2.0)
    c = ChannelCore("stream")
    assert isinstance(c.read_expired("caller", "x", 3.0, None), TimeoutError)
    assert c.state == State.OPEN
    assert isinstance(c.read_expired("idle", "x", None, limits), ConnectionLost)
    assert c.state == State.PEER_CLOSED
    c = ChannelCore("stream")
    error = c.read_expired("frame", "x", None, limits)
    assert isinstance(error, TimeoutError)
    assert "frame deadline" in str(error)
    assert c.state == State.BROKEN


def test_put_back_keeps_order_ahead_of_newer_frames() -> None:
    c = ChannelCore("stream")
    c.queue(b"one")
    taken = c.take()
    c.queue(b"two")  # appended while the first write was under way
    c.put_back(memoryview(taken)[2:])  # the write took 2 bytes
    assert bytes(c.out) == taken[2:] + struct.pack("!I", 3) + b"two"


# ---- send and flush deadlines on real sockets


def _fill(sock: socket.socket) -> int:
    """Fill ``sock``'s send path until the kernel takes nothing more; bytes written."""
    sock.setblocking(False)
    total = 0
    try:
        while True:
            total += sock.send(b"\0" * 65536)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return total


def _drain(sock: socket.socket, count: int) -> bytes:
    sock.settimeout(WAIT)
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "EOF before the expected bytes"
        data += chunk
    return bytes(data)


def test_send_with_a_timeout_to_a_peer_that_takes_nothing_sends_nothing() -> None:
    mine, theirs = socket.socketpair()
    filler = _fill(mine)
    with Channel.from_socket(mine) as channel, theirs:
        with pytest.raises(TimeoutError, match="not sent"):
            channel.send(b"m" * 100, timeout=SHORT)
        assert channel.state == State.OPEN
        assert _drain(theirs, filler) == b"\0" * filler  # the peer reads again
        channel.send(b"after", timeout=WAIT)
        assert _drain(theirs, 9) == struct.pack("!I", 5) + b"after"  # no trace of the first


def test_send_with_a_timeout_cut_short_breaks_the_channel() -> None:
    mine, theirs = socket.socketpair()
    with Channel.from_socket(mine) as channel, theirs:
        big = b"b" * (8 << 20)  # far more than the socket buffers hold
        with pytest.raises(TimeoutError, match="part of it written"):
            channel.send(big, timeout=SHORT)
        assert channel.state == State.BROKEN
        with pytest.raises(TimeoutError):
            channel.send(b"x")


def test_flush_with_a_timeout_keeps_what_was_not_taken_in_order() -> None:
    mine, theirs = socket.socketpair()
    filler = _fill(mine)
    with Channel.from_socket(mine) as channel, theirs:
        messages = [b"%d" % i * 100 for i in range(50)]
        for msg in messages:
            channel.send(msg)
        with pytest.raises(TimeoutError, match="stay queued"):
            channel.flush(timeout=SHORT)
        assert channel.state == State.OPEN
        _drain(theirs, filler)
        channel.flush(timeout=WAIT)
        with Channel.from_socket(theirs) as reader:
            assert [reader.recv(timeout=WAIT) for _ in messages] == messages


def test_send_many_with_a_timeout_is_queued_then_flushed_within_it() -> None:
    mine, theirs = socket.socketpair()
    filler = _fill(mine)
    with Channel.from_socket(mine) as channel, theirs:
        with pytest.raises(TimeoutError, match="stay queued"):
            channel.send_many([b"a", b"b" * 70000], timeout=SHORT)
        _drain(theirs, filler)
        channel.flush(timeout=WAIT)
        with Channel.from_socket(theirs) as reader:
            assert reader.recv(timeout=WAIT) == b"a"
            assert reader.recv(timeout=WAIT) == b"b" * 70000


@pytest.mark.parametrize("framing", ["none", "sockwire"])
def test_a_datagram_to_a_full_queue_times_out_unsent(framing: str) -> None:
    a, b = sockwire.pipe("dgram", framing=framing)
    with a, b:
        sent = 0
        refused: TimeoutError | None = None
        while refused is None and sent < 100_000:  # the receiver's queue holds a few hundred
            try:
                a.send(b"%d" % sent, timeout=SHORT)
            except TimeoutError as exc:
                refused = exc
            else:
                sent += 1
        assert refused is not None
        assert "not sent" in str(refused)
        assert a.state == State.OPEN
        got = [b.recv(timeout=WAIT) for _ in range(sent)]
        assert got == [b"%d" % i for i in range(sent)]
        a.send(b"again", timeout=WAIT)
        assert b.recv(timeout=WAIT) == b"again"


def test_a_codec_channel_honours_send_timeouts_too() -> None:
    mine, theirs = socket.socketpair()
    _fill(mine)
    with Channel.from_socket(mine, codec="json") as channel, theirs:
        with pytest.raises(TimeoutError, match="not sent"):
            channel.send({"n": 1}, timeout=SHORT)
        assert channel.state == State.OPEN
