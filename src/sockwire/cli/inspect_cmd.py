"""``sockwire inspect [PATH]``: the machine's sockets and their processes, like ``ss -xp``."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..procnet import Entry

HELP = "the machine's sockets with their processes, or whether a socket file is live"

DESCRIPTION = """\
Without PATH: the sockets of this network namespace, as the kernel lists
them over NETLINK_SOCK_DIAG (what `ss` reads): unix, tcp, udp, raw and
netlink, each with its state, Recv-Q/Send-Q (a listener: pending
connections and backlog), and the processes holding it (found through
/proc/PID/fd, as `ss -p` does; other users' processes need root). A kind
the kernel has no sock_diag handler for is read from /proc/net instead.
--listening keeps listeners and unconnected datagram sockets; --port,
--pid and --path filter; --pairs shows connected pairs, matched by the
peer's inode (unix) or by address (tcp, udp); --watch S repeats every S
seconds (--count N snapshots; Ctrl-C stops it).

Names are whatever their owner bound: newlines, terminal escapes and
invalid UTF-8 are shown escaped (\\n, \\x1b, \\xff); --json keeps them exact.

With PATH: is this socket file live? The kernel says which socket of this
network namespace is bound to the file (its type, state, backlog and
processes), so nothing connects to it: a one-shot server keeps its client.
Only when the kernel sees no holder (a stale file, or a holder in another
network namespace) does a probe connect with each type in turn:
ECONNREFUSED means nobody listens (a stale file), EPROTOTYPE another type.
Exit status with PATH: 0 live, 3 stale, missing, or bound but not
listening, 1 not a socket, 5 no permission to probe.
"""

_TYPES = (
    ("stream", socket.SOCK_STREAM),
    ("seqpacket", socket.SOCK_SEQPACKET),
    ("dgram", socket.SOCK_DGRAM),
)
#: Bounds on --watch: an interval, and how long it may run between keystrokes.
MIN_INTERVAL, MAX_INTERVAL = 0.1, 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import count_type

    parser.description = DESCRIPTION
    parser.add_argument("path", nargs="?", metavar="PATH", help="a socket file to examine")
    parser.add_argument(
        "-l", "--listening", action="store_true", help="only listening (and unconnected) sockets"
    )
    parser.add_argument(
        "--kind",
        type=_kinds,
        default=None,
        metavar="KINDS",
        help="comma-separated: unix, tcp, udp, raw, netlink (default: all)",
    )
    parser.add_argument(
        "--port", type=_port, metavar="N", help="tcp/udp sockets with N as local or peer port"
    )
    parser.add_argument("--pid", type=_pid, metavar="PID", help="sockets PID holds")
    parser.add_argument(
        "--path",
        dest="name",
        metavar="PATTERN",
        help="unix sockets whose name matches PATTERN (a path or @name; * ? [] as in the shell)",
    )
    parser.add_argument(
        "--pairs", action="store_true", help="connected pairs: both ends of each on one line"
    )
    parser.add_argument(
        "--watch", type=_interval, metavar="S", help="a new snapshot every S seconds"
    )
    parser.add_argument(
        "--count", type=count_type, metavar="N", help="with --watch: stop after N snapshots"
    )
    parser.add_argument("--json", action="store_true", help="JSON on stdout (one line a snapshot)")
    parser.add_argument("--trace", action="store_true", help="show the netlink calls on stderr")


def _kinds(text: str) -> tuple[str, ...]:
    from ..procnet import KINDS

    kinds = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown kind {(bad or [text])[0][:40]!r}; valid: {', '.join(KINDS)}"
        )
    return kinds


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 0 < int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, not {text[:20]!r}")
    return int(text)


def _pid(text: str) -> int:
    if not text.isdigit() or len(text) > 10 or not 0 < int(text) < 2**31:
        raise argparse.ArgumentTypeError(f"a pid is a positive number, not {text[:20]!r}")
    return int(text)


def _interval(text: str) -> float:
    try:
        value = float(text) if len(text) <= 32 else float("nan")
    except ValueError:
        value = float("nan")
    if not MIN_INTERVAL <= value <= MAX_INTERVAL:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"--watch takes seconds from {MIN_INTERVAL:g} to {MAX_INTERVAL:g}, not {text[:40]!r}"
        )
    return value


def run(args: argparse.Namespace) -> int:
    from .exitcodes import UsageError
    from .observe import Observer

    if args.path is not None and (args.watch or args.pairs or args.port or args.pid or args.name):
        raise UsageError(
            "inspect PATH with listing options",
            "--watch, --pairs, --port, --pid and --path filter the listing; give no PATH",
        )
    if args.count is not None and args.watch is None:
        raise UsageError("--count without --watch", "--count bounds the snapshots of --watch")
    with Observer(trace_lines=args.trace and not args.json, json_lines=args.trace and args.json):
        if args.path is not None:
            return _inspect_path(args)
        if args.watch is not None:
            return _watch(args)
        _show(args, _snapshot(args))
        return 0


# --------------------------------------------------------------------------
# the listing
# --------------------------------------------------------------------------


def _snapshot(args: argparse.Namespace) -> list[Entry]:
    """The sockets, from sock_diag (a kind without a handler: /proc/net), filtered."""
    from ..procnet import KINDS, read_sockets, socket_owners
    from ..sock_diag import sockets
    from .observe import say

    kinds = args.kind or KINDS
    entries, missing = sockets(kinds)
    if missing:
        say("fallback", "read from /proc/net (no sock_diag handler):", ",".join(missing))
        entries.extend(read_sockets(missing, owners=False))
    owners = socket_owners()
    for entry in entries:
        entry.procs = sorted(owners.get(entry.inode, []), key=lambda p: p.pid)
    keep = _filter(args)
    return [e for e in entries if keep(e)]


def _filter(args: argparse.Namespace) -> Callable[[Entry], bool]:
    import fnmatch

    def keep(e: Entry) -> bool:
        if args.listening and not e.listening:
            return False
        if args.port is not None:
            if e.port is not None:  # from sock_diag
                if args.port not in (e.port, e.peer_port):
                    return False
            elif not _port_in_text(e, args.port):  # from /proc/net
                return False
        if args.pid is not None and args.pid not in {p.pid for p in e.procs}:
            return False
        return args.name is None or (e.kind == "unix" and fnmatch.fnmatchcase(e.local, args.name))

    return keep


def _port_in_text(e: Entry, port: int) -> bool:
    """/proc/net entries carry ports only inside their address text."""
    if e.kind not in ("tcp", "udp"):
        return False
    return any(side.rpartition(":")[2] == str(port) for side in (e.local, e.peer))


def _show(args: argparse.Namespace, entries: list[Entry], *, when: float | None = None) -> None:
    if args.pairs:
        pairs = _pairs(entries)
        if args.json:
            doc: dict[str, Any] = {
                "pairs": [
                    {"netid": a.netid, "state": a.state, "a": a.to_dict(), "b": _pair_dict(b)}
                    for a, b in pairs
                ]
            }
        else:
            _print_pairs(pairs)
            return
    elif args.json:
        doc = {"sockets": [e.to_dict() for e in entries]}
    else:
        _print_table(entries)
        return
    if when is not None:
        doc["time"] = round(when, 3)
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def _pair_dict(b: Entry | int) -> dict[str, Any]:
    if isinstance(b, int):
        return {"inode": b, "visible": False}
    return b.to_dict()


def _procs(e: Entry) -> str:
    from ..escape import printable

    return ",".join(printable(str(p)) for p in e.procs)


def _queue(value: int | None) -> str:
    return "-" if value is None else str(value)


def _print_table(entries: list[Entry]) -> None:
    from ..escape import printable

    by_inode = {e.inode: e for e in entries if e.kind == "unix"}
    rows = [("Netid", "State", "Recv-Q", "Send-Q", "Local", "Peer", "Inode", "Process")]
    for e in entries:
        peer = printable(e.peer)
        if e.peer_inode is not None:
            other = by_inode.get(e.peer_inode)
            peer = f"{printable(other.local) if other else '*'} {e.peer_inode}"
        rows.append(
            (
                e.netid,
                e.state,
                _queue(e.recv_q),
                _queue(e.send_q),
                printable(e.local),
                peer,
                str(e.inode),
                _procs(e),
            )
        )
    _print_rows(rows)


def _print_rows(rows: Sequence[tuple[str, ...]]) -> None:
    last = len(rows[0]) - 1
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(last)]
    out = sys.stdout
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(last)]
        out.write("  ".join(cells) + "  " + row[last] + "\n")
    out.flush()


def _pairs(entries: list[Entry]) -> list[tuple[Entry, Entry | int]]:
    """Each connected pair once: unix by peer inode; tcp/udp by swapped addresses.

    A unix peer outside this network namespace (or closed meanwhile) comes
    back as its bare inode.
    """
    out: list[tuple[Entry, Entry | int]] = []
    unix = {e.inode: e for e in entries if e.kind == "unix"}
    for e in entries:
        if e.kind != "unix" or e.peer_inode is None:
            continue
        other = unix.get(e.peer_inode)
        if other is None:
            out.append((e, e.peer_inode))
        # each mutual pair once; a datagram socket connected to a receiver: one-sided
        elif e.inode < other.inode or other.peer_inode != e.inode:
            out.append((e, other))
    inet = {(e.netid, e.local, e.peer): e for e in entries if e.kind in ("tcp", "udp")}
    for (netid, local, peer), e in inet.items():
        if peer == "*" or e.state in ("LISTEN", "UNCONN"):
            continue
        other = inet.get((netid, peer, local))
        if other is not None and (local, peer) < (peer, local):
            out.append((e, other))
    return out


def _print_pairs(pairs: list[tuple[Entry, Entry | int]]) -> None:
    from ..escape import printable

    def side(e: Entry | int) -> str:
        if isinstance(e, int):
            return f"* {e} (not in this network namespace)"
        return f"{printable(e.local)} {e.inode} {_procs(e)}".rstrip()

    rows = [("Netid", "State", "Recv-Q", "Send-Q", "End A", "", "End B")]
    for a, b in pairs:
        queues = (_queue(a.recv_q), _queue(a.send_q))
        rows.append((a.netid, a.state, *queues, side(a), "<->", side(b)))
    _print_rows(rows)


def _watch(args: argparse.Namespace) -> int:
    """Snapshots every --watch seconds until --count of them, or Ctrl-C (exit 130)."""
    import time

    clear = sys.stdout.isatty() and not args.json
    shown = 0
    next_at = time.monotonic()
    while args.count is None or shown < args.count:
        if shown:
            time.sleep(max(0.0, next_at - time.monotonic()))  # a pace, not a synchronisation
        next_at = time.monotonic() + args.watch
        entries = _snapshot(args)
        when = time.time()
        if clear:
            sys.stdout.write("\x1b[H\x1b[2J")  # our own sequence; names are escaped
        if not args.json:
            stamp = time.strftime("%H:%M:%S", time.localtime(when))
            sys.stdout.write(f"-- {stamp}  {len(entries)} sockets (every {args.watch:g} s)\n")
        _show(args, entries, when=when)
        shown += 1
    return 0


# --------------------------------------------------------------------------
# one socket file
# --------------------------------------------------------------------------


def probe(path: str) -> dict[str, str]:
    """Connect to ``path`` with each type until one is accepted: type -> verdict.

    Verdicts: ``connected``; an errno name (ECONNREFUSED: nobody listens;
    EPROTOTYPE: another type; EAGAIN: a live listener whose backlog is full).
    Non-blocking, so a full backlog cannot hang the probe. Only for what
    the kernel's own list cannot say: a connect is a one-shot server's client.
    """
    from ..errors import SockwireError
    from ..sock import Socket

    verdicts: dict[str, str] = {}
    for name, sock_type in _TYPES:
        sock = Socket(socket.AF_UNIX, sock_type | socket.SOCK_NONBLOCK, label=path)
        try:
            sock.connect(path)
        except SockwireError as exc:
            verdicts[name] = exc.errno_name or type(exc).__name__
            if verdicts[name] != "EPROTOTYPE":
                break
        else:
            verdicts[name] = "connected"
            break
        finally:
            sock.close()
    return verdicts


def _holders(path: str, info: os.stat_result) -> list[Entry] | None:
    """The sockets of this network namespace bound to this file; None: the kernel cannot say."""
    from ..errors import SockwireError
    from ..procnet import socket_owners
    from ..sock_diag import bound_to, unix_sockets

    try:
        found = bound_to(info, unix_sockets())
    except SockwireError:
        return None
    if found:
        owners = socket_owners()
        for entry in found:
            entry.procs = sorted(owners.get(entry.inode, []), key=lambda p: p.pid)
    return found


def _inspect_path(args: argparse.Namespace) -> int:
    import stat

    from ..errors import file_kind
    from ..escape import exact, printable
    from .exitcodes import Exit

    path: str = args.path
    if len(path) > 4096 or "\0" in path:
        from .exitcodes import UsageError

        raise UsageError(f"PATH of {len(path)} characters", "give the path of a socket file")
    shown = printable(path)
    doc: dict[str, Any] = {"path": exact(path), "exists": False, "socket": False, "live": False}
    try:
        info = os.lstat(path)
    except OSError as exc:
        doc["error"] = os.strerror(exc.errno or 0)
        return _finish(args, doc, f"{shown}: {doc['error']}", Exit.REFUSED)
    doc["exists"] = True
    if not stat.S_ISSOCK(info.st_mode):
        kind = file_kind(info.st_mode)
        doc["kind"] = kind.removeprefix("a ")
        return _finish(args, doc, f"{shown}: {kind}, not a socket", Exit.IO)
    doc["socket"] = True
    doc["mode"] = f"{stat.S_IMODE(info.st_mode):04o}"
    doc["owner"] = info.st_uid
    lines = [f"  mode {doc['mode']} owner uid {info.st_uid}"]
    holders = _holders(path, info)
    doc["source"] = "sock_diag" if holders else "probe"
    doc["holders"] = [e.to_dict() for e in holders or []]
    for entry in holders or []:
        procs = ", ".join(f"{printable(p.command)} pid {p.pid}" for p in entry.procs)
        queue = ""
        if entry.state == "LISTEN" and entry.recv_q is not None:
            queue = f", {entry.recv_q} of {entry.send_q} pending"
        lines.append(
            f"  held by  {procs or 'a process we cannot see'}  "
            f"({entry.netid} {entry.state}{queue}, inode {entry.inode})"
        )
    if holders:
        return _kernel_verdict(args, doc, shown, holders, lines)
    lines.append(
        "  kernel   no socket of this network namespace is bound to it"
        if holders is not None
        else "  kernel   cannot say (no sock_diag): probing"
    )
    verdicts = probe(path)
    doc["probes"] = verdicts
    lines.append("  probe    " + "; ".join(f"{t}: {v}" for t, v in verdicts.items()))
    live_type = next((t for t, v in verdicts.items() if v in ("connected", "EAGAIN")), None)
    doc["live"] = live_type is not None
    doc["type"] = live_type
    if live_type is not None:
        elsewhere = " (held from another network namespace)" if holders is not None else ""
        head = f"{shown}: live {live_type} socket{elsewhere}"
        if verdicts[live_type] == "EAGAIN":
            head += " (its backlog is full)"
        code = Exit.OK
    elif "EACCES" in verdicts.values():
        head = f"{shown}: no permission to connect (EACCES)"
        code = Exit.PERMISSION
    else:
        head = f"{shown}: stale: nobody listens (a leftover socket file)"
        code = Exit.REFUSED
    return _finish(args, doc, "\n".join([head, *lines]), code)


def _kernel_verdict(
    args: argparse.Namespace,
    doc: dict[str, Any],
    shown: str,
    holders: list[Entry],
    lines: list[str],
) -> int:
    from .exitcodes import Exit

    first = next((e for e in holders if e.listening), holders[0])
    doc["type"] = first.type
    doc["live"] = first.listening
    if first.listening:
        head = f"{shown}: live {first.type} socket"
        full = (
            first.state == "LISTEN"
            and first.recv_q is not None
            and first.send_q is not None
            and first.recv_q > first.send_q
        )
        doc["backlog_full"] = full
        if full:
            head += " (its backlog is full)"
        code = Exit.OK
    else:
        head = (
            f"{shown}: held by a {first.type} socket that is not listening "
            "(connects are refused; not stale either)"
        )
        code = Exit.REFUSED
    lines.append("  kernel   sock_diag (nothing connected to it)")
    return _finish(args, doc, "\n".join([head, *lines]), code)


def _finish(args: argparse.Namespace, doc: dict[str, Any], text: str, code: int) -> int:
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return code
