"""Data transfer: read/write, send/recv and their flags, and close."""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import socket
import subprocess
import time

from ... import netlink, netns, trace
from ...errors import SockwireError
from ...flags import MsgFlag
from ...sock import Address, Socket, format_address, socketpair
from ..stop import Stop, stop
from ._common import attempt, ename, fd_kind, poll_events

# --------------------------------------------------------------------------
# read-write
# --------------------------------------------------------------------------


def _plain_writer(t: Stop, sock: Socket) -> str:
    kind = fd_kind(sock.fd)
    sock.write(b"written with write(2); ")
    # a program that knows nothing about sockets writes to it as its stdout
    proc = subprocess.run(
        ["/bin/echo", "printed by /bin/echo, whose stdout is the socket"],
        stdout=sock.fd,
        check=False,
    )
    trace.note("exec", "/bin/echo ... >&socket", result=str(proc.returncode))
    sock.shutdown(socket.SHUT_WR)
    return kind


@stop(
    "read-write",
    title="A socket is a descriptor: read(2) and write(2) work on it",
    claim="The socket handle is returned. It is a descriptor. Data transfer: read(), write().",
)
def read_write(t: Stop) -> None:
    a, b = socketpair()
    fd_a = a.fd
    with a, b:
        peer = t.spawn(_plain_writer, b)
        b.close()
        chunks = []
        for _ in range(10):  # bounded: EOF comes after two writes
            chunk = a.read(4096)
            if not chunk:
                break
            chunks.append(chunk)
        kind_b = peer.join()
        kind_a = fd_kind(a.fd)
    data = b"".join(chunks)
    t.observe(f"A's descriptor {fd_a} is {kind_a}; {peer.role}'s is {kind_b}")
    t.observe(f"A's read(2) calls returned {data!r}, then b'' (EOF)")
    t.check(data.startswith(b"written with write(2); "), "write(2) and read(2) to carry the bytes")
    t.check(b"printed by /bin/echo" in data, "a program's stdout, set to the socket, to arrive")


# --------------------------------------------------------------------------
# send-recv
# --------------------------------------------------------------------------


def _mixed_writer(t: Stop, sock: Socket, go: Socket) -> None:
    go.recv(16)  # A has shown the empty socket first
    sock.write(b"by write|")
    sock.send(b"by send|")
    sock.shutdown(socket.SHUT_WR)


@stop(
    "send-recv",
    title="send() and recv(): read() and write() plus flags",
    claim="send() and recv() are similar to read() and write() but have some flags: "
    "int send(int s, const char *msg, int len, int flags), "
    "int recv(int s, char *buf, int len, int flags).",
)
def send_recv(t: Stop) -> None:
    a, b = socketpair()
    go_a, go_b = socketpair()
    with a, b, go_a, go_b:
        peer = t.spawn(_mixed_writer, b, go_b)
        b.close()
        _, error = attempt(a.recv, 100, MsgFlag.DONTWAIT)
        t.observe(
            f"on an empty, blocking socket, recv(..., MSG_DONTWAIT) returned at once with "
            f"{ename(error)}, where read() would have waited: a flag read() cannot take"
        )
        t.check(ename(error) == "EAGAIN", "EAGAIN from recv with MSG_DONTWAIT on an empty socket")
        go_a.send(b"go")
        peer.join()
        first = a.recv(9)
        second = a.read(100)
        eof = a.recv(100, 0)
    t.observe(
        f"{peer.role} wrote b'by write|' with write(2) and b'by send|' with send(2); A read "
        f"{first!r} with recv(9, 0) and {second!r} with read(2): with flags 0 they are the same "
        "call"
    )
    t.observe(
        "sockwire's send() always adds MSG_NOSIGNAL (visible in the trace), so a dead peer "
        "gives an error instead of killing the sender"
    )
    t.check(first + second == b"by write|by send|", "the same byte stream whichever call is used")
    t.check(eof == b"", "EOF after SHUT_WR")


# --------------------------------------------------------------------------
# msg-oob
# --------------------------------------------------------------------------


def _oob_sender(t: Stop, address: Address) -> None:
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect(address)
        sock.send(b"abc")
        sock.send(b"XYZ", MsgFlag.OOB)
        sock.send(b"tail")
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # wait for A to finish: EOF


