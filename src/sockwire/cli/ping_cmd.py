"""``sockwire ping HOST``: ICMP echo with checksum verification and ping's statistics.

Which socket, and why (platform knowledge, decided in :func:`open_icmp`):

* An ICMP *datagram* socket (``SOCK_DGRAM, IPPROTO_ICMP``, "ping socket",
  Linux >= 3.0) needs no capability, only a gid of the caller inside
  ``net.ipv4.ping_group_range`` (for IPv6 too); socket() fails with EACCES
  otherwise. The kernel chooses the ident, matches replies to the socket and
  strips the IP header. Tried first, as iputils does.
* A *raw* socket (``SOCK_RAW``) needs CAP_NET_RAW (EPERM otherwise). It sees
  every ICMP message of the network namespace, so an ICMP_FILTER
  (ICMP6_FILTER) lets only replies and errors through, and replies are
  matched by ident. IPv4 raw sockets receive the IP header (the TTL is read
  from it); raw ICMPv6 sockets do not, and the kernel computes and checks
  the ICMPv6 checksum itself (RFC 3542); we verify it again with the
  pseudo-header.
* ``ping_group_range`` is ``1 0`` (nobody) on many systems, root included,
  so the fallback is common: it is said on stderr, once, with the value.
* The socket is never connect()ed: ICMP errors come from routers, not from
  the target, and a connected raw socket would filter them out.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

HELP = "ICMP echo (raw or ICMP datagram socket), checksums verified, RTT statistics like ping"

DESCRIPTION = """\
Send ICMP echo requests to HOST and time the replies, like iputils ping:
one line per reply, then the loss summary and min/avg/max/mdev RTT.

Uses an ICMP datagram socket when net.ipv4.ping_group_range includes your
gid (no privilege needed), else a raw socket (needs CAP_NET_RAW, e.g. root);
the fallback is said on stderr with the sysctl's value. Every reply's
checksum is verified (ICMPv6: with the pseudo-header); a reply with a bad
checksum or wrong data is shown and not counted. Unlike iputils, -c
defaults to 4: sockwire ping always stops by itself (at most -c requests,
each waiting -W seconds, the whole run bounded by -w if given).
"""

EPILOG = """\
exit codes:
  0    at least one reply arrived (like ping)
  1    a socket or I/O error after the start
  2    usage error: bad arguments
  3    no reply, and ICMP errors said unreachable; no route; host name not found
  4    no reply at all within -W (each request) or -w (the run): ping's exit 1
  5    no raw socket (CAP_NET_RAW) and no ICMP datagram socket (ping_group_range)
  130  interrupted (Ctrl-C), after printing the statistics
  143  terminated (SIGTERM), after printing the statistics
  141  stdout closed by its reader (e.g. `| head`)
"""

DEFAULT_COUNT = 4
MAX_COUNT = 1_000_000
MAX_SIZE = 65507  # 65535 - 20 (IPv4 header) - 8 (ICMP header)
PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"
SOL_RAW = 255
ICMP_FILTER = 1  # <linux/icmp.h>: a bit set drops that type
ICMP6_FILTER = 1  # <linux/icmpv6.h>: a bit set blocks that type
IP_RECVTTL = 12  # <linux/in.h>; the cmsg comes back as IP_TTL
_PASS4 = (0, 3, 4, 5, 11, 12)  # echo reply and the errors that quote a request
_PASS6 = (1, 2, 3, 4, 129)


def _float_range(lo: float, hi: float, what: str) -> Any:
    def convert(text: str) -> float:
        try:
            value = float(text) if len(text) <= 32 else math.nan
        except ValueError:
            value = math.nan
        if math.isnan(value) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(
                f"{what} must be a number from {lo:g} to {hi:g}, not {text[:40]!r}"
            )
        return value

    convert.__name__ = what
    return convert


def _host(text: str) -> str:
    if not text or len(text) > 253 or any(c in text for c in "\0 /\\?#@") or text[0] == "-":
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise argparse.ArgumentTypeError(
            f"HOST {shown!r} is not an address or host name (at most 253 characters)"
        )
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import _bounded_int, _seconds

    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument("host", type=_host, metavar="HOST", help="e.g. 127.0.0.1, ::1, localhost")
    parser.add_argument(
        "-c",
        "--count",
        type=_bounded_int(1, MAX_COUNT, "count"),
        default=DEFAULT_COUNT,
        metavar="N",
        help=f"send N requests, 1 to {MAX_COUNT} (default {DEFAULT_COUNT}; never endless)",
    )
    parser.add_argument(
        "-i",
        "--interval",
        type=_float_range(0.002, 3600, "interval"),
        default=1.0,
        metavar="S",
        help="seconds between requests, 0.002 to 3600 (default 1)",
    )
    parser.add_argument(
        "-W",
        "--wait",
        type=_float_range(0.001, 3600, "wait"),
        default=5.0,
        metavar="S",
        help="seconds each request waits for its reply (default 5)",
    )
    parser.add_argument(
        "-w",
        "--deadline",
        "--timeout",
        dest="deadline",
        type=_seconds,
        metavar="S",
        help="stop after S seconds whatever happened (--timeout is the same)",
    )
    parser.add_argument(
        "-s",
        "--size",
        type=_bounded_int(0, MAX_SIZE, "size"),
        default=56,
        metavar="BYTES",
        help=f"payload bytes per request, 0 to {MAX_SIZE} (default 56: 64 ICMP bytes)",
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ipv4", action="store_true", help="IPv4 only")
    family.add_argument("-6", dest="ipv6", action="store_true", help="IPv6 only")
    parser.add_argument(
        "--socket",
        choices=("auto", "dgram", "raw"),
        default="auto",
        help="auto: an ICMP datagram socket if allowed, else raw (default); "
        "dgram or raw: only that kind",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only the first line and the statistics"
    )
    watch = parser.add_argument_group("watching the wire (all on stderr)")
    watch.add_argument(
        "--trace", action="store_true", help="one line per socket call and per reply"
    )
    watch.add_argument("--hex", action="store_true", help="hex dump of every packet")
    watch.add_argument("--json", action="store_true", help="the same events as JSON lines")


# --------------------------------------------------------------------------
# choosing and preparing the socket
# --------------------------------------------------------------------------


def ping_group_range(path: str = PING_GROUP_RANGE) -> tuple[str, bool | None]:
    """The sysctl's text (``"1 0"``) and whether it admits one of our gids (None: unknown)."""
    import os

    try:
        with open(path) as handle:
            words = handle.read().split()
        lo, hi = int(words[0]), int(words[1])
    except (OSError, ValueError, IndexError):
        return "unreadable", None
    gids = {os.getegid(), *os.getgroups()}
    return f"{lo} {hi}", any(lo <= gid <= hi for gid in gids)


