"""``sockwire scan tcp://HOST:PORTS``: which TCP ports answer, like ``nc -z``, concurrently."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ..sock import Socket

HELP = "which TCP ports of a host accept a connection, like nc -z, concurrently"

DESCRIPTION = """\
Connect to each port of tcp://HOST:PORTS (PORTS: 22, 8000-8010, or a list
of both: 22,80,8000-8010) without sending anything, many at once
(--concurrency), and say what each answered:

  open      the connection was accepted (then closed at once, as nc -z does)
  closed    refused (ECONNREFUSED: the host answered, nobody listens)
  filtered  no answer within --timeout (a firewall dropping, a full accept
            queue), or an ICMP error (EHOSTUNREACH, ENETUNREACH, EACCES)

Open ports are printed in port order as they are known (--all: every
port, with its errno); a summary goes to stderr. --json: one object per
port on stdout ({"host", "port", "state", "errno", "ms"}) and the summary
as a JSON line on stderr. Exit status: 0 when a port is open, 3 when none
is, 2 for a bad target.
"""

#: The most ports one scan takes: every TCP port once.
MAX_PORTS = 65535
#: ICMP errors and local refusals: something in the way, not "nobody listens".
_FILTERED = frozenset({"EHOSTUNREACH", "ENETUNREACH", "EACCES", "EPERM", "ETIMEDOUT"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import _bounded_int, _seconds

    parser.description = DESCRIPTION
    parser.add_argument("target", metavar="tcp://HOST:PORTS", help="e.g. tcp://127.0.0.1:1-1024")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="how long each port may take to answer (default 1 s)",
    )
    parser.add_argument(
        "--concurrency",
        type=_bounded_int(1, 1024, "concurrency"),
        default=100,
        metavar="N",
        help="connects in flight at once, 1 to 1024 (default 100)",
    )
    parser.add_argument(
        "-a", "--all", action="store_true", help="print closed and filtered ports too"
    )
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout, one a port")
    parser.add_argument("--trace", action="store_true", help="every socket call on stderr")


# --------------------------------------------------------------------------
# the target: sans-IO
# --------------------------------------------------------------------------


def parse_ports(text: str) -> list[int]:
    """``22,80,8000-8010`` -> the ports, in order, each once; ValueError names the bad part."""
    if len(text) > 4096:
        raise ValueError("the port list is over 4096 characters")
    ports: dict[int, None] = {}
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        first = _port(low, part)
        last = _port(high, part) if dash else first
        if last < first:
            raise ValueError(f"the range {part.strip()!r} runs backwards")
        ports.update(dict.fromkeys(range(first, last + 1)))
    return list(ports)


def _port(text: str, part: str) -> int:
    text = text.strip()
    if not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= MAX_PORTS:
        raise ValueError(
            f"{part.strip()[:20]!r} is not a port or a range of ports (1-65535; e.g. 8000-8010)"
        )
    return int(text)


def parse_target(text: str) -> tuple[str, list[int]]:
    """``tcp://HOST:PORTS`` -> (host, ports). Raises UsageError for anything else."""
    from .exitcodes import UsageError

    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() != "tcp":
        hint = "UDP has no handshake to tell open from filtered" if scheme == "udp" else ""
        raise UsageError(
            f"scan {text[:60]}",
            "give tcp://HOST:PORTS, e.g. tcp://127.0.0.1:1-1024" + (f" ({hint})" if hint else ""),
        )
    if rest.startswith("["):
        host, bracket, ports = rest[1:].partition("]")
        if not bracket or not ports.startswith(":"):
            raise UsageError(f"scan {text[:60]}", "an IPv6 host is written [::1]:PORTS")
        ports = ports[1:]
    else:
        host, colon, ports = rest.rpartition(":")
        if not colon:
            raise UsageError(f"scan {text[:60]}", "no ports: give tcp://HOST:PORTS")
    if not host or len(host) > 253:
        raise UsageError(f"scan {text[:60]}", "no host: give tcp://HOST:PORTS")
    try:
        return host, parse_ports(ports)
    except ValueError as exc:
        raise UsageError(f"scan {text[:60]}", str(exc)) from None


class Result(NamedTuple):  # not a dataclass: `scan --help` must not import dataclasses
    port: int
    state: str  # open, closed, filtered
    errno: str | None
    ms: float

    def to_dict(self, host: str) -> dict[str, Any]:
        return {
            "host": host,
            "port": self.port,
            "state": self.state,
            "errno": self.errno,
            "ms": self.ms,
        }


def verdict(errno_name: str | None) -> str:
    """What one connect's outcome says about the port."""
    if errno_name is None:
        return "open"
    if errno_name == "ECONNREFUSED":
        return "closed"
    if errno_name in _FILTERED:
        return "filtered"
    return "error"


