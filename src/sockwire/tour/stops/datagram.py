"""Datagram sockets: no connection, addresses on every message, connect() as a default."""

from __future__ import annotations

import errno
import os
import socket

from ...flags import MsgFlag
from ...sock import Address, Creds, Socket, format_address
from ..stop import Stop, stop
from ._common import attempt, ename, poll_events


def _send_one(t: Stop, address: Address, text: str) -> int:
    """Send one datagram from a fresh, unbound socket; return the port it was given."""
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode(), address)
        name = sock.getsockname()
        return int(name[1]) if isinstance(name, tuple) else -1


@stop(
    "dgram-no-connection",
    title="Datagram sockets need no connection",
    claim="Datagram socket: no connection required.",
)
def dgram_no_connection(t: Stop) -> None:
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        address = sock.getsockname()
        _, listen_error = attempt(sock.listen, 1)
        _, accept_error = attempt(sock.accept)
        _, peer_error = attempt(sock.getpeername)
        senders = [t.spawn(_send_one, address, f"from process {n}") for n in (1, 2)]
        ports = [peer.join() for peer in senders]
        got = [sock.recvfrom(100) for _ in senders]
    t.observe(
        f"A's UDP socket at {format_address(socket.AF_INET, address)}: listen() = "
        f"{ename(listen_error)} (= EOPNOTSUPP), accept() = {ename(accept_error)}, getpeername() = "
        f"{ename(peer_error)}: there is no connection to make or to have"
    )
    roles = " and ".join(p.role for p in senders)
    t.observe(
        f"{roles}, each with a fresh socket and no connect(), sent one datagram: A received "
        + ", ".join(f"{data!r} from {format_address(socket.AF_INET, src)}" for data, src in got)
    )
    t.check(
        getattr(listen_error, "errno", None) == errno.EOPNOTSUPP
        and getattr(accept_error, "errno", None) == errno.EOPNOTSUPP,
        "listen() and accept() to be refused on a datagram socket (EOPNOTSUPP)",
    )
    t.check(ename(peer_error) == "ENOTCONN", "no peer: ENOTCONN")
    t.check(
        sorted(src[1] for _, src in got if isinstance(src, tuple)) == sorted(ports),
        "one socket to receive from two unconnected senders",
    )


def _udp_echo(t: Stop, sock: Socket) -> str:
    data, sender = sock.recvfrom(100)
    assert sender is not None
    sock.sendto(data.upper(), sender)
    return format_address(socket.AF_INET, sender)


def _unix_reply(t: Stop, sock: Socket) -> list[str]:
    seen = []
    for _ in range(2):
        data, sender = sock.recvfrom(100)
        seen.append(format_address(socket.AF_UNIX, sender))
        if sender is not None:
            sock.sendto(data.upper(), sender)
    return seen


@stop(
    "dgram-sendto-recvfrom",
    title="sendto() and recvfrom(): each message carries its address",
    claim="Each message carries destination address (bind and send): sendto(), recvfrom().",
)
def dgram_sendto_recvfrom(t: Stop) -> None:
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        echo = t.spawn(_udp_echo, server)
        address = server.getsockname()
        with Socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            before = client.getsockname()
            client.sendto(b"where am i?", address)
            after = client.getsockname()
            reply, source = client.recvfrom(100)
        seen_by_b = echo.join()
    port = after[1] if isinstance(after, tuple) else -1
    t.observe(
        f"A's UDP socket was unnamed ({format_address(socket.AF_INET, before)}); its first "
        f"sendto() bound it implicitly to port {port} (getsockname: "
        f"{format_address(socket.AF_INET, after)}, any local address)"
    )
    t.observe(
        f"{echo.role}'s recvfrom() said the datagram came from {seen_by_b}; it answered with "
        f"sendto() to that address, and A's recvfrom() got {reply!r} from "
        f"{format_address(socket.AF_INET, source)}"
    )
    t.check(seen_by_b == f"127.0.0.1:{port}", "the sender's address to travel with the datagram")
    t.check(reply == b"WHERE AM I?", "a reply to the address recvfrom() gave")

    path = os.path.join(t.tmpdir, "server.sock")
    mine = os.path.join(t.tmpdir, "client.sock")
    with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        replier = t.spawn(_unix_reply, server)
        with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as anonymous:
            anonymous.sendto(b"unnamed sender", path)
        with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as named:
            named.bind(mine)
            named.sendto(b"named sender", path)
            answer, source = named.recvfrom(100)
        seen = replier.join()
    t.observe(
        f"UNIX: {replier.role}'s recvfrom() saw the senders as {seen}: an unbound UNIX socket "
        f"has no address to answer; the bound one got {answer!r} back from "
        f"{format_address(socket.AF_UNIX, source)}"
    )
    t.check(seen == ["unnamed", mine], "recvfrom() to name a bound sender and not an unbound one")
    t.check(answer == b"NAMED SENDER", "the named sender to get its answer")


