"""stdin/stdout <-> one socket: the engine of ``sockwire listen`` and ``sockwire connect``.

Half-close, for streams and seqpacket (the documented rule):

* EOF on stdin sends shutdown(SHUT_WR): the peer reads EOF, and output
  from the peer keeps flowing to stdout until the peer's own EOF.
* The connection ends when both directions have ended (as with OpenBSD
  nc). If the peer's EOF comes first, stdin keeps going to it: it may only
  have half-closed and still read.
* A peer that closed entirely ends the connection normally (exit 0): a
  UNIX peer at once (poll reports POLLHUP), a TCP peer at our next send
  (EPIPE/ECONNRESET), since TCP cannot tell a close from a half-close.
* ``--close-on-eof`` closes the connection as soon as stdin ends.

Datagrams: each stdin line (``--split line``, the default) or each read
(``--split read``) is one datagram; each datagram received is written to
stdout as it came. A client waits ``--linger`` seconds after stdin's EOF for
late answers (datagrams have no EOF). A datagram listener answers the last
sender; until a named sender has spoken, stdin is not read.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from collections.abc import Callable

from ..address import Endpoint
from ..errors import SockwireError
from ..sock import Peer, Socket
from .admit import Gate
from .children import ExecSpec, exec_spec
from .observe import Observer, limited, say
from .options import (
    IoOptions,
    check_framing,
    endpoint,
    io_options,
    packet_framing,
    server_endpoint,
)
from .pump import Acceptor, Conn, End, Flow, Item, Loop, Stats, StdinHub, handled_signals
from .secured import Guard, Handshake
from .sockets import connect_socket, inherited, is_listening, is_unix, server_socket

__all__ = ["run_bridge"]


def _report(text: str) -> None:
    limited("report", text, "report")


def _observer(opts: IoOptions) -> Observer:
    return Observer(trace_lines=opts.trace, hex_dump=opts.hex, json_lines=opts.json)


def run_bridge(args: argparse.Namespace, *, listen: bool) -> int:
    opts = io_options(args)
    given = server_endpoint(args.endpoint, args) if listen else endpoint(args.endpoint, args)
    with _observer(opts) as observer, handled_signals(), inherited(given) as (ep, adopted):
        message = ep.type in (socket.SOCK_DGRAM, socket.SOCK_SEQPACKET, socket.SOCK_RAW)
        framing = packet_framing(ep, opts) if message else check_framing(ep, opts)
        stats = Stats()
        datagram = ep.type in (socket.SOCK_DGRAM, socket.SOCK_RAW)
        spec = exec_spec(args.exec, args.system, args.pty)
        _check_eof_policy(args, ep, spec, framing, datagram)
        loop = Loop(observer)
        guard = Guard(ep, report=_report, raise_errors=not (listen and args.keep_open))
        try:
            if spec is not None:
                from .spawn import run_children

                return run_children(args, opts, ep, adopted, loop, guard, spec, listen=listen)
            hub = StdinHub(opts, split=args.split, crlf=args.crlf)
            loop.add(hub)
            # the descriptors themselves: data never goes through sys.stdout's buffer
            fmt = args.format or ("line" if framing != "none" else "raw")
            stdout = End("stdout", fd=1, opts=opts, line_end=fmt == "line")
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
            if not listen or (adopted is not None and not datagram and not is_listening(adopted)):
                # a client; or an inherited connection (inetd style): the one to serve
                sock = guard.connected(connect_socket(ep, adopted, tls=False), ep.display())
                return _client(args, opts, ep.display(), sock, hub, stdout, loop, framing, guard)
            if datagram:
                return _datagram_server(args, opts, ep, hub, stdout, loop, stats, adopted, framing)
            return _stream_server(
                args, opts, ep, hub, stdout, loop, stats, adopted, framing, guard
            )
        finally:
            loop.close()
            guard.close()


def _check_eof_policy(
    args: argparse.Namespace, ep: Endpoint, spec: ExecSpec | None, framing: str, datagram: bool
) -> None:
    """The stdin options against each other and against --exec/--system (usage errors)."""
    from .exitcodes import UsageError

    given = [
        name
        for name, value in (
            ("--close-on-eof", args.close_on_eof),
            ("--quit-after", args.quit_after is not None),
            ("--no-shutdown", args.no_shutdown),
            ("--crlf", args.crlf),
        )
        if value
    ]
    if spec is not None:
        what = "--exec" if args.exec is not None else "--system"
        if given or framing != "none":
            raise UsageError(
                f"{what} with {(given or ['--framing'])[0]}",
                "the program reads and writes the socket itself; the stdin options and "
                "--framing are for sockwire's own stdin/stdout",
            )
        if datagram:
            raise UsageError(
                f"{what} on {ep.display()}",
                "a program per connection needs connections: use a stream or seqpacket endpoint",
            )
        if spec.pty and not ep.is_stream:
            raise UsageError(
                f"--pty on {ep.display()}",
                "a terminal carries bytes, not messages: use a stream endpoint",
            )
        return
    if args.close_on_eof and (args.no_shutdown or args.quit_after is not None):
        other = "--no-shutdown" if args.no_shutdown else "--quit-after"
        raise UsageError(
            f"--close-on-eof with {other}",
            "--close-on-eof already ends the connection at stdin's EOF (as --quit-after 0)",
        )


def _connection(
    args: argparse.Namespace,
    opts: IoOptions,
    label: str,
    sock: Socket,
    hub: StdinHub,
    stdout: End,
    stats: Stats,
    *,
    raise_errors: bool,
    framing: str = "none",
    gated: bool = False,
) -> Conn:
    """The two flows of one connection; ``gated``: a ``listen -k`` client, whose
    deadlines are its server's :class:`~sockwire.cli.admit.Gate`'s, not ``--timeout``'s."""
    sock.setblocking(False)
    end = End(label, sock=sock, opts=opts, framing=framing)
    end.strip_line_ends = end.framed and args.split == "line"
    message = end.message
    to_peer = Flow(
        None,
        end,
        opts,
        direction="stdin->peer",
        stats=stats,
        message=message,
        on_eof="close" if args.close_on_eof else "none" if args.no_shutdown else "shutdown",
    )
    from_peer = Flow(
        end,
        stdout,
        opts,
        direction="peer->stdout",
        stats=stats,
        message=message,
        on_eof="none",
        required=not end.datagram,
    )
    conn = Conn(
        label,
        [to_peer, from_peer],
        [sock],
        stats,
        raise_errors=raise_errors,
        idle=None if gated else opts.timeout,
        linger=args.linger if end.datagram and args.quit_after is None else 0.0,
        report=_report,
        quit_after=args.quit_after,
        quit_flow=to_peer,
    )
    hub.subscribe(to_peer)
    conn.on_close = lambda _c: hub.unsubscribe(to_peer)
    return conn


