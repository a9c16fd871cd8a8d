"""aio.serve and aio.connect over every endpoint type, and the server's rules.

Endpoints: unix stream, seqpacket and dgram (the kernel's boundaries and
?framing=sockwire), abstract names, tcp, udp, tls+tcp, ?authfile=, fd: and
systemd:. Rules: peer credentials and filters, the safe socket-file
lifecycle, max_connections, idle timeout, frame deadline, draining shutdown,
handler errors, datagram replies. Interop: a plain asyncio streams client,
the blocking client and server, the command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sockwire
from sockwire import aio, dial
from sockwire.aio import unix as aio_unix
from sockwire.errors import (
    AddressInUse,
    ClosedError,
    ConnectionLost,
    PermissionDenied,
    TimeoutError,
)
from sockwire.sock import Peer
from tests.tls_helpers import Certs, client_query, make_certs, server_query, write_key

pytestmark = pytest.mark.timeout(30)
WAIT = 10


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


async def echo(channel: aio.Channel, peer: Peer) -> None:
    async for msg in channel:
        await channel.send(msg)


def _endpoint(kind: str, tmp: Path, certs: Certs | None = None) -> tuple[str, str]:
    """(server endpoint, query for the client)."""
    if kind == "unix":
        return f"unix:{tmp}/s.sock", ""
    if kind == "abstract":
        return f"unix:@sockwire-aio-test-{os.getpid()}-{tmp.name}", ""
    if kind == "seqpacket":
        return f"unix+seqpacket:{tmp}/s.sock", ""
    if kind == "seqpacket-sockwire":
        return f"unix+seqpacket:{tmp}/s.sock?framing=sockwire", ""
    if kind == "tcp":
        return "tcp://127.0.0.1:0", ""
    if kind == "tcp6":
        return "tcp://[::1]:0", ""
    if kind == "authfile":
        key = write_key(tmp / "key")
        return f"tcp://127.0.0.1:0?authfile={key}", f"authfile={key}"
    if kind == "tls":
        assert certs is not None
        return f"tls+tcp://127.0.0.1:0?{server_query(certs)}", client_query(certs)
    if kind == "tls-mutual":
        assert certs is not None
        return (
            f"tls+tcp://127.0.0.1:0?{server_query(certs, require_client=True)}",
            client_query(certs, cert=True),
        )
    raise AssertionError(kind)


def _client(server: aio.Server, query: str) -> str:
    ep = sockwire.parse(server.endpoint).without_options()
    text = str(ep)
    framing = sockwire.parse(server.endpoint).option("framing")
    extra = [q for q in (query, f"framing={framing}" if framing else "") if q]
    return text + ("?" + "&".join(extra) if extra else "")


@pytest.mark.parametrize(
    "kind",
    [
        "unix",
        "abstract",
        "seqpacket",
        "seqpacket-sockwire",
        "tcp",
        "authfile",
        "tls",
        "tls-mutual",
    ],
)
async def test_echo_over_every_connection_type(kind: str, tmp_path: Path, certs: Certs) -> None:
    ep, query = _endpoint(kind, tmp_path, certs)
    async with aio.serve(ep, echo) as server, aio.connect(_client(server, query)) as ch:
        assert ch.authenticated == (kind in ("authfile", "tls", "tls-mutual"))  # cafile=
        for msg in (b"", b"one", b"x" * 100_000):
            await ch.send(msg)
            assert await ch.recv(timeout=WAIT) == msg
    assert server.stats.handled == 1


@pytest.mark.parametrize("kind", ["unix+dgram", "unix+dgram-sockwire", "udp", "udp-sockwire"])
async def test_datagram_server_replies_to_each_sender(kind: str, tmp_path: Path) -> None:
    scheme, _, framing = kind.partition("-")
    query = f"?framing={framing}" if framing else ""
    ep = (
        f"unix+dgram:{tmp_path}/d.sock{query}"
        if scheme == "unix+dgram"
        else f"udp://127.0.0.1:0{query}"
    )

    async def upper(msg: bytes, peer: Peer) -> bytes:
        await asyncio.sleep(0)
        return msg.upper()

    async with aio.serve(ep, upper) as server:
        clients = [await aio.connect(server.endpoint) for _ in range(3)]
        try:
            for i, client in enumerate(clients):
                await client.send(b"hi %d" % i)
            for i, client in enumerate(clients):
                assert await client.recv(timeout=WAIT) == b"HI %d" % i
        finally:
            for client in clients:
                await client.close()
        assert server.stats.replies == 3


async def test_unix_datagram_server_sees_each_senders_credentials(tmp_path: Path) -> None:
    seen: list[Peer] = []

    def note(msg: bytes, peer: Peer) -> None:
        seen.append(peer)

    async with aio.serve(f"unix+dgram:{tmp_path}/d.sock", note) as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as plain:  # unnamed, as logger
            plain.sendto(b"from an unnamed sender", f"{tmp_path}/d.sock")
        await _until(lambda: server.stats.handled == 1)
    assert seen[0].pid == os.getpid() and seen[0].uid == os.getuid()
    assert seen[0].address is None
    assert server.stats.unanswerable == 0


async def test_a_datagram_with_passed_fds_leaks_none(tmp_path: Path) -> None:
    async with aio.serve(f"unix+dgram:{tmp_path}/d.sock", lambda m, p: None) as server:
        before = len(os.listdir("/proc/self/fd"))
        with aio.Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            for _ in range(20):  # the server's queue holds few: send waits for it
                fds = [os.dup(0) for _ in range(5)]
                try:
                    await aio_unix.send_fds(sender, b"x", fds, address=f"{tmp_path}/d.sock")
                finally:
                    for fd in fds:
                        os.close(fd)
        await _until(lambda: server.stats.handled == 20)
        assert len(os.listdir("/proc/self/fd")) == before
        assert server.stats.fds_refused == 20


async def _until(ready: object, limit: float = WAIT) -> None:
    """Yield to the loop until ``ready()`` (bounded in time)."""
    deadline = time.monotonic() + limit
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not ready in time"
        await asyncio.sleep(0.005)  # a bounded poll of server state, not synchronisation


async def test_fd_listener_is_served(tmp_path: Path) -> None:
    listener = dial.listen(f"unix:{tmp_path}/s.sock")
    fd = listener.detach()
    async with aio.serve(f"fd:{fd}", echo) as server:
        assert server.endpoint == f"unix:{tmp_path}/s.sock"
        async with aio.connect(server.endpoint) as client:
            await client.send(b"via fd:")
            assert await client.recv(timeout=WAIT) == b"via fd:"


SYSTEMD_CHILD = """
import os, sys
from sockwire import aio

