"""--framing on byte streams: real peers (socat, nc, Python sockets) speaking frames.

Every framed direction uses the sans-IO decoders of sockwire.framing; these
tests check what crosses real sockets: frame bytes, boundaries kept end to
end through relay, and one-line errors for a frame that is too large or cut.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from sockwire.framing import encode_all, make_codec
from tests.cli_helpers import (
    connect_when_ready,
    host_port,
    program,
    recv_all,
    run,
    short_dir,
    sockwire,
)
from tests.helpers import need_tool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def _frames(mode: str, *messages: bytes) -> bytes:
    return encode_all(make_codec(mode).encoder, list(messages))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(15)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return data


def _read_len32(sock: socket.socket) -> bytes:
    (size,) = struct.unpack("!I", _recv_exactly(sock, 4))
    return _recv_exactly(sock, size) if size else b""


# --------------------------------------------------------------------------
# recv / send / echo / listen / connect
# --------------------------------------------------------------------------


def test_socat_sends_len32_frames_to_recv(d: str) -> None:
    need_tool("socat")
    path = f"{d}/r.sock"
    with run("recv", f"unix:{path}", "--framing", "len32", "--trace") as receiver:
        receiver.address()
        data = _frames("len32", b"hello", b"", b"split\nacross lines", b"x" * 70_000)
        with program("socat", "-u", "-", f"UNIX-CONNECT:{path}") as peer:
            peer.send(data)
            assert peer.finish() == 0
        assert receiver.finish() == 0, receiver.text
    lines = receiver.out.decode().splitlines()
    assert lines[0].startswith("#1 from unnamed (pid=") and lines[0].endswith("5 bytes: hello")
    assert lines[1].endswith("0 bytes: ")
    assert lines[2].endswith("18 bytes: split\\nacross lines")
    assert lines[3].startswith("#4 ") and " 70000 bytes: xxx" in lines[3]
    assert len(lines) == 4
    assert "eof fd=" in receiver.text and "after 4 messages" in receiver.text


def test_nc_sends_lines_to_recv_over_tcp() -> None:
    need_tool("nc")
    with run("recv", "tcp://127.0.0.1:0", "--framing", "line", "--trace", "--count", "2") as r:
        host, port = host_port(r.address())
        with program("nc", "-N", host, str(port)) as peer:
            peer.send(b"first line\nsecond line\n")
            peer.finish()
        assert r.finish() == 0, r.text
    lines = r.out.decode().splitlines()
    assert [line.split(" ", 3)[3] for line in lines] == [
        "10 bytes: first line",
        "11 bytes: second line",
    ]
    assert lines[0].startswith("#1 from 127.0.0.1:")


def test_send_writes_one_netstring_per_message() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        proc = sockwire("send", f"tcp://127.0.0.1:{port}?framing=netstring", "a", "", "bcd")
        assert proc.returncode == 0, proc.stderr
        conn, _ = server.accept()
        with conn:
            assert recv_all(conn) == b"1:a,0:,3:bcd,"  # then EOF: send shut down its side


def test_send_stdin_lines_become_frames_without_their_newline() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        proc = sockwire(
            "send", f"tcp://127.0.0.1:{port}", "--framing", "len16", input=b"one\r\ntwo\n\nend"
        )
        assert proc.returncode == 0, proc.stderr
        conn, _ = server.accept()
        with conn:
            data = recv_all(conn)
    assert data == _frames("len16", b"one", b"two", b"", b"end")


@pytest.mark.parametrize("mode", ["len16", "len32", "len64", "netstring", "nul"])
def test_nc_through_echo_gets_its_frames_back(d: str, mode: str) -> None:
    need_tool("nc")
    path = f"{d}/e.sock"
    with run("echo", f"unix:{path}", "--framing", mode, "--count", "1", "--trace") as echo:
        echo.address()
        data = _frames(mode, b"abc", b"", b"z" * 1000)
        with program("nc", "-N", "-U", path) as peer:
            peer.send(data)
            peer.close_stdin()
            assert peer.wait_out(data) == data
            assert peer.finish() == 0
        assert echo.finish() == 0
    assert "in 3 messages" in echo.text


def test_listen_framed_stdin_lines_out_and_frames_in_one_per_line() -> None:
    with run("listen", "tcp://127.0.0.1:0", "--framing", "len32", "--trace") as server:
        host, port = host_port(server.address())
        with socket.create_connection((host, port), timeout=15) as client:
            client.sendall(_frames("len32", b"from the client", b"second"))
            server.send(b"to the client\n")
            assert _read_len32(client) == b"to the client"  # the newline is not content
            server.wait_out(b"second\n")
            client.shutdown(socket.SHUT_WR)
            server.close_stdin()
            assert recv_all(client) == b""
        assert server.finish() == 0
    assert server.out == b"from the client\nsecond\n"


def test_connect_framed_raw_format_writes_payloads_as_they_are() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with run(
            "connect", f"tcp://127.0.0.1:{port}?framing=line", "--format", "raw", "--split", "read"
        ) as client:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"alpha\nbeta\n")
                client.wait_out(b"alphabeta")
                client.send(b"whole read")
                client.close_stdin()
                assert recv_all(conn) == b"whole read\n"
            assert client.finish() == 0
    assert client.out == b"alphabeta"


# --------------------------------------------------------------------------
# relay: boundaries survive seqpacket <-> stream
# --------------------------------------------------------------------------


def test_relay_seqpacket_to_framed_stream_and_back_end_to_end(d: str) -> None:
    front = f"{d}/front.sock"
    # (no empty message: on seqpacket a 0-byte read is EOF; the kernel cannot tell them apart)
    messages = [b"a", b"bb", b"c" * 100_000, b"\0\n\r binary", b"d" * 3]
    with run("echo", "tcp://127.0.0.1:0", "--framing", "len32", "--count", "1", "--trace") as echo:
        target = echo.address()
        args = ["relay", f"unix+seqpacket:{front}", target, "--framing", "len32", "--count", "1"]
        with run(*args, "--trace") as relay:
            relay.address()
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as client:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                client.connect(front)
                client.settimeout(15)
                got = []
                for message in messages:
                    client.send(message)
                    got.append(client.recv(200_000))
                client.shutdown(socket.SHUT_WR)
                assert client.recv(10) == b""
            assert got == messages
            assert relay.finish() == 0, relay.text
        assert echo.finish() == 0
    assert "in 5 messages" in echo.text


def test_relay_framed_stream_to_seqpacket_backend(d: str) -> None:
    back = f"{d}/back.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as backend:
        backend.bind(back)
        backend.listen()
        backend.settimeout(15)
        args = ["relay", "tcp://127.0.0.1:0?framing=len32", f"unix+seqpacket:{back}"]
        with run(*args, "--count", "1", "--trace") as relay:
            host, port = host_port(relay.address())
            with socket.create_connection((host, port), timeout=15) as client:
                client.sendall(_frames("len32", b"one", b"two", b"three"))  # one write
                conn, _ = backend.accept()
                with conn:
                    conn.settimeout(15)
                    assert [conn.recv(100) for _ in range(3)] == [b"one", b"two", b"three"]
                    conn.send(b"reply 1")
                    conn.send(b"reply 2")
                    assert _read_len32(client) == b"reply 1"
                    assert _read_len32(client) == b"reply 2"
                    client.shutdown(socket.SHUT_WR)
                    assert conn.recv(100) == b""  # the client's EOF, as seqpacket EOF
                assert recv_all(client) == b""
            assert relay.finish() == 0
    assert "client->target 11 bytes in 3 messages" in relay.text


def test_relay_translates_line_frames_into_len32(d: str) -> None:
    need_tool("nc")
    front = f"{d}/l.sock"
    with socket.socket() as backend:
        backend.bind(("127.0.0.1", 0))
        backend.listen()
        backend.settimeout(15)
        port = backend.getsockname()[1]
        args = ["relay", f"unix:{front}?framing=line", f"tcp://127.0.0.1:{port}?framing=len32"]
        with run(*args, "--count", "1", "--trace") as relay:
            relay.address()
            with program("nc", "-N", "-U", front) as peer:
                peer.send(b"hello\nworld\n")
                peer.close_stdin()
                conn, _ = backend.accept()
                with conn:
                    assert recv_all(conn) == _frames("len32", b"hello", b"world")
                    conn.sendall(_frames("len32", b"back", b"again"))
                    conn.shutdown(socket.SHUT_WR)
                    assert peer.wait_out(b"back\nagain\n") == b"back\nagain\n"
                assert peer.finish() == 0
            assert relay.finish() == 0


def test_relay_udp_sender_to_framed_stream(d: str) -> None:
    with run("echo", "tcp://127.0.0.1:0", "--framing", "netstring", "--trace") as echo:
        target = echo.address()
        with run("relay", "udp://127.0.0.1:0", target, "--framing", "netstring", "--trace") as r:
            host, port = host_port(r.address())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(15)
                for message in (b"first", b"", b"third"):
                    client.sendto(message, (host, port))
                    assert client.recv(100) == message
            r.stop()
        echo.stop()


# --------------------------------------------------------------------------
# errors: one line each
# --------------------------------------------------------------------------


def test_declared_length_over_bufsize_is_one_line_error(d: str) -> None:
    path = f"{d}/big.sock"
    with run("recv", f"unix:{path}", "--framing", "len32", "--bufsize", "100") as receiver:
        connect = connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path)
        with connect:
            connect.sendall(struct.pack("!I", 1000) + b"only the start")
            assert receiver.finish() == 1
    lines = [x for x in receiver.text.strip().splitlines() if "listening on" not in x]
    assert len(lines) == 1 and "Traceback" not in receiver.text
    assert "a len32 frame declares 1000 bytes" in lines[0]
    assert "over --bufsize (100 bytes)" in lines[0]


def test_relay_closes_a_connection_with_a_bad_frame_and_goes_on(d: str) -> None:
    front, back = f"{d}/f.sock", f"{d}/b.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as backend:
        backend.bind(back)
        backend.listen()
        args = ["relay", f"unix:{front}", f"unix+seqpacket:{back}", "--framing", "len16"]
        with run(*args, "--bufsize", "64", "--count", "1") as relay:
            client = connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, front)
            with client:
                client.sendall(struct.pack("!H", 65) + b"x" * 65)
                assert recv_all(client) == b""  # the relay closed this connection
            assert relay.finish() == 0
    report = [line for line in relay.text.splitlines() if "declares" in line]
    assert len(report) == 1 and "a len16 frame declares 65 bytes" in report[0]


def test_eof_inside_a_frame_is_one_line_error() -> None:
    with run("listen", "tcp://127.0.0.1:0", "--framing", "netstring", "--trace") as server:
        host, port = host_port(server.address())
        server.close_stdin()
        with socket.create_connection((host, port), timeout=15) as client:
            client.sendall(b"10:short")
            client.shutdown(socket.SHUT_WR)
        assert server.finish() == 1
    error = [
        line
        for line in server.text.splitlines()
        if line.startswith("sockwire: ") and "listening on" not in line
    ]
    assert error == [
        "sockwire: EOF inside a netstring frame: the peer stopped after 8 bytes of an "
        "unfinished message"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["recv", "udp://127.0.0.1:0", "--framing", "len32"],
        ["send", "unix+seqpacket:/tmp/nowhere.sock", "x", "--framing", "line"],
        ["listen", "tcp://127.0.0.1:0?framing=line", "--framing", "len32"],
        ["relay", "unix+seqpacket:@a", "unix+dgram:@b", "--framing", "len32"],
        ["relay", "unix:@a", "unix+seqpacket:@b"],
        ["relay", "unix:@a", "unix:@b?framing=len32"],
        ["recv", "tcp://127.0.0.1:0", "--framing", "len32", "--peek"],
    ],
)
def test_framing_mistakes_are_usage_errors(args: list[str]) -> None:
    proc = sockwire(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count(b"\n") == 1 and proc.stderr.startswith(b"sockwire: ")


def test_a_message_that_cannot_be_a_line_frame_is_refused() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        proc = sockwire("send", f"tcp://127.0.0.1:{port}", "--framing", "line", "two\nlines")
        assert proc.returncode == 1
        assert b"line framing ends a message at the first" in proc.stderr
        conn, _ = server.accept()
        conn.close()