def open_icmp(family: int, mode: str) -> tuple[Any, str, str | None]:
    """(Socket, "dgram" or "raw", why we fell back to raw or None).

    Raises PermissionDenied naming both ways out when neither is allowed.
    """
    import os
    import socket

    from ..errors import PermissionDenied, SockwireError
    from ..sock import Socket

    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    label = "icmp6" if family == socket.AF_INET6 else "icmp"
    dgram_error: SockwireError | None = None
    if mode in ("auto", "dgram"):
        try:
            return Socket(family, socket.SOCK_DGRAM, proto, label=label), "dgram", None
        except SockwireError as exc:
            dgram_error = exc
    value, admitted = ping_group_range()
    gid = os.getegid()
    sysctl_text = f'net.ipv4.ping_group_range is "{value}"'
    if dgram_error is not None:
        if dgram_error.errno_name == "EACCES" and admitted is not True:
            why = f"{sysctl_text}, which does not include gid {gid}"
        else:
            why = f"the kernel refused it ({dgram_error.errno_name}; {sysctl_text})"
    else:
        why = None
    allow_raw = "a raw socket needs CAP_NET_RAW (run as root, or setcap cap_net_raw+ep)"
    allow_dgram = (
        f"an ICMP datagram socket needs gid {gid} in net.ipv4.ping_group_range, which is "
        f'"{value}" (as root: sysctl -w net.ipv4.ping_group_range="0 2147483647")'
    )
    if mode == "dgram":
        assert dgram_error is not None
        hint = allow_dgram if dgram_error.errno_name == "EACCES" else str(why)
        raise PermissionDenied(
            "ping: no ICMP datagram socket",
            f"{hint}; or use --socket raw with CAP_NET_RAW",
            errno=dgram_error.errno,
        ) from dgram_error
    try:
        sock = Socket(family, socket.SOCK_RAW, proto, label=label)
    except PermissionDenied as exc:
        if mode == "raw":
            raise PermissionDenied(
                "ping: no raw ICMP socket",
                f"{allow_raw}; or --socket dgram, where {allow_dgram}",
                errno=exc.errno,
            ) from exc
        if dgram_error is not None and dgram_error.errno_name != "EACCES":
            allow_dgram = f"ICMP datagram sockets failed too: {why}"
        raise PermissionDenied(
            "ping: no ICMP socket", f"{allow_raw}, and {allow_dgram}", errno=exc.errno
        ) from exc
    return sock, "raw", why


def _prepare(sock: Any, family: int, kind: str) -> int:
    """Filters and TTL reporting; returns the ancillary room recvmsg needs."""
    import socket
    import struct

    if family == socket.AF_INET6:
        if kind == "raw":
            words = [0xFFFFFFFF] * 8  # ICMP6_FILTER_SETBLOCKALL, then pass ours
            for kind_number in _PASS6:
                words[kind_number >> 5] &= ~(1 << (kind_number & 31))
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *words))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        return socket.CMSG_SPACE(4)
    if kind == "raw":
        mask = 0xFFFFFFFF
        for kind_number in _PASS4:
            mask &= ~(1 << kind_number)
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", mask))
        return 0  # the TTL is in the IPv4 header
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    return socket.CMSG_SPACE(4)


