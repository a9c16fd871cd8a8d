"""``sockwire relay LISTEN TARGET``: accept on one endpoint, connect each client to another."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..address import Endpoint
    from ..sock import Socket
    from .options import IoOptions

HELP = "accept on one endpoint and connect each client to another, both ways"

#: seconds a connect to TARGET may take when no --timeout is given
CONNECT_TIMEOUT = 10

DESCRIPTION = """\
Accept on LISTEN (or receive, for datagrams) and, for each client, connect
to TARGET; copy both ways until both sides have ended.

  unix <-> tcp, tcp <-> tcp, unix+seqpacket <-> unix+seqpacket (boundaries
  kept), udp <-> unix+dgram (one TARGET socket per sender, like a NAT).

Half-close is propagated: a side's EOF becomes shutdown(SHUT_WR) on the
other. Counts go to stderr on exit and on SIGUSR1 (kill -USR1 PID).
Between two byte streams, with nothing watched, bytes move with splice(2)
and never enter Python. A byte stream and a message socket need framing
on the stream side so boundaries survive: --framing len32 (or ?framing=
on that endpoint) makes each seqpacket message or datagram one frame, and
each frame one message. Two framed streams may differ (?framing=line on
one side, len32 on the other: translated). Connects to TARGET never hold up
other clients: each runs inside the loop, bounded by --timeout or TARGET's
?timeout= (default 10 s); a failed one closes that client, reported on
stderr. LISTEN may be fd:N or systemd: (a passed listener, or one passed
connection).

file:PATH and - (stdio) work as either side opposite a byte stream: as
TARGET, every client's bytes are appended to PATH (created mode 0600) or
written to stdout (stdin then goes to every client); as LISTEN, PATH (or
stdin) feeds one connection to TARGET, whose answer goes to stdout.
`relay unix:/a file:/tmp/log` records a stream; `relay file:/tmp/log
unix:/b` replays it.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import (
        FAILSAFE_HELP,
        add_family_options,
        add_io_options,
        add_server_options,
        count_type,
    )

    parser.description = DESCRIPTION + "\n" + FAILSAFE_HELP
    parser.add_argument(
        "listen", metavar="LISTEN", help="where clients come from (or file:PATH, - for stdin)"
    )
    parser.add_argument(
        "target",
        metavar="TARGET",
        help="where each client is connected to (or file:PATH to append to, - for stdout)",
    )
    add_server_options(parser, keep_open=False, max_clients=64)
    parser.add_argument(
        "--count",
        type=count_type,
        metavar="N",
        help="exit after N connections (datagram senders) have been relayed and closed",
    )
    add_io_options(parser)
    add_family_options(parser)


def run(args: argparse.Namespace) -> int:
    if args.listen.startswith("zmq+") or args.target.startswith("zmq+"):  # cli/zmq_io.py
        from .zmq_io import run_relay

        return run_relay(args)
    from .exitcodes import UsageError
    from .options import endpoint, io_options, server_endpoint
    from .relay_files import file_side, run_file_relay
    from .sockets import inherited

    opts = io_options(args)
    listen_file, target_file = file_side(args.listen), file_side(args.target)
    if listen_file is not None or target_file is not None:  # CLI-only sides, never addresses
        return run_file_relay(args, opts, listen_file or args.listen, target_file or args.target)
    listen_given = server_endpoint(args.listen, args)
    target_ep = endpoint(args.target, args)
    if target_ep.scheme in ("fd", "systemd"):
        raise UsageError(
            f"relay to {target_ep}",
            "an inherited socket cannot be connected anew for each client; give TARGET as an "
            "address (fd: and systemd: work as LISTEN)",
        )
    with inherited(listen_given) as (listen_ep, adopted):
        return _relay(args, opts, listen_ep, target_ep, adopted)


