"""Small helpers the stops share: try a call and keep its error as an observation."""

from __future__ import annotations

import os
import select
import stat
from collections.abc import Callable
from typing import Any, TypeVar

from ...errors import SockwireError
from ...sock import Socket

T = TypeVar("T")

__all__ = ["attempt", "ename", "fd_kind", "poll_events", "proc_net_snmp"]


def attempt(
    fn: Callable[..., T], *args: Any, **kwargs: Any
) -> tuple[T | None, SockwireError | None]:
    """Call ``fn``; return (result, None) or (None, the SockwireError it raised).

    For calls whose failure *is* the observation (EAGAIN, EPIPE, ENETUNREACH).
    """
    try:
        return fn(*args, **kwargs), None
    except SockwireError as exc:
        return None, exc


def ename(exc: BaseException | None) -> str:
    """The errno name of a translated error (``EAGAIN``), or its class name."""
    if exc is None:
        return "no error"
    name = getattr(exc, "errno_name", None)
    return str(name) if name else type(exc).__name__


def fd_kind(fd: int) -> str:
    """What the kernel says descriptor ``fd`` is: ``socket:[12345]`` and its file type."""
    target = os.readlink(f"/proc/self/fd/{fd}")
    mode = os.fstat(fd).st_mode
    kind = "S_IFSOCK" if stat.S_ISSOCK(mode) else stat.filemode(mode)
    return f"{target} ({kind})"


def poll_events(sock: Socket, events: int, timeout: float) -> int:
    """poll(2) one socket; the revents bits (0 when ``timeout`` passed first)."""
    poller = select.poll()
    poller.register(sock.fd, events)
    ready = poller.poll(max(0.0, timeout) * 1000)
    return ready[0][1] if ready else 0


def proc_net_snmp(section: str) -> dict[str, int]:
    """The counters of one section of /proc/net/snmp (e.g. ``Udp``) in this netns."""
    with open("/proc/net/snmp") as handle:
        rows = [line.split() for line in handle if line.startswith(f"{section}:")]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0][1:], (int(v) for v in rows[1][1:]), strict=False))
