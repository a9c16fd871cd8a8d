"""serve()/connect() over every socket type, limits, peer filters and graceful shutdown.

Real sockets everywhere; handlers signal with events and queues, never with
sleeps. Deadlines (idle timeout, frame deadline) are asserted with 3x slack.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

import sockwire
from sockwire import dial
from sockwire.channel import Channel
from sockwire.client import connect
from sockwire.errors import (
    ClosedError,
    ConnectError,
    ConnectionLost,
    InvalidOperation,
    PermissionDenied,
    TimeoutError,
)
from sockwire.server import Server, serve
from sockwire.sock import Peer

WAIT = 10.0  # an event not set within this long is a failed (hung) test


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sw-srv-") as path:
        yield path


def echo(ch: Channel, peer: Peer) -> None:
    for msg in ch:
        ch.send(msg)


def upper(msg: bytes, peer: Peer) -> bytes:
    return msg.upper()


def _endpoint(kind: str, tmp: str) -> str:
    return {
        "unix": f"unix:{tmp}/s.sock",
        "unix-abstract": f"unix:@sw-srv-{os.getpid()}-{id(tmp)}",
        "seqpacket": f"unix+seqpacket:{tmp}/q.sock",
        "seqpacket-sockwire": f"unix+seqpacket:{tmp}/q.sock?framing=sockwire",
        "tcp": "tcp://127.0.0.1:0",
        "tcp6": "tcp://[::1]:0",
        "netstring": f"unix:{tmp}/n.sock?framing=netstring",
        "unix-dgram": f"unix+dgram:{tmp}/d.sock",
        "unix-dgram-sockwire": f"unix+dgram:{tmp}/d.sock?framing=sockwire",
        "udp": "udp://127.0.0.1:0",
        "udp-sockwire": "udp://127.0.0.1:0?framing=sockwire",
    }[kind]


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


CONNECTION_KINDS = [
    "unix",
    "unix-abstract",
    "seqpacket",
    "seqpacket-sockwire",
    "tcp",
    "tcp6",
    "netstring",
]


@pytest.mark.parametrize("kind", CONNECTION_KINDS)
def test_echo_over_every_connection_type(kind: str, tmp: str) -> None:
    if kind == "tcp6" and not _has_ipv6():
        pytest.skip("no IPv6 loopback on this machine")
    # plain seqpacket: one packet per message, so the big one must fit in one
    big = b"x" * (100_000 if kind == "seqpacket" else 300_000)
    with serve(_endpoint(kind, tmp), echo).start() as server:
        assert server.kind == ("seqpacket" if kind.startswith("seqpacket") else "stream")
        with connect(server.endpoint) as client:
            client.send_many([b"", b"one", big])
            assert [client.recv(timeout=WAIT) for _ in range(3)] == [b"", b"one", big]
    assert server.stats.accepted == 1
    assert server.stats.handled == 1
    assert server.stats.active == 0
    if kind in ("unix", "seqpacket", "seqpacket-sockwire"):
        assert not os.listdir(tmp), "the socket file is removed on shutdown"


@pytest.mark.parametrize("kind", ["unix-dgram", "udp", "unix-dgram-sockwire", "udp-sockwire"])
def test_datagram_server_replies_to_each_sender(kind: str, tmp: str) -> None:
    with serve(_endpoint(kind, tmp), upper).start() as server:
        assert server.kind == "dgram"
        clients = [connect(server.endpoint) for _ in range(3)]
        try:
            for round_ in range(3):
                for i, client in enumerate(clients):
                    client.send(f"c{i} r{round_}".encode())
                for i, client in enumerate(clients):
                    assert client.recv(timeout=WAIT) == f"C{i} R{round_}".encode()
            if kind.endswith("-sockwire"):
                # each client numbers from 0 and sees no gap: per-destination sequence numbers
                assert all(c.stats.lost == 0 and c.stats.late == 0 for c in clients)
            else:
                assert all(c.stats.lost is None for c in clients)  # nothing numbers them
        finally:
            for client in clients:
                client.close()
    assert server.stats.messages == 9
    assert server.stats.replies == 9


def test_unix_datagram_from_an_unnamed_sender_is_handled_without_reply(tmp: str) -> None:
    seen: queue.Queue[tuple[bytes, Peer]] = queue.Queue()

    def handler(msg: bytes, peer: Peer) -> bytes:
        seen.put((msg, peer))
        return b"reply nobody can get"

    with serve(f"unix+dgram:{tmp}/d.sock", handler).start() as server:
        sender = Channel.from_socket(sockwire.Socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        with sender:
            sender._io.raw.connect(f"{tmp}/d.sock")  # type: ignore[attr-defined]
            sender.send(b"anonymous")
            msg, peer = seen.get(timeout=WAIT)
        assert msg == b"anonymous"
        assert peer.unnamed
        assert peer.pid == os.getpid(), "SO_PASSCRED gives the sender's credentials"
    assert server.stats.unanswerable == 1


def test_fd_listener_is_served(tmp: str) -> None:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.bind(f"{tmp}/fd.sock")
    raw.listen()
    fd = raw.detach()  # the server adopts (and closes) it
    with serve(f"fd:{fd}", echo).start() as server:
        assert server.endpoint == f"unix:{tmp}/fd.sock"
        with connect(server.endpoint) as client:
            client.send(b"via fd:")
            assert client.recv(timeout=WAIT) == b"via fd:"
    with pytest.raises(OSError):
        os.fstat(fd)


SYSTEMD_CHILD = textwrap.dedent(
    """
    import os, sys
    from sockwire.server import serve
    def echo(ch, peer):
        for msg in ch:
            ch.send(msg + b" from " + str(os.getpid()).encode())
    server = serve("systemd:web?allowed_uids=0", echo, max_connections=2)
    print(server.endpoint, flush=True)
    server.start()
    sys.stdin.read()          # until the parent closes our stdin
    print(server.shutdown(5), server.stats.handled, flush=True)
    """
)
TRAMPOLINE = (
    "import os, sys\n"
    "os.dup2(int(sys.argv[1]), 3)\n"
    "os.close(int(sys.argv[1]))\n"
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='web')\n"
    "os.execv(sys.executable, [sys.executable, '-c', sys.argv[2]])\n"
)


@pytest.mark.timeout(60)
def test_systemd_activated_server_in_a_real_child(tmp: str) -> None:
    path = f"{tmp}/web.sock"
    with dial.listen(f"unix:{path}") as listener:
        high = os.dup(listener.fd)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", TRAMPOLINE, str(high), SYSTEMD_CHILD],
                pass_fds=[high],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        finally:
            os.close(high)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == f"unix:{path}"
            with connect(f"unix:{path}") as client:
                client.send(b"hello")
                assert client.recv(timeout=WAIT) == f"hello from {proc.pid}".encode()
            out, _ = proc.communicate(timeout=30)  # closes its stdin: the child shuts down
            assert out.split() == ["True", "1"]
            assert proc.returncode == 0
        finally:
            proc.kill()
            proc.communicate()


def test_max_connections_bounds_the_handlers_and_the_rest_wait(tmp: str) -> None:
    entered: queue.Queue[int] = queue.Queue()
    release = threading.Event()
    lock = threading.Lock()
    running = [0]
    most = [0]

    def handler(ch: Channel, peer: Peer) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            msg = ch.recv(timeout=WAIT)
            entered.put(int(msg))
            release.wait(WAIT)
            ch.send(msg)
        finally:
            with lock:
                running[0] -= 1

    with serve(f"unix:{tmp}/s.sock", handler, max_connections=2).start() as server:
        clients = [connect(server.endpoint) for _ in range(5)]  # all connected (backlog)
        try:
            for i, client in enumerate(clients):
                client.send(str(i).encode())
                client.flush()
            first = {entered.get(timeout=WAIT), entered.get(timeout=WAIT)}
            assert server.stats.accepted == 2, "at the limit the server stops accepting"
            release.set()
            for i, client in enumerate(clients):
                assert client.recv(timeout=WAIT) == str(i).encode()
            assert len(first) == 2
        finally:
            for client in clients:
                client.close()
    assert most[0] == 2
    assert server.stats.peak == 2
    assert server.stats.accepted == 5
    assert server.stats.handled == 5


@pytest.mark.timeout(30)
def test_idle_timeout_closes_a_silent_connection(tmp: str) -> None:
    ended: queue.Queue[BaseException | None] = queue.Queue()

    def handler(ch: Channel, peer: Peer) -> None:
        try:
            for msg in ch:  # iteration ends cleanly at the idle timeout
                ch.send(msg)
        except BaseException as exc:
            ended.put(exc)
            raise
        ended.put(None)

    idle = 0.2
    with serve(f"unix:{tmp}/s.sock", handler, idle_timeout=idle).start() as server:
        with connect(server.endpoint) as client:
            client.send(b"before")
            assert client.recv(timeout=WAIT) == b"before"
            started = time.monotonic()
            with pytest.raises(ConnectionLost):
                client.recv(timeout=WAIT)
            elapsed = time.monotonic() - started
        assert ended.get(timeout=WAIT) is None
    assert elapsed < 3 * idle
    assert server.stats.handled == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["unix", "seqpacket-sockwire", "tcp"])
def test_frame_deadline_breaks_a_slow_loris(kind: str, tmp: str) -> None:
    ended: queue.Queue[BaseException] = queue.Queue()

    def handler(ch: Channel, peer: Peer) -> None:
        try:
            ch.recv()
        except BaseException as exc:
            ended.put(exc)
            raise

    deadline = 0.2
    with serve(_endpoint(kind, tmp), handler, frame_deadline=deadline).start() as server:
        sock = dial.connect(server.endpoint)
        with sock:
            started = time.monotonic()
            if kind == "seqpacket-sockwire":
                sock.send(bytes([0x11]) + b"first fragment, MORE set")  # never finished
            else:
                sock.send(struct.pack("!I", 100) + b"only part of the body")
            assert sock.recv(100) == b"", "the server closed the connection"
            elapsed = time.monotonic() - started
        exc = ended.get(timeout=WAIT)
    assert isinstance(exc, TimeoutError)
    assert "frame deadline" in str(exc)
    assert elapsed < 3 * deadline
    assert server.stats.dropped == 1


@pytest.mark.timeout(30)
def test_shutdown_lets_an_in_flight_request_finish_then_closes(tmp: str) -> None:
    got = threading.Event()
    proceed = threading.Event()

    def handler(ch: Channel, peer: Peer) -> None:
        for msg in ch:
            got.set()
            proceed.wait(WAIT)
            ch.send(msg + b" done")

    server = serve(f"unix:{tmp}/s.sock", handler).start()
    client = connect(server.endpoint)
    try:
        client.send(b"work")
        client.flush()
        assert got.wait(WAIT)
        result: list[bool] = []
        stopper = threading.Thread(target=lambda: result.append(server.shutdown(WAIT)))
        stopper.start()
        proceed.set()
        assert client.recv(timeout=WAIT) == b"work done", "the in-flight request finished"
        with pytest.raises(ConnectionLost):
            client.recv(timeout=WAIT)  # and then the server closed the connection
        stopper.join()
    finally:
        client.close()
    assert result == [True]
    assert server.stats.handled == 1
    assert server.stats.aborted == 0
    with pytest.raises(ConnectError):
        connect(f"unix:{tmp}/s.sock")


@pytest.mark.timeout(30)
def test_shutdown_ends_idle_handlers_at_once(tmp: str) -> None:
    with serve(f"unix:{tmp}/s.sock", echo).start() as server:
        clients = [connect(server.endpoint) for _ in range(3)]
        try:
            for client in clients:
                client.send(b"hi")
                assert client.recv(timeout=WAIT) == b"hi"
            started = time.monotonic()
            assert server.shutdown(WAIT) is True
            assert time.monotonic() - started < WAIT / 2
            for client in clients:
                with pytest.raises(ConnectionLost):
                    client.recv(timeout=WAIT)
        finally:
            for client in clients:
                client.close()
    assert server.stats.handled == 3


@pytest.mark.timeout(30)
def test_shutdown_closes_a_handler_that_outlives_the_grace_period(tmp: str) -> None:
    ended: queue.Queue[BaseException] = queue.Queue()
    sending = threading.Event()

    def handler(ch: Channel, peer: Peer) -> None:
        try:
            sending.set()
            ch.send(b"x" * (8 << 20))  # to a client that never reads: blocks in send
        except BaseException as exc:
            ended.put(exc)
            raise

    server = serve(f"unix:{tmp}/s.sock", handler).start()
    with dial.connect(server.endpoint):
        assert sending.wait(WAIT)
        assert server.shutdown(0.2) is False, "the handler did not finish in time"
    assert isinstance(ended.get(timeout=WAIT), ClosedError | ConnectionLost)
    assert server.stats.aborted == 1
    assert server.stats.active == 0


def test_a_refused_peer_is_closed_before_any_byte_is_read(tmp: str) -> None:
    seen: list[Peer] = []
    handled = threading.Event()
    sent = threading.Event()

    def refuse_all(peer: Peer) -> bool:
        seen.append(peer)
        sent.wait(WAIT)  # decide only once the client's bytes are queued to us
        return False

    def handler(ch: Channel, peer: Peer) -> None:
        handled.set()

    with (
        serve(f"unix:{tmp}/s.sock", handler, peer_filter=refuse_all).start() as server,
        dial.connect(server.endpoint) as sock,
    ):
        sock.send(b"secret the server must never read")
        sent.set()
        # unread bytes at close: the kernel resets the connection (ECONNRESET),
        # which proves the server closed it without reading them
        with pytest.raises(ConnectionLost) as info:
            sock.recv(100)
        assert info.value.errno_name == "ECONNRESET"
    assert not handled.is_set()
    assert server.stats.refused == 1
    assert server.stats.accepted == 0
    assert seen[0].pid == os.getpid()


def test_endpoint_uid_filter_and_peer_filter_both_apply(tmp: str) -> None:
    ep = f"unix:{tmp}/s.sock?allowed_uids=54321"
    with serve(ep, echo).start() as server, dial.connect(f"unix:{tmp}/s.sock") as sock:
        assert sock.recv(10) == b"", "closed by the server, never served"
    assert server.stats.refused == 1
    ep = f"unix:{tmp}/s.sock?allowed_uids={os.getuid()}"
    with (
        serve(ep, echo, peer_filter=lambda peer: True).start() as server,
        connect(server.endpoint) as client,
    ):
        client.send(b"admitted")
        assert client.recv(timeout=WAIT) == b"admitted"
    assert server.stats.refused == 0


def test_datagram_peer_filter_drops_refused_senders(tmp: str) -> None:
    allowed = threading.Event()
    decisions: queue.Queue[bool] = queue.Queue()

    def only_when_allowed(peer: Peer) -> bool:
        ok = allowed.is_set() and peer.pid == os.getpid()
        decisions.put(ok)
        return ok

    with (
        serve(f"unix+dgram:{tmp}/d.sock", upper, peer_filter=only_when_allowed).start() as srv,
        connect(srv.endpoint) as client,
    ):
        client.send(b"refused")
        assert decisions.get(timeout=WAIT) is False
        allowed.set()
        client.send(b"admitted")
        assert client.recv(timeout=WAIT) == b"ADMITTED", "the first and only reply"
    assert srv.stats.refused == 1
    assert srv.stats.replies == 1


def test_handler_errors_are_counted_and_the_server_keeps_serving(tmp: str) -> None:
    def handler(ch: Channel, peer: Peer) -> None:
        msg = ch.recv(timeout=WAIT)
        if msg == b"boom":
            raise RuntimeError("handler bug")
        ch.send(msg)

    with serve(f"unix:{tmp}/s.sock", handler).start() as server:
        with connect(server.endpoint) as bad:
            bad.send(b"boom")
            with pytest.raises(ConnectionLost):
                bad.recv(timeout=WAIT)
        with connect(server.endpoint) as good:
            good.send(b"fine")
            assert good.recv(timeout=WAIT) == b"fine"
    assert server.stats.failed == 1
    assert server.stats.handled == 1


def test_codecs_reach_the_handler(tmp: str) -> None:
    def handler(ch: Channel, peer: Peer) -> None:
        for obj in ch:
            ch.send({"echo": obj, "peer_pid": peer.pid})

    with (
        serve(f"unix:{tmp}/s.sock", handler, codec="json").start() as server,
        connect(server.endpoint, codec="json") as client,
    ):
        client.send([1, "two"])
        assert client.recv(timeout=WAIT) == {"echo": [1, "two"], "peer_pid": os.getpid()}


def test_serve_refuses_what_cannot_work(tmp: str) -> None:
    with pytest.raises(PermissionDenied, match="pickle"):
        serve(f"unix:{tmp}/s.sock", echo, codec="pickle")
    with pytest.raises(InvalidOperation, match="max_connections"):
        serve(f"unix:{tmp}/s.sock", echo, max_connections=0)
    with pytest.raises(InvalidOperation):
        serve("netlink:route", echo)
    assert not os.listdir(tmp), "a refused serve() leaves no socket file behind"


def test_serve_forever_in_the_calling_thread_and_repr(tmp: str) -> None:
    server = serve(f"unix:{tmp}/s.sock", echo)
    assert "open" in repr(server)
    runner = threading.Thread(target=server.serve_forever)
    runner.start()
    try:
        with connect(server.endpoint) as client:
            client.send(b"x")
            assert client.recv(timeout=WAIT) == b"x"
        with pytest.raises(InvalidOperation):
            server.start()
    finally:
        server.shutdown(WAIT)
        runner.join()
    assert "closed" in repr(server)
    with pytest.raises(ClosedError):
        server.serve_forever()


def test_shutdown_from_inside_a_handler(tmp: str) -> None:
    def handler(ch: Channel, peer: Peer) -> None:
        msg = ch.recv(timeout=WAIT)
        ch.send(msg)
        ch.flush()
        server.shutdown(WAIT)

    server: Server = serve(f"unix:{tmp}/s.sock", handler).start()
    with connect(server.endpoint) as client:
        client.send(b"stop")
        assert client.recv(timeout=WAIT) == b"stop"
    server.shutdown(WAIT)  # joins the handler thread that called it
    assert server.stats.handled == 1


@pytest.mark.timeout(30)
def test_datagram_server_shutdown_lets_the_handler_in_progress_reply(tmp: str) -> None:
    entered = threading.Event()
    release = threading.Event()

    def handler(msg: bytes, peer: Peer) -> bytes:
        entered.set()
        release.wait(WAIT)
        return msg.upper()

    server = serve(f"unix+dgram:{tmp}/d.sock", handler).start()
    with connect(server.endpoint) as client:
        client.send(b"last one")
        assert entered.wait(WAIT)
        stopper = threading.Thread(target=server.shutdown, args=(WAIT,))
        stopper.start()
        release.set()
        assert client.recv(timeout=WAIT) == b"LAST ONE"
        stopper.join()
    assert server.stats.replies == 1
    assert not os.path.exists(f"{tmp}/d.sock")
