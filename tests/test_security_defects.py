"""Regression tests for the defects of the hostile-input review (issue 13), one or more each.

Each test is named after its defect (``test_defect<N>_...``), so that a
failure points at the review's finding. The standing battery that goes
beyond these single findings lives in ``tests/reliability/``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import sockwire
from sockwire import Socket, dial, socketpair, unix
from sockwire.server import serve
from sockwire.sock import Peer, close_fds

WAIT = 20.0


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sw-def-") as path:
        yield path


@pytest.fixture
def data_file(tmp_path: Path) -> Iterator[IO[bytes]]:
    path = tmp_path / "data"
    path.write_bytes(b"passed by descriptor")
    with open(path, "rb") as handle:
        yield handle


# A datagram that every datagram server delivers: with the sockwire packet
# header it is a valid header (version 1, sequence 0); without, plain bytes.
DATAGRAM = b"\x10\x00\x00\x00\x00hello"


class _Counter:
    """A datagram handler that counts messages and wakes a waiter at ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.done = threading.Event()

    def __call__(self, msg: bytes, peer: Peer) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()


# --------------------------------------------------------------------------
# Defect 1: descriptor leaks on receive paths that can get SCM_RIGHTS
# --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_defect1_dgram_server_closes_unrequested_fds(tmp: str, data_file: IO[bytes]) -> None:
    """serve() on an inherited fd: UNIX datagram socket (no SO_PASSCRED of its own):
    500 datagrams of 10 fds each leave the server's fd count where it was."""
    path = f"{tmp}/d.sock"
    bound = dial.bind(f"unix+dgram:{path}")
    fd = bound.detach()  # the server adopts (and closes) it, as systemd would hand it over
    counter = _Counter(501)
    with (
        serve(f"fd:{fd}", counter).start() as server,
        Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender,
    ):
        sender.sendto(DATAGRAM, path)  # one without fds first: the server is up
        before = _open_fds()
        for _ in range(500):
            unix.send_fds(sender, DATAGRAM, [data_file] * 10, address=path)
        assert counter.done.wait(WAIT), f"served {counter.count} of 501"
        assert _open_fds() == before
        assert server.stats.fds_refused == 500
        assert server.stats.handled == 501


def test_defect1_recvfrom_peer_without_passcred_closes_fds(data_file: IO[bytes]) -> None:
    """recvfrom_peer's room for credentials held 4 fds when SO_PASSCRED was off."""
    a, b = socketpair(socket.SOCK_DGRAM)
    with a, b:
        before = _open_fds()
        for _ in range(200):
            unix.send_fds(a, b"m", [data_file] * 10)
            data, peer = unix.recvfrom_peer(b)
            assert data == b"m" and peer.creds is None
        assert _open_fds() == before


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_SEQPACKET, socket.SOCK_DGRAM])
def test_defect1_recvmsg_closes_fds_beyond_maxfds(kind: int, data_file: IO[bytes]) -> None:
    """Every recvmsg with a control buffer (credentials, other ancillary data,
    alignment slack) closes what was not asked for, and says so (MSG_CTRUNC)."""
    a, b = socketpair(kind)
    with a, b:
        before = _open_fds()
        for ask in ({"creds": True}, {"ancillary": 64}, {"maxfds": 1}):
            unix.send_fds(a, b"m", [data_file] * 10)
            msg = b.recvmsg(16, **ask)  # type: ignore[arg-type]
            assert msg.data == b"m"
            assert len(msg.fds) == ask.get("maxfds", 0)
            assert msg.ctruncated
            assert msg.discarded + len(msg.fds) <= 10
            close_fds(msg.fds)
        # MSG_PEEK duplicates passed fds into the peeker: closed all the same
        unix.send_fds(a, b"p", [data_file] * 10)
        peeked = b.recvmsg(16, creds=True, flags=sockwire.MsgFlag.PEEK)
        assert peeked.fds == []
        b.recvmsg(16, creds=True)
        assert _open_fds() == before


