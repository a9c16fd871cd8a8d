"""sockwire.zmq.Socket over real sockets: endpoints, sockwire to sockwire, hostile peers,
heartbeats, and a libzmq peer killed and restarted."""

from __future__ import annotations

import select
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockwire import zmq as swz
from sockwire import zmtp
from sockwire.errors import (
    AddressError,
    ClosedError,
    InvalidOperation,
    NotFound,
    PermissionDenied,
    TimeoutError,
)
from sockwire.zmq.endpoint import parse
from tests.test_zmq_interop import Peer, _play

# ---- endpoints


def test_registry_knows_the_protocols_socket_types() -> None:
    from sockwire import zmq_schemes

    assert zmq_schemes.SOCKET_TYPES == zmtp.SOCKET_TYPES


def test_endpoint_parse_and_canonical_form() -> None:
    ep = parse("zmq+tcp://127.0.0.1:5556?type=sub&subscribe=weather&subscribe=news&heartbeat=1")
    assert ep.socket_type == "SUB"
    assert ep.subscriptions == (b"weather", b"news")
    assert ep.float_option("heartbeat") == 1.0
    assert ep.target.host == "127.0.0.1" and ep.target.port == 5556
    assert parse(str(ep)) == ep
    ipc = parse("zmq+ipc:///tmp/x.sock?type=PULL&bind=1&mode=0600")
    assert ipc.target.path == "/tmp/x.sock" and ipc.target.option("mode") == "0600"
    assert ipc.bind and ipc.display() == "zmq+ipc:///tmp/x.sock"
    star = parse("zmq+tcp://*:5555?type=PUB&bind=1")
    assert star.host_any and star.display() == "zmq+tcp://*:5555"


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("zmq+udp://1.2.3.4:5", "zmq+udp"),
        ("zmq+tcp://127.0.0.1:5?type=STREAM", "type"),
        ("zmq+tcp://127.0.0.1:5?heartbeat=soon", "heartbeat"),
        ("zmq+tcp://127.0.0.1:5?identity=%00x", "identity"),
        ("zmq+tcp://127.0.0.1:5?type=REQ&type=REP", "type"),
        ("zmq+tcp://127.0.0.1:5?sndhwm=0", "sndhwm"),
        ("zmq+tcp://127.0.0.1:5?bogus=1", "bogus"),
        ("zmq+tcp://127.0.0.1", "port"),
    ],
)
def test_endpoint_errors_name_the_part(text: str, part: str) -> None:
    with pytest.raises(AddressError) as info:
        parse(text)
    assert (info.value.part or "").startswith(part)


@given(st.lists(st.binary(max_size=20), max_size=4))
def test_binary_topics_round_trip(topics: list[bytes]) -> None:
    from urllib.parse import quote_from_bytes

    query = "&".join(f"subscribe={quote_from_bytes(t, safe='')}" for t in topics)
    ep = parse("zmq+tcp://127.0.0.1:1?type=SUB" + ("&" + query if query else ""))
    assert ep.subscriptions == tuple(topics)
    assert parse(str(ep)) == ep


def test_secrets_only_from_private_files(tmp_path: Path) -> None:
    loose = tmp_path / "plain"
    loose.write_text("admin:secret\n")
    loose.chmod(0o644)
    with pytest.raises(PermissionDenied, match="chmod 600"):
        swz.Socket(f"zmq+tcp://127.0.0.1:0?type=PULL&bind=1&plain={loose}")
    with pytest.raises(NotFound):
        swz.Socket(f"zmq+tcp://127.0.0.1:0?type=PULL&bind=1&plain={tmp_path}/missing")


def test_plain_off_loopback_logs_a_cleartext_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    creds = tmp_path / "plain"
    creds.write_text("admin:secret\n")
    creds.chmod(0o600)
    with swz.Socket(f"zmq+tcp://127.0.0.1:0?type=PULL&bind=1&plain={creds}"):
        pass
    assert "clear text" not in caplog.text
    with swz.Socket(f"zmq+tcp://*:0?type=PULL&bind=1&plain={creds}"):
        pass
    assert "clear text" in caplog.text and "secret" not in caplog.text


# ---- sockwire to sockwire


