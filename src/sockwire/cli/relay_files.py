"""``file:PATH`` and ``-`` as sides of ``relay``: record a stream, replay one, or use stdio.

These are command-line endpoints, not sockets, so they are recognised here,
before the rest of the string goes to :mod:`sockwire.address`:

* TARGET ``file:PATH``: every client's bytes are appended to PATH (created
  mode 0600; clients at once interleave by reads); nothing goes back, and
  a client's EOF ends its connection. ``sockwire relay unix:/a file:/log``
  records a stream.
* TARGET ``-``: every client's bytes go to stdout, and stdin goes to every
  client (as ``listen -k --max-clients N`` does).
* LISTEN ``file:PATH`` or ``-``: no accepting: one connection to TARGET,
  fed from the file (or stdin) and then half-closed; what TARGET sends goes
  to stdout. ``sockwire relay file:/log unix:/b`` replays a recording.

They carry bytes: the other side must be a byte stream (a seqpacket or
datagram side would lose its boundaries). Files are opened with
O_NOFOLLOW (a link someone else planted in /tmp is refused, not followed)
and must be regular files or character devices (``/dev/null``); bytes go
through the pump's buffer (no splice: it refuses files opened to append).
"""

from __future__ import annotations

import argparse
import errno as _errno
import os
import stat
from collections.abc import Callable
from typing import NamedTuple

from ..address import Endpoint
from ..errors import NotFound, PermissionDenied, SockwireError
from ..sock import Peer, Socket
from .admit import Gate
from .observe import Observer, limited, line, say
from .options import IoOptions, check_framing
from .pump import Acceptor, Conn, End, Flow, Loop, Stats, StdinHub, handled_signals, is_message
from .secured import Guard
from .sockets import connect_socket, server_socket

__all__ = ["FileSide", "file_side", "run_file_relay"]

_MAX_PATH = 4096


class FileSide(NamedTuple):
    """``file:PATH`` (``path`` set) or ``-`` (stdio, ``path`` None)."""

    path: str | None

    def display(self) -> str:
        return "-" if self.path is None else f"file:{self.path}"


def file_side(text: str) -> FileSide | None:
    """``-`` or ``file:PATH`` as a FileSide; anything else is an endpoint (None)."""
    from .exitcodes import UsageError

    if text == "-":
        return FileSide(None)
    if not text.startswith("file:"):
        return None
    path = text[len("file:") :]
    if not path or "\0" in path or len(path) > _MAX_PATH:
        raise UsageError(
            f"relay side {text[:60]!r}", "give file:PATH with a path (at most 4096 bytes)"
        )
    return FileSide(path)


def _open(side: FileSide, *, write: bool) -> int:
    """The file's descriptor: appended to (created 0600) when ``write``, else read."""
    assert side.path is not None
    flags = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY
    flags |= os.O_WRONLY | os.O_APPEND | os.O_CREAT if write else os.O_RDONLY
    from .exitcodes import UsageError

    not_a_file = UsageError(
        f"relay {side.display()}",
        "file: takes a regular file or a character device (/dev/null); for a socket "
        "give its endpoint (unix:PATH)",
    )
    try:
        fd = os.open(side.path, flags | os.O_NONBLOCK, 0o600)  # a FIFO must not hang us
    except OSError as exc:
        if exc.errno == _errno.ENXIO:  # a FIFO (or socket file) nobody reads
            raise not_a_file from exc
        raise _open_error(side, exc, write) from exc
    kind = os.fstat(fd).st_mode
    if not (stat.S_ISREG(kind) or stat.S_ISCHR(kind)):
        os.close(fd)
        raise not_a_file
    os.set_blocking(fd, True)
    say("open", side.display(), "append" if write else "read", f"fd={fd}")
    return fd


def _open_error(side: FileSide, exc: OSError, write: bool) -> SockwireError:
    what = f"open {side.display()}"
    code = exc.errno
    if code == _errno.ENOENT:
        hint = (
            "no such directory for the file"
            if write
            else "no such file (a LISTEN file is read; a TARGET file is created)"
        )
        return NotFound(what, hint, errno=code)
    if code == _errno.ELOOP:
        return PermissionDenied(
            what,
            "it is a symbolic link, and file: does not follow links (another user could "
            "point one anywhere): give the real path",
            errno=code,
        )
    if code in (_errno.EACCES, _errno.EPERM):
        return PermissionDenied(what, "no permission to open it; check its mode", errno=code)
    return SockwireError(what, exc.strerror or str(exc), errno=code)