async def main():
    async def hello(ch, peer):
        msg = await ch.recv(timeout=10)
        await ch.send(msg + b" from %d" % os.getpid())
    async with aio.serve("systemd:web", hello) as server:
        print(server.endpoint, flush=True)
        loop = __import__("asyncio").get_running_loop()
        done = loop.create_future()
        loop.add_reader(0, lambda: done.done() or done.set_result(None))
        await done
        loop.remove_reader(0)
    print(server.stats.handled, flush=True)

aio.run(main(), loop=sys.argv[1] if len(sys.argv) > 1 else None)
"""
TRAMPOLINE = (
    "import os, sys\n"
    "os.dup2(int(sys.argv[1]), 3)\n"
    "os.close(int(sys.argv[1]))\n"
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='web')\n"
    "os.execv(sys.executable, [sys.executable, '-c', sys.argv[2]])\n"
)


async def test_systemd_activated_aio_server_in_a_real_child(tmp_path: Path) -> None:
    path = f"{tmp_path}/web.sock"
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
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line.strip() == f"unix:{path}"
            async with aio.connect(f"unix:{path}") as client:
                await client.send(b"hello")
                assert await client.recv(timeout=WAIT) == f"hello from {proc.pid}".encode()
            out, _ = await asyncio.to_thread(proc.communicate, timeout=20)
            assert out.split() == ["1"]
            assert proc.returncode == 0
        finally:
            proc.kill()
            proc.communicate()


# ---------------------------------------------------------------- socket files


async def test_socket_file_has_its_mode_and_goes_with_the_server(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with aio.serve(f"unix:{path}?mode=0600", echo):
        assert path.stat().st_mode & 0o777 == 0o600
    assert not path.exists()


async def test_a_live_socket_file_is_never_taken_over(tmp_path: Path) -> None:
    """asyncio.start_unix_server unlinks a live socket; aio.serve refuses, naming the holder."""
    path = tmp_path / "s.sock"
    async with aio.serve(f"unix:{path}", echo):
        with pytest.raises(AddressInUse, match=str(os.getpid())):
            await aio.serve(f"unix:{path}", echo)
        async with aio.connect(f"unix:{path}") as ch:  # the first server still serves
            await ch.send(b"still mine")
            assert await ch.recv(timeout=WAIT) == b"still mine"


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays; nobody listens
    async with aio.serve(f"unix:{path}", echo) as server, aio.connect(server.endpoint) as ch:
        await ch.send(b"fresh")
        assert await ch.recv(timeout=WAIT) == b"fresh"


async def test_a_regular_file_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("precious")
    with pytest.raises(sockwire.SockwireError):
        await aio.serve(f"unix:{path}", echo)
    assert path.read_text() == "precious"


# ---------------------------------------------------------------- peers


async def test_peer_credentials_reach_the_handler(tmp_path: Path) -> None:
    seen: list[Peer] = []

    async def handler(ch: aio.Channel, peer: Peer) -> None:
        seen.append(peer)
        await ch.send(b"ok")

    ep = f"unix+seqpacket:{tmp_path}/s.sock"
    async with aio.serve(ep, handler) as server, aio.connect(server.endpoint) as ch:
        assert await ch.recv(timeout=WAIT) == b"ok"
    assert seen[0].pid == os.getpid()
    assert seen[0].uid == os.getuid()


async def test_a_refused_peer_is_closed_before_any_byte_is_read(tmp_path: Path) -> None:
    handled = []

    async def handler(ch: aio.Channel, peer: Peer) -> None:
        handled.append(peer)

    async with aio.serve(
        f"unix:{tmp_path}/s.sock", handler, peer_filter=lambda p: False
    ) as server:
        sock = aio.Socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            await sock.connect(f"{tmp_path}/s.sock")
            await sock.send(b"secret the server must never read")
            with pytest.raises(ConnectionLost) as info:
                await sock.recv(100)
            assert info.value.errno_name == "ECONNRESET"
    assert not handled
    assert server.stats.refused == 1


async def test_allowed_uids_on_both_ends(tmp_path: Path) -> None:
    ep = f"unix:{tmp_path}/s.sock?allowed_uids={os.getuid()}"
    async with aio.serve(ep, echo) as server, aio.connect(ep) as ch:
        assert ch.authenticated  # the kernel vouched for the server's user
        await ch.send(b"admitted")
        assert await ch.recv(timeout=WAIT) == b"admitted"
    with pytest.raises(PermissionDenied):
        async with aio.serve(f"unix:{tmp_path}/t.sock", echo):
            await aio.connect(f"unix:{tmp_path}/t.sock?allowed_uids=54321")
    assert server.stats.refused == 0


async def test_a_wrong_key_is_refused(tmp_path: Path) -> None:
    good = write_key(tmp_path / "good")
    bad = write_key(tmp_path / "bad", b"b" * 32)
    async with aio.serve(f"tcp://127.0.0.1:0?authfile={good}", echo) as server:
        port = sockwire.parse(server.endpoint).port
        with pytest.raises(PermissionDenied):
            await aio.connect(f"tcp://127.0.0.1:{port}?authfile={bad}")
        await _until(lambda: server.stats.handshake_failed == 1)


async def test_a_silent_client_costs_only_its_handshake_timeout(
    tmp_path: Path, certs: Certs
) -> None:
    ep = f"tls+tcp://127.0.0.1:0?{server_query(certs)}"
    async with aio.serve(ep, echo, handshake_timeout=0.3) as server:
        port = sockwire.parse(server.endpoint).port
        with aio.Socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
            await silent.connect(("127.0.0.1", port))
            async with aio.connect(f"tls+tcp://127.0.0.1:{port}?{client_query(certs)}") as ch:
                await ch.send(b"served meanwhile")
                assert await ch.recv(timeout=WAIT) == b"served meanwhile"
            assert await asyncio.wait_for(silent.recv(100), WAIT) == b""  # closed at 0.3 s
        await _until(lambda: server.stats.handshake_failed == 1)


# ---------------------------------------------------------------- limits and lifecycle


async def test_max_connections_bounds_the_handlers_and_the_rest_wait(tmp_path: Path) -> None:
    release = asyncio.Event()
    running = [0, 0]  # now, most

    async def handler(ch: aio.Channel, peer: Peer) -> None:
        running[0] += 1
        running[1] = max(running[1], running[0])
        try:
            msg = await ch.recv(timeout=WAIT)
            await release.wait()
            await ch.send(msg)
        finally:
            running[0] -= 1

    async with aio.serve(f"unix:{tmp_path}/s.sock", handler, max_connections=2) as server:
        clients = [await aio.connect(server.endpoint) for _ in range(5)]  # all in the backlog
        try:
            for i, client in enumerate(clients):
                await client.send(str(i).encode())
            await _until(lambda: running[0] == 2)
            assert server.stats.accepted == 2, "at the limit the server stops accepting"
            release.set()
            for i, client in enumerate(clients):
                assert await client.recv(timeout=WAIT) == str(i).encode()
        finally:
            for client in clients:
                await client.close()
    assert running[1] == 2
    assert server.stats.accepted == 5


async def test_a_connection_without_a_first_message_is_closed(tmp_path: Path) -> None:
    first = 0.2
    ep = f"unix:{tmp_path}/s.sock"
    async with aio.serve(ep, echo, first_message_timeout=first) as server:
        silent = await aio.connect(ep)
        talker = await aio.connect(ep)
        try:
            await talker.send(b"hello")
            assert await talker.recv(timeout=WAIT) == b"hello"
            started = time.monotonic()
            with pytest.raises(ConnectionLost):
                await silent.recv(timeout=WAIT)
            assert time.monotonic() - started < 3 * first + 0.5
            await asyncio.sleep(first)  # past the deadline: the talker is not touched
            await talker.send(b"still here")
            assert await talker.recv(timeout=WAIT) == b"still here"
        finally:
            await silent.close()
            await talker.close()
    assert server.stats.no_first_message == 1


async def test_idle_timeout_closes_a_silent_connection(tmp_path: Path) -> None:
    idle = 0.2
    ep = f"unix:{tmp_path}/s.sock"
    async with aio.serve(ep, echo, idle_timeout=idle) as server, aio.connect(ep) as client:
        await client.send(b"before")
        assert await client.recv(timeout=WAIT) == b"before"
        started = time.monotonic()
        with pytest.raises(ConnectionLost):
            await client.recv(timeout=WAIT)
        elapsed = time.monotonic() - started
    assert idle * 0.9 < elapsed < 3 * idle
    assert server.stats.handled == 1


@pytest.mark.parametrize("kind", ["unix", "seqpacket-sockwire", "tcp"])
async def test_frame_deadline_breaks_a_slow_loris(kind: str, tmp_path: Path) -> None:
    ended: list[BaseException] = []

    async def handler(ch: aio.Channel, peer: Peer) -> None:
        try:
            await ch.recv()
        except BaseException as exc:
            ended.append(exc)
            raise

    deadline = 0.2
    ep, _ = _endpoint(kind, tmp_path)
    async with aio.serve(ep, handler, frame_deadline=deadline) as server:
        sock = await aio.dial.connect(server.endpoint)
        with aio.Socket.wrap(sock) as client:
            started = time.monotonic()
            if kind == "seqpacket-sockwire":
                await client.send(bytes([0x11]) + b"first fragment, MORE set")  # never finished
            else:
                await client.send(struct.pack("!I", 100) + b"only part of the body")
            assert await client.recv(100) == b"", "the server closed the connection"
            elapsed = time.monotonic() - started
        await _until(lambda: server.stats.dropped == 1)
    assert isinstance(ended[0], TimeoutError)
    assert "frame deadline" in str(ended[0])
    assert elapsed < 3 * deadline


async def test_shutdown_ends_idle_handlers_and_lets_a_request_finish(tmp_path: Path) -> None:
    got = asyncio.Event()
    proceed = asyncio.Event()

    async def handler(ch: aio.Channel, peer: Peer) -> None:
        async for msg in ch:
            got.set()
            await proceed.wait()
            await ch.send(msg)

    server = await aio.serve(f"unix:{tmp_path}/s.sock", handler)
    busy = await aio.connect(server.endpoint)
    idle = await aio.connect(server.endpoint)
    try:
        await busy.send(b"in flight")
        await got.wait()
        stopping = asyncio.create_task(server.shutdown(WAIT))
        await asyncio.sleep(0)
        proceed.set()
        assert await busy.recv(timeout=WAIT) == b"in flight"
        assert await stopping is True
        with pytest.raises(ConnectionLost):
            await idle.recv(timeout=WAIT)
    finally:
        await busy.close()
        await idle.close()
    assert server.stats.handled == 2
    assert not (tmp_path / "s.sock").exists()


async def test_shutdown_cancels_a_handler_that_outlives_the_grace(tmp_path: Path) -> None:
    ended: list[BaseException] = []

    async def stubborn(ch: aio.Channel, peer: Peer) -> None:
        try:
            await asyncio.Event().wait()
        except BaseException as exc:
            ended.append(exc)
            raise

    server = await aio.serve(f"unix:{tmp_path}/s.sock", stubborn)
    async with aio.connect(server.endpoint):
        await _until(lambda: server.stats.active == 1)
        assert await server.shutdown(0.1) is False
    assert isinstance(ended[0], asyncio.CancelledError)
    assert server.stats.aborted == 1 and server.stats.active == 0


async def test_handler_errors_are_counted_and_the_server_keeps_serving(tmp_path: Path) -> None:
    async def flaky(ch: aio.Channel, peer: Peer) -> None:
        msg = await ch.recv(timeout=WAIT)
        if msg == b"boom":
            raise RuntimeError("boom")
        await ch.send(msg)

    async with aio.serve(f"unix:{tmp_path}/s.sock", flaky) as server:
        async with aio.connect(server.endpoint) as ch:
            await ch.send(b"boom")
            with pytest.raises(ConnectionLost):
                await ch.recv(timeout=WAIT)
        async with aio.connect(server.endpoint) as ch:
            await ch.send(b"fine")
            assert await ch.recv(timeout=WAIT) == b"fine"
    assert server.stats.failed == 1 and server.stats.handled == 1


async def test_shutdown_from_inside_a_handler(tmp_path: Path) -> None:
    async def last(ch: aio.Channel, peer: Peer) -> None:
        await ch.send(b"bye")
        await ch.flush()
        await server.shutdown(1)

    server = await aio.serve(f"unix:{tmp_path}/s.sock", last)
    async with aio.connect(server.endpoint) as ch:
        assert await ch.recv(timeout=WAIT) == b"bye"
    await asyncio.wait_for(server.serve_forever(), WAIT)
    assert server.stopping


async def test_a_closed_server_refuses_to_start_again(tmp_path: Path) -> None:
    server = await aio.serve(f"unix:{tmp_path}/s.sock", echo)
    await server.close()
    with pytest.raises(ClosedError):
        server.start()


# ---------------------------------------------------------------- interop


@pytest.mark.parametrize("scheme", ["unix", "tcp"])
async def test_a_plain_asyncio_streams_client_talks_to_aio_serve(
    scheme: str, tmp_path: Path
) -> None:
    ep = f"unix:{tmp_path}/s.sock" if scheme == "unix" else "tcp://127.0.0.1:0"
    async with aio.serve(ep, echo) as server:
        if scheme == "unix":
            reader, writer = await asyncio.open_unix_connection(f"{tmp_path}/s.sock")
        else:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", sockwire.parse(server.endpoint).port
            )
        try:
            for msg in (b"", b"len32 framed", b"z" * 70_000):
                writer.write(struct.pack("!I", len(msg)) + msg)
                await writer.drain()
                (size,) = struct.unpack("!I", await reader.readexactly(4))
                assert await reader.readexactly(size) == msg
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.mark.parametrize("kind", ["unix", "seqpacket", "tcp", "udp"])
async def test_a_sync_client_talks_to_an_async_server(kind: str, tmp_path: Path) -> None:
    ep = {
        "unix": f"unix:{tmp_path}/s.sock",
        "seqpacket": f"unix+seqpacket:{tmp_path}/s.sock",
        "tcp": "tcp://127.0.0.1:0",
        "udp": "udp://127.0.0.1:0",
    }[kind]
    handler = (lambda m, p: m[::-1]) if kind == "udp" else echo
    async with aio.serve(ep, handler) as server:

        def client() -> bytes:
            with sockwire.connect(server.endpoint) as ch:
                ch.send(b"from sync")
                return ch.recv(timeout=WAIT)  # type: ignore[no-any-return]

        reply = await asyncio.to_thread(client)
    assert reply == (b"cnys morf" if kind == "udp" else b"from sync")


@pytest.mark.parametrize("kind", ["unix", "seqpacket", "tcp"])
async def test_an_async_client_talks_to_a_sync_server(kind: str, tmp_path: Path) -> None:
    ep = {
        "unix": f"unix:{tmp_path}/s.sock",
        "seqpacket": f"unix+seqpacket:{tmp_path}/s.sock",
        "tcp": "tcp://127.0.0.1:0",
    }[kind]

    def sync_echo(ch: sockwire.Channel, peer: Peer) -> None:
        for msg in ch:
            ch.send(msg)

    with sockwire.serve(ep, sync_echo).start() as server:
        async with aio.connect(server.endpoint) as ch:
            await ch.send(b"from async")
            assert await ch.recv(timeout=WAIT) == b"from async"
        await asyncio.to_thread(server.shutdown, 5)


async def test_the_command_line_reaches_an_aio_handler(tmp_path: Path) -> None:
    got: list[bytes] = []

    async def note(ch: aio.Channel, peer: Peer) -> None:
        got.extend([m async for m in ch])

    async with aio.serve(f"unix+seqpacket:{tmp_path}/s.sock", note) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sockwire", "send", server.endpoint, "hello", "world"
        )
        assert await proc.wait() == 0
        await _until(lambda: server.stats.handled == 1)
    assert got == [b"hello", b"world"]


EMFILE_CHILD = """
import asyncio, json, os, resource, sys
from sockwire import aio

