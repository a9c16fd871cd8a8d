"""``listen``/``connect`` with ``--exec``/``--system``: each connection goes to a program.

The glue between the commands' sockets and :class:`.children.Child`: a
client connects once and hands its socket to one child; a server accepts
(``-k``: client after client, ``--max-clients`` at once) and starts a child
per connection. stdin and stdout of sockwire itself are not used. With
``--pty`` the pump copies between the socket and the child's terminal.

Exit status: a one-shot command (``connect``, ``listen`` without ``-k``)
exits with its child's status (128 + N when signal N killed it), like
``nc -e``; a ``-k`` server reports each child's status under ``--trace``.
"""

from __future__ import annotations

import argparse
import os

from ..address import Endpoint
from ..sock import Peer, Socket
from .children import Child, ExecSpec, exit_code
from .options import IoOptions
from .pump import Acceptor, Conn, End, Flow, Loop, Stats, deferred_signals
from .secured import Guard
from .sockets import connect_socket, is_listening, server_socket

__all__ = ["run_children"]


def run_children(
    args: argparse.Namespace,
    opts: IoOptions,
    ep: Endpoint,
    adopted: Socket | None,
    loop: Loop,
    guard: Guard,
    spec: ExecSpec,
    *,
    listen: bool,
) -> int:
    """Serve connections with children until done; the exit code (see the module)."""
    stats = Stats()
    running: list[Child] = []
    copying: list[Conn] = []
    last: list[int] = []  # the latest child's exit code

    def start(sock: Socket, peer: Peer | None, label: str) -> None:
        def exited(child: Child) -> None:
            running.remove(child)
            assert child.returncode is not None
            last[:] = [exit_code(child.returncode)]
            if acceptor is not None:
                acceptor.resume()

        with deferred_signals():  # started and registered, or neither: never an orphan
            try:
                child = Child(spec, sock, label=label, peer=peer, on_exit=exited)
            except BaseException:
                sock.close()
                raise
            running.append(child)
            loop.add(child)
        master = child.master
        if master is not None:
            conn = _terminal(label, sock, master, opts, stats)

            def closed(c: Conn) -> None:
                copying.remove(c)
                os.close(master)  # the program's terminal hangs up (SIGHUP) if it still runs

            conn.on_close = closed
            copying.append(conn)
            loop.add(conn)

    acceptor: Acceptor | None = None
    if not listen or (adopted is not None and not is_listening(adopted)):
        # a client; or an inherited connection (inetd style): the one to serve
        sock = guard.connected(connect_socket(ep, adopted, tls=False), ep.display())
        start(sock, sock.peer() if adopted is not None else None, ep.display())
        loop.run(lambda: not running and not copying)
        guard.check()
        return last[0] if last else 0
    keep_open = bool(args.keep_open)
    with server_socket(ep, adopted=adopted) as listener:
        listener.setblocking(False)

        def on_accept(accepted: Socket, peer: Peer) -> None:
            sock = guard.accepted(accepted, peer)
            if sock is None:
                return  # refused by ?allowed_uids=/?allowed_gids= (and logged)
            start(sock, peer, f"{ep.display()} peer {peer}")

        acceptor = Acceptor(
            listener,
            on_accept,
            room=lambda: len(running) < args.max_clients,
            accepts_left=None if keep_open else 1,
            idle=opts.timeout,
        )
        loop.add(acceptor)
        loop.run(lambda: not keep_open and acceptor.accepts_left == 0 and not (running or copying))
        guard.check()
    return last[0] if last and not keep_open else 0


def _terminal(label: str, sock: Socket, master: int, opts: IoOptions, stats: Stats) -> Conn:
    """--pty: the pump copies between the socket and the terminal's master side.

    The peer's EOF becomes the terminal's EOF character (^D: a shell reading
    lines exits). The program's output ends (the terminal reads EIO once it
    exits) with shutdown(SHUT_WR) to the peer, and that ends the connection.
    A peer that closes entirely ends it too, and closing the terminal (the
    caller's ``on_close``) hangs up a program still running (SIGHUP), as
    closing an ssh session does.
    """
    sock.setblocking(False)
    net = End(label, sock=sock, opts=opts)
    tty = End("pty", fd=master, opts=opts, pty=True)
    to_tty = Flow(net, tty, opts, direction="peer->pty", stats=stats, message=False)
    to_tty.required = False
    from_tty = Flow(tty, net, opts, direction="pty->peer", stats=stats, message=False)
    return Conn(label, [from_tty, to_tty], [sock], stats, raise_errors=False)