SYSTEMD_DGRAM_CHILD = textwrap.dedent(
    """
    import os, sys, threading
    from sockwire.server import serve
    seen = 0
    done = threading.Event()
    def count(msg, peer):
        global seen
        seen += 1
        if seen == int(sys.argv[1]):
            done.set()
    server = serve("systemd:logs", count)
    server.start()
    print(len(os.listdir("/proc/self/fd")), flush=True)
    done.wait(30)
    print(seen, len(os.listdir("/proc/self/fd")), server.stats.fds_refused, flush=True)
    server.shutdown(5)
    """
)
TRAMPOLINE = (
    "import os, sys\n"
    "os.dup2(int(sys.argv[1]), 3)\n"
    "os.close(int(sys.argv[1]))\n"
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='logs')\n"
    "os.execv(sys.executable, [sys.executable, '-c', sys.argv[2], *sys.argv[3:]])\n"
)


@pytest.mark.timeout(60)
def test_defect1_systemd_dgram_server_closes_unrequested_fds(
    tmp: str, data_file: IO[bytes]
) -> None:
    """The same through systemd: in a real child started as systemd starts one."""
    path = f"{tmp}/logs.sock"
    bound = dial.bind(f"unix+dgram:{path}")
    high = bound.detach()  # the child's now; the socket file stays until tmp goes
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", TRAMPOLINE, str(high), SYSTEMD_DGRAM_CHILD, "300"],
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
            for _ in range(300):
                unix.send_fds(sender, DATAGRAM, [data_file] * 10, address=path)
        out, _ = proc.communicate(timeout=40)
        seen, after, refused = map(int, out.split())
        assert (seen, refused) == (300, 300)
        assert after == before
        assert proc.returncode == 0
    finally:
        proc.kill()
        proc.communicate()


# --------------------------------------------------------------------------
# Defect 10: the smaller findings
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [socket.SOCK_SEQPACKET, socket.SOCK_DGRAM])
def test_defect10_read_on_message_socket_reports_truncation(kind: int) -> None:
    a, b = socketpair(kind)
    with a, b:
        a.send(b"a message of 24 bytes...")
        with pytest.raises(sockwire.TruncatedError, match="MSG_TRUNC") as info:
            b.read(8)
        assert info.value.size == 24
        assert info.value.data == b"a messag"
        a.send(b"fits")
        assert b.read(8) == b"fits"


KEY = b"0123456789abcdef0123456789abcdef"


def _server_over_seqpacket(packets: list[bytes]) -> BaseException | None:
    """Run auth.server_handshake on a seqpacket pair after ``packets`` arrive; its error."""
    from sockwire import auth

    a, b = socketpair(socket.SOCK_SEQPACKET)
    with a, b:
        for packet in packets:
            a.send(packet)
        a.shutdown(socket.SHUT_WR)
        try:
            auth.server_handshake(b, KEY, timeout=5)
        except sockwire.SockwireError as exc:
            return exc
    return None


def test_defect10_seqpacket_hmac_hello_split_across_packets_is_refused() -> None:
    hello = b"SWAH\x01" + bytes(32)
    error = _server_over_seqpacket([hello[:10], hello[10:]])
    assert isinstance(error, sockwire.ProtocolError)
    assert "one packet of exactly 37 bytes" in str(error)


def test_defect10_seqpacket_hmac_hello_with_trailing_junk_is_refused() -> None:
    error = _server_over_seqpacket([b"SWAH\x01" + bytes(32) + b"junk"])
    assert isinstance(error, sockwire.ProtocolError)
    assert "a 41-byte packet" in str(error)


def test_defect10_seqpacket_hmac_stranger_still_hears_what_is_wrong() -> None:
    error = _server_over_seqpacket([b"GET / HTTP/1.0\r\n\r\n"])
    assert isinstance(error, sockwire.ProtocolError)
    assert "not speaking the sockwire auth handshake" in str(error)