def _msg_sender(t: Stop, udp_address: Address, path: str) -> None:
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendmsg([b"head|", b"body|", b"tail"], address=udp_address)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"through a passed pipe")
        with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix:
            unix.sendmsg(
                [b"with credentials and an fd"],
                fds=[read_end],
                creds=Creds(os.getpid(), os.getuid(), os.getgid()),
                address=path,
            )
    finally:
        os.close(read_end)
        os.close(write_end)


@stop(
    "dgram-sendmsg-recvmsg",
    title="sendmsg() and recvmsg(): gathered buffers, address, flags, ancillary data",
    claim="Datagram socket: sendto(), sendmsg(), recvfrom(), recvmsg().",
)
def dgram_sendmsg_recvmsg(t: Stop) -> None:
    path = os.path.join(t.tmpdir, "msg.sock")
    with (
        Socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix,
    ):
        udp.bind(("127.0.0.1", 0))
        unix.bind(path)
        unix.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        peer = t.spawn(_msg_sender, udp.getsockname(), path)
        peer.join()
        gathered = udp.recvmsg(100)
        message = unix.recvmsg(100, maxfds=4, creds=True)
        try:
            passed = os.read(message.fds[0], 100) if message.fds else b""
            fd_kind = os.readlink(f"/proc/self/fd/{message.fds[0]}") if message.fds else ""
        finally:
            for fd in message.fds:
                os.close(fd)
    t.observe(
        f"{peer.role}'s sendmsg() of 3 buffers [b'head|', b'body|', b'tail'] arrived as one "
        f"datagram: recvmsg() = {gathered.data!r} from "
        f"{format_address(socket.AF_INET, gathered.address)}, flags {gathered.flags}"
    )
    t.observe(
        f"UNIX recvmsg() with SO_PASSCRED: {message.data!r}, credentials {message.creds} "
        f"(checked by the kernel), and fd {message.fds[0] if message.fds else None} "
        f"({fd_kind}), from which A read {passed!r}"
    )
    t.check(gathered.data == b"head|body|tail", "gathered buffers to form one datagram")
    t.check(gathered.address is not None, "recvmsg() to report the sender's address")
    t.check(
        message.creds is not None and message.creds.pid == peer.pid,
        "the sender's pid in SCM_CREDENTIALS",
    )
    t.check(passed == b"through a passed pipe", "a descriptor passed with SCM_RIGHTS to work")


def _partner(t: Stop, sock: Socket) -> str:
    """B: the datagram socket A connected to; it answers whoever wrote."""
    data, sender = sock.recvfrom(100)
    assert sender is not None
    sock.sendto(b"reply from the partner", sender)
    return data.decode()


@stop(
    "dgram-connect",
    title="connect() on a datagram socket: a default peer, then send() and recv()",
    claim="If connect() is used to specify a destination socket, send() and recv() can be used.",
)
def dgram_connect(t: Stop) -> None:
    with Socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        _, unconnected = attempt(sock.send, b"to whom?")
        with Socket(socket.AF_INET, socket.SOCK_DGRAM) as partner_sock:
            partner_sock.bind(("127.0.0.1", 0))
            partner_address = partner_sock.getsockname()
            partner = t.spawn(_partner, partner_sock)
        sock.connect(partner_address)
        peer_name = sock.getpeername()
        stranger = t.spawn(_send_one, sock.getsockname(), "from a stranger")
        stranger.join()
        sock.send(b"hello, default peer")
        reply = sock.recv(100)
        _, filtered = attempt(sock.recv, 100, MsgFlag.DONTWAIT)
        received = partner.join()
        sock.send(b"anyone?")  # the partner's socket is gone: ICMP port unreachable
        poll_events(sock, 0, 1.0)  # POLLERR once the ICMP error has arrived
        _, refused = attempt(sock.recv, 100)
    t.observe(
        f"before connect(): send() = {ename(unconnected)}; after connect() to "
        f"{partner.role}'s {format_address(socket.AF_INET, partner_address)}: getpeername() = "
        f"{format_address(socket.AF_INET, peer_name)}"
    )
    t.observe(
        f"send() without an address reached {partner.role} ({received!r}); recv() got "
        f"{reply!r}; {stranger.role}'s datagram from another address was dropped by the "
        f"connected socket: the next recv(MSG_DONTWAIT) = {ename(filtered)}"
    )
    t.observe(
        f"after {partner.role} exited, send() still succeeded, and the next recv() = "
        f"{ename(refused)}: a connected UDP socket hears the ICMP port unreachable"
    )
    t.check(ename(unconnected) == "EDESTADDRREQ", "EDESTADDRREQ for send() before connect()")
    t.check(
        received == "hello, default peer" and reply == b"reply from the partner",
        "send() and recv() to work once connected",
    )
    t.check(ename(filtered) == "EAGAIN", "datagrams from other addresses to be filtered out")
    t.check(ename(refused) == "ECONNREFUSED", "ECONNREFUSED reported on the connected socket")