@stop(
    "msg-oob",
    title="MSG_OOB: an urgent byte beside the stream, and the mark",
    claim="MSG_OOB: out-of-band data.",
)
def msg_oob(t: Stop) -> None:
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = t.spawn(_oob_sender, listener.getsockname())
        conn, _ = listener.accept()
        with conn:
            urgent_pending = poll_events(conn, select.POLLPRI, 2.0)
            # the stream is complete once EOF is readable behind "tail"
            mark_at_start = conn.at_mark()
            before = conn.recv(100)
            at_mark = conn.at_mark()
            urgent = conn.recv(1, MsgFlag.OOB)
            _, again = attempt(conn.recv, 1, MsgFlag.OOB)
            after = b""
            for _ in range(5):  # bounded: "tail", then EOF
                chunk = conn.recv(100)
                if not chunk:
                    break
                after += chunk
        peer.join()
    t.observe(
        f"{peer.role} sent b'abc', then b'XYZ' with MSG_OOB, then b'tail'; poll() showed "
        f"POLLPRI: {bool(urgent_pending & select.POLLPRI)}"
    )
    t.observe(
        f"SIOCATMARK at the start: {int(mark_at_start)}; recv(100) returned {before!r} and "
        f"stopped at the mark, where SIOCATMARK reads {int(at_mark)}"
    )
    t.observe(
        f"recv(1, MSG_OOB) = {urgent!r}: only the last byte of the MSG_OOB send is urgent; a "
        f"second recv(MSG_OOB) = {ename(again)}; the stream then went on with {after!r}"
    )
    t.check(bool(urgent_pending & select.POLLPRI), "poll to flag urgent data (POLLPRI)")
    t.check(before == b"abcXY" and at_mark, "recv to stop at the mark, SIOCATMARK 1 there")
    t.check(urgent == b"Z", "only the last byte to be urgent")
    t.check(ename(again) == "EINVAL", "EINVAL for a second MSG_OOB read")
    t.check(after == b"tail", "the normal stream to continue after the mark")


# --------------------------------------------------------------------------
# msg-dontroute
# --------------------------------------------------------------------------

# Documentation ranges (RFC 5737), used only inside the namespaces this stop
# creates: the veth link, and a far address reachable only through a gateway.
# (192.0.2.0/24 is avoided: some CI hosts use it on their own eth0.)
NEAR_ADDR, FAR_SIDE_ADDR, LINK_PREFIX = "198.51.100.1", "198.51.100.2", 24
GATEWAY_ONLY = "203.0.113.1"
UDP_PORT, TCP_PORT = 4000, 4001


def _far_side(t: Stop, ctl: Socket) -> dict[str, list[str]]:
    """B: a second network namespace at the far end of the veth pair."""
    netns.unshare(netns.CLONE_NEWNET)
    ctl.send(b"in my own netns")
    ctl.recv(16)  # the veth end is here now
    t.run(["ip", "addr", "add", f"{FAR_SIDE_ADDR}/{LINK_PREFIX}", "dev", "sw-far"])
    t.run(["ip", "link", "set", "sw-far", "up"])
    t.run(["ip", "link", "set", "lo", "up"])
    t.run(["ip", "addr", "add", f"{GATEWAY_ONLY}/32", "dev", "lo"])
    got: dict[str, list[str]] = {"udp": [], "tcp": []}
    with (
        Socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        Socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
    ):
        udp.bind(("0.0.0.0", UDP_PORT))
        tcp.bind((GATEWAY_ONLY, TCP_PORT))
        tcp.listen(4)
        ctl.send(b"ready")
        deadline = time.monotonic() + 3.0
        poller = select.poll()
        poller.register(udp.fd, select.POLLIN)
        poller.register(tcp.fd, select.POLLIN)
        poller.register(ctl.fd, select.POLLIN)
        done = False
        while not done and time.monotonic() < deadline:
            for fd, _ in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                if fd == udp.fd:
                    got["udp"].append(udp.recv(200).decode())
                elif fd == tcp.fd:
                    conn, who = tcp.accept()
                    conn.close()
                    got["tcp"].append(format_address(socket.AF_INET, who.address))
                else:
                    done = True  # A has finished sending
        for _ in range(10):  # what arrived alongside A's "done"
            data, _ = attempt(udp.recv, 200, MsgFlag.DONTWAIT)
            if data is None:
                break
            got["udp"].append(data.decode())
    return got


