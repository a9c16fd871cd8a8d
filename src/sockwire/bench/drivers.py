"""Measurement patterns that run over any Case: round trip, one-way, memory, relay."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence

from .harness import Case, Conn, Params, fork_pair, now_ns, percentile

__all__ = ["memory", "oneway", "relay_case_runner", "roundtrip", "startup_case_runner"]

WARMUP = 200


def roundtrip(case: Case, params: Params) -> dict[str, float]:
    """Mean, p50 and p99 of ``count`` round trips of a ``size``-byte message."""
    message = b"x" * params.size
    warm = min(WARMUP, params.count)

    def child(conn: Conn) -> None:
        for _ in range(params.count + warm):
            conn.send(conn.recv())
        conn.flush()

    def parent(conn: Conn) -> dict[str, float]:
        for _ in range(warm):
            conn.send(message)
            conn.recv()
        samples = []
        clock = now_ns
        started = clock()
        for _ in range(params.count):
            t0 = clock()
            conn.send(message)
            conn.recv()
            samples.append(clock() - t0)
        total = clock() - started
        samples.sort()
        return {
            "mean_us": total / params.count / 1000,
            "p50_us": percentile(samples, 0.50) / 1000,
            "p99_us": percentile(samples, 0.99) / 1000,
        }

    return fork_pair(case, params, parent, child)


def oneway(case: Case, params: Params) -> dict[str, float]:
    """``count`` messages of ``size`` bytes one way; the clock stops at the receiver's ack."""
    message = b"x" * params.size
    ack_r, ack_w = os.pipe()

    def child(conn: Conn) -> None:
        os.close(ack_r)
        for _ in range(params.count):
            conn.recv()
        os.write(ack_w, b"k")
        os.close(ack_w)

    def parent(conn: Conn) -> dict[str, float]:
        os.close(ack_w)
        started = now_ns()
        for _ in range(params.count):
            conn.send(message)
        conn.flush()
        if os.read(ack_r, 1) != b"k":
            raise RuntimeError("the receiver died before acknowledging")
        elapsed = (now_ns() - started) / 1e9
        return {
            "msgs_per_s": params.count / elapsed,
            "bytes_per_s": params.count * params.size / elapsed,
        }

    try:
        return fork_pair(case, params, parent, child)
    finally:
        for fd in (ack_r, ack_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def memory(case: Case, params: Params) -> dict[str, float]:
    """Peak RSS growth of the receiver while ``total`` bytes arrive as ``size``-byte messages."""
    count = max(1, params.total // params.size)
    message = b"x" * params.size

    def child(conn: Conn) -> dict[str, float]:
        base = _rss_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM to the current RSS
        received = 0
        for _ in range(count):
            received += len(conn.recv())
        peak = _rss_kib("VmHWM")
        if received != count * params.size:
            raise RuntimeError(f"received {received} bytes, expected {count * params.size}")
        return {"rss_growth_mib": max(0, peak - base) / 1024}

    def parent(conn: Conn) -> dict[str, float]:
        for _ in range(count):
            conn.send(message)
        conn.flush()
        return {}

    return fork_pair(case, params, parent, child)


# --------------------------------------------------------------------------
# Relay: source -> unix socket -> RELAY -> tcp -> sink, bytes/s
# --------------------------------------------------------------------------

_CHUNK = 1 << 20
#: SO_SNDBUF of the source and SO_RCVBUF of the sink: neither end limits the relay
ENDS_BUFFER = 1 << 20


def _sink(listener: socket.socket, report_fd: int) -> None:
    conn, _ = listener.accept()
    listener.close()
    buf = bytearray(_CHUNK)
    total = 0
    while count := conn.recv_into(buf):
        total += count
    os.write(report_fd, f"{total} {time.monotonic()}".encode())
    conn.close()


def _wait_for_socket(path: str, relay: subprocess.Popen[bytes], deadline_s: float) -> None:
    """Connect attempts, bounded in count and time, until the relay listens."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if relay.poll() is not None:
            raise RuntimeError(f"the relay exited with {relay.returncode} before listening")
        if os.path.exists(path):
            return
        time.sleep(0.01)  # benchmark setup, not a test: a short bounded poll
    raise RuntimeError(f"the relay did not create {path} within {deadline_s:g} s")


def relay_case_runner(
    argv: Callable[[str, int], Sequence[str]],
) -> Callable[[Params], dict[str, float]]:
    """A Case.run that pushes ``total`` bytes through the relay ``argv(unix_path, tcp_port)``."""

    def run(params: Params) -> dict[str, float]:
        workdir = tempfile.mkdtemp(prefix="sockwire-bench-relay-")
        path = os.path.join(workdir, "relay.sock")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # set before listen(): an accepted socket inherits it (and the window scale)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ENDS_BUFFER)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        report_r, report_w = os.pipe()
        sink_pid = os.fork()
        if sink_pid == 0:
            code = 0
            try:
                os.close(report_r)
                _sink(listener, report_w)
            except BaseException:  # noqa: BLE001  # never escape a fork
                code = 1
            finally:
                os._exit(code)
        listener.close()
        os.close(report_w)
        relay = subprocess.Popen(
            list(argv(path, port)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group: `socat ...,fork` leaves children
        )
        try:
            _wait_for_socket(path, relay, 10.0)
            chunk = b"\0" * _CHUNK
            with socket.socket(socket.AF_UNIX) as source:
                source.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, ENDS_BUFFER)
                source.connect(path)
                started = time.monotonic()
                for _ in range(params.total // _CHUNK):
                    source.sendall(chunk)
                source.shutdown(socket.SHUT_WR)
                poller = select.poll()
                poller.register(report_r, select.POLLIN)
                if not poller.poll(300_000):
                    raise RuntimeError("the sink did not finish within 300 s")
                total_text, finished_text = os.read(report_r, 100).decode().split()
            total, finished = int(total_text), float(finished_text)
            if total != params.total // _CHUNK * _CHUNK:
                raise RuntimeError(f"the sink got {total} bytes, not {params.total}")
            return {"bytes_per_s": total / (finished - started)}
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(relay.pid, signal.SIGTERM)
            try:
                relay.wait(10)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait()
            with contextlib.suppress(ProcessLookupError):  # a forked child still running
                os.killpg(relay.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(sink_pid, signal.SIGKILL)
            os.waitpid(sink_pid, 0)
            os.close(report_r)
            shutil.rmtree(workdir, ignore_errors=True)

    return run


# --------------------------------------------------------------------------
# Start-up: wall time of a short command, from fork to exit
# --------------------------------------------------------------------------


def startup_case_runner(argv: Sequence[str]) -> Callable[[Params], dict[str, float]]:
    """A Case.run: the median wall time of ``count`` runs of ``argv`` (output discarded)."""

    def run(params: Params) -> dict[str, float]:
        times = []
        for _ in range(max(1, params.count)):
            started = time.perf_counter()
            subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                check=True,
            )
            times.append(time.perf_counter() - started)
        times.sort()
        return {"startup_ms": times[len(times) // 2] * 1000}

    return run