def _ipc(tmp_path: Path, name: str = "z.sock") -> str:
    return f"zmq+ipc://{tmp_path / name}"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("REQ", "REP"),
        ("DEALER", "ROUTER"),
        ("PUSH", "PULL"),
        ("PAIR", "PAIR"),
        ("DEALER", "DEALER"),
    ],
)
def test_sockwire_pairs_over_ipc(tmp_path: Path, a: str, b: str) -> None:
    with (
        swz.Socket(b, _ipc(tmp_path) + "?bind=1") as server,
        swz.Socket(a, _ipc(tmp_path)) as client,
    ):
        for i in range(200):
            client.send([b"m", b"%d" % i], timeout=5)
            got = server.recv(timeout=5)
            assert got[-2:] == [b"m", b"%d" % i]
            if b in ("REP", "ROUTER", "PAIR", "DEALER"):
                server.send([*got[:-2], b"r%d" % i] if b == "ROUTER" else [b"r%d" % i])
                assert client.recv(timeout=5) == [b"r%d" % i]


@pytest.mark.timeout(30)
def test_pub_sub_over_tcp_with_two_subscribers(tmp_path: Path) -> None:
    with swz.Socket("PUB", "zmq+tcp://127.0.0.1:0?bind=1") as pub:
        ep = pub.endpoints[0]
        with swz.Socket("SUB", ep + "?subscribe=a") as sa, swz.Socket("SUB", ep) as sall:
            sall.subscribe(b"")
            sa.wait_peers()
            sall.wait_peers()
            for _ in range(500):  # until both subscriptions are in force (bounded)
                pub.send([b"a", b"warm"])
                if sa.poll(0.01) and sall.poll(0.01):
                    break
            for got in (sa, sall):
                while got.poll(0.05):
                    got.recv()
            pub.send([b"a", b"1"])
            pub.send([b"b", b"2"])
            assert sa.recv(timeout=5) == [b"a", b"1"]
            assert sall.recv(timeout=5) == [b"a", b"1"]
            assert sall.recv(timeout=5) == [b"b", b"2"]
            assert not sa.poll(0.2)


@pytest.mark.timeout(30)
def test_router_addresses_dealers_by_identity(tmp_path: Path) -> None:
    with swz.Socket("ROUTER", _ipc(tmp_path) + "?bind=1") as router:
        dealers = [swz.Socket("DEALER", _ipc(tmp_path) + f"?identity=w{i}") for i in range(3)]
        try:
            for d in dealers:
                d.send(b"hello", timeout=5)
            ids = sorted(router.recv(timeout=5)[0] for _ in dealers)
            assert ids == [b"w0", b"w1", b"w2"]
            for i in (2, 0, 1):
                router.send([b"w%d" % i, b"for %d" % i])
            for i, d in enumerate(dealers):
                assert d.recv(timeout=5) == [b"for %d" % i]
        finally:
            for d in dealers:
                d.close()


@pytest.mark.timeout(30)
def test_req_timeout_leaves_no_dead_state(tmp_path: Path) -> None:
    with (
        swz.Socket("REP", _ipc(tmp_path) + "?bind=1") as rep,
        swz.Socket("REQ", _ipc(tmp_path)) as req,
    ):
        req.send(b"first")
        assert rep.recv(timeout=5) == [b"first"]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            req.recv(timeout=0.3)
        assert time.monotonic() - started < 0.9
        rep.send(b"late")  # the connection it would use is gone
        req.send(b"second", timeout=10)  # REQ reconnected and may ask again
        assert rep.recv(timeout=10) == [b"second"]
        rep.send(b"answer")
        assert req.recv(timeout=5) == [b"answer"]


def test_wrong_calls_and_closed_socket(tmp_path: Path) -> None:
    sub = swz.Socket("SUB", _ipc(tmp_path))
    with pytest.raises(InvalidOperation):
        sub.send(b"x")
    sub.close()
    with pytest.raises(ClosedError):
        sub.recv()
    with pytest.raises(AddressError):
        swz.Socket("PUSH", "zmq+tcp://*:5555")  # * is for binding


# ---- hostile peers