def _relay(
    args: argparse.Namespace,
    opts: IoOptions,
    listen_ep: Endpoint,
    target_ep: Endpoint,
    adopted: Socket | None,
) -> int:
    import socket

    from ..address import PACKET_FRAMINGS, STREAM_FRAMINGS
    from ..errors import SockwireError, UnsupportedError
    from ..secure import check_client
    from ..sock import Address, Peer
    from .admit import Gate
    from .dialer import Dialer, addresses
    from .exitcodes import UsageError
    from .observe import Observer, limited, line
    from .options import check_framing, packet_framing
    from .pump import (
        Acceptor,
        Conn,
        DatagramRelay,
        End,
        Flow,
        Loop,
        Stats,
        handled_signals,
        is_message,
        labelled,
    )
    from .secured import Guard, needed
    from .sockets import connect_socket, is_listening, server_socket

    for ep in (listen_ep, target_ep):
        if ep.scheme == "netlink":
            raise UnsupportedError(f"relay {ep}", "netlink talks to the kernel; nothing to relay")
    listen_msg, target_msg = is_message(listen_ep.type), is_message(target_ep.type)

    def side_framing(ep: Endpoint, msg: bool) -> str:
        # --framing names the framing of the sides it fits: a stream framing
        # the stream side(s), sockwire the packet side(s); ?framing= is per side
        flag = opts.framing
        fits = flag in PACKET_FRAMINGS if msg else flag in STREAM_FRAMINGS
        side = opts if fits or listen_msg == target_msg else opts._replace(framing="none")
        return packet_framing(ep, side) if msg else check_framing(ep, side)

    listen_framing = side_framing(listen_ep, listen_msg)
    target_framing = side_framing(target_ep, target_msg)
    kinds = [
        "messages" if msg else "frames" if framing != "none" else "bytes"
        for msg, framing in ((listen_msg, listen_framing), (target_msg, target_framing))
    ]
    if "bytes" in kinds and kinds[0] != kinds[1]:
        stream, other = (listen_ep, target_ep) if kinds[0] == "bytes" else (target_ep, listen_ep)
        raise UsageError(
            f"relay {listen_ep.display()} {target_ep.display()}",
            f"{stream.display()} is a byte stream and {other.display()} carries messages; "
            "their boundaries would be lost: give the stream side a framing "
            "(--framing len32, or ?framing= on that endpoint)",
        )
    message = kinds[0] != "bytes"

    datagram = listen_ep.type in (socket.SOCK_DGRAM, socket.SOCK_RAW)
    stats = Stats()
    forward, backward = "client->target", "target->client"
    # the fast path: two unframed byte streams, nobody watching
    use_splice = not (opts.watching or opts.peek or opts.send_flags) and not message

    def report(text: str) -> None:
        limited("report", f"relay: {text}", "report")

    def summary() -> None:
        line("summary", f"relay: {stats.summary()}", **stats.to_dict())

    # every connect to TARGET is bounded: by --timeout/?timeout=, else CONNECT_TIMEOUT
    connect_timeout = target_ep.get("timeout") or float(CONNECT_TIMEOUT)
    dial_ep = target_ep
    if target_ep.option("timeout") is None:
        dial_ep = target_ep.with_options(timeout=CONNECT_TIMEOUT)

    listen_guard = Guard(listen_ep, report=report, raise_errors=False)
    target_guard = Guard(target_ep, report=report, raise_errors=False)
    if needed(target_ep):
        check_client(target_ep)  # a missing key file fails now, not at each client

    def open_target() -> Socket:
        """A datagram session's socket (connect on a datagram socket never waits)."""
        sock = target_guard.connected(connect_socket(dial_ep, tls=False), target_ep.display())
        sock.setblocking(False)
        return sock

    closed = [0]
    active: list[Conn] = []
    dialing: dict[Dialer, Socket] = {}  # connects to TARGET under way, and their clients
    acceptor: Acceptor | None = None
    observer = Observer(trace_lines=opts.trace, hex_dump=opts.hex, json_lines=opts.json)
    targets: list[tuple[int, Address]] = []

    gate = Gate(args.max_clients, timeout=opts.timeout, stats=stats, report=report)

    def on_close(conn: Conn) -> None:
        active.remove(conn)
        gate.remove(conn)
        closed[0] += 1
        if acceptor is not None:
            acceptor.resume()

    def on_accept(accepted: Socket, peer: Peer) -> None:
        label = f"{peer} -> {target_ep.display()}"
        client = listen_guard.accepted(accepted, peer)
        if client is None:  # refused by ?allowed_uids=/?allowed_gids= (and logged)
            closed[0] += 1
            return
        if not targets:
            targets.extend(addresses(dial_ep))  # once: getaddrinfo blocks

        def connected(target: Socket) -> None:
            dialing.pop(dialer, None)
            try:
                target = target_guard.connected_later(target, target_ep.display())
            except SockwireError as exc:
                failed(exc)
                return
            relay_pair(label, client, target)

        def failed(exc: SockwireError) -> None:
            dialing.pop(dialer, None)
            report(labelled(str(peer), exc))  # the error names TARGET
            client.close()
            closed[0] += 1
            if acceptor is not None:
                acceptor.resume()

        dialer = Dialer(
            dial_ep,
            targets,
            timeout=connect_timeout,
            on_connected=connected,
            on_failed=failed,
            watch=client,
        )
        dialing[dialer] = client
        loop.add(dialer)
        dialer.start()

    def splice_into(dst: Socket) -> bool:
        """splice(2) toward ``dst``, or read/send through one buffer?

        Measured on Linux 6.18 (unix -> relay -> tcp, 1 GiB, paired rounds
        against socat -b 262144): splicing into TCP sends each 4 KiB page as
        its own fragment (skb_splice_from_iter), and relay and receiver both
        paid for it: 0.77x socat, where read + send through a 256 KiB buffer
        gave 0.94x. Into a UNIX stream splice stays ahead (1.0x socat, the
        buffer 0.65x). So: splice toward UNIX sockets, copy toward TCP.
        """
        return dst.family == socket.AF_UNIX

    def relay_pair(label: str, client: Socket, target: Socket) -> None:
        target.setblocking(False)
        a = End(label, sock=client, opts=opts, framing=listen_framing)
        b = End(target_ep.display(), sock=target, opts=opts, framing=target_framing)
        flows = [
            Flow(
                a,
                b,
                opts,
                direction=forward,
                stats=stats,
                message=message,
                required=not a.datagram,
                use_splice=use_splice and splice_into(target),
                fast=use_splice,
            ),
            Flow(
                b,
                a,
                opts,
                direction=backward,
                stats=stats,
                message=message,
                required=not b.datagram,
                use_splice=use_splice and splice_into(client),
                fast=use_splice,
            ),
        ]
        conn = Conn(
            label,
            flows,
            [client, target],
            stats,
            raise_errors=False,
        )
        conn.report = report
        conn.on_close = on_close
        active.append(conn)
        gate.add(conn)  # its first-bytes, idle and eviction rules (cli/admit.py)
        loop.add(conn)

    with observer, handled_signals():
        loop = Loop(observer, on_usr1=summary)
        loop.add(gate)
        try:
            if adopted is not None and not datagram and not is_listening(adopted):
                # an inherited connection (inetd style, systemd Accept=yes): relay it, then exit
                adopted.setblocking(False)
                on_accept(adopted, adopted.peer())
                loop.run(lambda: closed[0] >= 1)
                return 0
            with server_socket(listen_ep, passcred=False, adopted=adopted) as listener:
                listener.setblocking(False)
                if datagram:
                    relay = DatagramRelay(
                        listener,
                        open_target,
                        opts,
                        stats,
                        max_sessions=args.max_clients,
                        idle=opts.timeout,
                        names=(forward, backward),
                        target_framing=target_framing,
                        listen_framing=listen_framing,
                    )
                    loop.add(relay)
                    loop.run(lambda: args.count is not None and stats.connections >= args.count)
                    return 0
                acceptor = Acceptor(
                    listener,
                    on_accept,
                    room=lambda: len(active) + len(dialing) < args.max_clients,
                    accepts_left=args.count,
                    gate=gate,
                )
                loop.add(acceptor)
                loop.run(lambda: args.count is not None and closed[0] >= args.count)
                return 0
        finally:
            loop.close()
            for client in dialing.values():
                client.close()
            listen_guard.close()
            target_guard.close()
            summary()