@stop(
    "msg-dontroute",
    title="MSG_DONTROUTE: only directly connected networks",
    claim="MSG_DONTROUTE: only directed networks (send only to hosts on a directly "
    "connected network; no gateway).",
)
def msg_dontroute(t: Stop) -> None:
    if shutil.which("ip") is None:
        t.skip("needs the program ip (iproute2) to build the veth link between namespaces")
    try:
        ns = netns.enter(run=t.run, lo=False)
    except SockwireError as exc:
        t.skip(f"needs CAP_NET_ADMIN for a private network namespace: {exc}")
    t.observe(f"A runs inside {ns.describe()}; nothing here touches the host's network")
    ctl_a, ctl_b = socketpair()
    with ctl_a, ctl_b:
        far = t.spawn(_far_side, ctl_b)
        ctl_a.recv(32)
        netns.add_veth("sw-near", "sw-far", far.pid, run=t.run)
        ctl_a.send(b"veth")
        ctl_a.recv(16)  # far side configured and listening
        t.run(["ip", "addr", "add", f"{NEAR_ADDR}/{LINK_PREFIX}", "dev", "sw-near"])
        t.run(["ip", "link", "set", "sw-near", "up"])
        t.run(["ip", "route", "add", f"{GATEWAY_ONLY}/32", "via", FAR_SIDE_ADDR])
        with t.tally("RTM_GETROUTE dump"):
            table = [r for r in netlink.routes(family=socket.AF_INET) if r.table_name == "main"]
        t.observe("A's main routing table: " + "; ".join(str(r) for r in table))
        with Socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            _, onlink = attempt(
                udp.sendto, b"on-link, MSG_DONTROUTE", (FAR_SIDE_ADDR, UDP_PORT), MsgFlag.DONTROUTE
            )
            _, gated = attempt(
                udp.sendto,
                b"via gateway, MSG_DONTROUTE",
                (GATEWAY_ONLY, UDP_PORT),
                MsgFlag.DONTROUTE,
            )
            _, plain = attempt(udp.sendto, b"via gateway, no flag", (GATEWAY_ONLY, UDP_PORT))
        with Socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_DONTROUTE, 1)
            tcp.settimeout(2.0)
            _, tcp_dontroute = attempt(tcp.connect, (GATEWAY_ONLY, TCP_PORT))
        with Socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.settimeout(2.0)
            _, tcp_plain = attempt(tcp.connect, (GATEWAY_ONLY, TCP_PORT))
            if tcp_plain is None:
                tcp.recv(1)  # wait until the far side has accepted and closed: EOF
        ctl_a.send(b"done")
        got = far.join()
    t.observe(
        f"UDP with MSG_DONTROUTE: to on-link {FAR_SIDE_ADDR}: {ename(onlink)}; to "
        f"{GATEWAY_ONLY} (reachable only via the gateway): {ename(gated)}; to "
        f"{GATEWAY_ONLY} without the flag: {ename(plain)}"
    )
    t.observe(
        f"TCP connect to {GATEWAY_ONLY}: with SO_DONTROUTE {ename(tcp_dontroute)}; without it "
        f"{ename(tcp_plain)}"
    )
    t.observe(f"{far.role}, in the far namespace, received {got['udp']}; accepted {got['tcp']}")
    t.check(onlink is None, "an on-link destination to be accepted with MSG_DONTROUTE")
    t.check(ename(gated) == "ENETUNREACH", "ENETUNREACH for a gateway-only destination")
    t.check(plain is None, "the same destination to work without the flag")
    t.check(
        ename(tcp_dontroute) == "ENETUNREACH" and tcp_plain is None,
        "SO_DONTROUTE to refuse a TCP connect through the gateway too",
    )
    t.check(
        got["udp"] == ["on-link, MSG_DONTROUTE", "via gateway, no flag"] and len(got["tcp"]) == 1,
        "the far side to receive exactly what was allowed through",
    )


# --------------------------------------------------------------------------
# msg-dontwait
# --------------------------------------------------------------------------


