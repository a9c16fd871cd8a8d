"""``sockwire echo ENDPOINT``: send back whatever arrives, for testing peers."""

from __future__ import annotations

import argparse

HELP = "an echo server for any endpoint, for testing peers"

DESCRIPTION = """\
Echo on ENDPOINT: streams get their bytes back (and, after their EOF, our
shutdown(SHUT_WR)); seqpacket connections and datagram senders get each
message back whole. With --framing, a stream's frames are decoded and each
message goes back as one frame (a bad frame ends that connection). Serves
--max-clients connections at once (default 64) until interrupted, or until
--count connections (datagrams: messages) have been served. Unnamed UNIX
datagram senders cannot be answered: their messages are counted and
dropped.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import FAILSAFE_HELP, add_io_options, add_server_options, count_type

    parser.description = DESCRIPTION + "\n" + FAILSAFE_HELP
    parser.add_argument("endpoint", metavar="ENDPOINT", help="e.g. udp://127.0.0.1:7001")
    add_server_options(parser, keep_open=False, max_clients=64)
    parser.add_argument(
        "--count",
        type=count_type,
        metavar="N",
        help="exit after N connections (datagrams: N messages) have been served",
    )
    add_io_options(parser)


def run(args: argparse.Namespace) -> int:
    import socket

    from ..sock import Peer, Socket
    from .admit import Gate
    from .observe import Observer, limited, line
    from .options import check_framing, io_options, packet_framing, server_endpoint
    from .pump import Acceptor, Conn, DatagramEcho, End, Flow, Loop, Stats, handled_signals
    from .secured import Guard
    from .sockets import inherited, is_listening, is_unix, server_socket

    opts = io_options(args)
    given = server_endpoint(args.endpoint, args)
    stats = Stats()

    def report(text: str) -> None:
        limited("report", f"echo: {text}", "report")

    observer = Observer(trace_lines=opts.trace, hex_dump=opts.hex, json_lines=opts.json)
    with observer, handled_signals(), inherited(given) as (ep, adopted):
        framing = check_framing(ep, opts) if ep.is_stream else packet_framing(ep, opts)
        datagram = ep.type in (socket.SOCK_DGRAM, socket.SOCK_RAW)
        loop = Loop(
            observer,
            on_usr1=lambda: line("summary", f"echo: {stats.summary()}", **stats.to_dict()),
        )
        active: list[Conn] = []
        closed = [0]
        gate = Gate(args.max_clients, timeout=opts.timeout, stats=stats, report=report)

        def on_close(conn: Conn) -> None:
            active.remove(conn)
            gate.remove(conn)
            closed[0] += 1
            if acceptor is not None:
                acceptor.resume()

        acceptor: Acceptor | None = None

        guard = Guard(ep, report=report, raise_errors=False)

        def on_accept(accepted: Socket, peer: Peer) -> None:
            client = guard.accepted(accepted, peer)
            if client is None:  # refused by ?allowed_uids=/?allowed_gids= (and logged)
                closed[0] += 1
                return
            end = End(str(peer), sock=client, opts=opts, framing=framing)
            flow = Flow(end, end, opts, direction="echo", stats=stats, message=end.message)
            conn = Conn(
                f"echo {peer}",
                [flow],
                [client],
                stats,
                raise_errors=False,
                report=report,
                on_close=on_close,
            )
            active.append(conn)
            gate.add(conn)  # its first-bytes, idle and eviction rules (cli/admit.py)
            loop.add(conn)

        loop.add(gate)
        try:
            if adopted is not None and not datagram and not is_listening(adopted):
                # an inherited connection (inetd style, systemd Accept=yes): echo it, then exit
                adopted.setblocking(False)
                on_accept(adopted, adopted.peer())
                loop.run(lambda: closed[0] >= 1)
                return 0
            with server_socket(ep, passcred=is_unix(ep, adopted), adopted=adopted) as sock:
                sock.setblocking(False)
                if datagram:
                    echo = DatagramEcho(sock, opts, stats, limit=args.count, framing=framing)
                    loop.add(echo)
                    loop.run(lambda: echo.done)
                    return 0
                acceptor = Acceptor(
                    sock,
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
