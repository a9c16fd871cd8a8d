"""The four socket types: stream, datagram, sequenced packet, raw."""

from __future__ import annotations

import socket

from ...flags import MsgFlag
from ...sock import Socket, socketpair
from ..stop import Stop, stop


def _write_records(t: Stop, sock: Socket, records: list[bytes]) -> None:
    for record in records:
        sock.send(record)
    sock.shutdown(socket.SHUT_WR)


@stop(
    "stream",
    title="Stream socket: a reliable flow of bytes with no record boundaries",
    claim="Stream socket: bidirectional, sequenced, reliable, unduplicated flow. "
    "No record (SOCK_STREAM).",
)
def stream(t: Stop) -> None:
    records = [b"one|", b"two|", b"three|"]
    a, b = socketpair(socket.SOCK_STREAM)
    with a, b:
        peer = t.spawn(_write_records, b, records)
        b.close()
        peer.join()
        data = a.recv(4096)
        eof = a.recv(4096)
    t.observe(f"B wrote {len(records)} records with 3 send() calls: {records}")
    t.observe(f"A's first recv(4096) returned {len(data)} bytes: {data!r}")
    t.observe("the next recv returned b'' (EOF): no boundary survived between the records")
    t.check(data == b"".join(records), "the three records read back as one run of bytes")
    t.check(eof == b"", "EOF after the run")


def _seqpacket_writer(t: Stop, sock: Socket) -> int:
    for record in (b"one", b"two", b"three"):
        sock.send(record)
    sndbuf = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
    limit = sndbuf - 32
    sock.send(b"x" * limit)
    try:
        sock.send(b"x" * (limit + 1))
    except Exception as exc:  # noqa: BLE001  # the error *is* the observation
        t.observe(f"send of {limit + 1} bytes failed: {type(exc).__name__} ({exc})")
    else:
        t.fail(f"a send of {limit + 1} bytes succeeded; expected EMSGSIZE")
    sock.send(b"0123456789" * 10)
    return limit


@stop(
    "seqpacket",
    title="Sequenced packet socket: reliable, connected, boundaries kept, fixed maximum",
    claim="Sequential packet socket: bidirectional, sequenced, reliable, connection, for "
    "datagrams with max length (SOCK_SEQPACKET).",
)
def seqpacket(t: Stop) -> None:
    a, b = socketpair(socket.SOCK_SEQPACKET)
    with a, b:
        peer = t.spawn(_seqpacket_writer, b)
        b.close()
        got = [a.recv(4096) for _ in range(3)]
        t.observe(f"A read the three messages back one per recv(): {got}")
        t.check(got == [b"one", b"two", b"three"], "each send() to arrive as one message")
        big = a.recvmsg(1 << 20)
        small = a.recvmsg(16)
        limit = peer.join()
        t.observe(
            f"the largest message that fits, SO_SNDBUF - 32 = {limit} bytes, arrived whole "
            f"({len(big.data)} bytes)"
        )
        t.check(len(big.data) == limit, f"a {limit}-byte message to arrive whole")
        t.observe(
            f"a 100-byte message read with a 16-byte buffer: {small.data!r}, "
            f"flags={small.flags}, full size {small.size}; the rest is discarded"
        )
        t.check(bool(small.flags & MsgFlag.TRUNC), "MSG_TRUNC on the short read")
        t.check(small.size == 100, "the kernel to report the full size, 100")
        eof = a.recv(4096)
        t.check(eof == b"", "EOF once the writer closed")
