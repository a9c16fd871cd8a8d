"""``sockwire listen`` / ``sockwire connect``: stdin/stdout bridged to every socket type.

Real processes on both ends; readiness from the server's ``listening`` note;
half-close checked step by step.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from tests.cli_helpers import connect_when_ready, host_port, run, short_dir

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def test_stream_half_close_output_continues_after_stdin_eof(d: str) -> None:
    path = f"{d}/s.sock"
    with run("listen", f"unix:{path}", "--trace") as server:
        server.address()
        with run("connect", f"unix:{path}", "--trace") as client:
            client.send(b"from client\n")
            client.close_stdin()  # EOF on stdin: shutdown(SHUT_WR), keep reading
            server.wait_out(b"from client\n")
            server.wait_err("eof")  # the server saw the client's EOF
            assert "shutdown(" in client.wait_err("shutdown(")
            # the client is still there, reading: output continues after its EOF
            assert client.p.poll() is None
            server.send(b"reply after your EOF\n")
            server.close_stdin()
            assert client.finish() == 0
            assert client.out == b"reply after your EOF\n"
        assert server.finish() == 0
    assert not os.path.exists(path)  # the server removed the file it created


def test_peer_closed_entirely_ends_the_connection(d: str) -> None:
    path = f"{d}/s.sock"
    with run("listen", f"unix:{path}", "--trace") as server:
        server.address()
        sock = connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path)
        sock.close()  # not a half-close: gone; the server's stdin stays open
        assert server.p.wait(timeout=10) == 0
        server.finish()
        assert "the peer closed entirely" in server.text


def test_peer_eof_first_stdin_keeps_flowing(d: str) -> None:
    path = f"{d}/s.sock"
    with run("listen", f"unix:{path}", "--trace") as server:
        server.address()
        server.close_stdin()  # the server half-closes at once
        with run("connect", f"unix:{path}", "--trace") as client:
            client.wait_err("eof unix:")  # the client saw the server's EOF...
            client.send(b"late but delivered\n")  # ...and still sends
            server.wait_out(b"late but delivered\n")
            assert client.finish() == 0
        assert server.finish() == 0


def test_close_on_eof_closes_at_once(d: str) -> None:
    path = f"{d}/s.sock"
    with run("listen", f"unix:{path}", "--trace") as server:
        server.address()
        with run("connect", f"unix:{path}", "--close-on-eof", "--trace") as client:
            client.send(b"bye\n")
            assert client.finish() == 0  # did not wait for the server's EOF
            assert "shutdown(" not in client.text
        server.wait_out(b"bye\n")
        assert server.finish() == 0


def test_tcp_listen_port_zero_reports_real_port() -> None:
    with run("listen", "tcp://127.0.0.1:0", "--trace") as server:
        host, port = host_port(server.address())
        assert port > 0
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(b"over tcp\n")
            sock.shutdown(socket.SHUT_WR)
            server.wait_out(b"over tcp\n")
            server.close_stdin()
            assert sock.recv(10) == b""
        assert server.finish() == 0


def test_seqpacket_lines_are_messages(d: str) -> None:
    path = f"{d}/q.sock"
    with run("listen", f"unix+seqpacket:{path}", "--trace") as server:
        server.address()
        with run("connect", f"unix+seqpacket:{path}") as client:
            client.send(b"one\ntwo\n")
            server.wait_err("message #2")
            assert "message #1 4 bytes" in server.text
            client.close_stdin()
            server.close_stdin()
            assert client.finish() == 0
        assert server.finish() == 0
        assert server.out == b"one\ntwo\n"


def test_unix_dgram_listener_answers_last_sender(d: str) -> None:
    path = f"{d}/g.sock"
    with run("listen", f"unix+dgram:{path}", "--trace") as server:
        server.address()
        with run("connect", f"unix+dgram:{path}", "--linger", "0") as client:
            client.send(b"hi\n")
            server.wait_out(b"hi\n")
            server.send(b"back\n")  # goes to the last (autobound) sender
            client.wait_out(b"back\n")
            assert client.finish() == 0
        assert server.stop() == 143


def test_udp_datagram_per_line() -> None:
    with run("listen", "udp://127.0.0.1:0", "--trace") as server:
        host, port = host_port(server.address())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(b"a", (host, port))
            server.wait_out(b"a")
            server.send(b"x\ny\n")
            assert sock.recv(100) == b"x\n"  # one datagram per line
            assert sock.recv(100) == b"y\n"
        assert server.stop() == 143


def test_keep_open_serves_clients_one_after_another(d: str) -> None:
    path = f"{d}/k.sock"
    with run("listen", f"unix:{path}", "--keep-open", "--trace") as server:
        server.address()
        for n in range(3):
            sock = connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path)
            with sock:
                sock.sendall(f"client {n}\n".encode())
                sock.shutdown(socket.SHUT_WR)
                server.wait_out(f"client {n}\n".encode())
            server.wait_err(f"close unix:{path} peer")
            server.err = b""  # wait for the next close, not this one
        assert server.stop() == 143
    assert not os.path.exists(path)


def test_max_clients_broadcasts_stdin(d: str) -> None:
    path = f"{d}/m.sock"
    with run("listen", f"unix:{path}", "-k", "--max-clients", "2", "--trace") as server:
        server.address()
        a = connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path)
        b = connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path)
        with a, b:
            deadline = time.monotonic() + 10
            while server.text.count("accept(") < 2:
                server._read_some("err", deadline)
            server.send(b"to all\n")
            server.close_stdin()
            for sock in (a, b):
                sock.settimeout(10)
                assert sock.recv(100) == b"to all\n"
                assert sock.recv(100) == b""  # then EOF: stdin ended
        assert server.stop() == 143


def test_timeout_waiting_for_a_client(d: str) -> None:
    with run("listen", f"unix:{d}/t.sock", "--timeout", "0.3") as server:
        assert server.finish() == 4
        assert "no client connected within 0.3 s" in server.text


def test_timeout_idle_connection(d: str) -> None:
    path = f"{d}/i.sock"
    with run("listen", f"unix:{path}", "--trace") as server:
        server.address()
        with run("connect", f"unix:{path}", "--timeout", "0.3") as client:
            assert client.p.wait(timeout=10) == 4
            client.finish()
            assert client.text.startswith("sockwire: ") and "(--timeout)" in client.text
        server.close_stdin()
        assert server.finish() == 0


def test_hex_and_json_show_the_payload(d: str) -> None:
    path = f"{d}/h.sock"
    with run("listen", f"unix:{path}", "--trace") as server:
        server.address()
        with run("connect", f"unix:{path}", "--hex", "--json") as client:
            client.send(b"hello")
            client.close_stdin()
            server.wait_out(b"hello")
            server.close_stdin()
            assert client.finish() == 0
        assert server.finish() == 0
    import json

    # --json: only JSON lines; --hex puts the bytes into them
    docs = [json.loads(line) for line in client.text.splitlines()]
    sends = [doc for doc in docs if doc.get("call") == "send"]
    assert sends and sends[0]["hex"] == b"hello".hex() and sends[0]["len"] == 5
    with run("listen", f"unix:{path}", "--trace") as server:
        server.address()
        with run("connect", f"unix:{path}", "--hex") as client:
            client.send(b"hello")
            client.close_stdin()
            server.wait_out(b"hello")
            server.close_stdin()
            assert client.finish() == 0
        assert server.finish() == 0
    text = client.text
    assert "68 65 6c 6c 6f" in text and "hello" in text
    assert any(line.startswith("> ") and " send 5 bytes" in line for line in text.splitlines())


def test_peek_and_send_flags_show_in_the_trace() -> None:
    with run("listen", "tcp://127.0.0.1:0", "--peek", "--trace") as server:
        address = server.address()
        with run("connect", address, "--send-flags", "DONTROUTE", "--trace") as client:
            client.send(b"flagged")
            client.close_stdin()
            server.wait_out(b"flagged")
            server.close_stdin()
            assert client.finish() == 0
        assert server.finish() == 0
    assert "MSG_DONTROUTE|MSG_NOSIGNAL" in client.wait_err("send(")
    assert 'recv(4, 262144, MSG_PEEK) = 7 b"flagged"' in server.text


def test_inherited_descriptor_fd_endpoint() -> None:
    import subprocess

    from tests.cli_helpers import SOCKWIRE

    ours, theirs = socket.socketpair()
    with ours:
        try:
            fd = theirs.fileno()
            proc = subprocess.run(
                [*SOCKWIRE, "connect", f"fd:{fd}", "--close-on-eof"],
                input=b"through an inherited fd",
                pass_fds=(fd,),
                capture_output=True,
                timeout=30,
                check=False,
            )
        finally:
            theirs.close()
        assert proc.returncode == 0, proc.stderr
        ours.settimeout(10)
        assert ours.recv(100) == b"through an inherited fd"


def test_sigint_cleans_up_and_exits_130(d: str) -> None:
    import signal

    path = f"{d}/c.sock"
    with run("listen", f"unix:{path}", "--trace") as server:
        server.address()
        assert os.path.exists(path)
        assert server.stop(signal.SIGINT) == 130
        assert "Traceback" not in server.text
    assert not os.path.exists(path)


def test_udp_port_unreachable_is_refused() -> None:
    from tests.cli_helpers import sockwire

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    proc = sockwire("connect", f"udp://127.0.0.1:{port}", "--linger", "5", input=b"anyone?\n")
    assert proc.returncode == 3
    assert "(ECONNREFUSED)" in proc.stderr.decode() and "is the receiver running?" in (
        proc.stderr.decode()
    )
