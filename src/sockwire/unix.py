"""UNIX domain done right: safe socket files, peer credentials, fd passing, activation.

What every other tool gets slightly wrong, decided here once:

* **Socket files** (:func:`bind_path`). An existing path is removed only when
  it is provably stale: ``lstat`` says it is a socket, the kernel (sock_diag)
  knows no socket of this network namespace bound to that inode, and two
  connects of the same type, a short pause apart, both get ECONNREFUSED (one
  is not enough: a live server between its ``bind()`` and ``listen()``
  refuses too). The kernel is asked first so that a live one-shot server
  (``nc -lU``) is never sent a probe connection it would take for its one
  client; the probes remain for what sock_diag cannot see (a holder in
  another network namespace, a kernel without unix_diag). EAGAIN means a
  live listener with a full backlog, EPROTOTYPE a live socket of another
  type: never stale. A live holder is an :class:`AddressInUse` naming its
  pid. A regular file, directory,
  FIFO or symlink is refused and never followed or removed. asyncio's
  ``start_unix_server`` unlinks whatever is there, live or not
  (cpython#121252); sockwire never does. The directory must be safe too
  (as OpenSSH's StrictModes): it and each ancestor up to ``/`` belong to
  root or to us, and none is writable by everyone without the sticky bit;
  ``?unsafe_dir=1`` opts out.
* **Mode, owner, group** are in force before anyone can connect: the mode is
  set with fchmod() on the unbound socket (bind() creates the file with it,
  masked by the umask), and when an owner or group is asked for, the file is
  created owner-only and widened only after chown. Every intermediate state
  is *stricter* than the final one, so no window lets anyone extra in.
* **Cleanup**: :class:`UnixSocket` unlinks its file on close, only if the
  inode there is still the one it created, and only in the process that
  created it (a forked child closing its copy leaves the file alone).
* **Abstract names** (``unix:@name``) have no file and so no permissions:
  anyone in the network namespace can connect. Restrict them with a
  :class:`PeerFilter` (``?allowed_uids=``).
* **Peer credentials**: SO_PEERCRED on both ends of stream and seqpacket
  connections (``Socket.accept()`` and ``Socket.peer()``); SCM_CREDENTIALS
  per datagram (:func:`recvfrom_peer`). A root sender can put any pid into
  SCM_CREDENTIALS; SO_PEERCRED, taken by the kernel at connect(), cannot be
  forged, so filters on connections trust it.
* **fd passing** (:func:`send_fds`, :func:`recv_fds`): at most 253 fds per
  message (SCM_MAX_FD), received close-on-exec, and on MSG_CTRUNC every fd
  that did arrive is closed before :class:`TruncatedError` is raised.
* **Activation**: ``fd:N`` and ``systemd:[NAME]`` (LISTEN_PID, LISTEN_FDS,
  LISTEN_FDNAMES), checked to be sockets of the expected type.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import trace
from .address import UNIX_PATH_MAX, Endpoint, parse
from .errors import (
    AddressError,
    AddressInUse,
    InvalidOperation,
    NotFound,
    PermissionDenied,
    SockwireError,
    TimeoutError,
    TruncatedError,
    file_kind,
    translate,
)
from .flags import type_name
from .sock import (
    SCM_MAX_FD,
    Address,
    Creds,
    FdLike,
    Message,
    Peer,
    Socket,
    close_fds,
    format_address,
)

__all__ = [
    "SCM_MAX_FD",
    "SD_LISTEN_FDS_START",
    "STALE_RECHECK_SECONDS",
    "Passed",
    "PeerFilter",
    "Probe",
    "Seen",
    "SocketFile",
    "UnixSocket",
    "accept_checked",
    "adopt",
    "autobind",
    "bind_abstract",
    "bind_path",
    "enable_passcred",
    "explain_connect",
    "holders_of_file",
    "is_listening",
    "listen_fds",
    "peer_filter_from",
    "probe",
    "recv_checked",
    "recv_discarding_fds",
    "recv_fds",
    "recvfrom_peer",
    "reply",
    "send_fds",
]

_log = logging.getLogger("sockwire")

#: The pause between the two probes of a socket file that refused: long
#: enough for a live server to get from bind() to listen(), short enough
#: not to delay a restart after a crash.
STALE_RECHECK_SECONDS = 0.05

#: systemd passes sockets from fd 3 on (sd_listen_fds(3)).
SD_LISTEN_FDS_START = 3

_STREAMISH = (socket.SOCK_STREAM, socket.SOCK_SEQPACKET)


# --------------------------------------------------------------------------
# Probing an existing socket file
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """What one connect() to a socket file said about its holder.

    ``verdict``: ``live`` (it answered), ``busy`` (EAGAIN: a live listener
    whose backlog is full), ``other-type`` (EPROTOTYPE: a live socket of
    another type), ``refused`` (ECONNREFUSED: nobody, or a server between
    bind and listen), ``gone`` (ENOENT), ``denied`` (EACCES: we cannot tell).
    """

    verdict: str
    creds: Creds | None = None
    errno_name: str | None = None


_VERDICTS = {
    _errno.ECONNREFUSED: "refused",
    _errno.EAGAIN: "busy",
    _errno.EPROTOTYPE: "other-type",
    _errno.ENOENT: "gone",
    _errno.EACCES: "denied",
    _errno.EPERM: "denied",
}


def probe(address: str | bytes, sock_type: int) -> Probe:
    """connect() a fresh, non-blocking socket of ``sock_type`` to ``address`` once.

    Non-blocking so a full backlog answers EAGAIN at once instead of
    blocking us. The probe connection is closed straight away; a live
    server sees one connection that sends nothing.
    """
    with Socket(socket.AF_UNIX, sock_type, label="probe") as sock:
        sock.setblocking(False)
        try:
            sock.connect(address)
        except SockwireError as exc:
            verdict = _VERDICTS.get(exc.errno or -1)
            if verdict is None:
                raise
            return Probe(verdict, None, exc.errno_name)
        return Probe("live", sock.peercred())


# --------------------------------------------------------------------------
# The socket file we created, and removing it only while it is ours
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SocketFile:
    """A socket file this process created: its path and inode, and who made it."""

    path: str
    dev: int
    ino: int
    pid: int

    def is_ours(self) -> bool:
        """True while the path still names the inode we created, in our process."""
        if os.getpid() != self.pid:
            return False
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        return stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == (self.dev, self.ino)

    def remove(self) -> bool:
        """Unlink the path if it is still ours; True when it was removed.

        Someone who replaced the file (another server after ours died, an
        admin) keeps theirs. A forked child closing its copy of the listener
        removes nothing: the pid check. (dev, ino) is a sound identity here:
        our bound socket holds the inode, so its number cannot be reused
        while we are open. The lstat-then-unlink pair is not
        atomic (Linux has no unlink-if-inode); the parent-directory check of
        :func:`bind_path` limits who could swap the file in between.
        """
        if not self.is_ours():
            if os.getpid() == self.pid:
                _log.info("socket file %s was replaced or removed; left alone", self.path)
            return False
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        trace.note("unlink", _quoted(self.path), result="0")
        return True


def _quoted(path: str) -> str:
    return f'"{path}"'


class UnixSocket(Socket):
    """A UNIX Socket that owns its socket file and may filter its peers.

    ``close()`` removes the file only if it is still the one we created (see
    :meth:`SocketFile.remove`); ``accept()`` returns only peers that
    ``peer_filter`` allows, closing the others before any byte is read. It is
    a :class:`Socket` in every other respect, so ``with dial.listen(...) as
    s:`` code is unchanged.
    """

    __slots__ = ("peer_filter", "socket_file")

    def _attach(self, sock: socket.socket) -> None:
        super()._attach(sock)
        self.socket_file: SocketFile | None = None
        self.peer_filter: Callable[[Peer], bool] | None = None

    @classmethod
    def wrap(cls, sock: socket.socket, *, label: str | None = None) -> UnixSocket:
        """Take over an existing AF_UNIX ``socket.socket``."""
        self = cls.__new__(cls)
        self.label = label
        self._attach(sock)
        return self

    def accept(self) -> tuple[Socket, Peer]:
        """accept(2), skipping (closing) peers ``peer_filter`` refuses."""
        if self.peer_filter is None:
            return super().accept()
        return _accept_filtered(self, super().accept, self.peer_filter)

    def close(self) -> None:
        """Remove our socket file (if still ours), then close(2)."""
        if self.closed:
            return
        owned, self.socket_file = self.socket_file, None
        try:
            if owned is not None:
                # before close(): while we still listen, a concurrent
                # bind_path sees a live socket and leaves the path alone
                owned.remove()
        finally:
            super().close()

    def detach(self) -> int:
        """Give up the descriptor; the socket file is no longer removed on close."""
        self.socket_file = None
        return super().detach()


# --------------------------------------------------------------------------
# bind_path: the safe socket-file policy
# --------------------------------------------------------------------------


def bind_path(
    sock: Socket,
    path: str,
    *,
    mode: int | None = None,
    owner: str | int | None = None,
    group: str | int | None = None,
    unsafe_dir: bool = False,
    recheck: float = STALE_RECHECK_SECONDS,
) -> SocketFile:
    """bind(2) ``sock`` to the filesystem ``path``, safely; returns the file we made.

    A stale socket file is replaced; a live one, or anything that is not a
    socket, is refused (see the module docstring). ``mode``, ``owner`` and
    ``group`` are in force before the call returns, and no intermediate
    state lets anyone connect who could not connect at the end. A parent
    directory (or any ancestor) that belongs to another non-root user, or
    that others may write without the sticky bit, is refused unless
    ``unsafe_dir``: they could swap the file for their own and receive our
    clients' first messages.
    """
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise AddressError(
            f"UNIX socket path is {size} bytes, over the kernel limit of {UNIX_PATH_MAX} bytes",
            "use a shorter path, or an abstract name (unix:@name) that needs no file",
            part=path[:40] + "...",
        )
    if path.startswith("\0") or not path:
        raise AddressError(f"bind_path needs a filesystem path, not {path!r}", "use bind_abstract")
    _check_parent(path, unsafe_dir)
    uid = _user_id(owner)
    gid = _group_id(group)
    # Bounded: each round follows a change someone else made to the path
    # (it vanished, was replaced, or appeared while we looked).
    for _ in range(5):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            made = _create(sock, path, mode, uid, gid)
            if made is not None:
                return made
            continue  # someone bound the path between our lstat and our bind
        except OSError as exc:
            raise translate(exc, "lstat", path) from exc
        _refuse_non_socket(path, st)
        _remove_if_stale(path, st, sock.type, recheck)
    raise AddressInUse(
        f"bind {path}",
        "the path kept changing while we looked (several servers starting at once?); retry",
        errno_name="EADDRINUSE",
    )


def bind_abstract(sock: Socket, name: str | bytes) -> None:
    """bind(2) to an abstract name; a taken name is AddressInUse naming its holder's pid.

    Abstract names vanish with their last socket, so there is never a stale
    one to remove; the kernel's EADDRINUSE always means someone live, and
    nothing connects to find out (a probe connection would be a one-shot
    server's only client). The holder's pid comes from sock_diag, when the
    kernel has it.
    """
    raw = name if isinstance(name, bytes) else b"\0" + os.fsencode(name.removeprefix("@"))
    try:
        sock.bind(raw)
    except AddressInUse as exc:
        shown = format_address(socket.AF_UNIX, raw)
        holders = _kernel_view(lambda entries: _named(entries, raw))
        raise _in_use_seen(shown, holders or [], abstract=True) from exc


def _check_parent(path: str, unsafe_dir: bool) -> None:
    """Refuse a directory someone else could use to swap the socket file (OpenSSH StrictModes).

    Walks the real path (symlinks resolved, as OpenSSH's ``safe_path``) from
    the parent up to ``/``. Each directory must belong to root or to us (the
    owner of a directory may rename or remove anything in it, sticky bit or
    not) and must not be writable by everyone without the sticky bit. The
    walk does not stop at a root-owned directory: whoever owns *its* parent
    can rename it away and put their own in its place, socket file and all.
    A directory we cannot stat is left to bind() to report.
    """
    if unsafe_dir:
        return
    me = os.geteuid()
    current = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for _ in range(current.count("/") + 1):  # bounded by the path's depth
        try:
            st = os.stat(current)
        except OSError:
            return  # bind() will say what is wrong with the directory
        if st.st_uid not in (0, me):
            raise PermissionDenied(
                f"bind {path}",
                f"the directory {current} belongs to uid {st.st_uid}, another user, who could "
                "replace the socket file with their own and receive what clients send; use a "
                "directory owned by this user or root, or opt in with ?unsafe_dir=1",
            )
        if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
            raise PermissionDenied(
                f"bind {path}",
                f"the directory {current} (mode {stat.S_IMODE(st.st_mode):04o}) is writable "
                "by everyone and has no sticky bit, so anyone could replace the socket file "
                "with their own; use a directory only the server can write (or one with the "
                "sticky bit, like /tmp), or opt in with ?unsafe_dir=1",
            )
        up = os.path.dirname(current)
        if up == current:
            return
        current = up


def _refuse_non_socket(path: str, st: os.stat_result) -> None:
    if stat.S_ISSOCK(st.st_mode):
        return
    kind = file_kind(st.st_mode)
    raise AddressInUse(
        f"bind {path}",
        f"{path} already exists and is {kind}, not a socket; sockwire never follows or "
        "removes it: remove it yourself or choose another path",
        errno_name="EEXIST",
    )


def _remove_if_stale(path: str, st: os.stat_result, sock_type: int, recheck: float) -> None:
    """Unlink ``path`` if it is a stale socket file; raise if someone holds it.

    First the kernel's view (sock_diag): a socket of this network namespace
    bound to this very inode is live, listening or not, and nobody is
    connected to, so a one-shot server (``nc -lU``) keeps its one client.
    Only when the kernel sees no holder here (none, or one in another
    network namespace sharing the filesystem; or no unix_diag) do the two
    connect probes decide. Returns without unlinking when the path vanished
    or changed meanwhile: the caller looks again.
    """
    held = holders_of_file(st)
    if held:
        raise _in_use_seen(path, held)
    first = probe(path, sock_type)
    if first.verdict == "gone":
        return
    if first.verdict != "refused":
        raise _in_use(path, first, sock_type)
    # a pause, not synchronisation: the second probe must be a later moment
    time.sleep(recheck)
    second = probe(path, sock_type)
    if second.verdict == "gone":
        return
    if second.verdict != "refused":
        raise _in_use(path, second, sock_type)
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return
    # ctime too: tmpfs hands a freed inode number to the next new file at
    # once, so (dev, ino) alone could mistake a fresh socket for the old one
    if _identity(now) != _identity(st):
        return  # replaced while we probed: judge the new one
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise translate(exc, "unlink", path) from exc
    trace.note("unlink", _quoted(path), result="0", reason="stale")
    _log.info("removed stale socket file %s (two connects refused)", path)


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class Seen:
    """A socket the kernel reports bound to a name, and the processes holding it."""

    type: str  # stream, seqpacket, dgram
    state: str  # LISTEN, UNCONN, ESTAB
    listening: bool
    pids: tuple[int, ...]
    uid: int | None
    backlog_full: bool = False


def _kernel_view(pick: Callable[[list[Any]], list[Any]]) -> list[Seen] | None:
    """The UNIX sockets ``pick`` chooses from a sock_diag dump, with their pids.

    None when the kernel cannot say (no unix_diag, netlink refused).
    """
    from . import sock_diag
    from .procnet import socket_owners

    try:
        entries = pick(sock_diag.unix_sockets())
    except SockwireError:  # UnsupportedError, or netlink itself refused: fall back
        return None
    if not entries:
        return []
    owners = socket_owners()
    return [
        Seen(
            type=e.type,
            state=e.state,
            listening=e.listening,
            pids=tuple(sorted({p.pid for p in owners.get(e.inode, [])})),
            uid=e.uid,
            backlog_full=e.state == "LISTEN"
            and e.recv_q is not None
            and e.send_q is not None
            and e.recv_q > e.send_q,
        )
        for e in entries
    ]


def _named(entries: list[Any], raw: bytes) -> list[Any]:
    from .sock_diag import unix_name

    want = unix_name(raw)
    return [e for e in entries if e.local == want]


def holders_of_file(st: os.stat_result) -> list[Seen] | None:
    """The sockets of this network namespace bound to the socket file ``st`` describes.

    ``[]``: none here (it may still be held from another network namespace);
    None: the kernel cannot say. Nothing connects to the file.
    """
    from .sock_diag import bound_to

    return _kernel_view(lambda entries: bound_to(st, entries))


_SCHEMES = {"stream": "unix", "seqpacket": "unix+seqpacket", "dgram": "unix+dgram"}


def explain_connect(exc: SockwireError, path: str) -> SockwireError:
    """A connect error on the UNIX ``path``, made precise with what the kernel knows.

    EPROTOTYPE says only "another type"; sock_diag says which (no probe
    connect: the right type would be a one-shot server's client). Any other
    error comes back unchanged.
    """
    if exc.errno_name != "EPROTOTYPE" or not path or path.startswith("\0"):
        return exc
    try:
        st = os.stat(path)
    except OSError:
        return exc
    seen = holders_of_file(st)
    if not seen:
        return exc
    kind = seen[0].type
    scheme = _SCHEMES.get(kind)
    use = f": use {scheme}:{format_address(socket.AF_UNIX, path)}" if scheme else ""
    better = type(exc)(
        exc.what,
        f"the socket at {format_address(socket.AF_UNIX, path)} is a SOCK_{kind.upper()} "
        f"socket{use}",
        errno=exc.errno,
        errno_name=exc.errno_name,
    )
    better.__cause__ = exc.__cause__
    return better


def _in_use_seen(where: str, seen: list[Seen], *, abstract: bool = False) -> SockwireError:
    """AddressInUse from what the kernel reported (``seen`` may be empty: unknown holder)."""
    if seen:
        first = seen[0]
        role = (
            "listening"
            if first.state == "LISTEN"
            else "receiving"
            if first.type == "dgram"
            else f"{first.state}, not listening"
        )
        if first.backlog_full:
            role += ", its backlog is full"
        holder = f"a live SOCK_{first.type.upper()} socket ({role})"
        pids = sorted({pid for s in seen for pid in s.pids})
        if pids:
            holder += " of pid " + ", ".join(map(str, pids[:5]))
        if first.uid is not None:
            holder += f" (uid {first.uid})"
    else:
        holder, pids = "a live socket", []
    never = "" if abstract else "; sockwire never removes a live socket"
    return AddressInUse(
        f"bind {where}",
        f"{where} is held by {holder}{never}: stop it or choose another "
        + ("name" if abstract else "path"),
        errno_name="EADDRINUSE",
        pid=pids[0] if pids else None,
    )


def _in_use(where: str, found: Probe, sock_type: int, *, abstract: bool = False) -> SockwireError:
    what = f"bind {where}"
    if found.verdict == "denied":
        return PermissionDenied(
            what,
            f"{where} exists but we may not connect to it ({found.errno_name}), so we cannot "
            "tell whether it is live; it is left alone: remove it yourself if it is stale",
            errno_name=found.errno_name,
        )
    holder = {
        "live": f"a live {type_name(sock_type)} socket",
        "busy": "a live listener whose backlog is full (EAGAIN)",
        "other-type": "a live socket of another type (EPROTOTYPE)",
        "refused": "a live socket",
    }.get(found.verdict, "a live socket")
    if found.creds is not None:
        holder += f" of pid {found.creds.pid} (uid {found.creds.uid})"
    never = "" if abstract else "; sockwire never removes a live socket"
    return AddressInUse(
        what,
        f"{where} is held by {holder}{never}: stop it or choose another "
        + ("name" if abstract else "path"),
        errno_name="EADDRINUSE",
        pid=found.creds.pid if found.creds else None,
    )


def _create(
    sock: Socket, path: str, mode: int | None, uid: int | None, gid: int | None
) -> SocketFile | None:
    """bind() to the free ``path`` with mode/owner/group in force; None if it was taken.

    fchmod() on the unbound socket sets the mode bind() creates the file
    with (masked by the umask: 0666 under umask 022 is created 0644). fchown
    does not carry over (the file is owned by our fsuid), so when an owner
    or group is asked for, the file is created owner-only and chown/chmod
    follow: until then only we (and root) may connect.
    """
    changes_owner = uid is not None or gid is not None
    final = mode
    if changes_owner and final is None:
        final = 0o777 & ~_umask()
    initial = final
    if changes_owner and final is not None:
        initial = final & 0o700
    if initial is not None:
        try:
            os.fchmod(sock.fd, initial)
        except OSError as exc:
            raise translate(exc, "fchmod", path) from exc
    try:
        sock.bind(path)
    except AddressInUse:
        return None
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise translate(exc, "lstat", path) from exc
    made = SocketFile(path, st.st_dev, st.st_ino, os.getpid())
    try:
        _finish_file(made, st, final, uid, gid)
    except BaseException:
        made.remove()
        raise
    return made


def _finish_file(
    made: SocketFile, st: os.stat_result, final: int | None, uid: int | None, gid: int | None
) -> None:
    if uid is None and gid is None and (final is None or stat.S_IMODE(st.st_mode) == final):
        return
    # Through an O_PATH descriptor of the very inode we checked: never a
    # symlink, never a file someone swapped in after our lstat.
    try:
        fd = os.open(made.path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise translate(exc, "open", made.path) from exc
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (made.dev, made.ino):
            raise AddressInUse(
                f"bind {made.path}", "the socket file was replaced while we set its mode"
            )
        magic = f"/proc/self/fd/{fd}"
        call = "chown"
        try:
            if uid is not None or gid is not None:
                new_uid = -1 if uid is None else uid
                new_gid = -1 if gid is None else gid
                os.chown(magic, new_uid, new_gid)
                trace.note("chown", _quoted(made.path), str(new_uid), str(new_gid))
            call = "chmod"
            if final is not None:
                os.chmod(magic, final)
                trace.note("chmod", _quoted(made.path), f"{final:04o}")
        except OSError as exc:
            raise translate(exc, call, made.path) from exc
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it (Linux 4.7+: /proc/self/status)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _user_id(owner: str | int | None) -> int | None:
    if owner is None or isinstance(owner, int):
        return owner
    if owner.isdigit():
        return int(owner)
    import pwd

    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise AddressError(f"unknown user {owner!r}", "give a user name or a number") from None


def _group_id(group: str | int | None) -> int | None:
    if group is None or isinstance(group, int):
        return group
    if group.isdigit():
        return int(group)
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise AddressError(f"unknown group {group!r}", "give a group name or a number") from None


# --------------------------------------------------------------------------
# Peer filters
# --------------------------------------------------------------------------


class PeerFilter:
    """``(Peer) -> bool``: admit peers by uid, gid and/or a predicate; log refusals.

    A peer is admitted when its uid is in ``uids`` *or* its gid in ``gids``
    (either list admits; with neither given, every identity passes this
    step), *and* ``predicate(peer)`` is true. A peer without credentials
    (not UNIX, or an unconnected datagram socket) is refused by a uid/gid
    rule: fail closed. ``gids`` is SO_PEERCRED's gid, the peer's effective
    primary group, not its supplementary groups. A predicate that raises
    refuses. Each refusal is logged (``sockwire`` logger, WARNING) with the
    peer's pid, uid and gid, and counted in ``refused``.
    """

    def __init__(
        self,
        *,
        uids: Iterable[int | str] | None = None,
        gids: Iterable[int | str] | None = None,
        predicate: Callable[[Peer], bool] | None = None,
    ) -> None:
        self.uids = None if uids is None else frozenset(_required(_user_id(u)) for u in uids)
        self.gids = None if gids is None else frozenset(_required(_group_id(g)) for g in gids)
        self.predicate = predicate
        self.allowed = 0
        self.refused = 0

    def __call__(self, peer: Peer) -> bool:
        reason = self.refusal(peer)
        if reason is None:
            self.allowed += 1
            return True
        self.refused += 1
        _log.warning(
            "refused peer %s pid=%s uid=%s gid=%s: %s",
            format_address(peer.family, peer.address),
            peer.pid,
            peer.uid,
            peer.gid,
            reason,
        )
        return False

    def refusal(self, peer: Peer) -> str | None:
        """Why ``peer`` is refused, or None when it is admitted (nothing counted)."""
        if self.uids is not None or self.gids is not None:
            if peer.creds is None:
                return "no peer credentials to check"
            by_uid = self.uids is not None and peer.creds.uid in self.uids
            by_gid = self.gids is not None and peer.creds.gid in self.gids
            if not (by_uid or by_gid):
                return f"not admitted by {self._describe()}"
        if self.predicate is not None:
            try:
                ok = self.predicate(peer)
            except Exception as exc:  # noqa: BLE001  # a broken predicate refuses, loudly
                return f"the predicate raised {type(exc).__name__}: {exc}"
            if not ok:
                return "the predicate refused it"
        return None

    def _describe(self) -> str:
        parts = []
        if self.uids is not None:
            parts.append("allowed_uids=" + ",".join(map(str, sorted(self.uids))))
        if self.gids is not None:
            parts.append("allowed_gids=" + ",".join(map(str, sorted(self.gids))))
        return " or ".join(parts)

    def __repr__(self) -> str:
        rule = self._describe() or "predicate"
        return f"<PeerFilter {rule} allowed={self.allowed} refused={self.refused}>"


def _required(value: int | None) -> int:
    assert value is not None
    return value


def peer_filter_from(endpoint: Endpoint | str) -> PeerFilter | None:
    """The filter ``?allowed_uids=`` / ``?allowed_gids=`` ask for, or None."""
    ep = parse(endpoint)
    uids = ep.option("allowed_uids")
    gids = ep.option("allowed_gids")
    if uids is None and gids is None:
        return None
    return PeerFilter(
        uids=None if uids is None else uids.split(","),
        gids=None if gids is None else gids.split(","),
    )


def accept_checked(listener: Socket, peer_filter: Callable[[Peer], bool]) -> tuple[Socket, Peer]:
    """accept(2) the next peer ``peer_filter`` admits; refused ones are closed unread.

    The decision uses only what accept() and SO_PEERCRED give, so a refused
    peer's bytes are never read: its connection is closed with them still
    queued (its next recv sees ECONNRESET). A listener timeout bounds the
    whole call, not each accept; a non-blocking listener raises WouldBlock
    once no admitted peer is pending.
    """
    return _accept_filtered(listener, listener.accept, peer_filter)


def _accept_filtered(
    listener: Socket,
    accept: Callable[[], tuple[Socket, Peer]],
    peer_filter: Callable[[Peer], bool],
) -> tuple[Socket, Peer]:
    timeout = listener.gettimeout()
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("accept", "no admitted peer arrived in time")
                listener.settimeout(left)
            conn, peer = accept()
            if peer_filter(peer):
                return conn, peer
            trace.note("refuse", str(conn.fd), result="closed unread", peer=str(peer))
            conn.close()
    finally:
        if deadline is not None:
            listener.settimeout(timeout)


# --------------------------------------------------------------------------
# Datagrams: per-message credentials, unnamed senders, autobind
# --------------------------------------------------------------------------


def enable_passcred(sock: Socket) -> None:
    """SO_PASSCRED: every datagram now arrives with its sender's pid/uid/gid.

    Turn it on before the messages are sent: a message queued earlier reads
    pid 0 and the overflow uid (65534), which :func:`recvfrom_peer` reports
    as no credentials. On a *sender* it also autobinds an abstract name, so
    the receiver can reply.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)


def recvfrom_peer(sock: Socket, bufsize: int = 65536, *, flags: int = 0) -> tuple[bytes, Peer]:
    """One datagram and its sender: address (None when unnamed) and credentials.

    Never an error for an unnamed sender (netcat fails with "connect:
    Invalid argument" there): :attr:`Peer.unnamed` says it, and
    :func:`reply` refuses clearly. Credentials need SO_PASSCRED
    (:func:`enable_passcred`) before the sender sent. Passed fds are never
    taken: without SO_PASSCRED the credentials' room in the control buffer
    would hold 4 of them, and ``Socket.recvmsg`` closes every one.
    """
    msg = sock.recvmsg(bufsize, creds=True, flags=flags)
    if msg.truncated:
        raise TruncatedError(
            f"recvfrom on fd {sock.fd}",
            f"the datagram was {msg.size} bytes, the buffer {bufsize}",
            data=msg.data,
            size=msg.size,
            errno_name="MSG_TRUNC",
        )
    creds = msg.creds if msg.creds is not None and msg.creds.pid != 0 else None
    return msg.data, Peer(msg.address, sock.family, creds)


def recv_checked(
    sock: Socket,
    peer_filter: Callable[[Peer], bool],
    bufsize: int = 65536,
    *,
    limit: int = 1000,
) -> tuple[bytes, Peer]:
    """The next datagram from a sender ``peer_filter`` admits; others are dropped.

    At most ``limit`` refused datagrams are dropped per call (then
    PermissionDenied), so a flood cannot keep the caller here forever.
    Enables SO_PASSCRED if it is off (messages already queued then carry no
    credentials and are refused by a uid/gid rule).
    """
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED):
        enable_passcred(sock)
    for _ in range(limit):
        data, peer = recvfrom_peer(sock, bufsize)
        if peer_filter(peer):
            return data, peer
    raise PermissionDenied(
        f"recv on fd {sock.fd}", f"{limit} datagrams in a row came from refused senders"
    )


def autobind(sock: Socket) -> str:
    """Bind an unnamed UNIX socket to a kernel-chosen abstract name; returns ``@xxxxx``.

    bind() with an empty path makes Linux pick a free five-hex-digit
    abstract name: the return address a datagram client needs for replies.
    """
    sock.bind("")
    return format_address(socket.AF_UNIX, sock.getsockname())


def reply(sock: Socket, peer: Peer, data: bytes) -> int:
    """sendto(2) ``data`` back to the datagram sender ``peer``.

    An unnamed sender has no address to answer: a clear InvalidOperation
    instead of the kernel's EINVAL.
    """
    if peer.address is None:
        raise InvalidOperation(
            "reply to an unnamed sender",
            "it never bound a name; a client that wants replies binds one (sockwire's "
            "unix+dgram clients autobind, or set SO_PASSCRED before sending)",
        )
    return sock.sendto(data, peer.address)


# --------------------------------------------------------------------------
# fd passing
# --------------------------------------------------------------------------


def send_fds(
    sock: Socket, data: bytes, fds: Sequence[FdLike], *, address: Address | None = None
) -> int:
    """Send ``data`` with ``fds`` (ints or objects with ``fileno()``) as SCM_RIGHTS.

    Works on stream, seqpacket and datagram UNIX sockets. On a stream the
    fds ride on the first byte, so ``data`` must not be empty; all of
    ``data`` is sent. More than 253 fds (SCM_MAX_FD) is refused by the
    kernel with EINVAL, raised as InvalidOperation naming the limit;
    ETOOMANYREFS (an unprivileged sender with too many fds in flight) is
    :class:`~sockwire.errors.TooManyFdsInFlight`.
    """
    if sock.type == socket.SOCK_STREAM and not data:
        raise InvalidOperation(
            "send_fds with no data",
            "on a stream socket fds travel with at least one byte; send e.g. b'\\0'",
        )
    count = sock.sendmsg([data], fds=fds, address=address)
    if sock.type == socket.SOCK_STREAM and count < len(data):
        sock.sendall(data[count:])
        count = len(data)
    return count


def recv_fds(
    sock: Socket, bufsize: int = 65536, *, maxfds: int = SCM_MAX_FD, flags: int = 0
) -> Message:
    """One message and up to ``maxfds`` passed fds (close-on-exec; yours to close).

    More fds than ``maxfds`` (MSG_CTRUNC from the kernel, or the slack of
    the ancillary buffer's alignment) or a cut message (MSG_TRUNC) raise
    :class:`TruncatedError`, after closing every fd that did arrive: none
    leaks, none is half-delivered.
    """
    if not 0 <= maxfds <= SCM_MAX_FD:
        raise InvalidOperation(f"recv_fds maxfds={maxfds}", f"choose 0 to {SCM_MAX_FD}")
    msg = sock.recvmsg(bufsize, maxfds=maxfds, flags=flags)
    if msg.ctruncated or len(msg.fds) > maxfds:
        closed = close_fds(msg.fds) + msg.discarded
        raise TruncatedError(
            f"recv_fds on fd {sock.fd}",
            f"the message carried more fds than the {maxfds} asked for; the {closed} that "
            "arrived were closed (ask for more, up to 253)",
            data=msg.data,
            size=msg.size,
            errno_name="MSG_CTRUNC",
        )
    if msg.truncated:
        closed = close_fds(msg.fds)
        raise TruncatedError(
            f"recv_fds on fd {sock.fd}",
            f"the message was {msg.size} bytes but the buffer held {bufsize}; its "
            f"{closed} fds were closed",
            data=msg.data,
            size=msg.size,
            errno_name="MSG_TRUNC",
        )
    return msg


def recv_discarding_fds(
    sock: Socket, bufsize: int = 65536, *, flags: int = 0
) -> tuple[Message, int]:
    """One message for a receiver that wants no fds: closes (and counts) any that came.

    With no ancillary buffer the kernel discards passed fds itself and only
    MSG_CTRUNC shows it; to *count* them we receive with room for 253 (the
    most one message can carry), then close every one. Returns the message
    (``fds`` empty) and how many were closed.
    """
    msg = sock.recvmsg(bufsize, maxfds=SCM_MAX_FD, flags=flags)
    closed = close_fds(msg.fds)
    msg.fds = []
    return msg, closed


# --------------------------------------------------------------------------
# Activation: fd:N and systemd:[NAME]
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Passed:
    """One socket systemd passed: its fd and its name from LISTEN_FDNAMES."""

    fd: int
    name: str


_passed: tuple[int, list[Passed]] | None = None  # (our pid, the sockets)
_claimed: set[int] = set()


def listen_fds() -> list[Passed]:
    """The sockets systemd passed to this process, read once (like sd_listen_fds(1)).

    LISTEN_PID must be our pid (the variables may have been inherited by a
    process they were not meant for); LISTEN_FDS counts fds from 3 on;
    LISTEN_FDNAMES names them (``unknown`` when absent or not matching the
    count). The fds are made close-on-exec and the variables removed, so a
    child we start does not take them for its own.
    """
    global _passed  # noqa: PLW0603  # once per process, as sd_listen_fds
    if _passed is not None and _passed[0] == os.getpid():
        return list(_passed[1])
    found = _parse_listen_env(os.environ)
    for item in found:
        with contextlib.suppress(OSError):
            os.set_inheritable(item.fd, False)
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    _passed = (os.getpid(), found)
    _claimed.clear()
    return list(found)


def _parse_listen_env(env: Mapping[str, str]) -> list[Passed]:
    pid_text = env.get("LISTEN_PID", "")
    count_text = env.get("LISTEN_FDS", "")
    if not pid_text.isdigit() or int(pid_text) != os.getpid():
        return []
    if not count_text.isdigit() or not 0 < int(count_text) <= 4096:
        return []
    count = int(count_text)
    names = env.get("LISTEN_FDNAMES", "").split(":") if "LISTEN_FDNAMES" in env else []
    if len(names) != count:
        names = ["unknown"] * count
    return [Passed(SD_LISTEN_FDS_START + i, names[i]) for i in range(count)]


def _claim(ep: Endpoint) -> int:
    found = listen_fds()
    wanted = ep.name
    for item in found:
        if item.fd in _claimed:
            continue
        if wanted is None or item.name == wanted:
            _claimed.add(item.fd)
            return item.fd
    if not found:
        raise NotFound(
            f"adopt {ep}",
            "no sockets were passed to this process (LISTEN_FDS/LISTEN_PID unset or for "
            "another process); start it from a systemd .socket unit or systemd-socket-activate",
        )
    names = ", ".join(f"{item.name} (fd {item.fd})" for item in found)
    raise NotFound(
        f"adopt {ep}",
        f"no unclaimed passed socket {'named ' + repr(wanted) if wanted else 'left'}; "
        f"passed: {names}",
    )


def adopt(endpoint: Endpoint | str, *, listening: bool | None = None) -> Socket:
    """The inherited socket ``fd:N`` or ``systemd:[NAME]``, checked.

    It must be a socket (fstat), of ``?type=`` when given, and listening
    (SO_ACCEPTCONN) when ``listening`` is True. ``systemd:`` takes the next
    passed socket not yet adopted, ``systemd:NAME`` the next one of that
    name. ``?allowed_uids=``/``?allowed_gids=`` install a peer filter. On a
    failed check the descriptor is left open and unowned.
    """
    ep = parse(endpoint)
    if ep.scheme == "fd" and ep.fd is not None:
        fd = ep.fd
    elif ep.scheme == "systemd":
        fd = _claim(ep)
    else:
        raise InvalidOperation(
            f"adopt {ep}", "only fd:N and systemd:[NAME] name inherited sockets"
        )
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise translate(exc, "adopt", f"fd {fd}") from exc
    if not stat.S_ISSOCK(st.st_mode):
        kind = "a pipe" if stat.S_ISFIFO(st.st_mode) else "a file or device"
        raise InvalidOperation(f"adopt {ep}", f"fd {fd} is not a socket but {kind}")
    try:
        raw = socket.socket(fileno=fd)  # family and type come from the kernel
    except OSError as exc:
        raise translate(exc, "adopt", f"fd {fd}") from exc
    sock: Socket = (
        UnixSocket.wrap(raw, label=str(ep))
        if raw.family == socket.AF_UNIX
        else Socket.adopt(raw, label=str(ep))
    )
    try:
        _check_adopted(sock, ep, listening)
    except BaseException:
        sock.detach()
        raise
    return sock


def _check_adopted(sock: Socket, ep: Endpoint, listening: bool | None) -> None:
    if ep.type and sock.type != ep.type:
        raise InvalidOperation(
            f"adopt {ep}",
            f"fd {sock.fd} is a {type_name(sock.type)} socket, of another type than "
            f"?type={ep.option('type')} says",
        )
    if listening is not None and is_listening(sock) != listening:
        raise InvalidOperation(
            f"adopt {ep}",
            f"fd {sock.fd} is {'not ' if listening else ''}a listening socket (SO_ACCEPTCONN)"
            + ("; pass a socket that listen() was called on" if listening else ""),
        )
    found = peer_filter_from(ep)
    if found is not None:
        if not isinstance(sock, UnixSocket):
            raise InvalidOperation(
                f"adopt {ep}", "allowed_uids/allowed_gids need a UNIX socket (SO_PEERCRED)"
            )
        sock.peer_filter = found


def is_listening(sock: Socket) -> bool:
    """SO_ACCEPTCONN: has listen() been called on this socket?"""
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