def _client(
    args: argparse.Namespace,
    opts: IoOptions,
    label: str,
    sock: Socket,
    hub: StdinHub,
    stdout: End,
    loop: Loop,
    framing: str,
    guard: Guard,
) -> int:
    conn = _connection(
        args, opts, label, sock, hub, stdout, Stats(), raise_errors=True, framing=framing
    )
    loop.add(conn)
    try:
        loop.run(lambda: conn.done)
    except SockwireError:
        # a TLS tunnel that failed closed the pump's end: its reason (an alert,
        # a cut-short stream) is the error to report, not the pump's EPIPE
        guard.check()
        raise
    guard.check()
    return 0


def _datagram_server(
    args: argparse.Namespace,
    opts: IoOptions,
    ep: Endpoint,
    hub: StdinHub,
    stdout: End,
    loop: Loop,
    stats: Stats,
    adopted: Socket | None,
    framing: str,
) -> int:
    unix = is_unix(ep, adopted)
    with server_socket(ep, passcred=unix, adopted=adopted) as sock:
        sock.setblocking(False)
        label = ep.display()
        inbound = End(label, sock=sock, opts=opts, creds=unix, framing=framing)
        outbound = End(label, sock=sock, opts=opts, framing=framing)
        outbound.needs_reply_to = True
        noted: list[bool] = []

        def remember(item: Item) -> None:
            if item.address is None and not noted:
                noted.append(True)
                say("unnamed", "the sender has no name: stdin waits for a named sender")
            if item.address is not None:
                outbound.reply_to = item.address

        from_peers = Flow(
            inbound,
            stdout,
            opts,
            direction="peers->stdout",
            stats=stats,
            message=True,
            on_eof="none",
            on_item=remember,
        )
        to_peer = Flow(
            None,
            outbound,
            opts,
            direction="stdin->last sender",
            stats=stats,
            message=True,
            on_eof="none",
            required=False,
        )
        conn = Conn(
            label,
            [from_peers, to_peer],
            [],
            stats,
            raise_errors=True,
            idle=opts.timeout,
            quit_after=args.quit_after,
            quit_flow=to_peer,
        )
        hub.subscribe(to_peer)
        loop.add(conn)
        loop.run(lambda: conn.done)
    return 0


