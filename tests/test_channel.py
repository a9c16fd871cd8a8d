"""Channel conformance: one set of tests over every transport, on real sockets.

Transports: unix stream, tcp (loopback), unix seqpacket, unix datagram, udp
(loopback), and pipe() of each type. Reliable-only checks skip the datagram
ones.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

import sockwire
from sockwire import dial
from sockwire.channel import Channel, State
from sockwire.errors import (
    BadFrame,
    ClosedError,
    ConnectionLost,
    FrameTooLarge,
    InvalidOperation,
    MessageTooLarge,
    ProtocolError,
    TimeoutError,
)
from sockwire.sock import Socket

Pair = tuple[Channel, Channel]


def _accepted(listen_ep: str, connect_ep: Callable[[Socket], str], **kw: object) -> Pair:
    listener = dial.listen(listen_ep)
    try:
        client = Channel.connect(connect_ep(listener), **kw)  # type: ignore[arg-type]
        conn, _ = listener.accept()
    finally:
        listener.close()
    return client, Channel.from_socket(conn, framing=client.framing, **kw)  # type: ignore[arg-type]


def _datagrams(family: int, addresses: tuple[object, object], framing: str | None = None) -> Pair:
    a = Socket(family, socket.SOCK_DGRAM)
    b = Socket(family, socket.SOCK_DGRAM)
    for sock in (a, b):  # UDP drops what does not fit: give the tests room (capped by rmem_max)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    a.bind(addresses[0])  # type: ignore[arg-type]
    b.bind(addresses[1])  # type: ignore[arg-type]
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    return Channel.from_socket(a, framing=framing), Channel.from_socket(b, framing=framing)


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sw-chan-") as path:
        yield path


def _make(name: str, tmp: str, **kw: object) -> Pair:
    """The pair of Channels of transport ``name``; ``-sockwire``: the sockwire packet header."""
    header = name.endswith("-sockwire")
    name = name.removesuffix("-sockwire")
    query = "?framing=sockwire" if header else ""
    framing = "sockwire" if header else None
    if name == "unix":
        path = os.path.join(tmp, "s")
        return _accepted(f"unix:{path}", lambda _: f"unix:{path}", **kw)
    if name == "unix-netstring":
        path = os.path.join(tmp, "s")
        return _accepted(f"unix:{path}", lambda _: f"unix:{path}?framing=netstring", **kw)
    if name == "tcp":
        return _accepted(
            "tcp://127.0.0.1:0", lambda s: f"tcp://127.0.0.1:{s.getsockname()[1]}", **kw
        )
    if name == "seqpacket":
        path = os.path.join(tmp, "s")
        return _accepted(f"unix+seqpacket:{path}", lambda _: f"unix+seqpacket:{path}{query}", **kw)
    if name == "unix-dgram":
        paths = (os.path.join(tmp, "a"), os.path.join(tmp, "b"))
        return _datagrams(socket.AF_UNIX, paths, framing)
    if name == "udp":
        return _datagrams(socket.AF_INET, (("127.0.0.1", 0), ("127.0.0.1", 0)), framing)
    kind = name.removeprefix("pipe-")
    return sockwire.pipe(kind, framing=framing, **kw)  # type: ignore[arg-type]


ALL = [
    "unix",
    "unix-netstring",
    "tcp",
    "seqpacket",
    "seqpacket-sockwire",
    "unix-dgram",
    "unix-dgram-sockwire",
    "udp",
    "udp-sockwire",
    "pipe-stream",
    "pipe-seqpacket",
    "pipe-seqpacket-sockwire",
    "pipe-dgram",
    "pipe-dgram-sockwire",
]
RELIABLE = [n for n in ALL if "dgram" not in n and not n.startswith("udp")]
#: the reliable transports that carry a message larger than one packet
ANY_SIZE = [n for n in RELIABLE if "seqpacket" not in n or n.endswith("-sockwire")]


@pytest.fixture(params=ALL)
def pair(request: pytest.FixtureRequest, tmp: str) -> Iterator[Pair]:
    a, b = _make(request.param, tmp)
    with a, b:
        yield a, b


@pytest.fixture(params=RELIABLE)
def reliable(request: pytest.FixtureRequest, tmp: str) -> Iterator[Pair]:
    a, b = _make(request.param, tmp)
    with a, b:
        yield a, b


@pytest.fixture(params=ANY_SIZE)
def any_size(request: pytest.FixtureRequest, tmp: str) -> Iterator[Pair]:
    a, b = _make(request.param, tmp)
    with a, b:
        yield a, b


# ---------------------------------------------------------------- every transport


def test_messages_keep_their_boundaries_both_ways(pair: Pair) -> None:
    a, b = pair
    messages = [b"", b"one", b"", b"x" * 1000, b"\0\n,:" * 10, b""]
    for msg in messages:
        a.send(msg)
    a.flush()
    assert [b.recv(timeout=10) for _ in messages] == messages
    b.send_many(messages)
    b.flush()
    assert [a.recv(timeout=10) for _ in messages] == messages


def test_many_small_messages_in_order(pair: Pair) -> None:
    a, b = pair
    # message sockets do not buffer in the Channel: the kernel queue holds ~200 small ones
    count = 100 if a.kind != "stream" else 5000
    a.send_many(b"%d" % i for i in range(count))
    a.flush()
    assert [b.recv() for _ in range(count)] == [b"%d" % i for i in range(count)]
    if a.kind == "dgram":
        assert b.stats.lost == (0 if b.framing == "sockwire" else None)


def test_recv_times_out_and_the_channel_stays_usable(pair: Pair) -> None:
    a, b = pair
    with pytest.raises(TimeoutError):
        b.recv(timeout=0.01)
    a.send(b"after")
    a.flush()
    assert b.recv(timeout=10) == b"after"


def test_closed_channel_raises_closed_error_and_close_is_idempotent(pair: Pair) -> None:
    a, _ = pair
    a.close()
    a.close()
    assert a.closed
    with pytest.raises(ClosedError):
        a.send(b"x")
    with pytest.raises(ClosedError):
        a.recv(timeout=1)
    with pytest.raises(ClosedError):
        a.flush()


def test_json_codec(tmp: str) -> None:
    for name in ("unix", "seqpacket", "pipe-dgram"):
        a, b = _make(name, tmp, codec="json")
        with a, b:
            a.send({"n": 1, "s": ["x", None]})
            a.flush()
            assert b.recv(timeout=10) == {"n": 1, "s": ["x", None]}
        for leftover in os.listdir(tmp):
            os.unlink(os.path.join(tmp, leftover))


def test_threads_never_interleave_frames(pair: Pair) -> None:
    a, b = pair
    per_thread = 50 if a.kind == "dgram" else 2000

    def sender(tag: int) -> None:
        for i in range(per_thread):
            a.send(bytes([tag]) * (1 + i % 50))
        a.flush()

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
    got: list[bytes] = []
    for thread in threads:
        thread.start()
    try:
        for _ in range(4 * per_thread):
            got.append(b.recv(timeout=10))
    finally:
        for thread in threads:
            thread.join()
    for msg in got:
        assert msg == msg[:1] * len(msg)
    for tag in range(4):
        mine = [len(m) for m in got if m[:1] == bytes([tag])]
        assert mine == [1 + i % 50 for i in range(per_thread)]


def test_close_from_another_thread_wakes_a_blocked_recv(pair: Pair) -> None:
    a, _ = pair
    started = threading.Event()
    outcome: list[BaseException] = []

    def reader() -> None:
        started.set()
        try:
            a.recv()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    started.wait(5)
    while not a._recv_lock.locked() and thread.is_alive():
        threading.Event().wait(0.001)  # bounded: the reader takes the lock right away
    a.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClosedError)


# ---------------------------------------------------------------- reliable ones


def _in_thread(fn: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn)
    thread.start()
    return thread


def test_one_mebibyte_messages(any_size: Pair) -> None:
    a, b = any_size
    big = os.urandom(1 << 20)
    small = b"tail"

    def sender() -> None:  # 1 MiB does not fit in the kernel's buffer: a reader must run
        a.send(big)
        a.send(small)
        a.send(big)
        a.flush()

    thread = _in_thread(sender)
    try:
        assert b.recv() == big  # no deadline: the zero-copy MSG_WAITALL path
        assert b.recv() == small
        assert b.recv(timeout=20) == big  # a deadline: read piece by piece
    finally:
        thread.join()


def test_peer_close_ends_iteration_after_every_message(reliable: Pair) -> None:
    a, b = reliable
    a.send_many([b"1", b"", b"3"])
    a.close()
    assert list(b) == [b"1", b"", b"3"]
    assert b.state == State.PEER_CLOSED
    with pytest.raises(ConnectionLost, match="peer closed"):
        b.recv()


def test_send_to_a_closed_peer_is_connection_lost(reliable: Pair) -> None:
    a, b = reliable
    b.close()

    def flood() -> None:
        for _ in range(100):  # a stream may take the first writes into its buffer
            a.send(b"x" * 70000)
            a.flush()

    with pytest.raises(ConnectionLost):
        flood()
    assert a.state == State.BROKEN


# ---------------------------------------------------------------- per transport


def test_datagram_size_limit_names_it(tmp: str) -> None:
    for name in ("udp", "unix-dgram", "udp-sockwire", "unix-dgram-sockwire"):
        a, b = _make(name, tmp)
        with a, b, pytest.raises(MessageTooLarge, match="at most"):
            a.send(b"x" * (a.max_message + 1))
        for leftover in os.listdir(tmp):
            os.unlink(os.path.join(tmp, leftover))


@pytest.mark.parametrize("name", ["seqpacket", "pipe-seqpacket"])
def test_a_message_over_one_packet_names_the_sockwire_framing(name: str, tmp: str) -> None:
    """Without the packet header a seqpacket message is one packet: no silent split."""
    a, b = _make(name, tmp)
    with a, b:
        assert a.framing == "none"
        assert a.max_message == a._core.packet_payload
        with pytest.raises(MessageTooLarge, match=r"\?framing=sockwire"):
            a.send(b"x" * (a.max_message + 1))
        a.send(b"x" * a.max_message)  # the largest one packet carries
        assert b.recv(timeout=10) == b"x" * a.max_message
        assert a.state == State.OPEN


def test_plain_packets_are_what_other_programs_send(tmp: str) -> None:
    """The default: the kernel's boundaries and nothing else, both ways."""
    for kind in (socket.SOCK_SEQPACKET, socket.SOCK_DGRAM):
        left, right = socket.socketpair(socket.AF_UNIX, kind)
        with left, Channel.from_socket(right) as ch:
            left.send(b"from a plain socket")
            left.send(b"")
            assert ch.recv(timeout=5) == b"from a plain socket"
            assert ch.recv(timeout=5) == b""
            ch.send(b"to a plain socket")
            assert left.recv(100) == b"to a plain socket"
            assert ch.stats.lost is None  # not counted, not zero
            assert not ch.stats.counting


