"""R8: reset and EPIPE are typed errors within 1 s, never a SIGPIPE.

* A peer that closes with unread data (or with SO_LINGER 0) resets the
  connection: the next recv or send raises ConnectionLost within 1 s (3x
  slack), on unix, tcp and seqpacket, for Socket and Channel alike.
* Writing to a closed peer in a child whose SIGPIPE disposition is the
  default (which kills) raises ConnectionLost instead: MSG_NOSIGNAL on every
  send path (``Socket.write`` is write(2) on purpose, SIGPIPE and all: the
  tour shows the difference).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from collections.abc import Callable

import pytest

from sockwire import socketpair
from sockwire.channel import Channel
from sockwire.errors import ConnectionLost
from sockwire.sock import Socket

TRANSPORTS = ["unix", "tcp", "seqpacket"]


def _pair(transport: str) -> tuple[socket.socket, socket.socket]:
    if transport == "tcp":
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
        return client, server
    kind = socket.SOCK_SEQPACKET if transport == "seqpacket" else socket.SOCK_STREAM
    return socket.socketpair(socket.AF_UNIX, kind)


def _use(channel: Channel, *, reading: bool) -> None:
    if reading:
        channel.recv(timeout=5)
        return
    for _ in range(100):  # the first sends may still fit in the buffers
        channel.send(b"x" * 65536)
        channel.flush()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_r08_reset_is_connection_lost_within_a_second(
    transport: str, report: Callable[..., None]
) -> None:
    slowest = 0.0
    for trial in range(50):
        mine, theirs = _pair(transport)
        framing = "sockwire" if transport == "seqpacket" else None
        channel = Channel.from_socket(Socket.adopt(mine), framing=framing)
        with channel:
            channel.send(b"unread by the peer")
            channel.flush()
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            theirs.close()  # unread data + linger 0: a reset (tcp); EOF/ECONNRESET (unix)
            started = time.monotonic()
            with pytest.raises(ConnectionLost):
                _use(channel, reading=bool(trial % 2))
            slowest = max(slowest, time.monotonic() - started)
    assert slowest < 1.0 * 3
    report("R8", resets=50, typed_errors=50, slowest_s=round(slowest, 3))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["socket-send", "socket-sendmsg", "channel"])
def test_r08_epipe_never_raises_sigpipe(path: str, report: Callable[..., None]) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: SIGPIPE kills by default here, unlike in Python
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            a, b = socketpair()
            b.close()
            try:
                if path == "socket-send":
                    a.send(b"x")
                elif path == "socket-sendmsg":
                    a.sendmsg([b"x"])
                else:
                    ch = Channel.from_socket(a)
                    ch.send(b"x")
                    ch.flush()
            except ConnectionLost as exc:
                os.write(write_end, f"ConnectionLost {exc.errno_name}".encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        said = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert not os.WIFSIGNALED(status), f"killed by signal {os.WTERMSIG(status)}"
    assert os.waitstatus_to_exitcode(status) == 0
    assert said == "ConnectionLost EPIPE"
    report("R8", epipe_paths=1, sigpipes=0)
