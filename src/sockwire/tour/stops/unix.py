"""The UNIX domain: who is on the other end, descriptors in flight, names without files.

Every stop runs between real processes and needs no privilege: it passes as
root and as an unprivileged user (uid 65534) alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import socket
import stat
from typing import Any

from ... import dial, unix
from ...errors import (
    AddressInUse,
    ConnectionLost,
    ConnectionRefused,
    InvalidOperation,
    TruncatedError,
)
from ...sock import Socket, socketpair
from ..stop import Stop, stop


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Collect(logging.Handler):
    """Keeps the sockwire logger's records, so the stop can show a refusal's log line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


# --------------------------------------------------------------------------
# unix-peercred
# --------------------------------------------------------------------------


def _creds_client(t: Stop, path: str) -> dict[str, Any]:
    with dial.connect(f"unix+seqpacket:{path}") as sock:
        server = sock.peer()
        t.observe(f"B's connected socket: SO_PEERCRED names the server: {server.creds}")
        sock.send(b"hello from B")
        return {"pid": server.pid, "uid": server.uid}


def _dgram_senders(t: Stop, path: str) -> None:
    with Socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed:
        unnamed.sendto(b"from an unnamed socket", path)
    with dial.connect(f"unix+dgram:{path}") as named:
        named.send(b"from an autobound socket")


def _refused_client(t: Stop, name: str, sent: Socket) -> str:
    with dial.connect(f"unix:{name}") as sock:
        sock.send(b"secret")
        sent.send(b"sent")  # tell A: our bytes are queued at the server now
        try:
            data = sock.recv(100)
        except ConnectionLost as exc:
            return exc.errno_name or "ConnectionLost"
        return f"read {data!r}"


@stop(
    "unix-peercred",
    title="Peer credentials: the kernel names the process at each end of a UNIX socket",
    claim="Point-to-point, bidirectional communication between two processes: on a UNIX "
    "socket each end learns which process (pid, uid, gid) is on the other.",
)
def unix_peercred(t: Stop) -> None:
    path = os.path.join(t.tmpdir, "creds.sock")
    with dial.listen(f"unix+seqpacket:{path}?mode=0600") as server:
        b = t.spawn(_creds_client, path)
        conn, peer = server.accept()
        with conn:
            hello = conn.recv(100)
        seen_by_b = b.join()
    t.observe(f"A accepted a connection: SO_PEERCRED says {peer.creds}; B's pid is {b.pid}")
    t.check(peer.pid == b.pid, "the accepting side to read the client's pid")
    t.check(peer.uid == os.getuid(), "the client's uid to be the uid it runs as")
    t.check(seen_by_b["pid"] == os.getpid(), "the connecting side to read the server's pid")
    t.check(hello == b"hello from B", "the message after the credentials")

    dpath = os.path.join(t.tmpdir, "creds.dgram")
    with dial.bind(f"unix+dgram:{dpath}") as receiver:
        unix.enable_passcred(receiver)  # before anyone sends: creds ride on each message
        c = t.spawn(_dgram_senders, dpath)
        first, anon = unix.recvfrom_peer(receiver)
        second, named = unix.recvfrom_peer(receiver)
        c.join()
    t.observe(f"datagram {first!r}: sender {anon} (unnamed: {anon.unnamed}), SCM_CREDENTIALS")
    t.observe(f"datagram {second!r}: sender {named}; the client autobound that return address")
    t.check(anon.unnamed and anon.pid == c.pid, "an unnamed sender reported, with its pid")
    t.check(not named.unnamed and named.pid == c.pid, "an autobound sender's abstract name")

    # a filter that admits only another uid: D is closed before a byte is read
    other = 65534 if os.getuid() == 0 else 0
    name = f"@sockwire-tour-{os.getpid()}-filter"
    log = _Collect()
    logger = logging.getLogger("sockwire")
    logger.addHandler(log)
    try:
        with dial.listen(f"unix:{name}?allowed_uids={other}") as guarded:
            guarded.setblocking(False)
            sent_here, sent_there = socketpair()
            with sent_here, sent_there:
                d = t.spawn(_refused_client, name, sent_there)
                sent_here.wait_readable(3.0)
                with contextlib.suppress(BlockingIOError):
                    guarded.accept()  # refuses D, then finds nobody else waiting
                outcome = d.join()
    finally:
        logger.removeHandler(log)
    t.observe(f"?allowed_uids={other}: the sockwire logger said: {log.lines[0]}")
    t.observe(
        f"D had sent 6 bytes before A accepted; A closed the connection with them unread, "
        f"and D's next recv got {outcome} (the kernel's sign of unread data at close)"
    )
    t.check(bool(log.lines) and f"pid={d.pid}" in log.lines[0], "the refusal logged with D's pid")
    t.check(outcome == "ECONNRESET", "ECONNRESET at D: its bytes were never read")


# --------------------------------------------------------------------------
# unix-fd-passing
# --------------------------------------------------------------------------


