"""The peers sockwire is measured against, each as a benchmark Case.

- the hand-written stdlib framed loop (4-byte header, sendall, two recv_into
  per message): the Python floor;
- multiprocessing.connection (Listener/Client over AF_UNIX);
- pyzmq REQ/REP, PUSH/PULL and PAIR over ipc:// and tcp:// (optional);
- a C ping-pong compiled on the fly when ``cc`` exists: the physical floor.

Peers are written the way their own documentation suggests, nothing slower.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from .harness import Case, Conn, Ends, Params

__all__ = [
    "c_pingpong",
    "mp_connection",
    "pyzmq",
    "pyzmq_end",
    "socket_ends",
    "stdlib_framed_tcp",
    "stdlib_framed_unix",
    "tcp_pair",
]

_HEADER = struct.Struct("!I")


class StdlibFramed:
    """The Python floor: 4-byte length prefix, sendall, two recv_into per message."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.header = bytearray(4)

    def send(self, data: bytes) -> None:
        if len(data) < 65536:
            self.sock.sendall(_HEADER.pack(len(data)) + data)
        else:
            self.sock.sendall(_HEADER.pack(len(data)))
            self.sock.sendall(data)

    def _fill(self, buf: bytearray) -> None:
        view = memoryview(buf)
        got = 0
        while got < len(buf):
            count = self.sock.recv_into(view[got:])
            if not count:
                raise EOFError("peer closed")
            got += count

    def recv(self) -> bytearray:
        self._fill(self.header)
        (size,) = _HEADER.unpack(self.header)
        body = bytearray(size)
        self._fill(body)
        return body

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.sock.close()


def socket_ends(a: socket.socket, b: socket.socket, wrap: Callable[[socket.socket], Conn]) -> Ends:
    """Ends over two connected sockets: each process closes the other's copy."""

    def parent() -> Conn:
        b.close()
        return wrap(a)

    def child() -> Conn:
        a.close()
        return wrap(b)

    def cleanup() -> None:
        a.close()
        b.close()

    return Ends(parent, child, cleanup)


def stdlib_framed_unix(one_core: bool = False) -> Case:
    def make() -> Ends:
        return socket_ends(*socket.socketpair(), StdlibFramed)

    suffix = " (one core)" if one_core else ""
    key = "stdlib-unix" + ("-1core" if one_core else "")
    return Case(key, f"stdlib framed loop, unix{suffix}", "peer", make=make, one_core=one_core)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server


def stdlib_framed_tcp() -> Case:
    def make() -> Ends:
        return socket_ends(*tcp_pair(), StdlibFramed)

    return Case("stdlib-tcp", "stdlib framed loop, tcp", "peer", make=make)


class _MpConn:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def send(self, data: bytes) -> None:
        self.conn.send_bytes(data)

    def recv(self) -> bytes:
        return self.conn.recv_bytes()  # type: ignore[no-any-return]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.conn.close()


def mp_connection() -> Case:
    def make() -> Ends:
        from multiprocessing.connection import Client, Listener

        workdir = tempfile.mkdtemp(prefix="sockwire-bench-")
        path = os.path.join(workdir, "mp.sock")
        listener = Listener(path, "AF_UNIX")

        def parent() -> Conn:
            conn = _MpConn(listener.accept())
            listener.close()
            return conn

        def child() -> Conn:
            listener._listener._socket.close()  # type: ignore[attr-defined]  # child's copy
            return _MpConn(Client(path, "AF_UNIX"))

        def cleanup() -> None:
            listener.close()
            shutil.rmtree(workdir, ignore_errors=True)

        return Ends(parent, child, cleanup)

    return Case("mp-connection", "multiprocessing.connection, unix", "peer", make=make)


def _zmq_missing() -> str | None:
    if importlib.util.find_spec("zmq") is None:
        return "pyzmq is not installed (pip install 'sockwire[bench]')"
    return None


class _ZmqConn:
    def __init__(self, context: Any, sock: Any) -> None:
        self.context = context
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.send(data, copy=len(data) < 65536)

    def recv(self) -> bytes:
        return self.sock.recv()  # type: ignore[no-any-return]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.sock.close(linger=1000)
        self.context.term()


def pyzmq_end(kind: str, address: str) -> Conn:
    """One connected pyzmq socket (the libzmq end of a mixed case)."""
    import zmq

    context = zmq.Context()
    sock = context.socket(getattr(zmq, kind))
    sock.connect(address)
    return _ZmqConn(context, sock)


def pyzmq(parent_kind: str, child_kind: str, transport: str) -> Case:
    """pyzmq with the parent's socket type bound and the child's connected."""

    def make() -> Ends:
        import zmq

        workdir = tempfile.mkdtemp(prefix="sockwire-bench-")
        if transport == "ipc":
            address = f"ipc://{workdir}/zmq.sock"
        else:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"

        def parent() -> Conn:
            context = zmq.Context()
            sock = context.socket(getattr(zmq, parent_kind))
            sock.bind(address)
            return _ZmqConn(context, sock)

        def child() -> Conn:
            context = zmq.Context()
            sock = context.socket(getattr(zmq, child_kind))
            sock.connect(address)
            return _ZmqConn(context, sock)

        return Ends(parent, child, lambda: shutil.rmtree(workdir, ignore_errors=True))

    kinds = f"{parent_kind}/{child_kind}"
    return Case(
        f"pyzmq-{parent_kind.lower()}-{transport}",
        f"pyzmq {kinds}, {transport}",
        "peer",
        make=make,
        missing=_zmq_missing,
    )


# --------------------------------------------------------------------------
# C ping-pong
# --------------------------------------------------------------------------


def _compiled() -> Path | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source = resources.files("sockwire.bench").joinpath("pingpong.c").read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sockwire"
    binary = cache / f"pingpong-{digest}"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pingpong.c"
        src.write_bytes(source)
        out = Path(tmp) / "pingpong"
        subprocess.run([compiler, "-O2", "-o", str(out), str(src)], check=True, timeout=120)
        shutil.move(str(out), binary)
    return binary


def c_pingpong(mode: str = "unix-stream", *, one_core: bool = False) -> Case:
    """The C floor over ``mode`` (unix-stream, unix-seqpacket, tcp)."""

    def missing() -> str | None:
        try:
            return None if _compiled() else "no C compiler (cc) on this machine"
        except (OSError, subprocess.SubprocessError) as exc:
            return f"could not build the C ping-pong: {exc}"

    def run(params: Params) -> dict[str, float]:
        binary = _compiled()
        assert binary is not None
        argv = [
            str(binary),
            mode,
            str(params.size),
            str(params.count),
            "0",
            str(-1 if params.cpu_parent is None else params.cpu_parent),
            str(-1 if params.cpu_child is None else params.cpu_child),
        ]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300)
        figures = dict(item.split("=") for item in out.stdout.split())
        return {
            "mean_us": float(figures["rtt_us"]),
            "p50_us": float(figures["p50_us"]),
            "p99_us": float(figures["p99_us"]),
        }

    suffix = " (one core)" if one_core else ""
    key = f"c-{mode}" + ("-1core" if one_core else "")
    return Case(
        key, f"C ping-pong, {mode}{suffix}", "peer", run=run, missing=missing, one_core=one_core
    )
