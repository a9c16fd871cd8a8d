"""What to do when accept(2) fails: one policy for ``serve()`` and the command line.

The decision, after trio's ``_highlevel_socket.py`` and accept(2) "Error
handling", by errno (the translated error keeps it)::

    errno                                         action    why
    --------------------------------------------  --------  ---------------------------------
    EAGAIN / EWOULDBLOCK                          again     another thread or process took the
                                                            connection: poll again
    ECONNABORTED, EPROTO, EPERM (a firewall),     skip      that one connection died before we
    ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET,               took it (Linux reports pending
    EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH                   network errors on accept): next one
    EMFILE, ENFILE, ENOBUFS, ENOMEM               backoff   out of descriptors or memory: the
                                                            connection stays in the backlog, so
                                                            retrying at once spins a core; pause
                                                            ACCEPT_BACKOFF (or until a connection
                                                            of ours closes, whichever is first)
    anything else (EBADF, EINVAL: the listener    raise     nothing to retry
    is gone)

EINTR is retried by Python itself (PEP 475).
"""

from __future__ import annotations

import errno as _errno
from typing import Literal, TypeAlias

from .errors import SockwireError, WouldBlock

__all__ = ["ACCEPT_BACKOFF", "AcceptAction", "on_accept_error"]

#: How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM.
ACCEPT_BACKOFF = 0.1

AcceptAction: TypeAlias = Literal["again", "skip", "backoff", "raise"]

_SKIP = frozenset(
    getattr(_errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "EPERM",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(_errno, name)
)
_BACKOFF = frozenset({_errno.EMFILE, _errno.ENFILE, _errno.ENOBUFS, _errno.ENOMEM})


def on_accept_error(error: SockwireError) -> AcceptAction:
    """The action for a failed accept (see the table in the module docstring)."""
    if isinstance(error, WouldBlock) or error.errno in (_errno.EAGAIN, _errno.EWOULDBLOCK):
        return "again"
    if error.errno in _SKIP:
        return "skip"
    if error.errno in _BACKOFF:
        return "backoff"
    return "raise"