def _room_for_fds(t: Stop) -> None:
    """253 fds in one message need 253 free descriptors at B, and (unprivileged) room
    for 253 in flight from A: RLIMIT_NOFILE bounds both. Raise the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1024 if hard == resource.RLIM_INFINITY else min(hard, 1024)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 512:
        t.skip(f"RLIMIT_NOFILE (hard limit {hard}) leaves no room for 253 fds in flight")


def _fd_receiver(t: Stop, sock: Socket) -> dict[str, Any]:
    msg = unix.recv_fds(sock, maxfds=1)
    fd = msg.fds[0]
    content = os.pread(fd, 100, 0)
    os.close(fd)
    t.observe(f"B got fd {fd} with {msg.data!r}; reading it gave {content!r}")
    many = unix.recv_fds(sock)
    got_many = len(many.fds)
    for item in many.fds:
        os.close(item)
    sock.send(b"taken")  # A waits for this: at most 253 fds in flight at once
    before = _fd_count()
    for _ in range(10):
        sock.recv(100)  # asks for no fds: the kernel discards the 10 that came along
    after = _fd_count()
    flagged = sock.recvmsg(100)  # no room for fds: only MSG_CTRUNC shows they existed
    _, counted = unix.recv_discarding_fds(sock)
    try:
        unix.recv_fds(sock, maxfds=1)
    except TruncatedError as exc:
        short = str(exc)
    else:
        short = "no error"
    return {
        "many": got_many,
        "before": before,
        "after": after,
        "ctrunc": flagged.ctruncated,
        "counted": counted,
        "short": short,
        "end": _fd_count(),
    }


@stop(
    "unix-fd-passing",
    title="Descriptors in flight: a process hands another an open file over a UNIX socket",
    claim="The socket handle is returned. It is a descriptor. (And descriptors themselves "
    "travel between processes over UNIX sockets: sendmsg/recvmsg with SCM_RIGHTS.)",
)
def unix_fd_passing(t: Stop) -> None:
    secret = os.path.join(t.tmpdir, "only-a-can-open")
    with open(secret, "wb") as handle:
        handle.write(b"opened by A")
    os.chmod(secret, 0o600)
    _room_for_fds(t)
    a, b_end = socketpair(socket.SOCK_SEQPACKET)
    with a, b_end, open(secret, "rb") as handle:
        b = t.spawn(_fd_receiver, b_end)
        b_end.close()
        unix.send_fds(a, b"here is a file", [handle])
        unix.send_fds(a, b"253", [handle] * unix.SCM_MAX_FD)
        a.recv(16)  # B took them
        try:
            unix.send_fds(a, b"254", [handle] * (unix.SCM_MAX_FD + 1))
        except InvalidOperation as exc:
            refused = str(exc)
        else:
            refused = "sent"
        for _ in range(11):
            unix.send_fds(a, b"10 fds", [handle] * 10)
        unix.send_fds(a, b"10 more", [handle] * 10)
        unix.send_fds(a, b"3 fds", [handle] * 3)
        got = b.join()
    t.observe(f"253 fds in one message arrived: {got['many']}")
    t.observe(f"254 fds: {refused}")
    t.check(got["many"] == unix.SCM_MAX_FD, "253 fds (SCM_MAX_FD) to travel in one message")
    t.check("SCM_MAX_FD" in refused, "254 to be refused with an error naming SCM_MAX_FD")
    t.observe(
        f"10 messages x 10 fds read with plain recv(): B's open fds {got['before']} before, "
        f"{got['after']} after; the kernel closed them"
    )
    t.check(got["before"] == got["after"], "no fd growth at a receiver that asked for none")
    t.observe(
        f"recvmsg with no room for fds: MSG_CTRUNC={got['ctrunc']}; with room for 253, "
        f"{got['counted']} arrived and were closed and counted"
    )
    t.check(got["ctrunc"] and got["counted"] == 10, "MSG_CTRUNC, then 10 counted and closed")
    t.observe(f"3 fds to a receiver asking for 1: {got['short']}")
    t.check("MSG_CTRUNC" in got["short"], "TruncatedError (MSG_CTRUNC) for too many fds")
    t.check(got["end"] == got["before"], "every fd that arrived with the cut message closed")


# --------------------------------------------------------------------------
# unix-abstract
# --------------------------------------------------------------------------


def _abstract_client(t: Stop, base: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for scheme in ("unix", "unix+seqpacket"):
        with dial.connect(f"{scheme}:{base}-{scheme}") as sock:
            sock.send(b"hi")
            result[scheme] = sock.peer().pid
    with dial.connect(f"unix+dgram:{base}-unix+dgram") as sock:
        sock.send(b"hi")
        result["reply"] = sock.recv(100).decode()
    return result


def _abstract_names_listed(prefix: str) -> list[str]:
    with open("/proc/net/unix") as handle:
        return sorted({line.split()[-1] for line in handle if f" {prefix}" in line})


@stop(
    "unix-abstract",
    title="Abstract names: a UNIX socket name that is not a file",
    claim="A socket should be bound to an address for another process to identify it; on "
    "Linux a UNIX address may be an abstract name: no file, no permissions, gone with the "
    "socket.",
)
def unix_abstract(t: Stop) -> None:
    base = f"@sockwire-tour-{os.getpid()}"
    stream = dial.listen(f"unix:{base}-unix")
    seq = dial.listen(f"unix+seqpacket:{base}-unix+seqpacket")
    dgram = dial.bind(f"unix+dgram:{base}-unix+dgram")
    with stream, seq, dgram:
        listed = _abstract_names_listed(base)
        t.observe(f"/proc/net/unix lists {listed}; the filesystem has no such files")
        t.check(len(listed) == 3, "all three types bound to abstract names")
        b = t.spawn(_abstract_client, base)
        for listener in (stream, seq):
            conn, peer = listener.accept()
            with conn:
                conn.recv(100)
            t.observe(f"{listener.label}: accepted {peer}; no file mode was checked")
        _, sender = unix.recvfrom_peer(dgram)
        unix.reply(dgram, sender, b"reply to " + str(sender).encode())
        got = b.join()
    t.observe(f"B's datagram client autobound {sender}, so A could answer it")
    t.check(got["unix"] == os.getpid() and got["unix+seqpacket"] == os.getpid(), "B sees A")
    t.check(got["reply"].startswith("reply to @"), "the reply reaching the autobound client")
    t.observe(
        "abstract names have no owner, group or mode: anyone in this network namespace may "
        "connect; restrict them with a peer-credential filter (?allowed_uids=)"
    )
    try:
        dial.connect(f"unix:{base}-unix").close()
    except ConnectionRefused as exc:
        gone = exc.errno_name
    else:
        gone = "connected"
    t.observe(f"after close the name is gone, no file left behind: connect -> {gone}")
    t.check(gone == "ECONNREFUSED" and not _abstract_names_listed(base), "names gone on close")


# --------------------------------------------------------------------------
# unix-stale-socket
# --------------------------------------------------------------------------


def _crashing_server(t: Stop, path: str) -> None:
    sock = Socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    # and return without close or unlink: as after a crash


def _second_server(t: Stop, path: str) -> dict[str, Any]:
    try:
        dial.listen(f"unix:{path}").close()
    except AddressInUse as exc:
        return {"error": str(exc), "pid": exc.pid}
    return {"error": None, "pid": None}


@stop(
    "unix-stale-socket",
    title="Stale socket files: replaced when provably dead, never when live",
    claim="UNIX domain: bind() creates a named socket on the filesystem; the file outlives "
    "the socket, so a restarted server must tell a dead file from a live one.",
)
def unix_stale_socket(t: Stop) -> None:
    path = os.path.join(t.tmpdir, "app.sock")
    b = t.spawn(_crashing_server, path)
    b.join()
    left = os.lstat(path)
    t.observe(
        f"B bound {path}, listened and died: the file is still there (socket: "
        f"{stat.S_ISSOCK(left.st_mode)})"
    )
    try:
        dial.connect(f"unix:{path}").close()
    except ConnectionRefused as exc:
        t.observe(f"a client's connect: {exc.errno_name}")
    with dial.listen(f"unix:{path}?mode=0600") as server:
        now = os.lstat(path)
        t.observe(
            "A's listen: two connects a pause apart were both refused, so the file was "
            f"stale; A unlinked it and bound anew (mode {stat.S_IMODE(now.st_mode):04o})"
        )
        with dial.connect(f"unix:{path}"):
            conn, _ = server.accept()
            conn.close()
        t.check(stat.S_IMODE(now.st_mode) == 0o600, "the new file created with mode 0600")
        c = t.spawn(_second_server, path)
        second = c.join()
        t.observe(f"C tried to listen on the live path: {second['error']}")
        t.check(second["pid"] == os.getpid(), "AddressInUse naming A's pid")
        after = os.lstat(path)
        same = (after.st_ino, after.st_ctime_ns) == (now.st_ino, now.st_ctime_ns)
        t.check(same, "A's live file untouched")
        with dial.connect(f"unix:{path}"):
            conn, _ = server.accept()
            conn.close()
        t.observe("A's file is untouched (same inode and ctime) and A still accepts")
    t.check(not os.path.lexists(path), "A's close to remove its own file")
    t.observe("A closed its listener: the file, still A's inode, was removed")
    plain = os.path.join(t.tmpdir, "notes.txt")
    with open(plain, "w") as handle:
        handle.write("not a socket")
    try:
        dial.listen(f"unix:{plain}").close()
    except AddressInUse as exc:
        t.observe(f"listen on a regular file: {exc}")
    with open(plain) as handle:
        t.check(handle.read() == "not a socket", "a regular file never removed")
