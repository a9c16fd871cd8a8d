"""Connections: two-way traffic, sharing between processes, bind, listen, accept."""

from __future__ import annotations

import os
import select
import socket
import time
from typing import Any

from ...errors import WouldBlock
from ...flags import MsgFlag
from ...sock import Address, Peer, Socket, format_address, socketpair
from ..stop import Stop, stop
from ._common import attempt, ename

# --------------------------------------------------------------------------
# bidirectional
# --------------------------------------------------------------------------

#: Bytes each side sends in the bidirectional stop: far more than the buffers hold.
DUPLEX_BYTES = 1 << 20
#: SO_SNDBUF/SO_RCVBUF asked for on both ends (the kernel doubles it); fixed so
#: TCP autotuning cannot grow the buffers past DUPLEX_BYTES.
DUPLEX_BUFFER = 32 * 1024


def _buffers(sock: Socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, DUPLEX_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DUPLEX_BUFFER)


def _duplex(t: Stop, sock: Socket, mine: bytes, theirs: bytes, ctl: Socket) -> dict[str, Any]:
    """Fill the connection without reading, then send and receive at once until done.

    ``ctl`` holds both ends at the line between the two phases: neither reads
    until both have stalled, or an early reader would unstall a late sender.
    """
    data = mine * DUPLEX_BYTES
    sent = 0
    error = None
    with t.tally("send without reading, until EAGAIN"):
        while sent < len(data):
            count, error = attempt(sock.send, data[sent : sent + 65536], MsgFlag.DONTWAIT)
            if count is None:
                break
            sent += count
    stuck_at, stuck_by = sent, ename(error)
    ctl.send(b"stalled")
    if ctl.recv(16) != b"stalled":
        t.fail("the other end did not reach the end of its first phase")
    received = 0
    wrong = 0
    received_when_sent = -1
    poller = select.poll()
    deadline = time.monotonic() + 3.0
    with t.tally("poll(POLLIN|POLLOUT), then send and recv, both directions at once"):
        while (sent < len(data) or received < len(data)) and time.monotonic() < deadline:
            poller.register(sock.fd, (select.POLLOUT if sent < len(data) else 0) | select.POLLIN)
            for _, events in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                if events & select.POLLIN:
                    chunk, _ = attempt(sock.recv, 65536, MsgFlag.DONTWAIT)
                    if chunk == b"":
                        deadline = 0.0  # EOF before the end: the peer gave up
                    elif chunk:
                        received += len(chunk)
                        wrong += len(chunk) - chunk.count(theirs)
                if events & select.POLLOUT and sent < len(data):
                    count, _ = attempt(sock.send, data[sent : sent + 65536], MsgFlag.DONTWAIT)
                    sent += count or 0
                    if sent == len(data):
                        received_when_sent = received
    return {
        "stuck_at": stuck_at,
        "stuck_by": stuck_by,
        "sent": sent,
        "received": received,
        "wrong": wrong,
        "received_when_sent": received_when_sent,
    }


def _duplex_client(t: Stop, address: Address, ctl: Socket) -> dict[str, Any]:
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        _buffers(sock)
        sock.connect(address)
        return _duplex(t, sock, b"B", b"A", ctl)