def _dontwait_filler(t: Stop, sock: Socket) -> tuple[int, str]:
    sock.send(b"hello")
    sent = 0
    error = None
    with t.tally("send(MSG_DONTWAIT) until EAGAIN"):
        for _ in range(1000):  # bounded: the buffer fills after a few hundred KiB
            count, error = attempt(sock.send, b"x" * 65536, MsgFlag.DONTWAIT)
            if count is None:
                break
            sent += count
    return sent, ename(error)


@stop(
    "msg-dontwait",
    title="MSG_DONTWAIT: this one call does not block",
    claim="MSG_DONTWAIT: non-blocked mode.",
)
def msg_dontwait(t: Stop) -> None:
    a, b = socketpair()
    with a, b:
        blocking = not fcntl.fcntl(a.fd, fcntl.F_GETFL) & os.O_NONBLOCK
        started = time.monotonic()
        _, empty = attempt(a.recv, 100, MsgFlag.DONTWAIT)
        waited = time.monotonic() - started
        t.observe(
            f"A's socket is in blocking mode (O_NONBLOCK clear: {blocking}); recv(100, "
            f"MSG_DONTWAIT) with nothing queued returned {ename(empty)} after "
            f"{waited * 1e3:.2f} ms"
        )
        peer = t.spawn(_dontwait_filler, b)
        sent, stopped = peer.join()
        hello = a.recv(5, MsgFlag.DONTWAIT)
        still_blocking = not fcntl.fcntl(a.fd, fcntl.F_GETFL) & os.O_NONBLOCK
    t.observe(
        f"{peer.role} sent b'hello', then send(64 KiB, MSG_DONTWAIT) until the buffers were full: "
        f"{sent} bytes accepted, then {stopped} instead of blocking"
    )
    t.observe(
        f"A's recv(5, MSG_DONTWAIT) with data queued: {hello!r}; the socket is still blocking "
        f"({still_blocking}): the flag changes one call, not the socket"
    )
    t.check(blocking and still_blocking, "the socket itself to stay blocking")
    t.check(ename(empty) == "EAGAIN", "EAGAIN instead of waiting on an empty socket")
    t.check(stopped == "EAGAIN" and sent > 0, "EAGAIN instead of blocking on a full socket")
    t.check(hello == b"hello", "data when there is some")


# --------------------------------------------------------------------------
# msg-nosignal
# --------------------------------------------------------------------------


def _write_to_closed(t: Stop, sock: Socket, use_flag: bool) -> str:
    previous = signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    trace.note("signal", "SIGPIPE", "SIG_DFL", result=getattr(previous, "name", str(previous)))
    if use_flag:
        _, error = attempt(sock.send, b"anyone there?", MsgFlag.NOSIGNAL)
    else:
        _, error = attempt(sock.write, b"anyone there?")  # write(2): no way to pass a flag
    return ename(error)


def _tcp_after_close(t: Stop, address: Address) -> list[str]:
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect(address)
        sock.wait_readable(2.0)  # the peer's FIN has arrived
        _, first = attempt(sock.send, b"first")
        poll_events(sock, 0, 2.0)  # POLLERR/POLLHUP: the peer's RST has arrived
        _, second = attempt(sock.send, b"second")
    return [ename(first), ename(second)]


@stop(
    "msg-nosignal",
    title="MSG_NOSIGNAL: EPIPE instead of a fatal SIGPIPE",
    claim="MSG_NOSIGNAL: no SIGPIPE.",
)
def msg_nosignal(t: Stop) -> None:
    results = {}
    for use_flag in (False, True):
        a, b = socketpair()
        with a, b:
            a.close()  # the peer is gone before the child starts
            child = t.spawn(_write_to_closed, b, use_flag)
            b.close()
            results[use_flag] = child.join(expect_signal=True), child.signal, child.role
            status = f"killed by signal {child.signal}" if child.signal else "exited"
            trace.note("waitpid", str(child.pid), result=f"{child.pid} ({child.role} {status})")
    verdict, killed, role = results[False]
    name = signal.Signals(killed).name if killed else "nothing"
    t.observe(
        f"{role} restored SIGPIPE to SIG_DFL (Python ignores it) and called write(2), which "
        f"takes no MSG_NOSIGNAL, on a socket whose peer had closed: killed by signal {killed} "
        f"({name}) inside the call"
    )
    t.check(killed == signal.SIGPIPE, "death by SIGPIPE without the flag")
    verdict, killed, role = results[True]
    t.observe(
        f"{role}, same setup, send(..., MSG_NOSIGNAL): it got {verdict} and lived on "
        f"(signal: {killed})"
    )
    t.check(killed is None and verdict == "EPIPE", "EPIPE and no signal with the flag")
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = t.spawn(_tcp_after_close, listener.getsockname())
        conn, _ = listener.accept()
        conn.close()
        tcp = peer.join()
    t.observe(
        f"TCP: A closed the connection; {peer.role}'s first send afterwards: {tcp[0]} (the bytes "
        f"go out, A's kernel answers RST); the second: {tcp[1]}"
    )
    t.check(tcp == ["no error", "EPIPE"], "TCP: the first send after close to succeed, then EPIPE")


