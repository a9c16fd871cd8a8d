"""Private network namespaces for the tour, the tests and the benches.

A process that needs CAP_NET_ADMIN or CAP_NET_RAW (veth pairs, routes, raw
sockets) without having it can still get both *inside* namespaces it owns:
``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` makes it root of a new user
namespace that owns a new, empty network namespace (``unshare -rn`` does
the same). Nothing it does there is visible outside, and everything
disappears when its last process exits: no ``/run/netns`` files to clean up.

Platform knowledge, written where it is used:

* unshare(CLONE_NEWUSER) fails with EINVAL in a multi-threaded process:
  call :func:`enter` in a freshly forked child (the tour's stops are).
* Unprivileged users may map only their own uid and gid, and must write
  "deny" to /proc/self/setgroups before gid_map (Linux >= 3.19).
* EPERM from unshare means no CAP_SYS_ADMIN and no unprivileged user
  namespaces (kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0,
  or a seccomp/AppArmor policy); ENOSPC means the namespace limit is reached.
* A new network namespace has only ``lo``, and it is down: bring it up
  before using 127.0.0.1.
* A veth end can be created directly in another namespace by naming a
  process in it (``ip link add A type veth peer name B netns PID``); the
  caller needs CAP_NET_ADMIN over both namespaces, which holds when both
  are owned by the same user namespace.

Every step is recorded with :func:`sockwire.trace.note` so the tour shows it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import trace
from .errors import InvalidOperation, PermissionDenied, SockwireError, errno_name, translate

__all__ = [
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_SYS_ADMIN",
    "CLONE_NEWNET",
    "CLONE_NEWUSER",
    "Namespace",
    "add_veth",
    "enter",
    "has_capability",
    "ip",
    "loopback_up",
    "unshare",
]

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_ADMIN = 21

Runner = Callable[[Sequence[str]], Any]

_libc: ctypes.CDLL | None = None


def _get_libc() -> ctypes.CDLL:
    global _libc  # noqa: PLW0603  # loaded once, on first use
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _flag_names(flags: int) -> str:
    bits = (("CLONE_NEWUSER", CLONE_NEWUSER), ("CLONE_NEWNET", CLONE_NEWNET))
    return "|".join(name for name, bit in bits if flags & bit) or hex(flags)


def has_capability(cap: int) -> bool:
    """Is capability number ``cap`` in this process's effective set (``CapEff``)?"""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except OSError:
        pass
    return False


def unshare(flags: int) -> None:
    """unshare(2) via libc; errors come back as :mod:`sockwire.errors` classes."""
    tasks = len(os.listdir("/proc/self/task"))
    if flags & CLONE_NEWUSER and tasks > 1:
        raise InvalidOperation(
            "unshare(CLONE_NEWUSER)",
            f"this process has {tasks} threads; a user namespace needs a single-threaded "
            "process: fork first and call it in the child",
        )
    if _get_libc().unshare(ctypes.c_int(flags)) != 0:
        code = ctypes.get_errno()
        trace.note("unshare", _flag_names(flags), result=f"-1 {errno_name(code)}")
        exc = OSError(code, os.strerror(code))
        err = translate(exc, "unshare", _flag_names(flags))
        if code == 1:  # EPERM
            err = PermissionDenied(
                f"unshare({_flag_names(flags)})",
                "needs CAP_SYS_ADMIN, or unprivileged user namespaces "
                "(kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0)",
                errno=code,
            )
        raise err from exc
    trace.note("unshare", _flag_names(flags))


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
    trace.note("write", f'"{path}"', repr(text), result=str(len(text)))


def _map_ids(outer_uid: int, outer_gid: int) -> None:
    """Map root of the new user namespace to our own uid and gid (all we may map)."""
    for path, text in (
        ("/proc/self/setgroups", "deny"),
        ("/proc/self/uid_map", f"0 {outer_uid} 1"),
        ("/proc/self/gid_map", f"0 {outer_gid} 1"),
    ):
        try:
            _write(path, text)
        except OSError as exc:
            # /proc/self belongs to root in a process that is not "dumpable",
            # e.g. one that changed its uid without exec()ing afterwards
            raise PermissionDenied(
                f"write {path}",
                "the kernel refused the user namespace's id map; a process that changed "
                "its uid without exec() must set prctl(PR_SET_DUMPABLE, 1) first",
                errno=exc.errno,
            ) from exc


@dataclass(frozen=True, slots=True)
class Namespace:
    """What :func:`enter` did: ``user`` says whether a user namespace was made too."""

    user: bool
    outer_uid: int
    outer_gid: int

    def describe(self) -> str:
        if self.user:
            return (
                f"a new user namespace (uid {self.outer_uid} outside is root inside) "
                "owning a new network namespace"
            )
        return "a new network namespace"


def enter(*, user: bool | None = None, run: Runner | None = None, lo: bool = True) -> Namespace:
    """Move this process into a new, private network namespace, with ``lo`` up.

    ``user=None`` decides: without CAP_SYS_ADMIN a user namespace is created
    too (root inside, our uid outside), which gives CAP_NET_ADMIN and
    CAP_NET_RAW over the new network namespace. ``run`` runs ``ip``
    (default :func:`ip`); the tour passes its recording runner.
    """
    uid, gid = os.geteuid(), os.getegid()
    if user is None:
        user = not has_capability(CAP_SYS_ADMIN)
    if user:
        unshare(CLONE_NEWUSER | CLONE_NEWNET)
        _map_ids(uid, gid)
    else:
        unshare(CLONE_NEWNET)
    if lo:
        loopback_up(run)
    return Namespace(user, uid, gid)


def ip(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip`` (iproute2) with ``argv``; recorded as an ``exec`` step."""
    command = ["ip", *argv]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise SockwireError(
            "exec ip", "iproute2 is not installed (apt-get install iproute2)"
        ) from exc
    trace.note("exec", " ".join(command), result=str(proc.returncode))
    if check and proc.returncode != 0:
        raise SockwireError(
            " ".join(command), f"exited with {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc


def _run(run: Runner | None, argv: Sequence[str]) -> None:
    if run is None:
        ip(argv[1:])
    else:
        run(list(argv))


def loopback_up(run: Runner | None = None) -> None:
    """``ip link set lo up``: a new network namespace starts with lo down."""
    _run(run, ["ip", "link", "set", "lo", "up"])


def add_veth(near: str, far: str, far_pid: int, run: Runner | None = None) -> None:
    """A veth pair: ``near`` here, ``far`` created in the network namespace of ``far_pid``."""
    _run(
        run,
        ["ip", "link", "add", near, "type", "veth", "peer", "name", far, "netns", str(far_pid)],
    )