async def main():
    async def echo(ch, peer):
        async for msg in ch:
            await ch.send(msg)
    server = await aio.serve(sys.argv[1], echo)
    used = len(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 10, hard))  # room for ~10 clients
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(0, lambda: done.done() or done.set_result(None))
    await done
    loop.remove_reader(0)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await server.shutdown(2)
    print(json.dumps({"backoffs": server.stats.accept_backoffs, "handled": server.stats.handled}))

aio.run(main(), loop=sys.argv[2])
"""


async def test_out_of_descriptors_backs_off_and_serves_again(
    tmp_path: Path, aio_loop: str
) -> None:
    """EMFILE on accept: the server backs off (no spin), and serves once a descriptor is free."""
    path = f"{tmp_path}/s.sock"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        EMFILE_CHILD,
        f"unix:{path}?backlog=64",
        aio_loop,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    clients: list[aio.Channel] = []
    try:
        assert (await proc.stdout.readline()).strip() == b"ready"
        for _ in range(20):  # more than the server has descriptors for: they wait
            clients.append(await aio.connect(f"unix:{path}"))
        for ch in clients[:5]:
            await ch.send(b"early")
            assert await ch.recv(timeout=WAIT) == b"early"
        for ch in clients[:10]:
            await ch.close()
        for ch in clients[15:]:  # served now that descriptors came free
            await ch.send(b"late")
            assert await ch.recv(timeout=WAIT) == b"late"
    finally:
        for ch in clients:
            await ch.close()
        proc.stdin.close()
        out = await proc.stdout.read()
        await proc.wait()
    stats = json.loads(out.decode().strip().splitlines()[-1])
    assert stats["backoffs"] >= 1
    assert stats["handled"] >= 10