def test_defect10_seqpacket_hmac_honest_handshake_still_works() -> None:
    from sockwire import auth

    a, b = socketpair(socket.SOCK_SEQPACKET)
    with a, b:
        done: list[BaseException | None] = []

        def server() -> None:
            try:
                auth.server_handshake(b, KEY, timeout=10)
                done.append(None)
            except sockwire.SockwireError as exc:
                done.append(exc)

        thread = threading.Thread(target=server)
        thread.start()
        auth.client_handshake(a, KEY, timeout=10)
        thread.join(WAIT)
        assert done == [None]
        a.send(b"first")
        assert b.recv(16) == b"first"


@pytest.mark.parametrize("spelling", ["Pickle", "PICKLE", "pickle"])
def test_defect10_pickle_check_is_case_insensitive(tmp: str, spelling: str) -> None:
    """The start-up check speaks, whatever the spelling (it used to compare case-sensitively)."""
    with pytest.raises(sockwire.PermissionDenied, match="codec=pickle") as info:
        serve(f"unix:{tmp}/p.sock", lambda ch, peer: None, codec=spelling)
    assert "authenticated peers" in str(info.value)
    assert not os.path.exists(f"{tmp}/p.sock")


# --------------------------------------------------------------------------
# Defect 8: the json codec decodes strictly
# --------------------------------------------------------------------------

LONE_SURROGATE = b'"\\ud800"'


def test_defect8_json_codec_rejects_a_lone_surrogate() -> None:
    from sockwire.codecs import get_codec

    codec = get_codec("json")
    for bad in (LONE_SURROGATE, b'{"\\udfff": 1}', b'["a", ["x\\udc00"]]', b'"\xed\xa0\x80"'):
        with pytest.raises(sockwire.ProtocolError, match="not valid json"):
            codec.decode(bad)
    assert codec.decode(b'"\\ud83d\\ude00"') == "\U0001f600"  # a proper pair is fine
    assert codec.decode(codec.encode({"k": ["é", 1]})) == {"k": ["é", 1]}


def _records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.levelname} {r.getMessage()}"
        for r in caplog.records
        if r.name == "sockwire" and r.levelno >= 20
    ]


