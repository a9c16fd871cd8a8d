"""sockwire against the programs people use today: socat, nc, ncat, curl, logger, ss.

Each program is a real process; `.ci/run` installs them (CI fails rather
than skips without them). Clients keep stdin open until the answer has been
read, so nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.cli_helpers import host_port, program, run, short_dir, sockwire
from tests.helpers import need_tool

pytestmark = [pytest.mark.timeout(60), pytest.mark.tool]


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


# ---- socat as the client of `sockwire listen`


def _socat_address(kind: str, server_address: str, d: str) -> tuple[str, str]:
    """(sockwire endpoint to listen on, socat's address for it)."""
    if kind == "tcp":
        return "tcp://127.0.0.1:0", ""
    if kind == "udp":
        return "udp://127.0.0.1:0", ""
    if kind == "unix":
        return f"unix:{d}/s.sock", f"UNIX-CONNECT:{d}/s.sock"
    return f"unix+dgram:{d}/g.sock", f"UNIX-SENDTO:{d}/g.sock,bind={d}/c.sock"


@pytest.mark.parametrize("kind", ["tcp", "udp", "unix", "unix-dgram"])
def test_socat_talks_to_sockwire_listen(kind: str, d: str) -> None:
    socat = need_tool("socat")
    endpoint, socat_addr = _socat_address(kind, "", d)
    with run("listen", endpoint, "--trace") as server:
        address = server.address()
        if kind in ("tcp", "udp"):
            host, port = host_port(address)
            socat_addr = f"{kind.upper()}:{host}:{port}"
        with program(socat, "-t", "0.1", "-", socat_addr) as client:
            client.send(b"hello from socat\n")
            server.wait_out(b"hello from socat\n")
            server.send(b"hello from sockwire\n")
            client.wait_out(b"hello from sockwire\n")
            if kind in ("tcp", "unix"):
                client.close_stdin()  # socat half-closes; sockwire sees EOF
                server.wait_err("eof ")
                server.close_stdin()
                assert client.finish() == 0
                assert server.finish() == 0
            else:
                assert client.finish() == 0
                assert server.stop() == 143


@pytest.mark.parametrize("kind", ["tcp", "udp", "unix", "unix-dgram"])
def test_socat_talks_to_sockwire_echo(kind: str, d: str) -> None:
    socat = need_tool("socat")
    endpoint, socat_addr = _socat_address(kind, "", d)
    with run("echo", endpoint, "--trace") as echo:
        address = echo.address()
        if kind in ("tcp", "udp"):
            host, port = host_port(address)
            socat_addr = f"{kind.upper()}:{host}:{port}"
        with program(socat, "-t", "0.1", "-", socat_addr) as client:
            client.send(b"echo me\n")
            client.wait_out(b"echo me\n")
            assert client.finish() == 0
        assert echo.stop() == 143


# ---- OpenBSD nc and ncat as clients of `sockwire echo`


def _nc_args(kind: str, address: str) -> list[str]:
    if kind == "tcp":
        return ["-N", *map(str, host_port(address))]
    if kind == "udp":
        return ["-u", *map(str, host_port(address))]
    if kind == "unix":
        return ["-N", "-U", address.split(":", 1)[1]]
    return ["-u", "-U", address.split(":", 1)[1]]


@pytest.mark.parametrize("kind", ["tcp", "udp", "unix", "unix-dgram"])
def test_openbsd_nc_talks_to_sockwire_echo(kind: str, d: str) -> None:
    nc = need_tool("nc")
    endpoint = {
        "tcp": "tcp://127.0.0.1:0",
        "udp": "udp://127.0.0.1:0",
        "unix": f"unix:{d}/e.sock",
        "unix-dgram": f"unix+dgram:{d}/e.sock",
    }[kind]
    with run("echo", endpoint, "--trace") as echo:
        address = echo.address()
        with program(nc, *_nc_args(kind, address)) as client:
            client.send(b"nc says hi\n")
            client.wait_out(b"nc says hi\n")
            if kind in ("tcp", "unix"):
                # -N: shutdown(SHUT_WR) on stdin's EOF; echo answers with its own EOF
                assert client.finish() == 0
                echo.wait_err("close echo")
        assert echo.stop() == 143


def test_nc_and_ncat_talk_to_sockwire_listen_over_tcp() -> None:
    nc = need_tool("nc")
    ncat = need_tool("ncat")
    for argv in ([nc, "-N"], [ncat]):
        with run("listen", "tcp://127.0.0.1:0", "--trace") as server:
            host, port = host_port(server.address())
            with program(*argv, host, str(port)) as client:
                client.send(b"to sockwire\n")
                server.wait_out(b"to sockwire\n")
                client.close_stdin()  # half-close: the reply still arrives
                server.wait_err("eof ")
                server.send(b"reply after EOF\n")
                server.close_stdin()
                assert client.finish() == 0
                assert client.out == b"reply after EOF\n"
            assert server.finish() == 0


# ---- curl through a relay to a real HTTP server


def test_curl_unix_socket_through_relay_to_http_server(d: str) -> None:
    curl = need_tool("curl")
    with open(f"{d}/hello.txt", "w") as handle:
        handle.write("served over tcp, asked over unix\n")
    http = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"]
    with program(*http, "--directory", d) as server:
        banner = server.wait_out(b"/) ...").decode()  # "Serving HTTP on H port N (http://...) ..."
        match = re.search(r"port (\d+)", banner)
        assert match is not None
        port = int(match.group(1))
        front = f"{d}/front.sock"
        with run("relay", f"unix:{front}", f"tcp://127.0.0.1:{port}", "--trace") as relay:
            relay.address()
            got = subprocess.run(
                [curl, "-sS", "--unix-socket", front, "http://localhost/hello.txt"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert got.returncode == 0, got.stderr
            assert got.stdout == b"served over tcp, asked over unix\n"
            relay.wait_err("close ")
            assert relay.stop() == 143
        assert "1 connections (0 open)" in relay.text


# ---- logger: an unnamed datagram sender


def test_logger_unnamed_sender_is_shown_as_unnamed(d: str) -> None:
    logger = need_tool("logger")
    path = f"{d}/log.sock"
    with run("recv", f"unix+dgram:{path}", "--count", "1", "--trace") as receiver:
        receiver.address()
        sent = subprocess.run(
            [logger, "-u", path, "--socket-errors=on", "hello from logger"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        assert receiver.finish() == 0
    line = receiver.out.decode().strip()
    assert line.startswith("#1 from unnamed (pid=")
    assert line.endswith("hello from logger")
    assert "Traceback" not in receiver.text and "EINVAL" not in receiver.text


# ---- inspect agrees with ss


def test_inspect_agrees_with_ss_about_a_listener(d: str) -> None:
    ss = need_tool("ss")
    path = f"{d}/i.sock"
    with run("listen", f"unix:{path}", "--keep-open", "--trace", stdin=subprocess.DEVNULL) as srv:
        srv.address()
        pid = srv.p.pid
        ss_out = subprocess.run(
            [ss, "-xlp"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        ss_line = next(line for line in ss_out.splitlines() if f" {path} " in line)
        ss_pids = {int(p) for p in re.findall(r"pid=(\d+)", ss_line)}
        assert ss_pids == {pid}
        proc = sockwire("inspect", "--listening", "--kind", "unix", "--json")
        assert proc.returncode == 0
        entries = [e for e in json.loads(proc.stdout)["sockets"] if e["local"] == path]
        assert len(entries) == 1
        assert entries[0]["state"] == "LISTEN" and entries[0]["type"] == "stream"
        assert {p["pid"] for p in entries[0]["processes"]} == ss_pids
        text = sockwire("inspect", "--listening", "--kind", "unix").stdout.decode()
        assert any(path in line and f"({pid})" in line for line in text.splitlines())
        probe = sockwire("inspect", path)
        assert probe.returncode == 0
        assert f"{path}: live stream socket" in probe.stdout.decode()
        assert f"pid {pid}" in probe.stdout.decode()
        assert srv.stop() == 143
    assert not os.path.exists(path)
