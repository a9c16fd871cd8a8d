"""``--json`` is JSON lines (issue 14 defect 6); servers say where they listen and clean up
on SIGHUP (defect 9); ``listen --max-clients N`` without ``-k`` serves N (defect 7)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli_helpers import connect_when_ready, host_port, program, run, short_dir, sockwire
from tests.helpers import need_tool

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line one JSON object, or the test fails."""
    docs = []
    for line in text.splitlines():
        doc = json.loads(line)
        assert isinstance(doc, dict) and "event" in doc, line
        docs.append(doc)
    return docs


def test_relay_with_json_is_json_lines_with_lengths_not_bytes(d: str) -> None:
    """2 MB through relay --json used to give 16.8 MB of events (hex of every payload),
    with the count line and the final error as text between them."""
    socat = need_tool("socat")
    path = f"{d}/front.sock"
    payload = os.urandom(2 * 1024 * 1024)
    with run("echo", "tcp://127.0.0.1:0") as echo:
        target = echo.address()
        with run("relay", f"unix:{path}", target, "--json", "--trace") as relay:
            relay.address()
            client = subprocess.run(
                [socat, "-t", "5", "-", f"UNIX-CONNECT:{path}"],
                input=payload,
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert client.stdout == payload
            assert relay.stop() == 143
        echo.stop()
    docs = json_lines(relay.text)
    assert len(relay.err) < len(payload) // 4  # lengths, not bytes
    assert not any("hex" in doc for doc in docs)
    calls = [doc for doc in docs if doc["event"] == "call" and doc["call"] in ("send", "recv")]
    assert calls and all("len" in doc or doc["errno"] for doc in calls)
    (summary,) = [doc for doc in docs if doc["event"] == "summary"]
    assert summary["bytes"] == {"client->target": len(payload), "target->client": len(payload)}
    assert summary["connections"] == 1
    assert [doc["event"] for doc in docs].count("listening") == 1


def test_errors_and_usage_errors_are_json_too(d: str) -> None:
    missing = sockwire("connect", f"unix:{d}/none.sock", "--json", "--trace")
    assert missing.returncode == 3
    docs = json_lines(missing.stderr.decode())
    error = docs[-1]
    assert error["event"] == "error" and error["exit"] == 3 and error["errno"] == "ENOENT"
    assert error["kind"] == "NotFound" and error["what"] == f"connect {d}/none.sock"
    usage = sockwire("connect", "--json", "--bufsize", "0", "tcp://127.0.0.1:1")
    assert usage.returncode == 2
    (only,) = json_lines(usage.stderr.decode())
    assert only["event"] == "error" and only["exit"] == 2 and "buffer size" in only["message"]
    document = sockwire("inspect", f"{d}/none.sock", "--json")  # a document command
    assert document.returncode == 3 and json.loads(document.stdout)["exists"] is False


def test_recv_json_prints_json_messages(d: str) -> None:
    path = f"{d}/r.sock"
    with run("recv", f"unix+dgram:{path}", "--json", "--count", "2") as receiver:
        assert receiver.address() == f"unix+dgram:{path}"
        sent = sockwire("send", f"unix+dgram:{path}", "one", "two\nlines")
        assert sent.returncode == 0, sent.stderr
        assert receiver.finish() == 0
    messages = [json.loads(line) for line in receiver.out.decode().splitlines()]
    assert [m["data"] for m in messages] == ["one", "two\nlines"]
    assert messages[0]["pid"] > 0
    json_lines(receiver.text)


def test_library_warnings_are_json_under_json(d: str) -> None:
    path = f"{d}/f.sock"
    with run("listen", f"unix:{path}?allowed_uids=65534", "--json") as server:
        server.address()
        connect_when_ready(socket.AF_UNIX, socket.SOCK_STREAM, path).close()
        server.wait_err("refused peer")
        assert server.stop() == 143
    logs = [doc for doc in json_lines(server.text) if doc["event"] == "log"]
    assert logs and logs[0]["level"] == "warning" and "uid=0" in logs[0]["message"]


@pytest.mark.parametrize(
    "argv",
    [
        ["listen", "tcp://127.0.0.1:0"],
        ["echo", "tcp://127.0.0.1:0"],
        ["recv", "udp://127.0.0.1:0"],
        ["relay", "tcp://127.0.0.1:0", "tcp://127.0.0.1:9"],
    ],
)
def test_every_server_says_where_it_listens(argv: list[str]) -> None:
    """With port 0 the chosen port used to show only under --trace."""
    with run(*argv) as server:
        line = server.wait_err("listening on")
        assert line.startswith("sockwire: listening on ")
        host, port = host_port(line.split()[-1])
        assert host == "127.0.0.1" and port > 0
        assert server.stop() == 143
    with run(*argv, "--json") as server:
        doc = json.loads(server.wait_err('"event": "listening"'))
        assert doc["message"] == f"listening on {doc['address']}"
        assert host_port(doc["address"])[1] > 0
        server.stop()
        json_lines(server.text)


@pytest.mark.parametrize("command", ["listen", "echo", "relay", "recv"])
def test_sighup_removes_the_socket_file_like_sigterm(d: str, command: str) -> None:
    """socat removes its socket file on SIGHUP; we used to leave it behind."""
    path = f"{d}/h.sock"
    scheme = "unix+seqpacket" if command == "recv" else "unix"
    argv = [command, f"{scheme}:{path}"] + (["tcp://127.0.0.1:9"] if command == "relay" else [])
    with run(*argv) as server:
        server.address()
        kind = socket.SOCK_SEQPACKET if command == "recv" else socket.SOCK_STREAM
        with connect_when_ready(socket.AF_UNIX, kind, path):
            assert os.path.exists(path)
            assert server.stop(signal.SIGHUP) == 129
        assert "Traceback" not in server.text
    assert not os.path.exists(path)


def test_listen_max_clients_without_keep_open_serves_them_all(d: str) -> None:
    """Two of three nc clients used to sit in the backlog and be reset at exit."""
    nc = need_tool("nc")
    path = f"{d}/m.sock"
    with run("listen", f"unix:{path}", "--max-clients", "3", "--trace") as server:
        server.address()
        clients = [program(nc, "-U", path) for _ in range(3)]
        procs = [c.__enter__() for c in clients]
        try:
            deadline = time.monotonic() + 15
            while server.text.count("accept(") < 3:  # all three served at once
                server._read_some("err", deadline)
            server.send(b"to each\n")
            for n, proc in enumerate(procs):
                proc.wait_out(b"to each\n")
                proc.send(f"from {n}\n".encode())
            for n in range(3):
                server.wait_out(f"from {n}\n".encode())
            server.close_stdin()
            for proc in procs:
                proc.close_stdin()
                assert proc.finish() == 0
        finally:
            for c in clients:
                c.__exit__(None, None, None)
        assert server.finish() == 0, server.text
    assert not os.path.exists(path)