@stop(
    "bidirectional",
    title="Both ends send and receive at once on one connection",
    claim="Point-to-point, bidirectional communication between two processes. Sockets "
    "provide point-to-point, two-way communication between two processes.",
)
def bidirectional(t: Stop) -> None:
    ctl_a, ctl_b = socketpair()
    with ctl_a, Socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        _buffers(listener)  # accepted sockets inherit the listener's buffer sizes
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with ctl_b:
            peer = t.spawn(_duplex_client, listener.getsockname(), ctl_b)
        conn, _ = listener.accept()
        with conn:
            sndbuf = int(conn.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
            rcvbuf = int(conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
            mine = _duplex(t, conn, b"A", b"B", ctl_a)
        theirs = peer.join()
    t.observe(
        f"each end's SO_SNDBUF reads {sndbuf} and SO_RCVBUF {rcvbuf}; "
        f"each sends {DUPLEX_BYTES} bytes, several times what the buffers on the way can hold"
    )
    for role, result in (("A", mine), (peer.role, theirs)):
        t.observe(
            f"{role}, sending without reading, stalled after {result['stuck_at']} bytes with "
            f"{result['stuck_by']}: a blocking sendall() would hang there, as would its peer's"
        )
    for role, result in (("A", mine), (peer.role, theirs)):
        t.observe(
            f"{role}, sending and receiving at once, sent {result['sent']} and received "
            f"{result['received']} bytes ({result['wrong']} wrong); when its last byte went out "
            f"it had already received {result['received_when_sent']}"
        )
    for result in (mine, theirs):
        t.check(
            result["sent"] == DUPLEX_BYTES and result["received"] == DUPLEX_BYTES,
            f"{DUPLEX_BYTES} bytes to flow each way",
        )
        t.check(result["wrong"] == 0, "each byte to arrive unchanged")
        t.check(result["stuck_at"] < DUPLEX_BYTES, "one direction alone to stall (buffers full)")
        t.check(result["received_when_sent"] > 0, "data to arrive while the end was still sending")


# --------------------------------------------------------------------------
# shared-by-processes
# --------------------------------------------------------------------------


def _shared_acceptor(
    t: Stop, listener: Socket, wait_for: Socket | None, then: Socket | None
) -> int:
    """Accept one connection on the inherited listener; answer with our pid."""
    inode = os.fstat(listener.fd).st_ino
    if wait_for is not None:
        wait_for.recv(16)  # our turn: the other acceptor has its connection
    conn, _ = listener.accept()
    with conn:
        conn.send(f"accepted by pid {os.getpid()}".encode())
    if then is not None:
        then.send(b"your turn")
    return inode


@stop(
    "shared-by-processes",
    title="One socket, inherited across fork(), used by two processes",
    claim="A socket is associated with one or more processes (type and one or more "
    "associated processes).",
)
def shared_by_processes(t: Stop) -> None:
    path = os.path.join(t.tmpdir, "shared.sock")
    turn_b, turn_c = socketpair()
    with turn_b, turn_c:
        listener = Socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with listener:
            listener.bind(path)
            listener.listen(4)
            inode = os.fstat(listener.fd).st_ino
            first = t.spawn(_shared_acceptor, listener, None, turn_b)
            second = t.spawn(_shared_acceptor, listener, turn_c, None)
        t.observe(
            f"A made listening socket inode {inode}, forked {first.role} (pid {first.pid}) and "
            f"{second.role} (pid {second.pid}), then closed its own descriptor: the socket "
            "lives on in its two children"
        )
        answers = []
        for _ in range(2):
            with Socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(path)
                answers.append(client.recv(100).decode())
        inodes = [first.join(), second.join()]
    t.observe(f"A connected twice to {path}; the answers: {answers}")
    t.observe(f"the listening socket's inode in {first.role} and {second.role}: {inodes}")
    t.check(
        answers == [f"accepted by pid {first.pid}", f"accepted by pid {second.pid}"],
        "each process to accept one connection from the same listening socket",
    )
    t.check(inodes == [inode, inode], "one socket (one inode) in all three processes")


# --------------------------------------------------------------------------
# bind
# --------------------------------------------------------------------------


def _bind_peer(t: Stop, path: str, port: int) -> dict[str, str]:
    with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"sent to a name", path)
        name = sock.getsockname()
    with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rival:
        _, unix_error = attempt(rival.bind, path)
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as rival:
        _, inet_error = attempt(rival.bind, ("127.0.0.1", port))
    return {
        "name": format_address(socket.AF_UNIX, name),
        "unix": ename(unix_error),
        "inet": ename(inet_error),
    }


@stop(
    "bind",
    title="bind() names a socket so another process can find it",
    claim="A socket should be bound to an address for another process to identify it: "
    "int bind(int s, const struct sockaddr *name, int namelen).",
)
def bind(t: Stop) -> None:
    path = os.path.join(t.tmpdir, "bound.sock")
    with (
        Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix,
        Socket(socket.AF_INET, socket.SOCK_DGRAM) as inet,
    ):
        before = (unix.getsockname(), inet.getsockname())
        unix.bind(path)
        inet.bind(("127.0.0.1", 0))
        after = (unix.getsockname(), inet.getsockname())
        port = after[1][1]
        t.observe(
            f"getsockname() before bind: UNIX {format_address(socket.AF_UNIX, before[0])}, "
            f"INET {format_address(socket.AF_INET, before[1])}; after: UNIX "
            f"{format_address(socket.AF_UNIX, after[0])}, INET "
            f"{format_address(socket.AF_INET, after[1])} (port 0: the kernel chose {port})"
        )
        peer = t.spawn(_bind_peer, path, port)
        data, sender = unix.recvfrom(100)
        result = peer.join()
    t.observe(
        f"{peer.role} reached A by the name alone: A read {data!r}; the sender, never bound, "
        f"is {format_address(socket.AF_UNIX, sender)} (recvfrom address {sender!r}): A could "
        "not answer it"
    )
    t.observe(
        f"{peer.role} binding the same names while A holds them: UNIX {result['unix']}, "
        f"INET {result['inet']}"
    )
    t.check(before[0] in ("", b"") and after[0] == path, "bind() to give the UNIX socket a name")
    t.check(data == b"sent to a name" and sender is None, "delivery by name; an unnamed sender")
    t.check(
        result["unix"] == "EADDRINUSE" and result["inet"] == "EADDRINUSE",
        "a name to identify one socket only (EADDRINUSE for a second)",
    )


# --------------------------------------------------------------------------
# listen-backlog
# --------------------------------------------------------------------------

BACKLOG = 2
#: How long a connect that the backlog refuses is watched (it would hang much longer).
PENDING_WAIT = 0.2


def _backlog_tcp_client(t: Stop, address: Address, hold: Socket) -> list[str]:
    """Non-blocking connects, one after the other; report how each ended."""
    outcomes = []
    socks = []
    try:
        for _ in range(BACKLOG + 2):
            sock = Socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setblocking(False)
            _, error = attempt(sock.connect, address)
            if error is None:
                outcomes.append("connected")
            elif not isinstance(error, WouldBlock):
                outcomes.append(ename(error))
            elif sock.wait_writable(PENDING_WAIT if len(socks) > BACKLOG + 1 else 2.0):
                status = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
                outcomes.append("connected" if status == 0 else os.strerror(status))
            else:
                outcomes.append(f"still in progress after {PENDING_WAIT * 1000:.0f} ms")
        hold.send(b"done")
        hold.recv(16)  # keep the sockets open until A has looked at its queue
    finally:
        for sock in socks:
            sock.close()
    return outcomes


def _backlog_unix_client(t: Stop, path: str, hold: Socket) -> list[str]:
    outcomes = []
    socks = []
    try:
        for _ in range(BACKLOG + 2):
            sock = Socket(socket.AF_UNIX, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setblocking(False)
            _, error = attempt(sock.connect, path)
            outcomes.append("connected" if error is None else ename(error))
        hold.send(b"done")
        hold.recv(16)
    finally:
        for sock in socks:
            sock.close()
    return outcomes


def _accept_all(listener: Socket) -> int:
    listener.setblocking(False)
    accepted = 0
    while accepted < 100:
        result, _ = attempt(listener.accept)
        if result is None:
            break
        result[0].close()
        accepted += 1
    return accepted


def _listen_queue(port: int) -> int | None:
    """How many connections wait for accept() on a TCP listener (``ss -lt``'s Recv-Q).

    For a LISTEN socket, /proc/net/tcp's rx_queue is that count, not bytes.
    """
    with open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 4 and fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                return int(fields[4].split(":")[1], 16)
    return None


@stop(
    "listen-backlog",
    title="listen(s, backlog): how many connections wait for accept()",
    claim="The server specifies the number of connection requests that can be queued: "
    "int listen(int s, int backlog).",
)
def listen_backlog(t: Stop) -> None:
    hold_a, hold_b = socketpair()
    with hold_a, hold_b, Socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(BACKLOG)
        peer = t.spawn(_backlog_tcp_client, listener.getsockname(), hold_b)
        hold_a.recv(16)
        address = listener.getsockname()
        assert isinstance(address, tuple)
        queue = _listen_queue(address[1])
        accepted = _accept_all(listener)
        hold_a.send(b"ok")
        tcp = peer.join()
    t.observe(f"TCP listen({BACKLOG}); {peer.role}'s non-blocking connects, in order: {tcp}")
    t.observe(
        f"/proc/net/tcp for A's listener before accepting: {queue} connections queued "
        f"(ss -lt's Recv-Q); accept() then returned {accepted} of them"
    )
    t.check(
        tcp[: BACKLOG + 1] == ["connected"] * (BACKLOG + 1) and accepted == BACKLOG + 1,
        f"listen({BACKLOG}) to queue {BACKLOG + 1} TCP connections (backlog + 1)",
    )
    t.check(
        queue == BACKLOG + 1,
        f"the kernel's table to show {BACKLOG + 1} connections waiting",
    )
    t.check(tcp[-1].startswith("still in progress"), "the next TCP connect not to complete")

    path = os.path.join(t.tmpdir, "backlog.sock")
    hold_a, hold_b = socketpair()
    with hold_a, hold_b, Socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(BACKLOG)
        peer = t.spawn(_backlog_unix_client, path, hold_b)
        hold_a.recv(16)
        accepted = _accept_all(listener)
        hold_a.send(b"ok")
        unix = peer.join()
    t.observe(
        f"UNIX listen({BACKLOG}); {peer.role}'s non-blocking connects: {unix}; "
        f"A accepted {accepted}"
    )
    t.check(
        unix == ["connected"] * (BACKLOG + 1) + ["EAGAIN"] and accepted == BACKLOG + 1,
        f"UNIX: {BACKLOG + 1} queued, then EAGAIN for a non-blocking connect",
    )


# --------------------------------------------------------------------------
# accept-new-socket
# --------------------------------------------------------------------------


def _accept_client(t: Stop, address: Address) -> str:
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.connect(address)
        sock.send(t.role.encode())
        return sock.recv(200).decode()


@stop(
    "accept-new-socket",
    title="accept() returns a new socket for each connection",
    claim="accept(int s, struct sockaddr *addr, int *addrlen) returns a new socket for the "
    "current connection instance; a new socket descriptor which is valid for that "
    "particular connection is returned.",
)
def accept_new_socket(t: Stop) -> None:
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        address = listener.getsockname()
        peers = [t.spawn(_accept_client, address) for _ in range(2)]
        conns: list[tuple[Socket, Peer]] = []
        try:
            for _ in peers:
                conns.append(listener.accept())
            rows = []
            for conn, who in conns:
                name = conn.recv(100).decode()
                conn.send(
                    f"{name}: you are {format_address(socket.AF_INET, who.address)}".encode()
                )
                listening = int(conn.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
                rows.append((conn.fd, name, who.address, listening))
            still = int(listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        finally:
            for conn, _ in conns:
                conn.close()
        replies = [peer.join() for peer in peers]
        listener_fd = listener.fd
    for fd, name, where, listening in rows:
        t.observe(
            f"accept() = fd {fd}: a new socket for {name} at "
            f"{format_address(socket.AF_INET, where)} (SO_ACCEPTCONN {listening})"
        )
    t.observe(f"the listening socket, fd {listener_fd}, still has SO_ACCEPTCONN {still}")
    t.observe(f"each client read only its own answer: {replies}")
    fds = {row[0] for row in rows}
    t.check(len(fds) == 2 and listener_fd not in fds, "a new descriptor per connection")
    t.check(still == 1 and all(row[3] == 0 for row in rows), "the listener to keep listening")
    t.check(
        all(reply.startswith(f"{p.role}:") for reply, p in zip(replies, peers, strict=True)),
        "each connection's socket to talk to its own client only",
    )