class InOrder:
    """Results arrive in any order; hand them on in port order as soon as each can go."""

    def __init__(self, ports: list[int], emit: Callable[[Result], None]) -> None:
        self._order = iter(ports)
        self._next: int | None = next(self._order, None)
        self._waiting: dict[int, Result] = {}
        self._emit = emit

    def add(self, result: Result) -> None:
        self._waiting[result.port] = result
        while self._next is not None and self._next in self._waiting:
            self._emit(self._waiting.pop(self._next))
            self._next = next(self._order, None)


# --------------------------------------------------------------------------
# the scan: non-blocking connects under one poll(2)
# --------------------------------------------------------------------------


def scan(
    family: int,
    host: str,
    ports: list[int],
    *,
    concurrency: int,
    timeout: float,
) -> Iterator[Result]:
    """Each port's result as it is known (not in order); at most ``concurrency`` in flight.

    Every socket is closed before its result is yielded; out of descriptors
    (EMFILE), the scan waits for those in flight instead of failing, and
    fails only when none is.
    """
    import select
    import socket
    import time
    from collections import deque

    from ..errors import ResourceExhausted, SockwireError, WouldBlock, errno_name
    from ..sock import Socket

    todo = deque(ports)
    flying: dict[int, tuple[Socket, int, float]] = {}
    poller = select.poll()

    def done(fd: int, error: str | None) -> Result:
        sock, port, started = flying.pop(fd)
        poller.unregister(fd)
        sock.close()
        return Result(port, verdict(error), error, round((time.monotonic() - started) * 1000, 1))

    while todo or flying:
        while todo and len(flying) < concurrency:
            port = todo[0]
            try:
                sock = Socket(family, socket.SOCK_STREAM, label=f"{host}:{port}")
            except ResourceExhausted:
                if not flying:
                    raise
                concurrency = len(flying)  # as many as this process can hold
                break
            todo.popleft()
            started = time.monotonic()
            try:
                sock.setblocking(False)
                sock.connect((host, port))
            except WouldBlock:  # EINPROGRESS: the usual case
                flying[sock.fd] = (sock, port, started)
                poller.register(sock.fd, select.POLLOUT)
                continue
            except SockwireError as exc:  # refused at once (loopback), unreachable
                sock.close()
                yield Result(port, verdict(exc.errno_name), exc.errno_name, 0.0)
                continue
            except BaseException:
                sock.close()
                raise
            flying[sock.fd] = (sock, port, started)
            poller.register(sock.fd, select.POLLOUT)
            yield done(sock.fd, None)
        if not flying:
            continue
        oldest = min(started for _, _, started in flying.values())
        wait = max(0, int((oldest + timeout - time.monotonic()) * 1000) + 1)
        for fd, _ in poller.poll(wait):
            code = int(flying[fd][0].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            yield done(fd, errno_name(code) if code else None)
        now = time.monotonic()
        for fd in [fd for fd, (_, _, s) in flying.items() if now - s >= timeout]:
            yield done(fd, "ETIMEDOUT")


def run(args: argparse.Namespace) -> int:
    import json
    import socket
    import sys
    import time

    from ..errors import NotFound
    from .exitcodes import Exit
    from .observe import Observer, line

    host, ports = parse_target(args.target)
    try:
        family, _, _, _, address = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise NotFound(
            f"scan {host[:60]}", f"cannot resolve the host name ({exc.strerror})"
        ) from exc
    ip = str(address[0])
    shown = f"[{ip}]" if family == socket.AF_INET6 else ip
    counts = {"open": 0, "closed": 0, "filtered": 0, "error": 0}

    def emit(result: Result) -> None:
        counts[result.state] += 1
        if args.json:
            sys.stdout.write(json.dumps(result.to_dict(host)) + "\n")
        elif result.state == "open" or args.all:
            why = f" ({result.errno})" if result.errno else ""
            sys.stdout.write(f"tcp://{shown}:{result.port} {result.state}{why}\n")
        else:
            return
        sys.stdout.flush()

    started = time.monotonic()
    ordered = InOrder(ports, emit)
    with Observer(trace_lines=args.trace and not args.json, json_lines=args.trace and args.json):
        for result in scan(family, ip, ports, concurrency=args.concurrency, timeout=args.timeout):
            ordered.add(result)
    seconds = round(time.monotonic() - started, 2)
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n or state != "error")
    line(
        "summary",
        f"scanned {len(ports)} ports of {host} in {seconds:g} s: {summary}",
        host=host,
        ports=len(ports),
        seconds=seconds,
        **counts,
    )
    return Exit.OK if counts["open"] else Exit.REFUSED
