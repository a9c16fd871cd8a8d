"""The CLI with zmq+ endpoints: send (REQ prints replies), recv (SUB, multipart, JSON),
--trace decoding ZMTP, connect as a DEALER, relay as a ZeroMQ proxy, usage errors."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from sockwire import zmq as swz
from tests.cli_helpers import run, sockwire, wait_path
from tests.test_zmq_interop import Peer


def _ipc(tmp_path: Path, name: str = "c.sock") -> str:
    return f"zmq+ipc://{tmp_path / name}"


@pytest.mark.timeout(60)
def test_send_req_prints_the_reply_from_libzmq(tmp_path: Path) -> None:
    peer = Peer()
    try:
        endpoint = f"ipc://{tmp_path / 'r.sock'}"
        peer.job(type="REP", endpoint=endpoint, bind=True, n=2)
        peer.expect("ready")
        done = sockwire("send", f"zmq+{endpoint}?type=REQ", "hello", "world", timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"re:hello\nre:world\n"
        assert peer.expect("done") == {"served": 2}
    finally:
        peer.close()


def _serve_until_exit(proc_poll: object, sock: swz.Socket, send: list[list[bytes]]) -> None:
    """Publish ``send`` over and over until the CLI process exits (bounded: 15 s)."""
    deadline = time.monotonic() + 15
    while proc_poll() is None and time.monotonic() < deadline:  # type: ignore[operator]
        for frames in send:
            sock.send(frames)
        sock.poll(0.02)


@pytest.mark.timeout(60)
def test_recv_sub_with_topic_multipart_and_trace(tmp_path: Path) -> None:
    with (
        swz.Socket("PUB", _ipc(tmp_path) + "?bind=1") as pub,
        run(
            "recv", _ipc(tmp_path) + "?type=SUB&subscribe=weather", "--count", "2", "--trace"
        ) as proc,
    ):
        _serve_until_exit(proc.p.poll, pub, [[b"news", b"x"], [b"weather", b"sun", b"warm"]])
        assert proc.finish() == 0, proc.text
    assert proc.out == b"weather\tsun\twarm\n" * 2
    trace = proc.text
    assert "greeting ZMTP 3.1 mechanism NULL" in trace
    assert "READY socket-type=PUB" in trace
    assert "SUBSCRIBE weather" in trace
    assert "message 7B MORE, 3B MORE, 4B" in trace


@pytest.mark.timeout(60)
def test_recv_json_and_separator(tmp_path: Path) -> None:
    with (
        swz.Socket("PUSH", _ipc(tmp_path) + "?bind=1") as push,
        run("recv", _ipc(tmp_path) + "?type=PULL", "--count", "2", "--format", "json") as proc,
    ):
        push.send([b"a", b"\xff"])
        push.send(b"plain")
        assert push.flush(timeout=10)
        assert proc.finish() == 0, proc.text
    lines = [json.loads(line) for line in proc.out.splitlines()]
    assert lines == [{"frames": ["a", {"hex": "ff"}]}, {"frames": ["plain"]}]
    with (
        swz.Socket("PULL", _ipc(tmp_path, "s.sock") + "?bind=1") as pull,
        run("send", _ipc(tmp_path, "s.sock") + "?type=PUSH", "--separator", "|", "a|b|c") as proc,
    ):
        assert pull.recv(timeout=15) == [b"a", b"b", b"c"]
        assert proc.finish() == 0, proc.text


@pytest.mark.timeout(60)
def test_connect_as_dealer_bridges_stdin_and_stdout(tmp_path: Path) -> None:
    with (
        swz.Socket("ROUTER", _ipc(tmp_path) + "?bind=1") as router,
        run("connect", _ipc(tmp_path) + "?type=DEALER&identity=cli", "--timeout", "1") as proc,
    ):
        proc.send(b"hi there\n")
        assert router.recv(timeout=15) == [b"cli", b"hi there"]
        router.send([b"cli", b"back"])
        router.flush(timeout=5)
        proc.wait_out(b"back\n")
        proc.close_stdin()
        assert proc.finish() == 0, proc.text


@pytest.mark.timeout(60)
def test_relay_is_a_zeromq_proxy(tmp_path: Path) -> None:
    front, back = _ipc(tmp_path, "front.sock"), _ipc(tmp_path, "back.sock")
    with run("relay", front + "?type=PULL&bind=1", back + "?type=PUSH&bind=1") as proc:
        with swz.Socket("PUSH", front) as push, swz.Socket("PULL", back) as pull:
            for i in range(100):
                push.send(b"%d" % i, timeout=15)
            push.flush(timeout=15)
            got = [pull.recv(timeout=15)[0] for _ in range(100)]
        assert got == [b"%d" % i for i in range(100)]
        proc.stop()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["recv", "zmq+ipc:///tmp/x.sock?type=PUSH"], "only sends"),
        (["send", "zmq+ipc:///tmp/x.sock?type=PULL", "x"], "only receives"),
        (["send", "zmq+ipc:///tmp/x.sock", "x"], "no ZeroMQ socket type"),
        (["recv", "zmq+ipc:///tmp/x.sock?type=BOGUS"], "bad value 'BOGUS' for option 'type'"),
        (["relay", "zmq+ipc:///tmp/x.sock?type=PULL", "tcp://127.0.0.1:1"], "two zmq+"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], needle: str) -> None:
    done = sockwire(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sockwire: ") and needle in lines[0], lines


def test_recv_times_out_with_exit_4(tmp_path: Path) -> None:
    done = sockwire("recv", _ipc(tmp_path) + "?type=PULL&bind=1", "--timeout", "0.3")
    assert done.returncode == 4, done.stderr
    assert done.stderr.decode().startswith("sockwire: ")


@pytest.mark.timeout(60)
def test_listen_as_pull_keeps_receiving_after_stdin_eof(tmp_path: Path) -> None:
    with run(
        "listen", _ipc(tmp_path) + "?type=PULL", "--timeout", "2", stdin=subprocess.DEVNULL
    ) as proc:
        wait_path(str(tmp_path / "c.sock"))
        with swz.Socket("PUSH", _ipc(tmp_path)) as push:
            push.send([b"x", b"y"], timeout=15)
            assert push.flush(timeout=15)
            proc.wait_out(b"x\ty\n")
        assert proc.finish() == 0, proc.text  # 2 s without a message: done