def test_empty_seqpacket_messages_before_the_end_are_not_taken_for_it() -> None:
    """SO_PASSCRED tells an empty packet from EOF, even after the peer has closed."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with Channel.from_socket(right) as ch:
        for msg in (b"", b"x", b"", b""):
            left.send(msg)
        left.close()
        assert list(ch) == [b"", b"x", b"", b""]
        assert ch.state == State.PEER_CLOSED


def test_unix_datagram_channel_applies_backpressure_without_loss() -> None:
    a, b = sockwire.pipe("dgram", framing="sockwire")
    count = 3000
    with a, b:
        done = threading.Event()

        def sender() -> None:
            for i in range(count):
                a.send(b"%d" % i)
            done.set()

        thread = threading.Thread(target=sender)
        thread.start()
        try:
            # the receiver's queue fills; the sender is held back, not dropped
            assert not done.wait(0.2) or count < 1000
            got = [b.recv(timeout=10) for _ in range(count)]
        finally:
            thread.join()
        assert got == [b"%d" % i for i in range(count)]
        assert (b.stats.lost, b.stats.late) == (0, 0)


def test_kernel_truncation_of_an_oversized_datagram_is_counted() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    with Channel.from_socket(right) as rx:
        with left:
            left.send(b"x" * (300 * 1024))  # over MAX_PACKET
            left.send(b"ok")
        assert rx.recv(timeout=10) == b"ok"
        assert rx.stats.truncated == 1
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    with Channel.from_socket(right, framing="sockwire") as rx:
        with left:
            left.send(b"\x10\0\0\0\0" + b"x" * (300 * 1024))
            left.send(b"\x10\0\0\0\1ok")
        assert rx.recv(timeout=10) == b"ok"
        assert rx.stats.truncated == 1


def test_seqpacket_limit_and_foreign_packets() -> None:
    a, b = sockwire.pipe("seqpacket")
    with a, b:
        sndbuf = a._io.raw.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)  # type: ignore[attr-defined]
        assert a._core.packet_payload == min(sndbuf - 32, 256 * 1024)
    a, b = sockwire.pipe("seqpacket", framing="sockwire")
    with a, b:
        sndbuf = a._io.raw.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)  # type: ignore[attr-defined]
        assert a._core.packet_payload == min(sndbuf - 32, 256 * 1024) - 1
        a._io.raw.send(b"plain")  # type: ignore[attr-defined]  # no sockwire header
        with pytest.raises(BadFrame, match="header byte"):
            b.recv(timeout=10)
        assert b.state == State.BROKEN


def test_framing_is_refused_on_message_sockets() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    right.close()
    with pytest.raises(InvalidOperation, match="framing"):
        Channel.from_socket(left, framing="netstring")  # a stream framing on packets
    assert left.fileno() == -1  # the channel took the socket and closed it


@pytest.mark.parametrize("width", [4, 8])
def test_declared_length_over_max_size_closes_the_connection(width: int) -> None:
    rng_lengths = [2**31 - 1, 2**32 - 1, 2**63 - 1, (1 << 20) + 1]
    for length in rng_lengths:
        if length >= 1 << (8 * width):
            continue
        left, right = socket.socketpair()
        framing = f"len{width * 8}"
        with Channel.from_socket(right, framing=framing, max_size=1 << 20) as rx, left:
            left.sendall(length.to_bytes(width, "big") + b"\0" * 64)
            tracemalloc.start()
            try:
                base, _ = tracemalloc.get_traced_memory()
                with pytest.raises(FrameTooLarge):
                    rx.recv(timeout=10)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak - base < 1 << 20
            assert rx.state == State.BROKEN
            left.settimeout(10)
            assert left.recv(16) == b""  # the channel hung up on us
            with pytest.raises(FrameTooLarge):
                rx.recv()


def test_protocol_error_is_a_sockwire_error_tree_member() -> None:
    assert issubclass(FrameTooLarge, ProtocolError)


def test_connect_over_tls_reaches_the_network_first() -> None:
    # TLS channels exist now (tests/test_tls.py); a closed port is still a refused connect
    from sockwire.errors import ConnectionRefused

    with pytest.raises(ConnectionRefused):
        Channel.connect("tls+tcp://127.0.0.1:1")


def test_pipe_across_fork() -> None:
    parent, child = sockwire.pipe()
    pid = os.fork()
    if pid == 0:  # the child: echo three messages, upper-cased
        code = 1
        try:
            parent.close()
            for _ in range(3):
                child.send(child.recv().upper())
            child.close()
            code = 0
        finally:
            os._exit(code)
    child.close()
    with parent:
        for word in (b"a", b"bc", b""):
            parent.send(word)
            assert parent.recv(timeout=10) == word.upper()
    _, status = os.waitpid(pid, 0)
    assert status == 0


def test_struct_of_the_datagram_header() -> None:
    a, b = sockwire.pipe("dgram", framing="sockwire")
    with a, b:
        a.send(b"hi")
        raw = b._io.raw.recv(64)  # type: ignore[attr-defined]
        assert raw == struct.pack("!BI", 0x10, 0) + b"hi"
    a, b = sockwire.pipe("dgram")
    with a, b:
        a.send(b"hi")
        assert b._io.raw.recv(64) == b"hi"  # type: ignore[attr-defined]


def test_a_channel_made_under_a_trace_hook_shows_its_system_calls() -> None:
    from sockwire import trace

    with trace.recording() as events:
        a, b = sockwire.pipe()
        with a, b:
            a.send(b"one")
            a.send(b"two")
            a.flush()
            assert [b.recv(timeout=5), b.recv(timeout=5)] == [b"one", b"two"]
    calls = [e.call for e in events]
    assert calls.count("send") == 1  # two messages, one system call
    assert "recv" in calls
    sent = next(e for e in events if e.call == "send")
    assert sent.result == "14"


@pytest.mark.parametrize("name", ["pipe-stream", "tcp"])
def test_threads_mixing_small_and_big_frames_never_interleave(name: str, tmp: str) -> None:
    a, b = _make(name, tmp)
    per_thread = 1500

    def size(i: int) -> int:
        return 70000 if i % 97 == 0 else 1 + i % 50

    def sender(tag: int) -> None:
        for i in range(per_thread):
            a.send(bytes([tag]) * size(i))
            if i % 500 == 0:
                a.flush()
        a.send_many(bytes([tag]) * size(i) for i in range(per_thread))
        a.flush()

    with a, b:
        threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        try:
            got = [b.recv() for _ in range(4 * 2 * per_thread)]
        finally:
            for thread in threads:
                thread.join()
    for tag in range(4):
        mine = [m for m in got if m[:1] == bytes([tag])]
        assert all(m == m[:1] * len(m) for m in mine)
        assert [len(m) for m in mine] == [size(i) for i in range(per_thread)] * 2


def test_fast_receiver_hands_odd_reads_to_the_decoder() -> None:
    """Frames cut across reads, big bodies and EOF, read without a deadline."""
    left, right = socket.socketpair()
    rng_sizes = [0, 3, 70000, 5, 1 << 20, 1, 0, 200000, 2]
    messages = [bytes([i + 1]) * n for i, n in enumerate(rng_sizes)]
    wire = b"".join(len(m).to_bytes(4, "big") + m for m in messages)

    def writer() -> None:
        with left:
            for pos in range(0, len(wire), 7777):  # cuts inside headers and bodies
                left.sendall(wire[pos : pos + 7777])

    with Channel.from_socket(right) as rx:
        thread = _in_thread(writer)
        try:
            got = list(rx)
        finally:
            thread.join()
    assert got == messages


def test_a_closed_channel_is_freed_by_reference_counting() -> None:
    import gc
    import weakref

    a, b = sockwire.pipe()
    a.send(b"x")
    a.flush()
    assert b.recv(timeout=5) == b"x"
    ref = weakref.ref(a)
    a.close()
    b.close()
    gc.disable()
    try:
        del a
        assert ref() is None
    finally:
        gc.enable()
