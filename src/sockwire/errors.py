"""The sockwire error tree, and the one place where ``OSError`` joins it.

Errors are named by what the caller should do about them (trio's
``_core/_exceptions.py`` is the model): fix the endpoint string, retry later,
fix the calling code, or accept that the peer went away. Every ``OSError``
from the kernel is translated in :func:`translate`, which keeps the original
as ``__cause__`` and puts the errno name and a hint in the message::

    SockwireError
    ├── AddressError (also ValueError)        fix the endpoint string
    ├── UnsupportedError                      this kernel/platform lacks it
    ├── ConnectError                          retry later or fix the target
    │   ├── ConnectionRefused                 nobody listens there
    │   ├── NotFound                          no such socket file / host
    │   └── Unreachable                       no route to the target
    ├── AddressInUse                          someone live holds that address
    ├── TimeoutError (also builtins.TimeoutError)
    ├── WouldBlock (also BlockingIOError)     non-blocking call: wait, retry
    ├── ClosedError                           you closed it; a bug in the caller
    ├── InvalidOperation                      wrong call for this socket's type/state
    ├── ConnectionLost                        the peer went away (EOF, reset, EPIPE)
    ├── ProtocolError                         the peer sent bad bytes
    │   ├── FrameTooLarge, BadFrame
    ├── PermissionDenied                      peer credentials or file mode refused
    ├── RemoteError                           the peer's handler failed this request
    ├── MessageTooLarge                       the message cannot travel in one piece
    ├── ResourceExhausted                     out of fds, buffers or ports
    │   └── TooManyFdsInFlight                let the receiver take passed fds, retry
    └── TruncatedError                        a received message did not fit

Beyond DESIGN.md's tree: ``Unreachable``, ``WouldBlock``, ``InvalidOperation``,
``MessageTooLarge`` and ``ResourceExhausted`` exist because each asks the
caller for a different action than any existing class (see docs/ERRORS.md).

The message format is the CLI's: ``<what> (<ERRNO>): <hint>``.
"""

from __future__ import annotations

import builtins
import errno as _errno
import os
import socket
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "AddressError",
    "AddressInUse",
    "BadFrame",
    "ClosedError",
    "ConnectError",
    "ConnectionLost",
    "ConnectionRefused",
    "FrameTooLarge",
    "InvalidOperation",
    "MessageTooLarge",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "RemoteError",
    "ResourceExhausted",
    "SockwireError",
    "TimeoutError",
    "TooManyFdsInFlight",
    "TruncatedError",
    "Unreachable",
    "UnsupportedError",
    "WouldBlock",
    "add_rules",
    "errno_name",
    "file_kind",
    "rule",
    "translate",
]


class SockwireError(Exception):
    """Root of every error sockwire raises on purpose.

    ``what`` says what failed (``connect unix:/run/app.sock``), ``errno_name``
    the kernel's verdict when there was one, ``hint`` what to do next.
    """

    def __init__(
        self,
        what: str,
        hint: str = "",
        *,
        errno: int | None = None,
        errno_name: str | None = None,
    ) -> None:
        self.what = what
        self.hint = hint
        self.errno_name = errno_name or _errno_name_or_none(errno)
        super().__init__(self.message)
        # set after __init__: OSError.__init__ (TimeoutError, WouldBlock) resets it
        self.errno = errno

    @property
    def message(self) -> str:
        """The one-line form: ``what (ERRNO): hint``."""
        text = self.what
        if self.errno_name:
            text += f" ({self.errno_name})"
        if self.hint:
            text += f": {self.hint}"
        return text

    def __str__(self) -> str:
        return self.message


class AddressError(SockwireError, ValueError):
    """The endpoint string is wrong: fix it. ``part`` is the bad piece."""

    def __init__(
        self,
        what: str,
        hint: str = "",
        *,
        part: str | None = None,
        valid: tuple[str, ...] = (),
        errno: int | None = None,
    ) -> None:
        self.part = part
        self.valid = valid
        super().__init__(what, hint, errno=errno)


class UnsupportedError(SockwireError):
    """This kernel or platform lacks the feature: use another one."""


class ConnectError(SockwireError):
    """Could not reach the target: retry later or fix the target."""


