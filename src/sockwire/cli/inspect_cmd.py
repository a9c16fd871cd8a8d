"""``sockwire inspect [PATH]``: the machine's sockets and their processes, like ``ss -xp``."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

HELP = "the machine's sockets with their processes, or whether a socket file is live"

DESCRIPTION = """\
Without PATH: the sockets of this network namespace from /proc/net (unix,
tcp, tcp6, udp, udp6, raw, netlink), each with the processes holding it
(found through /proc/PID/fd, as `ss -p` does; other users' processes need
root). --listening keeps listeners and unconnected datagram sockets.

With PATH: is this socket file live? The probe connects with each socket
type in turn (stream, seqpacket, dgram) until one is accepted: ECONNREFUSED
means nobody listens (a stale file), EPROTOTYPE another type. A stream or
seqpacket server sees the probe as one connection closed at once. Then
/proc/net/unix names the listener's process.
Exit status with PATH: 0 live, 3 stale or missing, 1 not a socket.
"""

_TYPES = (
    ("stream", socket.SOCK_STREAM),
    ("seqpacket", socket.SOCK_SEQPACKET),
    ("dgram", socket.SOCK_DGRAM),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("path", nargs="?", metavar="PATH", help="a socket file to probe")
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
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.add_argument("--trace", action="store_true", help="show the probe's calls on stderr")


def _kinds(text: str) -> tuple[str, ...]:
    from ..procnet import KINDS

    kinds = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown kind {(bad or [text])[0][:40]!r}; valid: {', '.join(KINDS)}"
        )
    return kinds


def run(args: argparse.Namespace) -> int:
    from .observe import Observer

    with Observer(trace_lines=args.trace):
        if args.path is not None:
            return _inspect_path(args)
        return _list(args)


def _list(args: argparse.Namespace) -> int:
    from ..procnet import KINDS, read_sockets

    entries = [e for e in read_sockets(args.kind or KINDS) if not args.listening or e.listening]
    if args.json:
        json.dump({"sockets": [e.to_dict() for e in entries]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    rows = [("Netid", "State", "Local", "Peer", "Process")]
    for e in entries:
        procs = ",".join(str(p) for p in e.procs)
        rows.append((e.netid, e.state, e.local, e.peer, procs))
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(4)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        print("  ".join(cells) + "  " + row[4])
    return 0


def probe(path: str) -> dict[str, str]:
    """Connect to ``path`` with each type until one is accepted: type -> verdict.

    Verdicts: ``connected``; an errno name (ECONNREFUSED: nobody listens;
    EPROTOTYPE: another type; EAGAIN: a live listener whose backlog is full).
    Non-blocking, so a full backlog cannot hang the probe.
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


def _inspect_path(args: argparse.Namespace) -> int:
    import stat

    from ..procnet import read_sockets
    from .exitcodes import Exit

    path: str = args.path
    if len(path) > 4096 or "\0" in path:
        from .exitcodes import UsageError

        raise UsageError(f"PATH of {len(path)} characters", "give the path of a socket file")
    doc: dict[str, Any] = {"path": path, "exists": False, "socket": False, "live": False}
    try:
        info = os.lstat(path)
    except OSError as exc:
        doc["error"] = os.strerror(exc.errno or 0)
        return _finish(args, doc, f"{path}: {doc['error']}", Exit.REFUSED)
    doc["exists"] = True
    if not stat.S_ISSOCK(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a socket"
        return _finish(args, doc, f"{path}: {kind}", Exit.IO)
    doc["socket"] = True
    doc["mode"] = f"{stat.S_IMODE(info.st_mode):04o}"
    doc["owner"] = info.st_uid
    verdicts = probe(path)
    doc["probes"] = verdicts
    live_type = next((t for t, v in verdicts.items() if v in ("connected", "EAGAIN")), None)
    doc["live"] = live_type is not None
    doc["type"] = live_type
    names = {path, os.path.abspath(path)}
    listeners = []
    for entry in read_sockets(("unix",)):
        if entry.local in names and (entry.listening or entry.type == "dgram"):
            listeners.append(entry)
            if doc["type"] is None:
                doc["type"] = entry.type
    doc["listeners"] = [e.to_dict() for e in listeners]
    probes = "; ".join(f"{t}: {v}" for t, v in verdicts.items())
    if live_type is not None:
        head = f"{path}: live {live_type} socket"
        if verdicts[live_type] == "EAGAIN":
            head += " (its backlog is full)"
        code = Exit.OK
    elif "EACCES" in verdicts.values():
        head = f"{path}: no permission to connect (EACCES)"
        code = Exit.PERMISSION
    else:
        head = f"{path}: stale: nobody listens (a leftover socket file)"
        code = Exit.REFUSED
    lines = [head, f"  mode {doc['mode']} owner uid {info.st_uid}", f"  probe  {probes}"]
    for entry in listeners:
        procs = ", ".join(f"{p.command} pid {p.pid}" for p in entry.procs) or "unknown process"
        lines.append(f"  held by  {procs}  ({entry.netid} {entry.state}, inode {entry.inode})")
    return _finish(args, doc, "\n".join(lines), code)


def _finish(args: argparse.Namespace, doc: dict[str, Any], text: str, code: int) -> int:
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(text)
    return code
