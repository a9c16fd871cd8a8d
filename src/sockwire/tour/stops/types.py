"""The four socket types: stream, datagram, sequenced packet, raw."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import time

from ... import icmp, netns
from ...errors import SockwireError
from ...flags import MsgFlag, type_name
from ...sock import Address, Socket, format_address, socketpair
from ..stop import Stop, stop
from ._common import attempt, ename, proc_net_snmp


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


def _udp_records(t: Stop, address: tuple[str, int], records: list[bytes]) -> None:
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for record in records:
            sock.sendto(record, address)


def _udp_flood(t: Stop, address: tuple[str, int], count: int, size: int) -> int:
    """Send ``count`` numbered datagrams as fast as possible; return how many sendto()s failed."""
    failed = 0
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, t.tally(f"{count} datagrams"):
        for seq in range(count):
            _, error = attempt(sock.sendto, seq.to_bytes(4, "big").ljust(size, b"."), address)
            failed += error is not None
    return failed


def _unix_fill(t: Stop, path: str, limit: int) -> tuple[int, str]:
    """Send to a UNIX datagram socket without blocking until the kernel says EAGAIN."""
    sent = 0
    error = None
    with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        while sent < limit:
            _, error = attempt(sock.sendto, sent.to_bytes(4, "big"), path, MsgFlag.DONTWAIT)
            if error is not None:
                break
            sent += 1
    return sent, ename(error)


def _netem_config() -> str:
    """What /proc/config.gz says about netem, the qdisc that can reorder packets."""
    try:
        with gzip.open("/proc/config.gz", "rt") as config:
            for line in config:
                if "CONFIG_NET_SCH_NETEM" in line:
                    return line.strip()
    except OSError as exc:
        return f"/proc/config.gz unreadable ({exc.strerror})"
    return "CONFIG_NET_SCH_NETEM absent from /proc/config.gz"


@stop(
    "dgram",
    title="Datagram socket: boundaries kept, delivery not guaranteed",
    claim="Datagram socket: bidirectional, record boundaries, not reliable, not sequenced "
    "(SOCK_DGRAM); UDP in INET domain. The receiver may receive messages in a different "
    "order than that in which they were sent.",
)
def dgram(t: Stop) -> None:
    # 1. boundaries: three sendto() calls arrive as three datagrams
    records = [b"one", b"two", b"three"]
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        address = rx.getsockname()
        assert isinstance(address, tuple)
        t.spawn(_udp_records, address, records).join()
        got = [rx.recv(4096) for _ in records]
    t.observe(f"B sent 3 UDP datagrams; A's three recv(4096) calls returned {got}")
    t.check(got == records, "each datagram to arrive whole and separate")

    # 2. loss: overfill a small receive buffer on loopback; nobody tells the sender
    count, size = 1000, 100
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        rcvbuf = int(rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        rx.bind(("127.0.0.1", 0))
        address = rx.getsockname()
        assert isinstance(address, tuple)
        before = proc_net_snmp("Udp")
        flooder = t.spawn(_udp_flood, address, count, size)
        failed = flooder.join()
        after = proc_net_snmp("Udp")
        seqs: list[int] = []
        with t.tally("drain"):
            while len(seqs) < count:
                data, _ = attempt(rx.recv, 4096, MsgFlag.DONTWAIT)
                if data is None:
                    break
                seqs.append(int.from_bytes(data[:4], "big"))
    lost = count - len(seqs)
    drops = after.get("RcvbufErrors", 0) - before.get("RcvbufErrors", 0)
    t.observe(
        f"{flooder.role} sent {count} datagrams of {size} bytes to a socket whose SO_RCVBUF "
        f"reads {rcvbuf}; {count - failed} sendto() calls returned {size}, {failed} failed"
    )
    t.observe(f"A, reading only afterwards, received {len(seqs)}: {count - len(seqs)} were lost")
    t.observe(
        f"/proc/net/snmp Udp RcvbufErrors rose by {drops} meanwhile (the kernel's own count)"
    )
    t.check(failed == 0, "the sender to see no error")
    t.check(0 < len(seqs) < count, "some datagrams delivered and some lost")
    t.check(drops >= lost, f"the kernel to count at least {lost} receive-buffer drops")

    # 3. order: what arrived is in order here; say why reordering cannot be shown
    t.observe(
        f"the {len(seqs)} that arrived carry sequence numbers {seqs[:6]}"
        + ("..." if len(seqs) > 6 else "")
        + ": in order. Loopback has one queue and cannot reorder, and the kernel config says "
        + repr(_netem_config())
        + " (no netem qdisc to simulate it): reordering, real on multi-path networks, is not "
        "observable on this machine"
    )
    t.check(seqs == sorted(seqs), "loopback to keep the order (it has a single queue)")

    # 4. UNIX datagrams are reliable: the sender is held back, nothing is dropped
    path = os.path.join(t.tmpdir, "dgram.sock")
    with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(path)
        filler = t.spawn(_unix_fill, path, 1000)
        sent, stopped_by = filler.join()
        received = 0
        with t.tally("drain"):
            while attempt(rx.recv, 64, MsgFlag.DONTWAIT)[0] is not None:
                received += 1
    with open("/proc/sys/net/unix/max_dgram_qlen") as qlen:
        max_qlen = qlen.read().strip()
    t.observe(
        f"UNIX: {filler.role}'s non-blocking sendto() queued {sent} datagrams, then got "
        f"{stopped_by} (net.unix.max_dgram_qlen = {max_qlen}); A read all {received} of them"
    )
    t.check(stopped_by == "EAGAIN", "the UNIX sender to be held back with EAGAIN, not dropped")
    t.check(received == sent, "every queued UNIX datagram to be delivered")


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


def _raw_namespace(t: Stop) -> None:
    """Without CAP_NET_RAW, move into a user + network namespace where we have it."""
    if netns.has_capability(netns.CAP_NET_RAW):
        return
    if shutil.which("ip") is None:
        t.skip("needs CAP_NET_RAW, or the program ip (iproute2) to set up a user namespace")
    try:
        ns = netns.enter(user=True, run=t.run)
    except SockwireError as exc:
        t.skip(f"needs CAP_NET_RAW, and no user namespace could give it here: {exc}")
    t.observe(
        f"no CAP_NET_RAW for uid {ns.outer_uid}: this stop runs inside {ns.describe()}, "
        "where it has CAP_NET_RAW; 127.0.0.1 there is its own loopback"
    )


def _raw_watcher(t: Stop, ready: Socket, ident: int) -> list[str]:
    """A second raw ICMP socket in another process: it sees A's packets too."""
    seen: list[str] = []
    with Socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        ready.send(b"ready")
        deadline = time.monotonic() + 2.0
        for _ in range(50):  # bounded: other programs' ICMP may interleave
            if len(seen) == 2 or not sock.wait_readable(deadline - time.monotonic()):
                break
            data, _ = sock.recvfrom(65535)
            packet = icmp.parse(data)
            if packet.ident == ident and packet.type in (icmp.ECHO_REQUEST, icmp.ECHO_REPLY):
                seen.append(f"{packet.type_name} (type {packet.type}) seq {packet.seq}")
    t.observe(f"a second raw ICMP socket, in this process, saw A's packets too: {seen}")
    return seen


