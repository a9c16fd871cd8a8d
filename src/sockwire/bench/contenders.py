"""sockwire's own contenders: Channels over each transport, and the relay command.

Kept apart from the peers so each side is easy to read. A contender that
this checkout cannot run yet is reported as missing, never silently dropped.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .harness import Case, Conn, Ends
from .peers import tcp_pair

if TYPE_CHECKING:
    from ..channel import Channel

__all__ = ["channel", "relay_command", "zmq_socket"]


def _channel_missing() -> str | None:
    if importlib.util.find_spec("sockwire.channel") is None:
        return "sockwire.channel is not in this checkout yet"
    return None


class _ChannelConn:
    """A Channel as a benchmark Conn (send batches; recv flushes first)."""

    def __init__(self, channel: Channel) -> None:
        self.send = channel.send
        self.recv = channel.recv
        self.flush = channel.flush
        self.close = channel.close


def _channel_pair(transport: str) -> tuple[Channel, Channel]:
    from ..channel import Channel, pipe
    from ..sock import Socket

    if transport in ("unix", "seqpacket", "dgram"):
        return pipe({"unix": "stream"}.get(transport, transport))
    if transport == "tcp":
        a, b = tcp_pair()
        return (
            Channel.from_socket(Socket.adopt(a), framing="len32"),
            Channel.from_socket(Socket.adopt(b), framing="len32"),
        )
    if transport == "udp":
        left = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        right = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sock in (left, right):
            sock.bind(("127.0.0.1", 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        left.connect(right.getsockname())
        right.connect(left.getsockname())
        return Channel.from_socket(Socket.adopt(left)), Channel.from_socket(Socket.adopt(right))
    raise ValueError(f"unknown transport {transport!r}")


def channel(transport: str, *, one_core: bool = False) -> Case:
    """A sockwire Channel over ``transport``: unix, seqpacket, dgram, tcp or udp."""

    def make() -> Ends:
        left, right = _channel_pair(transport)

        def parent() -> Conn:
            right.close()
            return _ChannelConn(left)

        def child() -> Conn:
            left.close()
            return _ChannelConn(right)

        def cleanup() -> None:
            left.close()
            right.close()

        return Ends(parent, child, cleanup)

    suffix = " (one core)" if one_core else ""
    key = f"sockwire-{transport}" + ("-1core" if one_core else "")
    return Case(
        key,
        f"sockwire Channel, {transport}{suffix}",
        "sockwire",
        make=make,
        missing=_channel_missing,
        one_core=one_core,
    )


def relay_command(path: str, port: int) -> Sequence[str]:
    return [sys.executable, "-m", "sockwire", "relay", f"unix:{path}", f"tcp://127.0.0.1:{port}"]


# --------------------------------------------------------------------------
# ZeroMQ sockets (sockwire.zmq), against themselves and against pyzmq
# --------------------------------------------------------------------------


class _ZmqSocketConn:
    """A sockwire.zmq.Socket as a benchmark Conn (sends buffered; flush at the end)."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def recv(self) -> bytes:
        return self.sock.recv()[0]  # type: ignore[no-any-return]

    def flush(self) -> None:
        self.sock.flush(timeout=30)

    def close(self) -> None:
        self.sock.close()


def _zmq_address(transport: str, workdir: str) -> str:
    if transport == "ipc":
        return f"ipc://{workdir}/zmq.sock"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def zmq_socket(
    parent_kind: str, child_kind: str, transport: str, *, child: str = "sockwire"
) -> Case:
    """sockwire.zmq: the parent's type bound, the child's connected; the child is
    another sockwire socket or (``child="pyzmq"``) a libzmq one."""

    def make() -> Ends:
        workdir = tempfile.mkdtemp(prefix="sockwire-bench-")
        address = _zmq_address(transport, workdir)

        def parent() -> Conn:
            from ..zmq import Socket

            return _ZmqSocketConn(Socket(parent_kind, f"zmq+{address}?bind=1"))

        def child_end() -> Conn:
            if child == "pyzmq":
                from .peers import pyzmq_end

                return pyzmq_end(child_kind, address)
            from ..zmq import Socket

            return _ZmqSocketConn(Socket(child_kind, f"zmq+{address}"))

        return Ends(parent, child_end, lambda: shutil.rmtree(workdir, ignore_errors=True))

    if child == "pyzmq":
        key = f"sockwire-{parent_kind.lower()}-pyzmq-{child_kind.lower()}-{transport}"
        label = f"sockwire {parent_kind} -> pyzmq {child_kind}, {transport}"
    else:
        key = f"sockwire-zmq-{parent_kind.lower()}-{transport}"
        label = f"sockwire {parent_kind}/{child_kind}, {transport}"
    return Case(key, label, "sockwire", make=make, missing=_zmq_missing)


def _zmq_missing() -> str | None:
    if importlib.util.find_spec("zmq") is None:
        return "pyzmq is not installed (pip install 'sockwire[bench]')"
    return None
