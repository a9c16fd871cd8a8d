"""``sockwire listen ENDPOINT``: wait for a peer and bridge it to stdin/stdout, like ``nc -l``."""

from __future__ import annotations

import argparse

HELP = "accept a peer (or receive datagrams) and bridge it to stdin/stdout, like nc -l"

DESCRIPTION = """\
Listen on ENDPOINT and copy stdin to the peer and the peer to stdout.

Streams and seqpacket: one client, then exit (--max-clients N: N clients,
served at once as they come, stdin going to each, then exit; --keep-open:
client after client, at most --max-clients at once). On tls+tcp a client
counts once its handshake is done: a failed one is logged and the listener
goes on. EOF on stdin
sends shutdown(SHUT_WR); the peer's output keeps coming until its EOF
(--close-on-eof: close at once). The connection ends when both directions
have; a peer that closed entirely ends it normally. Datagrams: print what
arrives; stdin lines go to the last named sender. With --framing F (a byte
stream carrying messages): each stdin line (--split read: each read)
becomes one frame, and each frame received is written out followed by a
newline (--format raw: as it is). ENDPOINT may be fd:N or systemd:[NAME]
(a passed listener, or one passed connection, inetd style). A socket file
this command created is removed when it exits.

--exec CMD / --system LINE: each connection goes to its own program, the
socket as its stdin and stdout (socat EXEC:/SYSTEM:, nc -e/-c; --pty: a
terminal instead). `listen -k --exec cat` is an echo server. Without -k
the command exits with the program's status.
"""

KEEP_OPEN_NOTE = """\
For listen these rules apply with -k (a one-shot listen waits for its
client as nc -l does) and not to --exec, whose program owns the socket.
With --max-clients 1 (the default) a client that waits takes the slot of
one quiet for 0.25 s.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import (
        FAILSAFE_HELP,
        add_bridge_options,
        add_io_options,
        add_server_options,
        add_zmq_options,
    )

    parser.description = f"{DESCRIPTION}\n{FAILSAFE_HELP}{KEEP_OPEN_NOTE}"
    parser.add_argument(
        "endpoint", metavar="ENDPOINT", help="e.g. unix:/tmp/x.sock, tcp://127.0.0.1:7000"
    )
    add_server_options(parser)
    add_bridge_options(parser)
    add_io_options(parser)
    add_zmq_options(parser)


def run(args: argparse.Namespace) -> int:
    if args.endpoint.startswith("zmq+"):  # ZeroMQ: cli/zmq_io.py
        from .zmq_io import run_bridge as run_zmq

        return run_zmq(args, bind=True)
    from .bridge import run_bridge

    return run_bridge(args, listen=True)
