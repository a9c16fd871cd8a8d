"""Exit codes and one-line errors: bad arguments, refused peers, closed pipes."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from sockwire.cli.exitcodes import Exit
from sockwire.cli.main import main
from tests.cli_helpers import SOCKWIRE, run, short_dir, sockwire

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


LONG = "x" * 10_000


@pytest.mark.parametrize(
    "argv",
    [
        ["connect", f"tcp://{LONG}:80"],
        ["connect", f"unix:/tmp/{LONG}"],
        ["listen", f"unix+dgram:/{LONG}"],
        ["relay", f"unix:/tmp/{LONG}", "tcp://127.0.0.1:1"],
        ["connect", "tcp://127.0.0.1:1", "--bufsize", "-1"],
        ["connect", "tcp://127.0.0.1:1", "--bufsize", "99999999999999"],
        ["connect", "tcp://127.0.0.1:1", "--bufsize", "1" * 5000],
        ["recv", "udp://127.0.0.1:0", "--count", "0"],
        ["connect", "tcp://127.0.0.1:1", "--send-flags", "PEEK"],
        ["connect", "tcp://127.0.0.1:1", "--send-flags", "BOGUS"],
        ["connect", "tcp://127.0.0.1:1", "--timeout", "-1"],
        ["connect", "tcp://127.0.0.1:1?timeout=3", "--timeout", "5"],
        ["listen", "tcp://127.0.0.1:0", "--backlog", "70000"],
        ["listen", "tcp://127.0.0.1:0", "--mode", "0600"],
        ["listen", "unix:/tmp/a.sock?mode=0644", "--mode", "0600"],
        ["listen", "unix:/tmp/a.sock", "--max-clients", "100000"],
        ["inspect", "--kind", "bogus"],
        ["frobnicate"],
        ["connect"],
    ],
)
def test_bad_arguments_are_one_line_usage_errors(argv: list[str]) -> None:
    proc = sockwire(*argv)
    assert proc.returncode == Exit.USAGE, proc.stderr
    err = proc.stderr.decode()
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("sockwire: ")
    assert len(err) < 2000  # the 10 KB argument is not echoed back


def test_refused_and_not_found(d: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        proc = sockwire("connect", f"tcp://127.0.0.1:{port}")
    assert proc.returncode == Exit.REFUSED
    assert proc.stderr.decode().startswith(f"sockwire: connect 127.0.0.1:{port} (ECONNREFUSED): ")
    proc = sockwire("connect", f"unix:{d}/none.sock")
    assert proc.returncode == Exit.REFUSED and "(ENOENT)" in proc.stderr.decode()
    assert proc.stderr.decode().count("\n") == 1


@pytest.mark.parametrize(
    ("server", "client", "kind"),
    [
        ("unix+seqpacket", "unix", "SOCK_SEQPACKET"),
        ("unix+dgram", "unix+seqpacket", "SOCK_DGRAM"),
        ("unix", "unix+dgram", "SOCK_STREAM"),
    ],
)
def test_wrong_socket_type_names_the_type_it_is(
    d: str, server: str, client: str, kind: str
) -> None:
    """The EPROTOTYPE hint names the type the socket really is (from sock_diag, no probe)."""
    path = f"{d}/q.sock"
    with run("recv" if server != "unix" else "listen", f"{server}:{path}", "--trace") as r:
        r.address()
        proc = sockwire("connect", f"{client}:{path}")
        assert proc.returncode == Exit.REFUSED
        err = proc.stderr.decode()
        assert "(EPROTOTYPE)" in err and err.count("\n") == 1
        assert f"is a {kind} socket: use {server}:{path}" in err
        assert r.stop() == 143


@pytest.mark.parametrize("what", ["directory", "regular file", "FIFO"])
def test_a_path_that_is_not_a_socket_is_named_and_never_to_be_removed(d: str, what: str) -> None:
    """Issue 14 defect 3: ECONNREFUSED on a non-socket said "a stale socket file? remove it"."""
    path = {"directory": d, "regular file": f"{d}/file", "FIFO": f"{d}/fifo"}[what]
    if what == "regular file":
        with open(path, "w") as handle:
            handle.write("precious\n")
    elif what == "FIFO":
        os.mkfifo(path)
    for argv in (["connect", f"unix:{path}"], ["send", f"unix+dgram:{path}", "hi"]):
        proc = sockwire(*argv, timeout=15)
        assert proc.returncode == Exit.REFUSED
        err = proc.stderr.decode()
        assert err.count("\n") == 1
        assert f"{path} is a {what}, not a socket" in err
        assert "remove" not in err and "stale" not in err
    assert os.path.exists(path)


def test_unix_datagram_too_large_cites_its_own_limit(d: str) -> None:
    """EMSGSIZE on a UNIX datagram socket: SO_SNDBUF minus 32, with the socket's figure."""
    from sockwire import Socket, errors

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(f"{d}/g.sock")
        with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            limit = sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 32
            with pytest.raises(errors.MessageTooLarge) as info:
                sender.sendto(b"x" * (limit + 1), f"{d}/g.sock")
            text = str(info.value)
            assert f"SO_SNDBUF minus 32 bytes ({limit:,} bytes on this socket)" in text
            assert "UNIX datagram" in text and "65,507" not in text and "SEQPACKET" not in text
        udp = Socket(socket.AF_INET, socket.SOCK_DGRAM)
        with udp, pytest.raises(errors.MessageTooLarge, match="UDP datagram carries at most"):
            udp.sendto(b"x" * 70000, ("127.0.0.1", 9))


