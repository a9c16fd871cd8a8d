"""The Channel hooks the server and the patterns rely on.

* Read limits: idle timeout, frame deadline, the stop signal of a draining
  server (a message already arriving is still read whole).
* recv's flush-before-wait never waits for another thread's write (that
  could deadlock two peers that both write large messages).
* A datagram core answering many senders numbers each destination apart.
* A broken, closed Channel is freed at once, not by a later GC pass.
"""

from __future__ import annotations

import gc
import os
import struct
import time
import weakref
from collections.abc import Iterator

import pytest

import sockwire
from sockwire.channel import Channel, ChannelCore, ReadLimits, State
from sockwire.errors import ConnectionLost, FrameTooLarge, InvalidOperation, TimeoutError

WAIT = 10.0


@pytest.fixture
def stop_pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(r)
        os.close(w)


def _raw(ch: Channel) -> object:
    return ch._io.raw  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["stream", "seqpacket"])
def test_idle_limit_ends_reading_like_a_clean_close(kind: str) -> None:
    a, b = sockwire.pipe(kind)
    with a, b:
        a.set_read_limits(ReadLimits(idle=0.1))
        b.send(b"one")
        b.flush()
        started = time.monotonic()
        assert list(a) == [b"one"], "iteration ends at the idle limit"
        assert time.monotonic() - started < 3 * 0.1 + 0.2
        assert a.state == State.PEER_CLOSED
        a.send(b"still allowed to answer")
        a.flush()
        assert b.recv(timeout=WAIT) == b"still allowed to answer"


def test_idle_limit_counts_from_the_last_byte_and_a_timeout_comes_first() -> None:
    a, b = sockwire.pipe()
    with a, b:
        a.set_read_limits(ReadLimits(idle=5.0))
        with pytest.raises(TimeoutError, match="no message within"):
            a.recv(timeout=0.05)  # the caller's deadline is the nearer one
        assert a.state == State.OPEN
        b.send(b"x")
        b.flush()
        assert a.recv(timeout=WAIT) == b"x"


@pytest.mark.parametrize("kind", ["stream", "seqpacket"])
def test_frame_deadline_breaks_a_message_that_never_finishes(kind: str) -> None:
    # a seqpacket message is unfinished only with the sockwire header (fragments)
    a, b = sockwire.pipe(kind, framing="sockwire" if kind == "seqpacket" else None)
    with a, b:
        a.set_read_limits(ReadLimits(frame=0.1))
        partial = struct.pack("!I", 100) + b"part" if kind == "stream" else b"\x11part"
        _raw(b).send(partial)  # type: ignore[attr-defined]
        with pytest.raises(TimeoutError, match="frame deadline"):
            a.recv()
        assert a.state == State.BROKEN
        with pytest.raises(TimeoutError):
            a.recv()


def test_the_stop_signal_ends_waiting_between_messages_only(stop_pipe: tuple[int, int]) -> None:
    r, w = stop_pipe
    a, b = sockwire.pipe()
    with a, b:
        a.set_read_limits(ReadLimits(stop_fd=r))
        _raw(b).send(struct.pack("!I", 6) + b"hal")  # type: ignore[attr-defined]
        with pytest.raises(TimeoutError):
            a.recv(timeout=0.05)  # reads the half message, waits for the rest
        os.write(w, b"x")  # the server drains now
        _raw(b).send(b"ves")  # type: ignore[attr-defined]
        assert a.recv(timeout=WAIT) == b"halves", "a message already arriving is read whole"
        b.send(b"too late")
        b.flush()
        with pytest.raises(ConnectionLost, match="shutting down"):
            a.recv()
        assert a.state == State.PEER_CLOSED


def test_read_limits_need_a_real_socket() -> None:
    from tests.test_channel_fake import FakeStreamIO, _Wire

    channel = Channel(FakeStreamIO(_Wire(), _Wire(), seed=1))
    with pytest.raises(InvalidOperation, match="real socket"):
        channel.set_read_limits(ReadLimits(idle=1))