def _raw(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    s.setblocking(False)
    return s


def _closed_by_peer(s: socket.socket) -> bool:
    """True once the server closed (EOF or reset); drains what it sent."""
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.timeout(30)
def test_hostile_peers_are_closed_and_others_served(tmp_path: Path) -> None:
    path = tmp_path / "h.sock"
    with swz.Socket("PULL", f"zmq+ipc://{path}?bind=1&handshake=0.5&max_size=1000") as pull:
        http = _raw(path)
        http.send(b"GET / HTTP/1.1\r\n\r\n")
        gssapi = _raw(path)
        gssapi.send(zmtp.greeting(b"GSSAPI", False))
        half = _raw(path)
        half.send(zmtp.greeting(b"NULL", False)[:30])  # never finishes its greeting
        started = time.monotonic()
        big = _raw(path)
        conn = zmtp.Connection("PUSH")
        big.send(conn.data_to_send())
        hostile = {"http": http, "gssapi": gssapi, "half": half}
        closed_at: dict[str, float] = {}
        good = swz.Socket("PUSH", f"zmq+ipc://{path}")
        try:
            handshaken = False
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (len(closed_at) < 4 or not handshaken):
                good.send(b"ok", timeout=5)
                assert pull.recv(timeout=5) == [b"ok"]  # others are served throughout
                for name, s in hostile.items():
                    if name not in closed_at and _closed_by_peer(s):
                        closed_at[name] = time.monotonic() - started
                if not handshaken and select.select([big], [], [], 0)[0]:
                    data = big.recv(4096)
                    conn.feed(data)
                    big.send(conn.data_to_send())
                    if conn.state == "READY":
                        handshaken = True
                        # a frame declaring 1 GiB: refused from its header
                        big.send(b"\x02" + struct.pack("!Q", 1 << 30))
                        hostile["oversize"] = big
                pull.poll(0.02)
            assert set(closed_at) == {"http", "gssapi", "half", "oversize"}, closed_at
            assert closed_at["http"] < 1.5 and closed_at["gssapi"] < 1.5
            assert closed_at["half"] < 0.5 * 3  # the handshake deadline, 3x slack
        finally:
            good.close()
            for s in (http, gssapi, half, big):
                s.close()


@pytest.mark.timeout(30)
def test_heartbeat_drops_a_silent_peer_and_reconnects(tmp_path: Path) -> None:
    """A server that completes the handshake and then never answers a PING."""
    path = tmp_path / "hb.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    try:
        with swz.Socket("DEALER", f"zmq+ipc://{path}?heartbeat=0.2") as dealer:
            accepted = []
            saw_ping = False
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(accepted) < 2:
                dealer.poll(0.02)
                if select.select([listener], [], [], 0)[0]:
                    s, _ = listener.accept()
                    conn = zmtp.Connection("ROUTER")
                    accepted.append((s, conn))
                    s.sendall(conn.data_to_send())
                for s, conn in accepted:
                    if select.select([s], [], [], 0)[0]:
                        data = s.recv(4096)
                        if not data:
                            continue
                        conn.feed(data)
                        saw_ping = saw_ping or b"PING" in data
                        if conn.state != "READY" or b"READY" in data:
                            s.sendall(conn.data_to_send())  # handshake only: no PONG
                        conn.data_to_send()
            assert saw_ping
            assert len(accepted) == 2  # dropped for silence, then reconnected
            for s, _ in accepted:
                s.close()
    finally:
        listener.close()


@pytest.mark.timeout(60)
def test_heartbeats_with_libzmq_keep_an_idle_connection(tmp_path: Path) -> None:
    """Both sides PING every 0.1 s (each answers the other's PONG): 1.5 s idle, no drop."""
    endpoint = f"ipc://{tmp_path / 'hb.sock'}"
    notes: list[str] = []
    peer = Peer()
    try:
        peer.job(type="ROUTER", endpoint=endpoint, bind=True, n=1, heartbeat=0.1)
        peer.expect("ready")
        with swz.Socket("DEALER", f"zmq+{endpoint}?heartbeat=0.1", trace=notes.append) as d:
            d.wait_peers()
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                d.poll(deadline - time.monotonic())  # serve: PINGs out, PONGs in
            assert d.peers == 1
            # the idle time is over and the link held: what follows is the one
            # request and the peer's close right after its reply, which races our
            # next PING or PONG (a "drop" into a closed peer is not this test's)
            idle_notes = len(notes)
            d.send([b"", b"0"])
            assert d.recv(timeout=10) == [b"", b"re:0"]
        assert peer.expect("done")["served"] == 1
    finally:
        peer.close()
    assert not [n for n in notes[:idle_notes] if " drop " in n], notes
    assert sum(" > PING" in n for n in notes) >= 5
    assert sum(" < PONG" in n for n in notes) >= 5
    assert sum(" < PING" in n for n in notes) >= 5  # libzmq's, answered


# ---- a libzmq peer killed and restarted


@pytest.mark.timeout(60)
def test_push_resumes_after_libzmq_pull_killed_and_restarted(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path / 'k.sock'}"
    first = Peer()
    try:
        first.job(type="PULL", endpoint=endpoint, bind=True, n=1000, progress=100)
        first.expect("ready")
        with swz.Socket("PUSH", "zmq+" + endpoint) as push:
            for i in range(100):
                push.send(b"%d" % i, timeout=10)
            assert push.flush(timeout=10)  # sends are buffered, as a Channel's
            assert first.expect("progress") == 100  # acknowledged: all 100 arrived, in order
            first.proc.kill()
            first.proc.wait()
            deadline = time.monotonic() + 10
            while push.peers and time.monotonic() < deadline:
                push.poll(0.05)  # serve: notice the dead connection
            assert push.peers == 0
            second = Peer()
            try:
                second.job(type="PULL", endpoint=endpoint, bind=True, n=100, start=100)
                second.expect("ready")
                for i in range(100, 200):
                    push.send(b"%d" % i, timeout=10)
                push.flush(timeout=10)
                assert second.expect("done") == {"count": 100, "ordered": True}
            finally:
                second.close()
    finally:
        first.close()


@pytest.mark.timeout(60)
def test_sub_resubscribes_after_libzmq_pub_restarted(tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path / 'p.sock'}"
    with swz.Socket("SUB", f"zmq+{endpoint}?subscribe=t") as sub:
        for round_ in range(2):
            pub = Peer()
            try:
                pub.job(type="PUB", endpoint=endpoint, bind=True, n=500)
                pub.expect("ready")
                assert _play("SUB", sub, pub, 500) == {"ordered": True}, round_
                pub.expect("done")
            finally:
                pub.proc.kill()  # killed, not closed: the SUB must notice by itself
                pub.close()


# ---- no spinning on a full backlog or out of descriptors


def test_a_unix_connect_to_a_full_backlog_is_retried_not_spun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EAGAIN from a UNIX connect is a failed attempt (retried after a back-off), not a
    connect in progress: before, the socket showed writable at once and the loop spun."""
    from sockwire.zmq import blocking

    path = tmp_path / "full.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(0)
    waiting = socket.socket(socket.AF_UNIX)
    waiting.setblocking(False)
    waiting.connect(str(path))  # fills the backlog of 0 (+1): nobody accepts
    attempts: list[float] = []
    real = blocking.Socket._start_connect

    def counting(self: blocking.Socket, connector: object, now: float) -> None:
        attempts.append(now)
        real(self, connector, now)  # type: ignore[arg-type]

    monkeypatch.setattr(blocking.Socket, "_start_connect", counting)
    finishes: list[float] = []
    real_finish = blocking.Socket._finish_connect

    def finishing(self: blocking.Socket, connector: object, now: float) -> None:
        finishes.append(now)
        real_finish(self, connector, now)  # type: ignore[arg-type]

    monkeypatch.setattr(blocking.Socket, "_finish_connect", finishing)
    try:
        with swz.Socket(f"zmq+ipc://{path}?type=PUSH") as push:
            assert not push.poll(1.0)  # one second of a loop with nothing to do
            assert push.peers == 0
    finally:
        waiting.close()
        listener.close()
    assert 1 <= len(attempts) <= 20, f"{len(attempts)} connect attempts in 1 s"
    assert len(finishes) <= len(attempts), f"{len(finishes)} wake-ups for {len(attempts)}"


def test_accept_out_of_descriptors_backs_off(tmp_path: Path) -> None:
    """EMFILE on accept pauses the listener (the shared accept policy), no spinning; the
    connections in the backlog are served once descriptors are free again."""
    import os
    import sys

    code = r"""
import os, resource, sys, time
from sockwire import zmq as swz
from sockwire.zmq import blocking
path, ready = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
calls = []
real = blocking.Socket._accept
def counting(self, listener, now):
    calls.append(now)
    real(self, listener, now)
blocking.Socket._accept = counting
pull = swz.Socket(f"zmq+ipc://{path}?type=PULL&bind=1")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
hog = []
while True:  # every descriptor taken: accept must fail with EMFILE
    try:
        hog.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
os.write(ready, b"r")
pull.poll(1.0)
during = len(calls)
for fd in hog:
    os.close(fd)
msg = pull.recv(timeout=10)
print(during, msg[0].decode(), flush=True)
pull.close()
"""
    path = tmp_path / "emfile.sock"
    r, w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path), str(w)],
        pass_fds=(w,),
        stdout=subprocess.PIPE,
    )
    os.close(w)
    try:
        assert os.read(r, 1) == b"r"
        with swz.Socket(f"zmq+ipc://{path}?type=PUSH") as push:
            push.send([b"after EMFILE"])
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                push.poll(0.05)  # this thread's sockets are served while it waits
            out, _ = proc.communicate(timeout=10)
    finally:
        os.close(r)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    during, msg = out.decode().split(maxsplit=1)
    assert msg.strip() == "after EMFILE"
    assert int(during) <= 15, f"{during} accept rounds in 1 s out of descriptors"
