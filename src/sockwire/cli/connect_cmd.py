"""``sockwire connect ENDPOINT``: bridge stdin/stdout to a socket, like ``nc``."""

from __future__ import annotations

import argparse

HELP = "connect, and bridge stdin/stdout to it, like nc"

DESCRIPTION = """\
Connect to ENDPOINT and copy stdin to it and what it sends to stdout.

Streams and seqpacket: EOF on stdin sends shutdown(SHUT_WR) and output
continues until the peer's EOF (--close-on-eof: close at once). If the peer
ends first, stdin keeps going to it (it may only have half-closed); a peer
that closed entirely ends the connection normally. Datagrams: one datagram
per stdin line (--split read: per read); after stdin's EOF, answers are
awaited for --linger seconds. With --framing F, stdin lines (or reads)
become frames and each frame received is written out followed by a
newline (--format raw: as it is).

After stdin's EOF: --quit-after S ends the connection at most S seconds
later (socat -t, nc -q); --no-shutdown sends no shutdown(SHUT_WR) (nc
without -N). -C sends line ends as CRLF. --exec CMD / --system LINE hand the
connected socket to a program as its stdin and stdout instead (nc -e/-c);
the command then exits with the program's status.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import add_bridge_options, add_family_options, add_io_options, add_zmq_options

    parser.description = DESCRIPTION
    parser.add_argument(
        "endpoint", metavar="ENDPOINT", help="e.g. unix:/tmp/x.sock, udp://127.0.0.1:7001"
    )
    add_bridge_options(parser)
    add_io_options(parser)
    add_family_options(parser)
    add_zmq_options(parser)


def run(args: argparse.Namespace) -> int:
    if args.endpoint.startswith("zmq+"):  # ZeroMQ: cli/zmq_io.py
        from .zmq_io import run_bridge as run_zmq

        return run_zmq(args, bind=False)
    from .bridge import run_bridge

    return run_bridge(args, listen=False)