@stop(
    "raw",
    title="Raw socket: ICMP echo built by hand, reply read with its IP header",
    claim="Raw socket: for accessing underlying protocols. The underlying communication "
    "protocols can be accessed using the raw sockets.",
)
def raw(t: Stop) -> None:
    _raw_namespace(t)
    ident, seq, payload = os.getpid() & 0xFFFF, 1, b"sockwire tour ping"
    ready_a, ready_b = socketpair()
    with ready_a, ready_b:
        watcher = t.spawn(_raw_watcher, ready_b, ident)
        ready_a.recv(16)
        with Socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
            request = icmp.echo_request(ident, seq, payload)
            sock.sendto(request, ("127.0.0.1", 0))
            t.observe(
                f"A built an ICMP echo request itself: type 8, id {ident}, seq {seq}, checksum "
                f"0x{icmp.parse(request, ip_header=False).checksum:04x}, {len(request)} bytes"
            )
            order: list[str] = []
            reply = None
            deadline = time.monotonic() + 2.0
            for _ in range(50):  # bounded: other programs' ICMP may interleave
                if not sock.wait_readable(deadline - time.monotonic()):
                    break
                data, source = sock.recvfrom(65535)
                packet = icmp.parse(data)
                if packet.ident != ident:
                    continue
                order.append(packet.type_name)
                if packet.is_echo_reply and packet.seq == seq:
                    reply = (packet, len(data), source)
                    break
        seen = watcher.join()
    t.observe(f"A read, in order: {order} (its own request is looped back first)")
    t.check(order[:1] == ["echo request"], "our own echo request to arrive first")
    if reply is None:
        t.fail("no echo reply with our id arrived within 2 s")
    packet, size, source = reply
    ip = packet.ip
    t.check(ip is not None, "the reply to start with its IPv4 header")
    assert ip is not None
    t.observe(
        f"the reply: {size} bytes from {format_address(socket.AF_INET, source)}, "
        f"starting with a {ip.header_length}-byte IPv4 header ({ip.src} -> {ip.dst}, ttl "
        f"{ip.ttl}, protocol {ip.protocol}, header checksum {'ok' if ip.checksum_ok else 'BAD'}), "
        f"then ICMP type {packet.type} id {packet.ident} seq {packet.seq}, checksum "
        f"{'ok' if packet.checksum_ok else 'BAD'}, payload {packet.payload!r}"
    )
    t.check(packet.payload == payload, "the reply to echo our payload")
    t.check(ip.checksum_ok and packet.checksum_ok, "both checksums to verify")
    t.check(len(seen) == 2, "a second raw socket in another process to see both packets")