def test_read_limits_apply_to_codec_channels_too() -> None:
    a, b = sockwire.pipe(codec="json")
    with a, b:
        a.set_read_limits(ReadLimits(idle=0.1))
        b.send({"k": 1})
        b.flush()
        assert list(a) == [{"k": 1}]


@pytest.mark.parametrize("timeout", [None, WAIT])
def test_recv_does_not_wait_for_another_threads_write(timeout: float | None) -> None:
    a, b = sockwire.pipe()
    with a, b:
        # another thread is in the middle of a write (it holds the send lock)
        # and a small frame waits in the buffer for its own flush()
        a._send_lock.acquire()
        try:
            a._core.out += struct.pack("!I", 5) + b"small"
            b.send(b"reply")
            b.flush()
            assert a.recv(timeout) == b"reply", "read without waiting for the writer"
        finally:
            a._send_lock.release()
        a.flush()
        assert b.recv(timeout=WAIT) == b"small"


def test_recv_still_flushes_before_waiting_when_nobody_writes() -> None:
    a, b = sockwire.pipe()
    with a, b:
        a.send(b"ping")  # buffered, not flushed
        with pytest.raises(TimeoutError):
            a.recv(timeout=0.05)
        assert b.recv(timeout=WAIT) == b"ping"


def test_datagram_core_numbers_each_destination_apart() -> None:
    core = ChannelCore("dgram", framing="sockwire")
    heads = [bytes(core.datagram_to(b"m", addr)[0]) for addr in ("/a", "/b", "/a", "/a", "/b")]
    assert [struct.unpack("!BI", h)[1] for h in heads] == [0, 0, 1, 2, 1]


def test_a_broken_closed_channel_is_freed_without_the_gc() -> None:
    a, b = sockwire.pipe()
    gc.disable()
    try:
        _raw(b).send(struct.pack("!I", 2**31))  # type: ignore[attr-defined]
        with pytest.raises(FrameTooLarge):
            a.recv()
        a.close()
        ref = weakref.ref(a)
        del a
        assert ref() is None, "no reference cycle through the error's traceback"
    finally:
        gc.enable()
        b.close()


class _BufferingIO:
    """A seam that, like TLS, keeps bytes it has read where poll() cannot see them."""

    buffers = True

    def fileno(self) -> int:
        return self.inner.fileno()

    def __init__(self, sock: sockwire.Socket) -> None:
        from sockwire.channel import SocketIO

        self.inner = SocketIO(sock)
        self.raw = self.inner.raw
        self.stash = b""

    def wait(self, readable: bool, timeout: float | None) -> bool:
        if self.stash:
            return True
        if not self.inner.wait(True, timeout):
            return False
        self.stash = self.raw.recv(65536)
        return True

    def recv(self, size: int, waitall: bool) -> bytes:
        if not self.stash:
            self.wait(True, None)
        data, self.stash = self.stash[: min(size, 5)], self.stash[min(size, 5) :]
        return data

    def send_all(self, buffers: object) -> None:
        self.inner.send_all(buffers)  # type: ignore[arg-type]

    def shutdown(self, how: int) -> None:
        self.inner.shutdown(how)

    def close(self) -> None:
        self.inner.close()


def test_read_limits_ask_a_buffering_seam_before_polling(stop_pipe: tuple[int, int]) -> None:
    r, _ = stop_pipe
    mine, theirs = sockwire.socketpair()
    channel = Channel(_BufferingIO(mine))  # type: ignore[arg-type]
    with channel, theirs:
        channel.set_read_limits(ReadLimits(idle=WAIT, stop_fd=r))
        theirs.sendall(b"\0\0\0\x01a\0\0\0\x01b")  # both frames in one write
        assert channel.recv(timeout=WAIT) == b"a"  # the seam now holds "b", the kernel nothing
        started = time.monotonic()
        assert channel.recv(timeout=WAIT) == b"b"
        assert time.monotonic() - started < WAIT / 2, "not found by waiting out a deadline"
