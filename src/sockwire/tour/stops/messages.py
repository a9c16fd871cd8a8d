"""Messages over a stream: a Channel puts the record boundaries back by framing."""

from __future__ import annotations

import socket

from ... import trace
from ...channel import Channel, pipe
from ...errors import ConnectionLost
from ...sock import Socket, socketpair
from ..stop import Stop, stop

RECORDS = [b"one", b"", b"three"]


def _send_messages(t: Stop, channel: Channel) -> int:
    with trace.recording() as events:
        for record in RECORDS:
            channel.send(record)
        sent_before_close = sum(1 for e in events if e.call == "send")
        channel.close()  # flushes the three buffered frames in one send()
    sends = [e for e in events if e.call == "send"]
    t.observe(
        f"B called Channel.send() {len(RECORDS)} times with {RECORDS}; no system call "
        f"happened then ({sent_before_close} sends), close() flushed them with "
        f"{len(sends)} send() of {sum(int(e.result) for e in sends)} bytes"
    )
    return len(sends)


def _die_mid_frame(t: Stop, sock: Socket) -> None:
    sock.sendall(b"\0\0\0\x10half")  # a header promising 16 bytes, then only 4
    t.observe("C wrote a 4-byte length header saying 16, then 4 payload bytes, and exited")


@stop(
    "messages",
    title="Messages over a stream: a length prefix keeps the boundaries",
    claim="Stream socket: bidirectional, sequenced, reliable, unduplicated flow. "
    "No record (SOCK_STREAM). A Channel frames each message so records survive.",
)
def messages(t: Stop) -> None:
    a, b = pipe("stream")
    with a, b:
        peer = t.spawn(_send_messages, b)
        b.close()
        with trace.recording() as events:
            got = list(a)  # until the clean EOF after the last whole message
        sends = peer.join()
    reads = [e for e in events if e.call == "recv"]
    first = reads[0].data or b""
    t.observe(
        f"A's first recv() returned {len(first)} bytes of the stream: {first!r} "
        "(a 4-byte big-endian length before each payload)"
    )
    t.observe(f"the len32 decoder cut them into {len(got)} messages: {got}")
    t.observe("the next recv() returned b'' (EOF) at a frame boundary: iteration ended cleanly")
    t.check(sends == 1, "three small sends coalesced into one send() system call")
    t.check(got == RECORDS, "the three messages, the empty one included, to come back whole")
    t.check(len(reads) == 2, "one recv() for all three messages, then EOF")

    left, right = socketpair(socket.SOCK_STREAM)
    with Channel.from_socket(left) as channel:
        cutter = t.spawn(_die_mid_frame, right)
        right.close()
        cutter.join()
        try:
            partial = channel.recv(timeout=3)
        except ConnectionLost as exc:
            t.observe(f"A's Channel.recv() raised ConnectionLost: {exc}")
        else:
            t.fail(f"recv returned {partial!r} from a cut-short frame")
        t.check(channel.state == "BROKEN", "the channel to be broken, no partial message out")