def _ttl(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    import socket
    import struct

    for level, kind, data in ancillary:
        if len(data) >= 4 and (
            (level == socket.IPPROTO_IP and kind == socket.IP_TTL)
            or (level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT)
        ):
            return int(struct.unpack("=i", data[:4])[0])
    return None


def resolve(host: str, *, ipv4: bool, ipv6: bool) -> tuple[int, tuple[Any, ...]]:
    """(family, sockaddr) for HOST: the first address getaddrinfo gives."""
    import socket

    from ..errors import translate

    family = socket.AF_INET if ipv4 else socket.AF_INET6 if ipv6 else socket.AF_UNSPEC
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise translate(exc, "resolve", host) from exc
    for found_family, _, _, _, address in infos:
        if found_family in (socket.AF_INET, socket.AF_INET6):
            return int(found_family), tuple(address)
    from ..errors import NotFound

    raise NotFound(f"resolve {host}", "no IPv4 or IPv6 address for this name")


def _local_address(family: int, address: tuple[Any, ...]) -> str | None:
    """Our source address toward ``address``: a UDP connect() picks it and sends nothing."""
    import socket

    from ..errors import SockwireError
    from ..sock import Socket

    try:
        with Socket(family, socket.SOCK_DGRAM, label="source address lookup") as probe:
            probe.connect((address[0], 9, *address[2:]))
            return str(probe.getsockname()[0]).split("%", 1)[0]
    except SockwireError:
        return None


# --------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import os
    import socket
    import sys
    import time

    from .exitcodes import Exit
    from .observe import Observer, say
    from .ping import Session
    from .pump import handled_signals

    family, address = resolve(args.host, ipv4=args.ipv4, ipv6=args.ipv6)
    target = str(address[0])
    ipv6 = family == socket.AF_INET6
    out = sys.stdout

    def show(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    interrupted = False
    observer = Observer(trace_lines=args.trace, hex_dump=args.hex, json_lines=args.json)
    with observer, handled_signals():
        sock, kind, fallback = open_icmp(family, args.socket)
        with sock:
            if fallback is not None:
                sys.stderr.write(
                    f"sockwire: ping: no ICMP datagram socket: {fallback}; "
                    "using a raw socket (CAP_NET_RAW)\n"
                )
                sys.stderr.flush()
            ancillary = _prepare(sock, family, kind)
            local = _local_address(family, address) if ipv6 else None
            say("ping", f"{kind} socket", f"fd={sock.fd}", f"to {target}")
            session = Session(
                target,
                ipv6=ipv6,
                ident=int.from_bytes(os.urandom(2), "big"),
                size=args.size,
                count=args.count,
                interval=args.interval,
                wait=args.wait,
                started=time.monotonic(),
                deadline=args.deadline,
                match_ident=kind == "raw",
                ip_header=kind == "raw" and not ipv6,
            )
            bufsize = max(2048, args.size + 8 + 60 + 48 + 8)
            if ipv6:
                show(f"PING {args.host} ({target}) {args.size} data bytes")
            else:
                show(f"PING {args.host} ({target}) {args.size}({args.size + 28}) bytes of data.")
            try:
                _loop(
                    sock, session, address, bufsize, ancillary, local, show, args.quiet, observer
                )
            except KeyboardInterrupt:
                interrupted = True
            finally:
                # the statistics, however the run ends (Ctrl-C, SIGTERM, an error), as ping
                # does; not when the very first request could not be sent
                if session.transmitted or interrupted:
                    out.write("\n")
                    for line in session.summary(args.host, time.monotonic() - session.started):
                        show(line)
    if interrupted:
        return Exit.INTERRUPTED
    if session.received:
        return Exit.OK
    return Exit.REFUSED if session.errors else Exit.TIMEOUT


def _loop(
    sock: Any,
    session: Any,
    address: tuple[Any, ...],
    bufsize: int,
    ancillary: int,
    local: str | None,
    show: Any,
    quiet: bool,
    observer: Any,
) -> None:
    """Send on schedule, receive until the session is finished; bounded by its deadlines."""
    import time

    from ..errors import SockwireError, Unreachable
    from .observe import say
    from .ping import Reply

    while True:
        observer.check()
        now = time.monotonic()
        if session.finished(now):
            return
        if session.due(now):
            data = session.request(now)
            try:
                sock.sendto(data, address)
            except SockwireError as exc:
                session.unsent()
                if isinstance(exc, Unreachable):
                    raise Unreachable(
                        f"ping {address[0]}",
                        "no route to this address from here; see `sockwire route`",
                        errno=exc.errno,
                    ) from exc
                raise
            continue
        wake = session.wake_at()
        if wake is None:
            return
        if sock.wait_readable(max(0.0, wake - now) + 0.0005):
            msg = sock.recvmsg(bufsize, ancillary=ancillary)
            source = str(msg.address[0]) if msg.address else "?"
            event = session.receive(
                msg.data, source, time.monotonic(), ttl=_ttl(msg.ancillary), local=local
            )
            if event is not None:
                say(type(event).__name__.lower(), event.line())
                if not quiet or not isinstance(event, Reply):
                    show(event.line())
        for seq in session.expire(time.monotonic()):
            say("unanswered", f"icmp_seq={seq}")
            if not quiet:
                show(f"no answer yet for icmp_seq={seq} (waited {session.wait:g} s)")
