"""Options shared by the socket commands, checked before anything is opened.

Every value is bounded here, so a negative or absurd number, or a 10 KB
argument, is a one-line usage error (exit 2) and never reaches a system
call. Flags that shadow an endpoint query option (``--backlog``, ``--mode``,
``--timeout``) are merged with :func:`sockwire.address.merge_options`: giving
both with different values is a usage error.

Kept light: ``sockwire CMD --help`` imports this module for the argument
definitions, so the library (address, flags, errors) is imported inside the
functions that check values, never at the top.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ..address import Endpoint
    from ..flags import MsgFlag

__all__ = [
    "FAILSAFE_HELP",
    "HELP_STREAM_FRAMINGS",
    "MAX_BUFSIZE",
    "SEND_FLAGS",
    "IoOptions",
    "add_bridge_options",
    "add_family_options",
    "add_io_options",
    "add_server_options",
    "add_zmq_options",
    "check_framing",
    "endpoint",
    "io_options",
    "packet_framing",
    "server_endpoint",
]

#: The largest --bufsize: one buffer per direction per connection is allocated.
MAX_BUFSIZE = 64 * 1024 * 1024
DEFAULT_BUFSIZE = 256 * 1024
#: The flags that make sense on a send; the rest are receive-side or reported flags.
SEND_FLAGS = ("OOB", "DONTROUTE", "DONTWAIT", "NOSIGNAL", "EOR")
#: The byte-stream framings, for help texts (``address.STREAM_FRAMINGS`` decides what is valid)
HELP_STREAM_FRAMINGS = ("len16", "len32", "len64", "netstring", "line", "nul")
_MAX_ARG = 4096

#: The fail-safe rules of the servers that go on (echo, relay, listen -k): cli/admit.py.
FAILSAFE_HELP = """\
Failing safe when full (the library serve()'s rules, cli/admit.py): a
connection over which nothing moves either way within 10 s of accept is
closed, and so is one idle for 300 s (--timeout S: S for both); when
--max-clients are connected and another client waits, the one quiet
longest (nothing moved for over 0.25 s) is closed to make room at once.
A connection moving data is never closed for a newcomer: the newcomer
waits. Why: socat and nc keep a silent connection forever, so 64 idle
peers (or 64 sending a byte a second) locked every client out; 10 s is
ages for a client's first bytes, 300 s covers an interactive session's
pauses and frees the slot of a peer that vanished without a FIN; ask for
more with --timeout (up to 86400). Each close is an evict/expire event
under --trace/--json (echo, relay: and a count in the SIGUSR1 summary).
"""


def _bounded_int(lo: int, hi: int, what: str) -> Any:
    def convert(text: str) -> int:
        if len(text) > 32:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number from {lo} to {hi}")
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number from {lo} to {hi}, not {text!r}"
            ) from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be from {lo} to {hi}, not {value}")
        return value

    convert.__name__ = what
    return convert


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text) if len(text) <= 32 else math.nan
    except ValueError:
        value = math.nan
    if math.isnan(value) or not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(
            f"seconds must be a number more than 0 and at most 86400, not {text[:40]!r}"
        )
    return value


def _linger(text: str) -> float:
    if text in ("0", "0.0"):
        return 0.0
    return _seconds(text)


def _send_flags(text: str) -> MsgFlag:
    from ..flags import MsgFlag, parse_msg_flags

    if len(text) > 200:
        raise argparse.ArgumentTypeError("too long a list of flags")
    try:
        flags = parse_msg_flags(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    allowed = MsgFlag.NONE
    for name in SEND_FLAGS:
        allowed |= MsgFlag[name]
    extra = flags & ~allowed
    if extra:
        raise argparse.ArgumentTypeError(
            f"{MsgFlag(extra)} is not a flag for sending; valid: " + ", ".join(SEND_FLAGS)
        )
    return flags


def _framing(text: str) -> str:
    from ..address import FRAMINGS

    lowered = text.lower()
    if lowered not in FRAMINGS:
        raise argparse.ArgumentTypeError(f"framing must be one of: {', '.join(FRAMINGS)}")
    return lowered


bufsize_type = _bounded_int(1, MAX_BUFSIZE, "buffer size")
count_type = _bounded_int(1, 2**31 - 1, "count")
clients_type = _bounded_int(1, 1024, "number of clients")
backlog_type = _bounded_int(0, 65535, "backlog")


def add_io_options(parser: argparse.ArgumentParser, *, framing: bool = True) -> None:
    """--trace/--hex/--json, --send-flags, --peek, --timeout, --bufsize (every socket command)."""
    watch = parser.add_argument_group("watching the wire (all on stderr)")
    watch.add_argument(
        "--trace",
        action="store_true",
        help="one line per event: every socket call, accept with the peer's pid/uid/gid, "
        "message N with length, sender and flags, EOF, shutdown, close with counts",
    )
    watch.add_argument(
        "--hex", action="store_true", help="hex dump of every payload, with direction and time"
    )
    watch.add_argument(
        "--json",
        action="store_true",
        help="every stderr line one JSON object: the events (with lengths; bytes only with "
        "--hex), listening, reports, summaries, the error (docs/JSON.md); recv prints "
        "its messages as JSON",
    )
    calls = parser.add_argument_group("socket calls")
    calls.add_argument(
        "--send-flags",
        type=_send_flags,
        default=None,
        metavar="FLAGS",
        help="MSG_* flags for every send, comma-separated: OOB, DONTROUTE, DONTWAIT, "
        "NOSIGNAL, EOR (MSG_NOSIGNAL is always added)",
    )
    calls.add_argument(
        "--peek",
        action="store_true",
        help="look at what is waiting with MSG_PEEK before each receive (shown by --trace); "
        "`recv --peek` shows the next message and leaves it queued",
    )
    calls.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="give up after S seconds without progress: connecting, or waiting for data "
        "(same as the endpoint's ?timeout=; exit 4); servers that go on (echo, relay, "
        "listen -k) close a connection with no data either way for S s (default: 10 s "
        "for the first bytes, then 300 s)",
    )
    calls.add_argument(
        "--bufsize",
        type=bufsize_type,
        default=DEFAULT_BUFSIZE,
        metavar="BYTES",
        help=f"receive buffer per direction, 1 to {MAX_BUFSIZE} (default {DEFAULT_BUFSIZE}); "
        "a longer datagram or seqpacket message is truncated, and that is shown; "
        "with --framing, the largest frame accepted",
    )
    if framing:
        calls.add_argument(
            "--framing",
            type=_framing,
            default="none",
            metavar="F",
            help="message framing (same as ?framing=): on a byte stream "
            + ", ".join(HELP_STREAM_FRAMINGS)
            + " (each message one frame; a frame declared longer than --bufsize ends the "
            "connection with an error); on seqpacket/datagram sockets sockwire (the sockwire "
            "packet header, as a library Channel with ?framing=sockwire). Default none: bytes "
            "as they come on a stream, one message per packet otherwise",
        )


def add_bridge_options(parser: argparse.ArgumentParser) -> None:
    """listen/connect: how stdin and stdout meet the socket."""
    group = parser.add_argument_group("stdin and stdout")
    group.add_argument(
        "--close-on-eof",
        action="store_true",
        help="close the connection as soon as stdin ends (default: send shutdown(SHUT_WR) "
        "and keep printing until the peer's EOF)",
    )
    group.add_argument(
        "--split",
        choices=("line", "read"),
        default="line",
        help="datagram/seqpacket: one message per stdin line (default) or per read",
    )
    group.add_argument(
        "--format",
        choices=("line", "raw"),
        help="messages written to stdout: line (each followed by a newline; the default with "
        "--framing) or raw (as they came; the default otherwise)",
    )
    group.add_argument(
        "--linger",
        type=_linger,
        default=0.5,
        metavar="S",
        help="datagram client: wait S seconds after stdin's EOF for answers (default 0.5)",
    )
    group.add_argument(
        "--quit-after",
        type=_linger,
        metavar="S",
        help="after stdin's EOF, wait at most S seconds for the peer, then end the connection "
        "normally (socat -t S, nc -q S; 0: at once)",
    )
    group.add_argument(
        "--no-shutdown",
        action="store_true",
        help="on stdin's EOF keep our write side open (no shutdown(SHUT_WR)): the peer's EOF "
        "or --quit-after ends the connection (nc without -N)",
    )
    group.add_argument(
        "-C",
        "--crlf",
        action="store_true",
        help="send stdin's line ends as CRLF (nc -C), for line protocols such as SMTP or HTTP",
    )
    child = parser.add_argument_group("a program per connection (instead of stdin/stdout)")
    exclusive = child.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--exec",
        metavar="CMD",
        help="run CMD (split like a shell command line, no shell) for each connection with the "
        "socket as its stdin and stdout (socat EXEC:, nc -e)",
    )
    exclusive.add_argument(
        "--system",
        metavar="LINE",
        help="the same, but LINE runs under /bin/sh -c (socat SYSTEM:, nc -c)",
    )
    child.add_argument(
        "--pty",
        action="store_true",
        help="give the program a pseudo-terminal instead of the socket (socat EXEC:...,pty): "
        "for programs that want a terminal (shells, passwd); sockwire copies between the two",
    )


def add_family_options(parser: argparse.ArgumentParser) -> None:
    """-4/-6: the target's ?family= (only IPv4 or only IPv6 addresses of a host name)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-4",
        dest="family",
        action="store_const",
        const="4",
        help="connect over IPv4 only (same as ?family=4)",
    )
    group.add_argument(
        "-6",
        dest="family",
        action="store_const",
        const="6",
        help="connect over IPv6 only (same as ?family=6)",
    )