def _default_protocol_peer(t: Stop, tcp_address: Address, udp_address: Address) -> list[int]:
    with Socket(socket.AF_INET, socket.SOCK_STREAM, 0) as tcp:
        tcp.connect(tcp_address)
        tcp.send(b"over TCP")
        tcp_proto = tcp.protocol
    with Socket(socket.AF_INET, socket.SOCK_DGRAM, 0) as udp:
        udp.sendto(b"over UDP", udp_address)
        udp_proto = udp.protocol
    return [tcp_proto, udp_proto]


@stop(
    "default-protocol",
    title="socket(domain, type, 0): the kernel picks the protocol",
    claim="If the protocol is not specified in the above system call, the system uses a "
    "default protocol that supports the socket type.",
)
def default_protocol(t: Stop) -> None:
    with (
        Socket(socket.AF_INET, socket.SOCK_STREAM, 0) as listener,
        Socket(socket.AF_INET, socket.SOCK_DGRAM, 0) as udp,
    ):
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        udp.bind(("127.0.0.1", 0))
        peer = t.spawn(_default_protocol_peer, listener.getsockname(), udp.getsockname())
        conn, _ = listener.accept()
        with conn:
            over_tcp = conn.recv(100)
        over_udp = udp.recv(100)
        tcp_proto, udp_proto = listener.protocol, udp.protocol
        python_proto = (listener.raw.proto, udp.raw.proto)
        b_protos = peer.join()
    t.observe(
        f"socket(AF_INET, SOCK_STREAM, 0): SO_PROTOCOL reads {tcp_proto} (IPPROTO_TCP) in A, "
        f"{b_protos[0]} in B; {over_tcp!r} crossed a TCP connection"
    )
    t.observe(
        f"socket(AF_INET, SOCK_DGRAM, 0): SO_PROTOCOL reads {udp_proto} (IPPROTO_UDP) in A, "
        f"{b_protos[1]} in B; {over_udp!r} crossed as a UDP datagram"
    )
    t.observe(
        f"Python's socket.proto still says {python_proto}: it repeats the argument; only "
        "SO_PROTOCOL tells what the kernel chose"
    )
    t.check(
        [tcp_proto, udp_proto] == [6, 17] and b_protos == [6, 17],
        "SO_PROTOCOL 6 (TCP) for STREAM and 17 (UDP) for DGRAM when 0 was given",
    )
    _, error = attempt(Socket, socket.AF_INET, socket.SOCK_RAW, 0)
    t.observe(f"socket(AF_INET, SOCK_RAW, 0) = {ename(error)}: raw IP has no default protocol")
    t.check(ename(error) == "EPROTONOSUPPORT", "EPROTONOSUPPORT for a raw INET socket")
    with Socket(socket.AF_UNIX, socket.SOCK_RAW, 0) as unix_raw:
        made = int(unix_raw.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE))
    t.observe(
        f"socket(AF_UNIX, SOCK_RAW, 0) succeeds, but SO_TYPE reads {made} "
        f"({type_name(made)}): the UNIX domain silently gives a datagram socket"
    )
    t.check(made == socket.SOCK_DGRAM, "AF_UNIX SOCK_RAW to become SOCK_DGRAM")
