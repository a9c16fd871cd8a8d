"""Domains: the address families, and what a name means in UNIX and INET."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from ... import netlink, trace
from ...errors import UnsupportedError
from ...flags import family_name
from ...sock import Address, Socket, families, format_address
from ..stop import Stop, stop
from ._common import attempt, ename


@stop(
    "families",
    title="Domains: the address families this kernel really supports",
    claim="Domains (>23 families): UNIX, INET, and others (SNA, DECnet, AppleTalk, X25, "
    "IPX, ROUTE).",
)
def families_stop(t: Stop) -> None:
    every = families(include_unsupported=True)
    present = [f for f in every if f.supported]
    t.observe(
        f"Linux numbers {len(every)} address families (AF_UNIX=1 .. AF_MCTP=45); "
        f"socket() on this kernel knows {len(present)} of them: "
        + ", ".join(f.name for f in present)
    )
    for name in ("AF_SNA", "AF_DECnet", "AF_APPLETALK", "AF_X25", "AF_IPX"):
        info = next(f for f in every if f.name == name)
        verdict = "supported" if info.supported else "EAFNOSUPPORT: not built into this kernel"
        t.observe(f"{name} ({info.number}): {verdict}")
    for family, kind in ((1, 1), (2, 1), (16, 3), (12, 5)):  # UNIX, INET, NETLINK, DECnet
        # the syscall line shows EAFNOSUPPORT for DECnet; the observation is above
        with contextlib.suppress(UnsupportedError):
            Socket(family, kind).close()
    capped = [f.name for f in present if f.needs_capability]
    if capped:
        t.observe("present but needing a capability here (EPERM): " + ", ".join(capped))
    names = {f.name for f in present}
    t.check(len(every) > 23, "more than 23 families in the API")
    t.check(
        {"AF_UNIX", "AF_INET", "AF_NETLINK"} <= names,
        "UNIX, INET and NETLINK (the ROUTE domain) to be supported",
    )


def _connect_by_name(t: Stop, path: str) -> str:
    with Socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.send(b"found you by name")
        return sock.recv(100).decode()


def _connect_refused(t: Stop, path: str) -> str:
    with Socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        _, error = attempt(sock.connect, path)
    return ename(error)


def _proc_net_unix(inode: int) -> str | None:
    """The path /proc/net/unix lists for socket ``inode`` (the kernel's own table)."""
    with open("/proc/net/unix") as table:
        for line in table:
            fields = line.split()
            if len(fields) >= 7 and fields[6] == str(inode):
                return fields[7] if len(fields) > 7 else ""
    return None


@stop(
    "unix-named-socket",
    title="UNIX domain: bind() creates a named socket in the filesystem",
    claim="A socket should be bound to an address for another process to identify it. UNIX "
    "domain (creates a named socket on filesystem): bind(sd, (struct sockaddr_un *) &addr, "
    "length).",
)
def unix_named_socket(t: Stop) -> None:
    path = os.path.join(t.tmpdir, "named.sock")
    t.observe(f"before bind: {path} exists: {os.path.exists(path)}")
    with Socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        info = os.lstat(path)
        inode = os.fstat(server.fd).st_ino
        t.observe(
            f"after bind: {path} is {stat.filemode(info.st_mode)} (S_ISSOCK: "
            f"{stat.S_ISSOCK(info.st_mode)}), a file of type socket; /proc/net/unix lists "
            f"socket inode {inode} under {_proc_net_unix(inode)!r}"
        )
        t.check(stat.S_ISSOCK(info.st_mode), "bind() to create a socket file")
        server.listen(4)
        client = t.spawn(_connect_by_name, path)
        conn, peer = server.accept()
        with conn:
            hello = conn.recv(100)
            conn.send(b"hello from A")
        reply = client.join()
        t.observe(
            f"{client.role} knew only the path: it connected, sent {hello!r} and read "
            f"{reply.encode()!r}; "
            f"A's accept() saw the client as {peer}"
        )
        t.check(hello == b"found you by name" and reply == "hello from A", "an exchange by name")
    after_close = os.path.exists(path)
    refused = t.spawn(_connect_refused, path)
    verdict = refused.join()
    t.observe(
        f"after close(): the file still exists ({after_close}); a connect() to it now gets "
        f"{verdict}: the name outlives the socket until someone unlinks it"
    )
    t.check(after_close and verdict == "ECONNREFUSED", "a stale name: file kept, ECONNREFUSED")
    os.unlink(path)
    trace.note("unlink", f'"{path}"')


def _inet_client(t: Stop, address: Address) -> Address:
    family = socket.AF_INET6 if len(address) == 4 else socket.AF_INET
    with Socket(family, socket.SOCK_STREAM) as sock:
        sock.connect(address)
        name = sock.getsockname()
        sock.send(b"hello over the Internet domain")
        return name


@stop(
    "inet",
    title="Internet domain: a name is an IP address and a port",
    claim="Internet domain: bind(sd, (struct sockaddr_in *) &addr, length).",
)
def inet(t: Stop) -> None:
    checked = 0
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        label = family_name(family)
        server, error = attempt(Socket, family, socket.SOCK_STREAM)
        if server is None:
            t.observe(f"{label}: socket() = {ename(error)}; not available here")
            continue
        with server:
            _, error = attempt(server.bind, (host, 0))
            if error is not None:
                t.observe(f"{label}: bind to {host} = {ename(error)}; no {host} on this machine")
                continue
            name = server.getsockname()
            server.listen(4)
            client = t.spawn(_inet_client, name)
            conn, peer = server.accept()
            with conn:
                data = conn.recv(100)
            client_name = client.join()
        t.observe(
            f"{label}: A bound {format_address(family, name)} (port 0 asks the kernel to choose); "
            f"{client.role} connected from {format_address(family, tuple(client_name))} and sent "
            f"{data!r}; accept() named the peer {format_address(family, peer.address)}"
        )
        t.check(
            peer.address is not None and tuple(peer.address) == tuple(client_name),
            f"{label}: the peer address in accept() to be the client's own name",
        )
        checked += 1
    t.observe("no file was created: INET names live in the kernel's port tables, not on disk")
    t.check(checked >= 1, "at least AF_INET on 127.0.0.1 to work")


def _route_dump_in_peer(t: Stop) -> tuple[int, list[str]]:
    with netlink.open_route_socket() as sock:
        name = sock.getsockname()
        assert isinstance(name, tuple)
        with t.tally("RTM_GETLINK dump, to the kernel at port 0"):
            names = [link.name for link in netlink.links(sock)]
        return int(name[0]), names


def _some(items: list[str], limit: int = 6) -> list[str]:
    return items[:limit] + ([f"... and {len(items) - limit} more"] if len(items) > limit else [])


@stop(
    "route",
    title="The ROUTE domain: a socket whose peer is the kernel's routing tables",
    claim="Domains: UNIX, INET, others (SNA, DECnet, APPLETALK, X25, IPX, ROUTE).",
)
def route(t: Stop) -> None:
    with netlink.open_route_socket() as sock:
        name = sock.getsockname()
        assert isinstance(name, tuple)
        port = int(name[0])
        t.observe(
            f"socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) bound: the kernel gave port id {port} "
            f"(A's pid is {os.getpid()}); the kernel itself is port 0"
        )
        with t.tally("RTM_GETLINK dump, to the kernel at port 0"):
            links = netlink.links(sock)
        with t.tally("RTM_GETADDR dump"):
            addrs = netlink.addresses(sock)
        with t.tally("RTM_GETROUTE dump"):
            routes = netlink.routes(sock)
    peer = t.spawn(_route_dump_in_peer)
    peer_port, peer_links = peer.join()
    t.observe(f"RTM_GETLINK dump, decoded: {len(links)} links")
    for line in _some([str(link) for link in links]):
        t.observe(f"  {line}")
    t.observe(f"RTM_GETADDR dump, decoded: {len(addrs)} addresses")
    for line in _some([_describe_addr(a, links) for a in addrs]):
        t.observe(f"  {line}")
    t.observe(f"RTM_GETROUTE dump, decoded: {len(routes)} routes (all tables)")
    for line in _some([str(r) for r in routes], 8):
        t.observe(f"  {line}")
    t.observe(
        f"{peer.role} opened its own ROUTE socket: port id {peer_port} (its pid is {peer.pid}); "
        f"its dump lists the same {len(peer_links)} links"
    )
    lo = next((link for link in links if link.name == "lo"), None)
    t.check(lo is not None and bool(lo.flags & 0x8), "a loopback link named lo")
    t.check(
        any(a.address == "127.0.0.1" and a.prefixlen == 8 for a in addrs),
        "the address 127.0.0.1/8",
    )
    t.check(
        any(r.dst == "127.0.0.0" and r.prefixlen == 8 and r.table_name == "local" for r in routes),
        "the local route 127.0.0.0/8",
    )
    t.check(
        peer_port != port and peer_links == [link.name for link in links],
        "two processes, two port ids, one kernel answering both",
    )


def _describe_addr(addr: netlink.Addr, links: list[netlink.Link]) -> str:
    name = next((link.name for link in links if link.index == addr.ifindex), "?")
    inet = "inet6" if addr.family == socket.AF_INET6 else "inet"
    return (
        f"{inet} {addr.address}/{addr.prefixlen} on {name} (ifindex {addr.ifindex}, "
        f"scope {addr.scope_name})"
    )