def add_server_options(
    parser: argparse.ArgumentParser, *, keep_open: bool = True, max_clients: int = 1
) -> None:
    """--backlog, --mode and, for servers, --keep-open and --max-clients."""
    group = parser.add_argument_group("serving")
    group.add_argument(
        "--backlog",
        type=backlog_type,
        metavar="N",
        help="listen() queue length (same as ?backlog=; default 128)",
    )
    group.add_argument(
        "--mode",
        metavar="OCTAL",
        help="file mode of a UNIX socket file, set before anyone can connect (same as ?mode=)",
    )
    if keep_open:
        group.add_argument(
            "-k",
            "--keep-open",
            action="store_true",
            help="serve client after client instead of exiting after the first",
        )
    group.add_argument(
        "--max-clients",
        type=clients_type,
        default=max_clients,
        metavar="N",
        help=f"clients served at once, 1 to 1024 (default {max_clients})",
    )


class IoOptions(NamedTuple):
    """The checked values of :func:`add_io_options` (a NamedTuple: no dataclasses import)."""

    trace: bool
    hex: bool
    json: bool
    send_flags: MsgFlag
    peek: bool
    timeout: float | None
    bufsize: int
    framing: str

    @property
    def watching(self) -> bool:
        return self.trace or self.hex or self.json