# --------------------------------------------------------------------------
# msg-peek
# --------------------------------------------------------------------------


def _peek_sender(t: Stop, stream: Socket, path: str) -> None:
    stream.send(b"hello world")
    stream.shutdown(socket.SHUT_WR)
    with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"d" * 3000, path)


@stop(
    "msg-peek",
    title="MSG_PEEK: read without consuming",
    claim="MSG_PEEK: read but not consume.",
)
def msg_peek(t: Stop) -> None:
    path = os.path.join(t.tmpdir, "peek.sock")
    a, b = socketpair()
    with a, b, Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram:
        dgram.bind(path)
        peer = t.spawn(_peek_sender, b, path)
        b.close()
        peer.join()
        first = a.recv(5, MsgFlag.PEEK)
        second = a.recv(100, MsgFlag.PEEK)
        taken = a.recv(100)
        eof = a.recv(100)
        size = dgram.recv_into(bytearray(1), 0, MsgFlag.PEEK | MsgFlag.TRUNC)
        whole = dgram.recv(size)
    t.observe(
        f"stream: recv(5, MSG_PEEK) = {first!r}; recv(100, MSG_PEEK) = {second!r} (the same "
        f"bytes again); recv(100) = {taken!r} consumes them; then {eof!r} (EOF)"
    )
    t.observe(
        f"datagram: recv_into(1-byte buffer, MSG_PEEK|MSG_TRUNC) = {size}, the full size of the "
        f"waiting datagram, still queued; recv({size}) then took all {len(whole)} bytes"
    )
    t.check(first == b"hello" and second == b"hello world", "peeking to leave the data queued")
    t.check(taken == b"hello world" and eof == b"", "a plain recv to consume it")
    t.check(size == 3000 and len(whole) == 3000, "a peek to size a datagram without losing it")


# --------------------------------------------------------------------------
# close-eof
# --------------------------------------------------------------------------


def _say_and_close(t: Stop, sock: Socket) -> None:
    sock.send(b"bye from B")
    sock.close()


def _close_when_told(t: Stop, sock: Socket, ctl: Socket) -> None:
    ctl.recv(16)
    sock.close()


@stop(
    "close-eof",
    title="close(): the peer reads EOF once the last descriptor is closed",
    claim="Closing a socket is just calling close() on the file descriptor. The socket is "
    "discarded or closed by calling close().",
)
def close_eof(t: Stop) -> None:
    a, b = socketpair()
    ctl_a, ctl_c = socketpair()
    with a, b, ctl_a, ctl_c:
        writer = t.spawn(_say_and_close, b)
        holder = t.spawn(_close_when_told, b, ctl_c)
        b.close()
        writer.join()
        data = a.recv(100)
        early = a.wait_readable(0.2)
        ctl_a.send(b"close")
        holder.join()
        eof = a.recv(100)
        late = a.wait_readable(0)
    t.observe(
        f"{writer.role} sent {data!r} and called close(); A read it, but for 200 ms saw no EOF "
        f"(readable: {early}) because {holder.role} still held a copy of the descriptor"
    )
    t.observe(
        f"after {holder.role} closed its copy, A's recv() = {eof!r}: EOF; it stays readable "
        f"({late}) and returns b'' every time"
    )
    t.check(data == b"bye from B", "the data sent before close() to arrive")
    t.check(not early, "no EOF while another process holds the socket")
    t.check(eof == b"" and late, "EOF once the last descriptor is closed")
