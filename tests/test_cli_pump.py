"""The copy engine in-process, over socketpairs: splice and buffer paths, half-close, bounds."""

from __future__ import annotations

import io
import json
import socket

import pytest

from sockwire import Socket, trace
from sockwire.cli.observe import Observer, hexdump, render
from sockwire.cli.options import IoOptions
from sockwire.cli.pump import Conn, End, Flow, Loop, Stats
from sockwire.flags import MsgFlag

pytestmark = pytest.mark.timeout(30)


def _opts(**changes: object) -> IoOptions:
    values: dict[str, object] = {
        "trace": False,
        "hex": False,
        "json": False,
        "send_flags": MsgFlag.NONE,
        "peek": False,
        "timeout": None,
        "bufsize": 4096,
        "framing": "none",
    }
    values.update(changes)
    return IoOptions(**values)  # type: ignore[arg-type]


def _relay_once(
    sock_type: int, use_splice: bool, opts: IoOptions, *, fast: bool = False
) -> tuple[bytes, bytes, Stats]:
    client, x = socket.socketpair(socket.AF_UNIX, sock_type)
    y, target = socket.socketpair(socket.AF_UNIX, sock_type)
    sx, sy = Socket.adopt(x), Socket.adopt(y)
    for s in (sx, sy):
        s.setblocking(False)
    with client, target:
        message = sock_type != socket.SOCK_STREAM
        a, b = End("a", sock=sx, opts=opts), End("b", sock=sy, opts=opts)
        stats = Stats()
        flows = [
            Flow(
                a,
                b,
                opts,
                direction="fwd",
                stats=stats,
                message=message,
                use_splice=use_splice,
                fast=fast,
            ),
            Flow(
                b,
                a,
                opts,
                direction="back",
                stats=stats,
                message=message,
                use_splice=use_splice,
                fast=fast,
            ),
        ]
        conn = Conn("test", flows, [sx, sy], stats, raise_errors=True)
        for part in (b"one", b"two", b"three"):
            client.send(part)
        client.shutdown(socket.SHUT_WR)
        target.send(b"answer")
        target.shutdown(socket.SHUT_WR)
        with Observer(io.StringIO()) as observer:
            loop = Loop(observer)
            loop.add(conn)
            try:
                loop.run(lambda: conn.done)
            finally:
                loop.close()
        got_target = [target.recv(100) for _ in range(4 if message else 1)]
        got_client = client.recv(100)
        assert target.recv(100) == b"" and client.recv(100) == b""  # EOF propagated
    return b"|".join(got_target), got_client, stats


@pytest.mark.parametrize(
    ("use_splice", "fast"),
    [(True, True), (False, True), (False, False)],
    ids=["splice", "raw-copy", "traced-copy"],
)
def test_stream_relay_half_close(use_splice: bool, fast: bool) -> None:
    to_target, to_client, stats = _relay_once(socket.SOCK_STREAM, use_splice, _opts(), fast=fast)
    assert to_target.replace(b"|", b"") == b"onetwothree"
    assert to_client == b"answer"
    assert stats.bytes == {"fwd": 11, "back": 6}
    assert stats.open == 0 and stats.connections == 1


def test_seqpacket_relay_keeps_boundaries() -> None:
    to_target, to_client, stats = _relay_once(socket.SOCK_SEQPACKET, False, _opts())
    assert to_target == b"one|two|three|"  # the 4th recv is the EOF
    assert to_client == b"answer"
    assert stats.messages == {"fwd": 3, "back": 1}


def test_traced_relay_records_every_call() -> None:
    with trace.recording() as events:
        _relay_once(socket.SOCK_STREAM, False, _opts(peek=True, send_flags=MsgFlag.DONTWAIT))
    calls = [e.call for e in events]
    assert "recv" in calls and "recv_into" in calls and "shutdown" in calls
    sends = [e for e in events if e.call == "send"]
    assert sends and all("MSG_DONTWAIT" in e.args[-1] for e in sends)
    notes = [e for e in events if e.extra.get("note")]
    assert {"eof", "close"} <= {e.call for e in notes}


def test_observer_renders_trace_hex_and_json() -> None:
    def observed(**kw: bool) -> str:
        out = io.StringIO()
        with Observer(out, **kw):
            a, b = socket.socketpair()
            with Socket.adopt(a) as sa, Socket.adopt(b) as sb:
                sa.send(b"hi there")
                sb.recv(100)
        return out.getvalue()

    text = observed(trace_lines=True, hex_dump=True)
    assert "send(" in text and "recv(" in text
    assert "68 69 20 74 68 65 72 65" in text
    assert any(line.startswith("> ") for line in text.splitlines())
    assert any(line.startswith("< ") for line in text.splitlines())
    # --json (with --trace too): JSON lines only; the bytes only with --hex
    for hexed in (False, True):
        docs = [
            json.loads(line)
            for line in observed(trace_lines=True, json_lines=True, hex_dump=hexed).splitlines()
        ]
        assert {"send", "recv", "close"} <= {doc["call"] for doc in docs}
        send = next(doc for doc in docs if doc["call"] == "send")
        assert send["len"] == 8 and send["event"] == "call"
        assert ("hex" in send) == hexed and ("hi there" in json.dumps(send)) == hexed


def test_observer_marks_a_broken_output() -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "gone")

    observer = Observer(Broken(), trace_lines=True)
    with observer:
        trace.note("x")
    assert observer.broken
    with pytest.raises(BrokenPipeError):
        observer.check()


def test_hexdump_and_render_of_notes() -> None:
    assert hexdump(b"AB\x00") == ["    0000  41 42 00" + " " * 39 + "  AB."]
    event = trace.Event("eof", ("stdin",), "", extra={"note": True})
    assert render(event) == "eof stdin"