def io_options(args: argparse.Namespace) -> IoOptions:
    from ..flags import MsgFlag

    return IoOptions(
        trace=bool(getattr(args, "trace", False)),
        hex=bool(getattr(args, "hex", False)),
        json=bool(getattr(args, "json", False)),
        send_flags=getattr(args, "send_flags", None) or MsgFlag.NONE,
        peek=bool(getattr(args, "peek", False)),
        timeout=getattr(args, "timeout", None),
        bufsize=int(getattr(args, "bufsize", DEFAULT_BUFSIZE)),
        framing=str(getattr(args, "framing", "none")),
    )


def endpoint(text: str, args: argparse.Namespace, *, timeout: bool = True) -> Endpoint:
    """Parse ``text`` and merge --timeout and -4/-6 into it (``timeout=False``: a listener's)."""
    from ..address import merge_options, parse
    from .exitcodes import UsageError

    if len(text) > _MAX_ARG:
        # parse() would refuse it too; this keeps the message short and certain
        raise UsageError(
            f"endpoint argument is {len(text)} characters long",
            "an endpoint is at most a few hundred characters (a UNIX path at most 107 bytes)",
        )
    ep = parse(text)
    flags: dict[str, object] = {}
    if timeout and getattr(args, "timeout", None) is not None:
        flags["timeout"] = _format_seconds(args.timeout)
    family = getattr(args, "family", None) if timeout else None
    if family is not None:
        if "family" not in ep.spec.options:
            raise UsageError(
                f"-{family} on {ep.display()}",
                "-4 and -6 choose the address family of tcp://, udp:// and tls+tcp:// targets",
            )
        flags["family"] = family
    return merge_options(ep, flags)