class ConnectionRefused(ConnectError):
    """Nothing listens at the target (ECONNREFUSED)."""


class NotFound(ConnectError):
    """The target does not exist: no socket file, unknown host (ENOENT)."""


class Unreachable(ConnectError):
    """No route to the target (ENETUNREACH, EHOSTUNREACH)."""


class AddressInUse(SockwireError):
    """Someone live holds that address: pick another or stop them.

    ``pid`` is the holder's process id when the kernel told us (SO_PEERCRED
    of a probe connection to a UNIX listener), else None.
    """

    def __init__(
        self,
        what: str,
        hint: str = "",
        *,
        errno: int | None = None,
        errno_name: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.pid = pid
        super().__init__(what, hint, errno=errno, errno_name=errno_name)


class TimeoutError(SockwireError, builtins.TimeoutError):
    """The deadline passed; also a builtin ``TimeoutError``."""


class WouldBlock(SockwireError, BlockingIOError):
    """A non-blocking call could not proceed now: wait for readiness, retry."""


class ClosedError(SockwireError):
    """You closed this socket (or channel) and then used it: a caller bug."""


class InvalidOperation(SockwireError):
    """The call does not fit the socket's type or state: fix the calling code."""


class ConnectionLost(SockwireError):
    """The peer went away: EOF, reset or broken pipe."""


class ProtocolError(SockwireError):
    """The peer sent bytes that break the protocol: drop the connection."""


class FrameTooLarge(ProtocolError):
    """A frame declared a length over the receiver's ``max_size``."""


class BadFrame(ProtocolError):
    """A frame is malformed (bad header, bad terminator, cut short)."""


class PermissionDenied(SockwireError):
    """File mode, capability or peer-credential policy refused the call."""


class RemoteError(SockwireError):
    """The peer's handler failed this request (a Rep sent ERROR): fix the server or the request.

    The link is fine; ``hint`` is the peer's ``TypeName: message``.
    """


class MessageTooLarge(SockwireError):
    """The message cannot travel in one piece on this socket (EMSGSIZE)."""


class ResourceExhausted(SockwireError):
    """Out of descriptors, buffers or ports: close something or raise a limit."""


class TooManyFdsInFlight(ResourceExhausted):
    """ETOOMANYREFS: this user has too many passed fds not yet received.

    The kernel counts fds sent over UNIX sockets and not yet received against
    the sender's RLIMIT_NOFILE (root is exempt). Unlike other exhaustion, the
    fix is usually on the other side: wait until the receiver has taken them
    (backpressure), then retry; or raise ``ulimit -n``.
    """


class TruncatedError(SockwireError):
    """A received message did not fit the buffer; ``data`` holds the head.

    ``size`` is the full length the kernel reported (MSG_TRUNC), when known.
    """

    def __init__(
        self,
        what: str,
        hint: str = "",
        *,
        data: bytes = b"",
        size: int | None = None,
        errno_name: str | None = None,
    ) -> None:
        self.data = data
        self.size = size
        super().__init__(what, hint, errno_name=errno_name)


def file_kind(mode: int) -> str:
    """What a stat() mode says a path is: ``a directory``, ``a FIFO``, ``a socket``..."""
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a socket"


def errno_name(code: int | None) -> str:
    """``111 -> 'ECONNREFUSED'``; unknown numbers come back as ``'errno 999'``."""
    name = _errno_name_or_none(code)
    return name if name is not None else f"errno {code}"


def _errno_name_or_none(code: int | None) -> str | None:
    if code is None:
        return None
    return _errno.errorcode.get(code)


# --------------------------------------------------------------------------
# The translation table. First matching rule wins, so specific rules (an op,
# a family) come before the general one for the same errno. ``{target}`` in a
# hint is the endpoint or path the call was about.
# --------------------------------------------------------------------------

_UNIX = socket.AF_UNIX


@dataclass(frozen=True, slots=True)
class Rule:
    """errno (+ op, family, socket type) -> error class and hint; see :func:`rule`."""

    errno: int
    error: type[SockwireError]
    hint: str
    ops: frozenset[str] | None = None
    family: int | None = None
    sock_type: int | None = None


def rule(
    code: int,
    error: type[SockwireError],
    hint: str,
    ops: str | None = None,
    family: int | None = None,
    sock_type: int | None = None,
) -> Rule:
    """A translation rule: ``ops`` is a space-separated list of calls (None: any).

    ``{target}`` and ``{op}`` in the hint are filled in by :func:`translate`.
    """
    return Rule(code, error, hint, frozenset(ops.split()) if ops else None, family, sock_type)


_r = rule


_SEND_OPS = "send sendall sendto sendmsg write send_fds"
_RECV_OPS = "recv recvfrom recvmsg recv_into read recv_fds"

_RULES: tuple[Rule, ...] = (
    # connect / bind: where the target is wrong or absent. (A UNIX connect or
    # sendto to a path that is not a socket also says ECONNREFUSED: see
    # _not_a_socket, which looks at the path before these rules apply.)
    _r(
        _errno.ECONNREFUSED,
        ConnectionRefused,
        "the socket file {target} exists but nobody is listening (a stale socket file?); "
        "start the server or remove the file",
        "connect",
        _UNIX,
    ),
    _r(
        _errno.ECONNREFUSED,
        ConnectionRefused,
        "nobody receives at {target} (a stale socket file?); start the receiver",
        "sendto sendmsg",
        _UNIX,
    ),
    _r(
        _errno.ECONNREFUSED,
        ConnectionRefused,
        "the peer's port is closed (the kernel answered with ICMP port unreachable); "
        "is the receiver running?",
        _SEND_OPS + " " + _RECV_OPS,
    ),
    _r(
        _errno.ECONNREFUSED,
        ConnectionRefused,
        "nobody is listening at {target}; start the server or check the address",
    ),
    _r(
        _errno.ENOENT,
        NotFound,
        "no socket file at {target}; is the server running and the path right?",
        "connect sendto sendmsg",
        _UNIX,
    ),
    _r(
        _errno.ENOENT,
        NotFound,
        "a directory in {target} does not exist; create it first",
        "bind",
    ),
    _r(_errno.ENOENT, NotFound, "{target} does not exist"),
    _r(
        _errno.EPROTOTYPE,
        ConnectError,
        "the socket at {target} is of another type; try unix+seqpacket: or unix+dgram: "
        "(or unix: for a stream socket)",
        "connect sendto sendmsg",
        _UNIX,
    ),
    _r(
        _errno.EPROTOTYPE,
        InvalidOperation,
        "the protocol does not fit this socket type",
    ),
    _r(
        _errno.ENETUNREACH,
        Unreachable,
        "{target} is not on a directly connected network, and MSG_DONTROUTE/SO_DONTROUTE "
        "forbids using a gateway",
        None,
    ),
    _r(
        _errno.EHOSTUNREACH,
        Unreachable,
        "no route to host {target}; check the address, routes and firewall",
    ),
    _r(_errno.ENETDOWN, Unreachable, "the network interface for {target} is down"),
    _r(_errno.EHOSTDOWN, Unreachable, "host {target} is down"),
    _r(
        _errno.ETIMEDOUT,
        TimeoutError,
        "no answer from {target} in time; is it reachable, or is its backlog full?",
    ),
    # addresses
    _r(
        _errno.EADDRINUSE,
        AddressInUse,
        "this socket is already a member of that group on that interface (a ?join= given twice?)",
        "setsockopt",
    ),
    _r(
        _errno.EADDRINUSE,
        AddressInUse,
        "another socket is bound to {target}; stop it, or choose another path",
        "bind",
        _UNIX,
    ),
    _r(
        _errno.EADDRINUSE,
        AddressInUse,
        "another socket holds {target}; stop it, use port 0 for any free port, or add "
        "?reuseaddr=1 if the old one is only in TIME_WAIT",
    ),
    _r(
        _errno.EADDRNOTAVAIL,
        ResourceExhausted,
        "no free local port to connect from; wait for TIME_WAIT sockets to expire",
        "connect",
    ),
    _r(
        _errno.EADDRNOTAVAIL,
        AddressError,
        "{target} is not an address of this machine; bind to one of its own addresses",
    ),
    _r(
        _errno.ENAMETOOLONG,
        AddressError,
        "the path {target} is too long for a UNIX socket (107 bytes); use a shorter path "
        "or an abstract name (unix:@name)",
    ),
    _r(
        _errno.EAFNOSUPPORT,
        UnsupportedError,
        "this kernel does not support the address family of {target}",
    ),
    _r(
        _errno.EPROTONOSUPPORT,
        UnsupportedError,
        "this kernel does not support that protocol for this family and type "
        "(a raw INET socket needs an explicit protocol, e.g. ?proto=icmp)",
    ),
    _r(
        _errno.ESOCKTNOSUPPORT,
        UnsupportedError,
        "this family has no socket of that type (e.g. SEQPACKET exists only for UNIX here)",
    ),
    _r(
        _errno.ENODEV,
        AddressError,
        "no such network interface here (`ip link` lists them); or, for ?join= without "
        "@IF, no route to the group: name the interface, ?join=GROUP@IF",
        "setsockopt if_nametoindex",
    ),
    _r(
        _errno.ENOPROTOOPT,
        UnsupportedError,
        "this socket does not know that option",
    ),
    _r(
        _errno.EOPNOTSUPP,
        InvalidOperation,
        "this socket type does not support {op} (e.g. listen/accept need a stream or "
        "seqpacket socket; MSG_OOB needs a stream socket)",
    ),
    # permissions
    _r(
        _errno.EACCES,
        PermissionDenied,
        "no write permission on the socket file {target} or search permission on its "
        "directory; check its mode and owner",
        "connect sendto sendmsg",
        _UNIX,
    ),
    _r(
        _errno.EACCES,
        PermissionDenied,
        "cannot create {target}: no write permission on its directory",
        "bind",
        _UNIX,
    ),
    _r(
        _errno.EACCES,
        PermissionDenied,
        "ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port of 1024 or more",
        "bind",
    ),
    _r(
        _errno.EPERM,
        PermissionDenied,
        "this socket needs a capability (raw and packet sockets need CAP_NET_RAW: run as "
        "root, or inside a user and network namespace such as `unshare -rn`)",
        "socket",
    ),
    _r(
        _errno.EACCES,
        PermissionDenied,
        "the kernel refused {op} on {target} (permissions, or a broadcast address "
        "without SO_BROADCAST)",
    ),
    _r(_errno.EPERM, PermissionDenied, "the kernel refused {op}: a capability or policy"),
    # the peer went away
    _r(_errno.EPIPE, ConnectionLost, "the peer closed the connection; nothing more can be sent"),
    _r(_errno.ECONNRESET, ConnectionLost, "the peer reset the connection"),
    _r(_errno.ECONNABORTED, ConnectionLost, "the connection was aborted before it was accepted"),
    _r(_errno.ESHUTDOWN, ConnectionLost, "this direction of the connection was shut down"),
    _r(
        _errno.ENOTCONN,
        InvalidOperation,
        "the socket is not connected; connect() first, or use sendto() with an address",
    ),
    _r(_errno.EISCONN, InvalidOperation, "the socket is already connected"),
    _r(
        _errno.EDESTADDRREQ,
        InvalidOperation,
        "no destination: connect() the socket first or give an address (sendto)",
    ),
    _r(_errno.EBADF, ClosedError, "the socket was already closed"),
    _r(_errno.ENOTSOCK, InvalidOperation, "{target} is not a socket"),
    # would block / in progress
    _r(
        _errno.EAGAIN,
        WouldBlock,
        "the listener's backlog is full (it is alive but not accepting fast enough); retry later",
        "connect",
        _UNIX,
    ),
    _r(
        _errno.EAGAIN,
        WouldBlock,
        "nothing to do without blocking right now; wait for readiness and retry",
    ),
    _r(
        _errno.EINPROGRESS,
        WouldBlock,
        "the connection is in progress; wait until writable, then read SO_ERROR",
    ),
    _r(_errno.EALREADY, WouldBlock, "a connection attempt is already in progress"),
    # sizes and resources
    # EMSGSIZE: the limit depends on the family and type, so each scheme's hint
    # (schemes.py: UNIX dgram/seqpacket len > sk_sndbuf - 32 in af_unix.c; UDP
    # 65,535 minus the headers) comes first; {limit} in a hint is filled in from
    # the socket's own SO_SNDBUF when the failing call could read it.
    _r(
        _errno.EMSGSIZE,
        MessageTooLarge,
        "the message is larger than this socket can carry in one piece; send a smaller "
        "one or use a framed stream",
    ),
    _r(
        _errno.ENOBUFS,
        MessageTooLarge,
        "the kernel cannot allocate a buffer for a message this large; send smaller ones",
        _SEND_OPS,
    ),
    _r(_errno.ENOBUFS, ResourceExhausted, "the kernel is out of buffer space; retry later"),
    _r(
        _errno.EMFILE,
        ResourceExhausted,
        "this process has too many open files; close some or raise `ulimit -n`",
    ),
    _r(
        _errno.ENFILE,
        ResourceExhausted,
        "the system has too many open files; close some or raise fs.file-max",
    ),
    _r(_errno.ENOMEM, ResourceExhausted, "the kernel is out of memory for this call"),
    _r(
        _errno.ETOOMANYREFS,
        TooManyFdsInFlight,
        "too many file descriptors are in flight from this user (RLIMIT_NOFILE counts "
        "them); let the receiver read and close them first",
    ),
    _r(
        _errno.EINVAL,
        InvalidOperation,
        "the kernel rejected an argument to {op} (a bad address, flag or option for this socket)",
    ),
)


def add_rules(rules: Iterable[Rule]) -> None:
    """Put ``rules`` before the built-in ones: a scheme's hints where they differ.

    The address registry calls this for each scheme's ``error_rules``; each
    names its family, so other families keep the general hints.
    """
    global _RULES  # noqa: PLW0603  # one table, extended at registration time
    _RULES = (*rules, *_RULES)


def translate(
    exc: BaseException,
    op: str,
    target: object = None,
    *,
    family: int | None = None,
    sock_type: int | None = None,
    path: str | bytes | None = None,
    limit: int | None = None,
) -> SockwireError:
    """Turn ``exc`` (usually an ``OSError``) from ``op`` on ``target`` into the tree.

    The result has ``exc`` as ``__cause__``; raise it with ``raise ... from exc``
    to keep the chain visible. A ``SockwireError`` passes through unchanged.
    ``path``: the filesystem path a UNIX call named, so the hint can say what
    is really there. ``limit``: the largest message the socket can send in one
    piece, for EMSGSIZE.
    """
    if isinstance(exc, SockwireError):
        return exc
    where = f"{op} {target}" if target not in (None, "") else op
    target_text = str(target) if target not in (None, "") else "the target"
    result: SockwireError
    if _is_tls_error(exc):
        result = _translate_tls(exc, where)
    elif isinstance(exc, socket.gaierror):
        result = NotFound(
            where,
            f"cannot resolve the host name ({exc.strerror}); check the spelling, "
            "or use a numeric address",
            errno=exc.errno,
            errno_name=_gai_name(exc.errno),
        )
    elif isinstance(exc, builtins.TimeoutError) and exc.errno is None:
        # socket.timeout is builtins.TimeoutError with no errno since 3.10
        result = TimeoutError(where, "the deadline passed before the call completed")
    elif isinstance(exc, OSError) and (
        wrong := _not_a_socket(exc, op, family, path, where, target_text)
    ):
        result = wrong
    elif isinstance(exc, OSError) and exc.errno is not None:
        rule = _find_rule(exc.errno, op, family, sock_type)
        if rule is None:
            result = SockwireError(
                where,
                exc.strerror or os.strerror(exc.errno),
                errno=exc.errno,
            )
        else:
            shown_limit = f" ({limit:,} bytes on this socket)" if limit is not None else ""
            hint = rule.hint.format(target=target_text, op=op, limit=shown_limit)
            result = rule.error(where, hint, errno=exc.errno)
    else:
        result = SockwireError(where, str(exc) or type(exc).__name__)
    result.__cause__ = exc
    return result


def _not_a_socket(
    exc: OSError,
    op: str,
    family: int | None,
    path: str | bytes | None,
    where: str,
    target: str,
) -> SockwireError | None:
    """ECONNREFUSED from a UNIX connect/sendto whose path is not a socket: say what it is.

    The kernel answers ECONNREFUSED both for a socket nobody listens on and
    for a directory, regular file or FIFO (net/unix/af_unix.c, unix_find_bsd:
    ``if (!S_ISSOCK(inode->i_mode)) goto path_put`` with -ECONNREFUSED). Only
    the first is a stale socket file worth removing; never suggest removing
    the others. stat(), not lstat(): connect follows symbolic links too.
    """
    if exc.errno != _errno.ECONNREFUSED or family != socket.AF_UNIX or path is None:
        return None
    if (
        op not in ("connect", "sendto", "sendmsg")
        or path in ("", b"")
        or path[:1] in ("\0", b"\0")
    ):
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # gone meanwhile, or not ours to look at: the usual hint
    if stat.S_ISSOCK(mode):
        return None
    return ConnectError(
        where,
        f"{target} is {file_kind(mode)}, not a socket; give the path of the server's socket file",
        errno=exc.errno,
    )


def _is_tls_error(exc: BaseException) -> bool:
    """An ``ssl.SSLError``? (Without importing ssl: none exists unless it was imported.)"""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLError)