def test_framing_on_a_message_socket_is_a_usage_error(d: str) -> None:
    proc = sockwire("connect", f"unix+seqpacket:{d}/x.sock", "--framing", "len32")
    assert proc.returncode == Exit.USAGE
    assert "keep message boundaries themselves" in proc.stderr.decode()
    assert "sockwire" in proc.stderr.decode()  # the framing packet sockets do take
    framed = sockwire("connect", f"unix:{d}/x.sock", "--framing", "len32")
    assert framed.returncode == Exit.REFUSED  # framing accepted; nobody listens there


def test_existing_path_is_address_in_use(d: str) -> None:
    path = f"{d}/taken"
    with open(path, "w") as handle:
        handle.write("precious")
    proc = sockwire("listen", f"unix:{path}")
    assert proc.returncode == Exit.IO and "already exists" in proc.stderr.decode()
    with open(path) as handle:
        assert handle.read() == "precious"


def _pipeline(command: str) -> tuple[int, str]:
    """Run ``command | head -c1`` in bash; sockwire's exit status and stderr."""
    script = (
        f"set -o pipefail; {command} 2>$ERRFILE | head -c1 >/dev/null; echo ${{PIPESTATUS[0]}}"
    )
    env = dict(os.environ)
    with short_dir() as tmp:
        env["ERRFILE"] = f"{tmp}/err"
        out = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=False,
        )
        with open(f"{tmp}/err") as handle:
            err = handle.read()
    return int(out.stdout.strip().splitlines()[-1]), err


def test_connect_into_head_exits_141_quietly(d: str) -> None:
    with run("echo", f"unix:{d}/e.sock", "--trace") as echo:
        echo.address()
        sw = " ".join(SOCKWIRE)
        code, err = _pipeline(f"{sw} connect unix:{d}/e.sock </dev/zero")
        assert code == Exit.BROKEN_PIPE
        assert err == ""
        assert echo.stop() == 143


def test_relay_trace_into_head_exits_141_quietly(d: str) -> None:
    front = f"{d}/r.sock"
    argv = [*SOCKWIRE, "relay", f"unix:{front}", f"unix:{d}/none.sock", "--trace"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(1)  # like head -c1: one byte, then the reader goes away
        proc.stdout.close()
        # the next trace line fails with EPIPE: at start-up (bind, listen), or,
        # if those were already in the pipe, at the accept of a client
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(front):
                with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as client:
                    client.connect(front)
                break
            select.select([], [], [], 0.02)
        assert proc.wait(timeout=15) == Exit.BROKEN_PIPE
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert not os.path.exists(front)


def test_main_in_process_maps_errors(capsys: pytest.CaptureFixture[str], d: str) -> None:
    assert main(["connect", f"unix:{d}/none.sock"]) == Exit.REFUSED
    assert capsys.readouterr().err.startswith(f"sockwire: connect {d}/none.sock (ENOENT)")


def test_help_documents_exit_codes_and_commands() -> None:
    proc = sockwire("--help")
    text = proc.stdout.decode()
    for word in ("listen", "connect", "relay", "send", "recv", "echo", "inspect", "141", "143"):
        assert word in text
    proc = sockwire("connect", "--help")
    assert proc.returncode == 0 and "--close-on-eof" in proc.stdout.decode()