def run_file_relay(
    args: argparse.Namespace,
    opts: IoOptions,
    listen: FileSide | str,
    target: FileSide | str,
) -> int:
    """``relay`` with a ``file:``/``-`` side; the other is an endpoint string."""
    from .exitcodes import UsageError
    from .options import endpoint, server_endpoint

    if isinstance(listen, FileSide) and isinstance(target, FileSide):
        raise UsageError(
            f"relay {listen.display()} {target.display()}",
            "one side must be a socket endpoint (between files, use cp or cat)",
        )
    stream_text = target if isinstance(listen, FileSide) else listen
    assert isinstance(stream_text, str)
    if isinstance(listen, FileSide):
        ep = endpoint(stream_text, args)
    else:
        ep = server_endpoint(stream_text, args)
    side = listen if isinstance(listen, FileSide) else target
    assert isinstance(side, FileSide)
    if ep.scheme in ("fd", "systemd", "netlink") or is_message(ep.type):
        raise UsageError(
            f"relay {listen if isinstance(listen, str) else listen.display()} "
            f"{target if isinstance(target, str) else target.display()}",
            f"{side.display()} carries bytes: the other side must be a byte stream "
            "(unix:, tcp://, tls+tcp://); a message socket would lose its boundaries",
        )
    if check_framing(ep, opts) != "none":
        raise UsageError(
            f"--framing with {side.display()}", "file: and - carry bytes as they come"
        )
    stats = Stats()

    def report(text: str) -> None:
        limited("report", f"relay: {text}", "report")

    observer = Observer(trace_lines=opts.trace, hex_dump=opts.hex, json_lines=opts.json)
    with observer, handled_signals():
        loop = Loop(
            observer,
            on_usr1=lambda: line("summary", f"relay: {stats.summary()}", **stats.to_dict()),
        )
        stdio = 0 if isinstance(listen, FileSide) else 1
        fd = stdio if side.path is None else _open(side, write=not isinstance(listen, FileSide))
        try:
            if isinstance(listen, FileSide):
                return _from_file(opts, listen, fd, ep, loop, stats)
            return _to_file(args, opts, ep, side, fd, loop, stats, report)
        finally:
            loop.close()
            if fd != stdio:
                os.close(fd)
            line("summary", f"relay: {stats.summary()}", **stats.to_dict())


def _from_file(
    opts: IoOptions,
    source: FileSide,
    fd: int,
    ep: Endpoint,
    loop: Loop,
    stats: Stats,
) -> int:
    """LISTEN is a file or stdin: one connection to TARGET, fed from it."""
    guard = Guard(ep, report=lambda text: None, raise_errors=True)
    try:
        sock = guard.connected(connect_socket(ep, tls=False), ep.display())
        sock.setblocking(False)
        net = End(ep.display(), sock=sock, opts=opts)
        feed = End(source.display(), fd=fd, opts=opts)
        stdout = End("stdout", fd=1, opts=opts)
        into = "stdin->target" if source.path is None else "file->target"
        flows = [
            Flow(feed, net, opts, direction=into, stats=stats, message=False),
            Flow(
                net,
                stdout,
                opts,
                direction="target->stdout",
                stats=stats,
                message=False,
                on_eof="none",
            ),
        ]
        conn = Conn(
            f"{source.display()} -> {ep.display()}",
            flows,
            [sock],
            stats,
            raise_errors=True,
            idle=opts.timeout,
        )
        loop.add(conn)
        loop.run(lambda: conn.done)
        guard.check()
        return 0
    finally:
        guard.close()


def _to_file(
    args: argparse.Namespace,
    opts: IoOptions,
    ep: Endpoint,
    sink: FileSide,
    fd: int,
    loop: Loop,
    stats: Stats,
    report: Callable[[str], None],
) -> int:
    """TARGET is a file (appended) or stdout (and stdin to every client)."""
    guard = Guard(ep, report=report, raise_errors=False)
    hub = StdinHub(opts) if sink.path is None else None
    if hub is not None:
        loop.add(hub)
    out = End(sink.display(), fd=fd, opts=opts)
    active: list[Conn] = []
    closed = [0]
    acceptor: Acceptor | None = None
    gate = Gate(args.max_clients, timeout=opts.timeout, stats=stats, report=report)
    loop.add(gate)

    def on_close(conn: Conn) -> None:
        active.remove(conn)
        gate.remove(conn)
        closed[0] += 1
        if acceptor is not None:
            acceptor.resume()

    def on_accept(accepted: Socket, peer: Peer) -> None:
        client = guard.accepted(accepted, peer)
        if client is None:  # refused by ?allowed_uids=/?allowed_gids= (and logged)
            closed[0] += 1
            return
        client.setblocking(False)
        label = f"{peer} -> {sink.display()}"
        end = End(label, sock=client, opts=opts)
        into = "client->stdout" if sink.path is None else "client->file"
        flows = [Flow(end, out, opts, direction=into, stats=stats, message=False, on_eof="none")]
        if hub is not None:
            to_client = Flow(
                None, end, opts, direction="stdin->client", stats=stats, message=False
            )
            to_client.required = False
            flows.append(to_client)
            hub.subscribe(to_client)
        conn = Conn(label, flows, [client], stats, raise_errors=False)
        conn.report = report

        def closing(c: Conn) -> None:
            if hub is not None and len(flows) > 1:
                hub.unsubscribe(flows[1])
            on_close(c)

        conn.on_close = closing
        active.append(conn)
        gate.add(conn)  # its first-bytes, idle and eviction rules (cli/admit.py)
        loop.add(conn)

    try:
        with server_socket(ep) as listener:
            listener.setblocking(False)
            acceptor = Acceptor(
                listener,
                on_accept,
                room=lambda: len(active) < args.max_clients,
                accepts_left=args.count,
                gate=gate,
            )
            loop.add(acceptor)
            loop.run(lambda: args.count is not None and closed[0] >= args.count)
            return 0
    finally:
        loop.close()
        guard.close()