def server_endpoint(text: str, args: argparse.Namespace) -> Endpoint:
    """Like :func:`endpoint`, plus --backlog and --mode (which must fit the scheme)."""
    from ..address import merge_options
    from .exitcodes import UsageError

    ep = endpoint(text, args, timeout=False)
    flags: dict[str, object] = {}
    if getattr(args, "backlog", None) is not None:
        flags["backlog"] = args.backlog
    mode = getattr(args, "mode", None)
    if mode is not None:
        if len(mode) > 8:
            raise UsageError(f"--mode {mode[:20]!r}", "give an octal file mode such as 0600")
        flags["mode"] = mode
    return merge_options(ep, flags)


def _format_seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def check_framing(ep: Endpoint, opts: IoOptions) -> str:
    """The framing of a stream endpoint: ``?framing=`` or --framing (``none``: bytes).

    Giving both with different values is a usage error.
    """
    from ..address import STREAM_FRAMINGS
    from .exitcodes import UsageError

    given = ep.option("framing")
    framing = opts.framing
    if given is not None and framing not in ("none", given):
        raise UsageError(
            f"--framing {framing} conflicts with ?framing={given} in {ep}",
            "give the framing once, as a flag or in the endpoint",
        )
    chosen = given or framing
    if ep.is_stream and chosen not in STREAM_FRAMINGS:
        raise UsageError(
            f"--framing {chosen} on the byte stream {ep.display()}",
            "the sockwire packet header is for seqpacket and datagram sockets; a stream takes "
            + ", ".join(STREAM_FRAMINGS),
        )
    return chosen


def packet_framing(ep: Endpoint, opts: IoOptions) -> str:
    """The framing of a seqpacket/datagram endpoint: none (the default) or sockwire.

    Datagram and seqpacket sockets keep message boundaries themselves, so
    the default adds nothing (what socat, logger and every other peer
    send); ``--framing sockwire`` (or ``?framing=sockwire``) adds the
    sockwire packet header, as a library Channel with that option does.
    """
    import socket

    from ..address import PACKET_FRAMINGS
    from .exitcodes import UsageError

    framing = check_framing(ep, opts)
    if framing not in PACKET_FRAMINGS or (framing != "none" and ep.type == socket.SOCK_RAW):
        raise UsageError(
            f"--framing {framing} on {ep.display()}",
            "datagram and seqpacket sockets keep message boundaries themselves; their "
            "framing is none (the default) or sockwire (the sockwire packet header)",
        )
    return framing


def add_zmq_options(parser: argparse.ArgumentParser) -> None:
    """``--separator``: how frames of a multipart message share one line."""
    group = parser.add_argument_group("ZeroMQ endpoints (zmq+tcp://, zmq+ipc://)")
    group.add_argument(
        "--separator",
        metavar="SEP",
        help="zmq+ only: frames of a multipart message on one line are separated by SEP "
        "(input is split at it; output joins with it; default: input is one frame, "
        "output joins with a tab)",
    )
