"""Exit codes of every sockwire command, and which error maps to which.

Documented in ``sockwire --help`` and the README; scripts rely on them.

Light on purpose: ``sockwire --help`` imports it (for the epilog) and
nothing of the library; :class:`UsageError` and :func:`for_error` load the
error tree on first use.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..errors import SockwireError
    from ._usage import UsageError

__all__ = ["EPILOG", "Exit", "UsageError", "for_error"]


def __getattr__(name: str) -> Any:
    """``UsageError`` on first use (it pulls in the error tree)."""
    if name == "UsageError":
        from ._usage import UsageError

        return UsageError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Exit(enum.IntEnum):
    OK = 0  # success
    IO = 1  # the peer or I/O failed (reset, lost, protocol error); a tour stop failed
    USAGE = 2  # bad arguments or endpoint string
    REFUSED = 3  # connection refused, socket file or host not found, unreachable
    TIMEOUT = 4  # a deadline passed
    PERMISSION = 5  # file mode, capability or peer-credential policy refused
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # SIGTERM: a server stopped on request, after cleaning up (128 + SIGTERM)
    HANGUP = 129  # SIGHUP: the same cleanup as SIGTERM (128 + SIGHUP)
    BROKEN_PIPE = 141  # our stdout was closed by its reader (128 + SIGPIPE), like `yes | head`


EPILOG = """\
exit codes:
  0    success
  1    peer or I/O error (reset, lost, bad frame); a tour stop failed
  2    usage error: bad arguments or endpoint string
  3    refused or not found: nobody listening, no such socket file or host
  4    timeout
  5    permission denied: file mode, capability or peer-credential policy
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM): servers close their sockets and remove their files first
  129  hangup (SIGHUP): the same cleanup as SIGTERM
  141  stdout closed by its reader (e.g. `| head`), as for tools killed by SIGPIPE
"""


def for_error(err: SockwireError) -> Exit:
    """The exit code for an error, by what the user should do about it."""
    from ..errors import AddressError, ConnectError, PermissionDenied, TimeoutError
    from ._usage import UsageError

    if isinstance(err, AddressError | UsageError):
        return Exit.USAGE
    if isinstance(err, TimeoutError):
        return Exit.TIMEOUT
    if isinstance(err, ConnectError):
        return Exit.REFUSED
    if isinstance(err, PermissionDenied):
        return Exit.PERMISSION
    return Exit.IO