def test_defect8_json_server_logs_one_line_not_a_traceback(
    tmp: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sockwire.client import connect

    def echo(ch: sockwire.Channel, peer: Peer) -> None:
        for msg in ch:
            ch.send(msg)

    caplog.set_level("INFO", logger="sockwire")
    with serve(f"unix:{tmp}/j.sock", echo, codec="json").start() as server:
        with connect(server.endpoint) as hostile:
            hostile.send(LONE_SURROGATE)
            with pytest.raises(sockwire.ConnectionLost):
                hostile.recv(timeout=WAIT)
        with connect(server.endpoint, codec="json") as good:
            good.send({"still": "served"})
            assert good.recv(timeout=WAIT) == {"still": "served"}
    assert server.stats.failed == 0 and server.stats.dropped == 1
    lines = [line for line in _records(caplog) if "surrogate" in line]
    assert len(lines) == 1, lines
    assert all(r.exc_info is None for r in caplog.records if r.name == "sockwire")


def test_defect8_json_datagram_server_logs_one_line(
    tmp: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sockwire.client import connect

    caplog.set_level("INFO", logger="sockwire")
    server = serve(f"unix+dgram:{tmp}/j.sock", lambda msg, peer: msg, codec="json")
    with server.start(), connect(server.endpoint) as client:
        client.send(LONE_SURROGATE)
        client.send(b'"fine"')
        assert client.recv(timeout=WAIT) == b'"fine"'
    assert server.stats.invalid == 1 and server.stats.failed == 0
    lines = [line for line in _records(caplog) if "surrogate" in line]
    assert len(lines) == 1, lines
    assert all(r.exc_info is None for r in caplog.records if r.name == "sockwire")


# --------------------------------------------------------------------------
# Defect 6: a socket file in a directory another user owns
# --------------------------------------------------------------------------

NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A 0755 root-owned directory in /tmp that uid 65534 may traverse."""
    import shutil

    path = Path(tempfile.mkdtemp(prefix="sw-def6-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    from tests.helpers import as_nobody

    with as_nobody() as nobody:
        python = nobody.argv[: nobody.argv.index("-m")]
        return subprocess.run(
            [*python, "-c", code],
            env=nobody.env,
            cwd=nobody.cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@pytest.mark.timeout(60)
def test_defect6_parent_owned_by_another_user_is_refused(shared_dir: Path) -> None:
    """Root may not bind in a 0755 directory uid 65534 owns: its owner could
    swap the socket file (shown: uid 65534 renames root's socket away)."""
    from tests.helpers import need_root

    need_root()
    theirs = shared_dir / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    for scheme in ("unix", "unix+seqpacket", "unix+dgram"):
        with pytest.raises(sockwire.PermissionDenied, match="unsafe_dir=1") as info:
            dial.listen(f"{scheme}:{theirs}/s.sock") if scheme != "unix+dgram" else dial.bind(
                f"{scheme}:{theirs}/s.sock"
            )
        assert "belongs to uid 65534" in str(info.value)
    assert not os.listdir(theirs)
    # an ancestor, even with a root-owned directory in between
    inner = theirs / "inner"
    inner.mkdir(mode=0o755)
    with pytest.raises(sockwire.PermissionDenied, match=f"{theirs} belongs to uid 65534"):
        dial.listen(f"unix:{inner}/s.sock")
    # the opt-in works, and shows why it is an opt-in: the owner moves our file away
    with dial.listen(f"unix:{theirs}/s.sock?unsafe_dir=1"):
        moved = _as_nobody(
            f"import os; os.rename({str(theirs / 's.sock')!r}, {str(theirs / 'x')!r})"
        )
        assert moved.returncode == 0, moved.stderr
        assert os.path.exists(theirs / "x")
    os.unlink(theirs / "x")


@pytest.mark.timeout(60)
def test_defect6_a_user_binds_in_its_own_directory(shared_dir: Path) -> None:
    """uid 65534 binds in a directory it owns under root-owned ones: allowed."""
    mine = shared_dir / "mine"
    mine.mkdir(mode=0o755)
    os.chown(mine, NOBODY, NOBODY)
    done = _as_nobody(
        "from sockwire import dial\n"
        f"dial.listen('unix:{mine}/s.sock?mode=0600').close()\n"
        "print('bound')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "bound"


# --------------------------------------------------------------------------
# Defect 4: publisher CPU amplification by many prefixes
# --------------------------------------------------------------------------


class _CountingDict(dict[bytes, set[int]]):
    """The index's prefix table, counting lookups (the work a publish costs)."""

    lookups = 0

    def get(self, key: bytes, default: object = None) -> object:  # type: ignore[override]
        type(self).lookups += 1
        return super().get(key, default)


def _hostile_core(subscribers: int, per_sub: int, lengths: int) -> object:
    from sockwire.patterns import wire
    from sockwire.patterns.pubsub import Policy, PubCore

    core = PubCore(1000, Policy.DROP_NEWEST)
    counting = _CountingDict()
    core.index._by_prefix = counting
    for key in range(subscribers):
        core.add(key)
        for i in range(per_sub):
            size = 8 + i % lengths
            prefix = (b"%07d|%d|" % (i, key) + b"x" * size)[:size]
            core.subscribe(key, wire.Subscribe(i, prefix))
            core.subs[key].control.clear()  # READYs the subscriber would read
    core.add(subscribers)
    core.subscribe(subscribers, wire.Subscribe(1, b"weather."))
    return core


@pytest.mark.parametrize("lengths", [1, 16])
def test_defect4_matching_cost_is_independent_of_the_number_of_prefixes(lengths: int) -> None:
    """63 subscribers x 1,024 prefixes (the review's attack): a publish looks up
    one prefix per distinct length in use, not 64,513 prefixes."""
    for subscribers, per_sub in ((1, 1), (63, 1024)):
        core = _hostile_core(subscribers, per_sub, lengths)
        _CountingDict.lookups = 0
        for _ in range(100):
            assert core.matching(b"weather.today") == [subscribers]  # type: ignore[attr-defined]
        used = len(core.index._lengths)  # type: ignore[attr-defined]
        assert used <= lengths + 1
        assert _CountingDict.lookups <= 100 * used


def test_defect4_prefixes_per_subscriber_are_bounded() -> None:
    from sockwire.patterns import wire
    from sockwire.patterns.pubsub import MAX_SUBSCRIPTIONS, Policy, PubCore, SubCore

    core = PubCore(10, Policy.DROP_NEWEST)
    core.add(1)
    for i in range(MAX_SUBSCRIPTIONS):
        core.subscribe(1, wire.Subscribe(i, b"p%d" % i))
        core.subs[1].control.clear()
    with pytest.raises(sockwire.BadFrame, match=f"more than {MAX_SUBSCRIPTIONS} subscriptions"):
        core.subscribe(1, wire.Subscribe(0, b"one more"))
    core.remove(1)
    assert len(core.index) == 0, "a link that ends leaves nothing in the index"
    sub = SubCore()
    for i in range(MAX_SUBSCRIPTIONS):
        sub.subscribe(b"p%d" % i)
    with pytest.raises(sockwire.InvalidOperation, match=f"at most {MAX_SUBSCRIPTIONS}"):
        sub.subscribe(b"one more")


def test_defect10_pubsub_drop_accounting_is_what_protocol_md_says() -> None:
    """PROTOCOL.md 8.2: the SUB sees a drop only through a later message on the
    same link; trailing drops are known to the PUB alone, until one follows."""
    from sockwire.patterns import wire
    from sockwire.patterns.pubsub import Policy, PubCore, SubCore

    pub = PubCore(2, Policy.DROP_NEWEST)
    pub.add(1)
    pub.subscribe(1, wire.Subscribe(1, b""))
    sub = SubCore()
    sub.subscribe(b"")
    sub.on_link()

    def deliver() -> None:
        for frame in pub.take(1, 1000):
            msg = wire.parse(frame)
            if isinstance(msg, wire.Publish):
                sub.publish(msg)

    for n in range(10):  # hwm 2: 2 queued, 8 dropped (a trailing run)
        pub.offer(1, b"t", b"%d" % n)
    deliver()
    assert pub.stats.dropped_newest == 8
    assert sub.stats.missed == 0, "the trailing drops are invisible to the SUB"
    pub.offer(1, b"t", b"later")
    deliver()
    assert sub.stats.missed == pub.stats.dropped_newest == 8, "equal once a message follows"
    for n in range(5):  # these are queued and then the link ends: dropped_lost
        pub.offer(1, b"t", b"%d" % n)
    pub.remove(1)
    assert pub.stats.dropped_lost == 2 and pub.stats.dropped_newest == 11
    assert sub.stats.missed == 8, "what a link held when it ended only the PUB counts"


# --------------------------------------------------------------------------
# Defect 2: a default threaded serve() fails safe
# --------------------------------------------------------------------------


class _Started:
    """An echo handler that counts the handlers that started (a Condition to wait on)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.started = 0

    def __call__(self, ch: sockwire.Channel, peer: Peer) -> None:
        with self.cond:
            self.started += 1
            self.cond.notify_all()
        for msg in ch:
            ch.send(msg)

    def wait(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.started >= count, WAIT), self.started


def _good_client(endpoint: str, rounds: int = 100) -> float:
    """100 request/replies from a fresh connection; the seconds it took, connect included."""
    import time

    from sockwire.client import connect

    started = time.monotonic()
    with connect(endpoint, timeout=WAIT) as client:
        for i in range(rounds):
            client.send(b"%d" % i)
            assert client.recv(timeout=WAIT) == b"%d" % i
    return time.monotonic() - started


@pytest.mark.timeout(60)
def test_defect2_64_idle_connections_do_not_lock_out_a_good_client() -> None:
    """A default serve() (64 slots) with 64 idle TCP connections and 32 more in the
    backlog: a well-behaved client is served within 5 s (asserted with 3x slack)."""
    handler = _Started()
    idle: list[socket.socket] = []
    with serve("tcp://127.0.0.1:0", handler).start() as server:
        host, port = server.address[:2]
        try:
            for _ in range(64):
                idle.append(socket.create_connection((host, port)))
            handler.wait(64)
            for _ in range(32):  # the backlog that used to refill the slots
                idle.append(socket.create_connection((host, port)))
            took = _good_client(server.endpoint)
            assert took < 15.0, f"the good client took {took:.1f} s"
            assert server.stats.evicted >= 1
        finally:
            for sock in idle:
                sock.close()
    print(f"defect 2: good client done in {took:.2f} s beside 96 idle connections")


@pytest.mark.timeout(60)
def test_defect2_tricklers_of_valid_empty_frames_do_not_lock_out_a_good_client() -> None:
    """64 connections each sending 2 bytes a second (a valid empty len32 frame every
    2 s, so never idle and never mid-frame for long): the good client is served."""
    handler = _Started()
    stop = threading.Event()
    tricklers: list[socket.socket] = []

    def trickle() -> None:
        step = 0
        while not stop.wait(0.5):  # pacing the load, not synchronisation
            for sock in tricklers:
                try:
                    sock.send(b"\0")  # 1 byte every 0.5 s: 4 bytes (an empty frame) per 2 s
                    sock.recv(64, socket.MSG_DONTWAIT)  # the echoed empty frames
                except OSError:
                    continue
            step += 1

    with serve("tcp://127.0.0.1:0", handler).start() as server:
        host, port = server.address[:2]
        thread = threading.Thread(target=trickle)
        try:
            for _ in range(64):
                tricklers.append(socket.create_connection((host, port)))
            handler.wait(64)
            thread.start()
            took = _good_client(server.endpoint)
            assert took < 15.0, f"the good client took {took:.1f} s"
        finally:
            stop.set()
            if thread.is_alive():
                thread.join()
            for sock in tricklers:
                sock.close()
    print(f"defect 2: good client done in {took:.2f} s beside 64 tricklers")


@pytest.mark.timeout(30)
def test_defect2_first_message_deadline_closes_a_silent_connection(tmp: str) -> None:
    import time

    with serve(f"unix:{tmp}/s.sock", _Started(), first_message_timeout=0.3).start() as server:
        with socket.socket(socket.AF_UNIX) as silent:
            silent.connect(f"{tmp}/s.sock")
            silent.settimeout(WAIT)
            started = time.monotonic()
            assert silent.recv(16) == b"", "closed by the server"
            took = time.monotonic() - started
        assert took < 0.9 + 0.5, f"closed after {took:.2f} s (deadline 0.3 s)"
        assert _good_client(server.endpoint, 3) < 15.0  # one that talks is served
    assert server.stats.no_first_message == 1
    assert server.stats.handled == 1


@pytest.mark.timeout(30)
def test_defect2_busy_handlers_are_never_evicted(tmp: str) -> None:
    """A handler at work (not in recv) keeps its slot: the newcomer waits."""
    release = threading.Event()
    entered = threading.Event()

    def handler(ch: sockwire.Channel, peer: Peer) -> None:
        msg = ch.recv(timeout=WAIT)
        entered.set()
        release.wait(WAIT)
        ch.send(msg)

    from sockwire.client import connect

    server = serve(f"unix:{tmp}/s.sock", handler, max_connections=1)
    with server.start(), connect(server.endpoint) as busy, connect(server.endpoint) as newcomer:
        busy.send(b"work")
        busy.flush()
        assert entered.wait(WAIT)
        newcomer.send(b"next")
        newcomer.flush()
        # past EVICT_AFTER and EVICT_WAIT: the newcomer is still in the backlog
        never = threading.Event()
        assert not never.wait(2.0)  # an observation window, not synchronisation
        assert (server.stats.accepted, server.stats.evicted) == (1, 0)
        release.set()
        assert busy.recv(timeout=WAIT) == b"work"
        assert newcomer.recv(timeout=WAIT) == b"next"
    assert server.stats.evicted == 0 and server.stats.handled == 2


# --------------------------------------------------------------------------
# Defect 3: every timeout= of the patterns covers writing too
# --------------------------------------------------------------------------


def _frame(msg: bytes) -> bytes:
    return len(msg).to_bytes(4, "big") + msg


@pytest.mark.timeout(60)
def test_defect3_push_send_timeout_covers_a_puller_that_stopped_reading(tmp: str) -> None:
    """A puller grants credit, then never reads: send(timeout=1) returns or raises
    TimeoutError within the timeout (3x slack), never blocks for a minute."""
    import time

    from sockwire.patterns import Push, wire

    with (
        Push(f"unix:{tmp}/p.sock", liveness=None) as push,
        socket.socket(socket.AF_UNIX) as puller,
    ):
        puller.connect(f"{tmp}/p.sock")
        hello = wire.Hello(wire.Role.PULL, 0).encode()
        puller.sendall(_frame(hello) + _frame(wire.Credit(1000).encode()))
        assert push.wait_for(lambda p: p.ready_pullers == 1, WAIT)
        item = b"x" * (1 << 20)
        timed_out = 0
        slowest = 0.0
        for _ in range(50):  # the socket buffers take a few; then it must time out
            started = time.monotonic()
            try:
                push.send(item, timeout=1.0)
            except sockwire.TimeoutError as exc:
                assert "was not delivered" in str(exc)
                timed_out += 1
            slowest = max(slowest, time.monotonic() - started)
            if timed_out:
                break
        assert timed_out == 1, "a send to a puller that does not read timed out"
        assert slowest < 3.0
        assert push.stats.sent < 50


@pytest.mark.timeout(60)
def test_defect3_req_request_timeout_covers_a_rep_that_stopped_reading(tmp: str) -> None:
    import time

    from sockwire.patterns import Req, wire

    path = f"{tmp}/r.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        with Req(f"unix:{path}", liveness=None, timeout=WAIT) as req:
            rep, _ = listener.accept()
            with rep:
                rep.sendall(_frame(wire.Hello(wire.Role.REP, 0).encode()))
                assert req.wait_for(lambda r: r.connected, WAIT)
                started = time.monotonic()
                with pytest.raises(sockwire.TimeoutError, match="did not take it within 1 s"):
                    req.request(b"y" * (8 << 20), timeout=1.0)
                took = time.monotonic() - started
    assert took < 3.0, f"request(timeout=1) returned after {took:.1f} s"


@pytest.mark.timeout(60)
def test_defect3_sub_subscribe_timeout_covers_a_pub_that_stopped_reading(tmp: str) -> None:
    """A Pub that never reads: subscribe(timeout=1) gives up in time, and the link is
    dropped so the next one subscribes afresh (no SUBSCRIBE lost on a live link)."""
    import time

    from sockwire.patterns import Sub, wire

    path = f"{tmp}/s.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        listener.settimeout(WAIT)
        with Sub(f"unix:{path}", liveness=None) as sub:
            pub, _ = listener.accept()
            with pub:
                pub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                pub.sendall(_frame(wire.Hello(wire.Role.PUB, 0).encode()))
                assert sub.wait_for(lambda s: s._link is not None, WAIT)
                prefix = "p" * 1000
                for i in range(300):  # 1 KiB SUBSCRIBEs into a Pub that reads nothing
                    with contextlib.suppress(sockwire.TimeoutError):
                        sub.subscribe(f"{prefix}{i}", timeout=0.01)
                started = time.monotonic()
                with pytest.raises(sockwire.TimeoutError):
                    sub.subscribe("last", timeout=1.0)
                took = time.monotonic() - started
    assert took < 3.0, f"subscribe(timeout=1) returned after {took:.1f} s"