# OpenSSL reason codes (ssl.SSLError.reason) and what they ask the caller to do.
# Alerts are the *peer's* verdict on us; the others are this end's.
_TLS_REFUSED_US = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)
_TLS_NOT_TLS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "HTTP_REQUEST",
        "HTTPS_PROXY_REQUEST",
        "PACKET_LENGTH_TOO_LONG",
        "RECORD_LENGTH_MISMATCH",
        "UNKNOWN_PROTOCOL",
    }
)
_TLS_NO_VERSION = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "TLSV1_ALERT_INSUFFICIENT_SECURITY",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "NO_SHARED_CIPHER",
    }
)


def _translate_tls(exc: BaseException, where: str) -> SockwireError:
    """``ssl.SSLError`` -> the tree. The TLS session is unusable after any of them."""
    reason = str(getattr(exc, "reason", None) or "")
    name = type(exc).__name__
    if name == "SSLCertVerificationError":
        detail = str(getattr(exc, "verify_message", "") or reason).rstrip(".")
        return PermissionDenied(
            where,
            f"certificate verify failed: {detail}; give the CA that signed the peer's "
            "certificate with ?cafile=, or connect by a name the certificate holds",
        )
    if name in ("SSLEOFError", "SSLZeroReturnError") or reason == "UNEXPECTED_EOF_WHILE_READING":
        return ConnectionLost(
            where,
            "the peer closed the TLS connection without close_notify; what it sent last "
            "may be cut short (did it refuse our certificate? its log says)",
        )
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return PermissionDenied(
            where, "the server requires a client certificate: add ?certfile=&keyfile="
        )
    if reason in _TLS_REFUSED_US:
        return PermissionDenied(
            where,
            f"the peer refused our certificate (TLS alert {reason.lower()}); give one its CA "
            "signed with ?certfile=&keyfile=",
        )
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return PermissionDenied(
            where,
            "the peer sent no certificate and this end requires one (?cafile= on a "
            "tls+tcp listener); the client must give ?certfile=&keyfile=",
        )
    if reason in _TLS_NOT_TLS:
        return ProtocolError(
            where,
            f"the peer does not speak TLS ({reason.lower()}); is it a tls+tcp endpoint, "
            "or a plain tcp one?",
        )
    if reason in _TLS_NO_VERSION:
        return ProtocolError(
            where,
            f"no TLS version or cipher in common ({reason.lower()}); sockwire needs TLS 1.2 "
            "or later",
        )
    return ProtocolError(where, f"TLS failed ({reason.lower() or name}): {exc}"[:300])


def _find_rule(code: int, op: str, family: int | None, sock_type: int | None) -> Rule | None:
    for rule in _RULES:
        if rule.errno != code:
            continue
        if rule.ops is not None and op not in rule.ops:
            continue
        if rule.family is not None and rule.family != family:
            continue
        if rule.sock_type is not None and rule.sock_type != sock_type:
            continue
        return rule
    return None


def _gai_name(code: int | None) -> str | None:
    for name in dir(socket):
        if name.startswith("EAI_") and getattr(socket, name) == code:
            return name
    return None