def _stream_server(
    args: argparse.Namespace,
    opts: IoOptions,
    ep: Endpoint,
    hub: StdinHub,
    stdout: End,
    loop: Loop,
    stats: Stats,
    adopted: Socket | None,
    framing: str,
    guard: Guard,
) -> int:
    keep_open = bool(args.keep_open)
    active: list[Conn] = []
    handshakes: list[Handshake] = []
    pending: dict[Handshake, _Handshaking] = {}  # -k: the gate's view of the handshakes
    # -k: a server that goes on fails safe (cli/admit.py); a one-shot listen waits for its
    # clients as nc -l does
    gate = Gate(args.max_clients, timeout=opts.timeout, stats=stats, report=_report)
    if keep_open:
        loop.add(gate)
    with server_socket(ep, adopted=adopted) as listener:
        listener.setblocking(False)

        def on_accept(accepted: Socket, peer: Peer) -> None:
            if ep.scheme == "tls+tcp":
                # a client counts (and gets stdin) once its handshake is done

                def established(sock: Socket) -> None:
                    settle(handshake, failed=False)
                    serve(sock, peer)

                handshake = guard.handshake(
                    accepted,
                    peer,
                    on_client=established,
                    on_refused=lambda: settle(handshake, failed=True),
                )
                handshakes.append(handshake)
                if keep_open:  # one that never finishes its handshake holds a slot too
                    member = _Handshaking(f"{ep.display()} peer {peer}", handshake, evicted)
                    pending[handshake] = member
                    gate.add(member)
                loop.add(handshake)
                return
            sock = guard.accepted(accepted, peer)
            if sock is None:
                return  # refused by ?allowed_uids=/?allowed_gids= (and logged)
            serve(sock, peer)

        def settle(handshake: Handshake, *, failed: bool) -> None:
            member = pending.pop(handshake, None)
            if member is not None:
                gate.remove(member)
            if handshake in handshakes:
                handshakes.remove(handshake)
            if failed and acceptor.accepts_left is not None:
                acceptor.accepts_left += 1  # not a client: wait for the next one
            acceptor.resume()

        def evicted(member: _Handshaking) -> None:
            """The gate told a handshake to go: its slot is free now (its socket closes at
            the loop's next turn)."""
            pending.pop(member.handshake, None)
            gate.remove(member)
            if member.handshake in handshakes:
                handshakes.remove(member.handshake)
            acceptor.resume()

        def serve(sock: Socket, peer: Peer) -> None:
            conn = _connection(
                args,
                opts,
                f"{ep.display()} peer {peer}",
                sock,
                hub,
                stdout,
                stats,
                raise_errors=not keep_open,
                framing=framing,
                gated=keep_open,
            )
            unsubscribe = conn.on_close

            def on_close(c: Conn) -> None:
                if unsubscribe is not None:
                    unsubscribe(c)
                if c in active:
                    active.remove(c)
                gate.remove(c)
                acceptor.resume()

            conn.on_close = on_close
            active.append(conn)
            if keep_open:
                gate.add(conn)
            loop.add(conn)

        acceptor = Acceptor(
            listener,
            on_accept,
            room=lambda: len(active) + len(handshakes) < args.max_clients,
            # without -k: exactly --max-clients clients (default 1), served at once, then exit
            accepts_left=None if keep_open else args.max_clients,
            idle=opts.timeout,
            gate=gate if keep_open else None,
        )
        loop.add(acceptor)
        loop.run(
            lambda: not keep_open and acceptor.accepts_left == 0 and not active and not handshakes
        )
        guard.check()
    return 0


class _Handshaking:
    """A TLS client of ``listen -k`` before its handshake is done, as the server's gate
    sees it (:class:`~sockwire.cli.admit.Member`): no application data has moved, so
    it may be evicted for a waiting client after the first-bytes grace, and it
    expires at the first-bytes deadline. ``on_evicted(self)`` frees its slot."""

    def __init__(
        self, label: str, handshake: Handshake, on_evicted: Callable[[_Handshaking], None]
    ) -> None:
        self.label = label
        self.handshake = handshake
        self.on_evicted = on_evicted

    def last_moved(self) -> float | None:
        return None

    def bytes_moved(self) -> int:
        return 0

    def evict(self, reason: str) -> None:
        self.handshake.evict()
        self.on_evicted(self)
