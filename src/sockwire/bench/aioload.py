"""Many asyncio connections doing request/reply: the load behind the async bench and tests.

``python -m sockwire.bench.aioload server IMPL LOOP ENDPOINT`` runs an echo
server (len32 frames) and prints one line, ``ready ENDPOINT``, once it
listens; it serves until its stdin closes, then prints one JSON line: its
statistics and its peak resident memory (VmHWM). ``client IMPL LOOP
ENDPOINT --connections N --requests R`` opens N connections (all of them
before the first request), then each does R request/replies in order and
checks every reply; it prints one JSON line: messages, lost, duplicated,
out of order, errors, seconds, requests per second. ``--window W`` keeps W
requests in flight per connection (each reply lets the next one go), as a
pipelining client does; 1 is one at a time.

``trickle IMPL LOOP ENDPOINT --connections N --interval S`` is the slow-loris
load: N connections each send one byte of a len32 frame that never
completes, one byte every S seconds; it prints ``connected N`` once all are
open, then one JSON line once the server has closed them all (or after 60 s):
how many it closed and how long after each connection's first byte.

IMPL is ``aio`` (sockwire.aio) or ``streams`` (plain asyncio streams with
``readexactly``, the same len32 frames); LOOP is ``asyncio`` or ``uvloop``.
Used by ``sockwire bench async``, by ``tests/test_aio_load.py`` (1,000
connections) and by ``make soak`` (10,000 per transport).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from .harness import Params

__all__ = ["case_runner", "main"]

_HEAD = struct.Struct("!I")
_ID = struct.Struct("!II")  # connection number, request number


def _cpu() -> float:
    """CPU seconds this process used (user + system): less noisy than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _vm(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------


async def _aio_server(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    from sockwire import aio
    from sockwire.errors import ConnectionLost

    async def echo(channel: aio.Channel, peer: object) -> None:
        recv = channel.recv
        send = channel.send
        while True:
            try:
                msg = await recv()
            except ConnectionLost:
                return
            await send(msg)

    server = await aio.serve(
        endpoint,
        echo,
        max_connections=args.max_connections,
        frame_deadline=args.frame_deadline,
        backlog=args.backlog,
        # the clients open every connection before the first request (10,000 take
        # longer than the default first-message deadline), and then sit idle by design
        first_message_timeout=None,
        idle_timeout=None,
    )
    _ready(server.endpoint)
    await _stdin_closed()
    stats = server.stats
    await server.shutdown(2.0)
    return {
        "accepted": stats.accepted,
        "handled": stats.handled,
        "dropped": stats.dropped,
        "failed": stats.failed,
        "peak": stats.peak,
    }


async def _streams_server(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    from sockwire.address import parse

    ep = parse(endpoint)
    count = {"accepted": 0}

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count["accepted"] += 1
        try:
            while True:
                head = await reader.readexactly(4)
                body = await reader.readexactly(_HEAD.unpack(head)[0])
                writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    if ep.is_unix:
        assert isinstance(ep.path, str)
        server = await asyncio.start_unix_server(echo, ep.path, backlog=args.backlog)
        shown = endpoint
    else:
        server = await asyncio.start_server(echo, ep.host, ep.port, backlog=args.backlog)
        port = server.sockets[0].getsockname()[1]
        shown = f"tcp://{ep.host}:{port}"
    _ready(shown)
    await _stdin_closed()
    server.close()
    await server.wait_closed()
    return count


_READY_CPU = [0.0]


def _mark(what: str) -> None:
    """A line the bench runner waits for, to read the server's CPU at that moment."""
    sys.stdout.write(what + "\n")
    sys.stdout.flush()


def _process_cpu(pid: int) -> float:
    """utime + stime of process ``pid`` in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ready(endpoint: str) -> None:
    _READY_CPU[0] = _cpu()  # what start-up cost is not the load's
    sys.stdout.write(f"ready {endpoint}\n")
    sys.stdout.flush()


async def _stdin_closed() -> None:
    """Until the parent closes our stdin: that is the signal to stop."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(fd, 4096) and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)


# --------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------


class _Tally:
    def __init__(self) -> None:
        self.messages = 0
        self.lost = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.errors: list[str] = []


def _check(tally: _Tally, conn: int, expected: int, reply: bytes) -> None:
    """One reply of connection ``conn``, which must carry request ``expected``."""
    got_conn, got = _ID.unpack_from(reply)
    if got_conn != conn:
        tally.errors.append(f"connection {conn} got a reply of connection {got_conn}")
    elif got == expected:
        tally.messages += 1
    elif got < expected:
        tally.duplicated += 1
    else:
        tally.out_of_order += 1
        tally.lost += got - expected


async def _aio_client(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    from sockwire import aio

    tally = _Tally()
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def opened(_: int) -> aio.Channel:
        async with gate:
            return await aio.connect(endpoint, timeout=30, retries=5)

    channels = await asyncio.gather(*(opened(n) for n in range(args.connections)))
    pad = b"\0" * max(0, args.size - _ID.size)

    async def work(conn: int, channel: aio.Channel) -> None:
        send = channel.send
        recv = channel.recv
        total = args.requests
        ahead = min(args.window, total)
        for i in range(ahead):  # the window: requests in flight before the first reply
            await send(_ID.pack(conn, i) + pad)
        for i in range(total):
            _check(tally, conn, i, await recv())
            if ahead < total:
                await send(_ID.pack(conn, ahead) + pad)
                ahead += 1

    _mark("working")
    started, cpu = time.monotonic(), _cpu()
    results = await asyncio.gather(
        *(work(n, ch) for n, ch in enumerate(channels)), return_exceptions=True
    )
    seconds, cpu = time.monotonic() - started, _cpu() - cpu
    _mark("finished")
    for result in results:
        if isinstance(result, BaseException):
            tally.errors.append(f"{type(result).__name__}: {result}")
    for channel in channels:
        await channel.close()
    return _report(tally, args, seconds, cpu)


async def _streams_client(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    from sockwire.address import parse

    ep = parse(endpoint)
    tally = _Tally()
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def opened(_: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with gate:
            if ep.is_unix:
                assert isinstance(ep.path, str)
                return await asyncio.open_unix_connection(ep.path)
            return await asyncio.open_connection(ep.host, ep.port)

    conns = await asyncio.gather(*(opened(n) for n in range(args.connections)))
    pad = b"\0" * max(0, args.size - _ID.size)

    async def work(conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = args.requests
        ahead = min(args.window, total)
        for i in range(ahead):  # the window: requests in flight before the first reply
            body = _ID.pack(conn, i) + pad
            writer.write(_HEAD.pack(len(body)) + body)
        await writer.drain()
        for i in range(total):
            head = await reader.readexactly(4)
            _check(tally, conn, i, await reader.readexactly(_HEAD.unpack(head)[0]))
            if ahead < total:
                body = _ID.pack(conn, ahead) + pad
                writer.write(_HEAD.pack(len(body)) + body)
                await writer.drain()
                ahead += 1

    _mark("working")
    started, cpu = time.monotonic(), _cpu()
    results = await asyncio.gather(
        *(work(n, r, w) for n, (r, w) in enumerate(conns)), return_exceptions=True
    )
    seconds, cpu = time.monotonic() - started, _cpu() - cpu
    _mark("finished")
    for result in results:
        if isinstance(result, BaseException):
            tally.errors.append(f"{type(result).__name__}: {result}")
    for _, writer in conns:
        writer.close()
        await writer.wait_closed()
    return _report(tally, args, seconds, cpu)


async def _trickle(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """N connections, one byte each per interval, until the server closes them (max 60 s)."""
    from sockwire import aio
    from sockwire.aio import dial
    from sockwire.errors import SockwireError

    gate = asyncio.Semaphore(args.connect_concurrency)

    async def opened(_: int) -> aio.Socket:
        async with gate:
            return aio.Socket.wrap(await dial.connect(endpoint, timeout=30))

    socks = await asyncio.gather(*(opened(n) for n in range(args.connections)))
    frame = _HEAD.pack(1000)  # a frame of 1,000 bytes: 504 s at this pace, never whole
    sys.stdout.write(f"connected {len(socks)}\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    started = loop.time()
    closed_after: list[float] = []

    async def watch(sock: aio.Socket) -> None:
        try:
            while await sock.recv(100):
                pass
        except SockwireError:
            pass  # reset: closed too
        closed_after.append(loop.time() - started)

    watchers = [asyncio.create_task(watch(sock)) for sock in socks]
    sent = 0
    try:
        while len(closed_after) < len(socks) and loop.time() - started < 60:
            for sock, task in zip(socks, watchers, strict=True):
                if task.done():
                    continue
                byte = frame[sent] if sent < len(frame) else 0
                with contextlib.suppress(SockwireError):  # closed meanwhile: its watcher notes it
                    await sock.send(bytes([byte]))
            sent += 1
            await asyncio.sleep(args.interval)  # the trickle's pace, not synchronisation
    finally:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for sock in socks:
            sock.close()
    return {
        "connections": len(socks),
        "closed": len(closed_after),
        "first_close_s": min(closed_after, default=0.0),
        "last_close_s": max(closed_after, default=0.0),
        "bytes_sent_each": sent,
    }


def _report(tally: _Tally, args: argparse.Namespace, seconds: float, cpu: float) -> dict[str, Any]:
    expected = args.connections * args.requests
    return {
        "connections": args.connections,
        "expected": expected,
        "messages": tally.messages,
        "lost": tally.lost + max(0, expected - tally.messages - tally.lost - tally.duplicated),
        "duplicated": tally.duplicated,
        "out_of_order": tally.out_of_order,
        "errors": tally.errors[:10],
        "error_count": len(tally.errors),
        "seconds": seconds,
        "req_per_s": tally.messages / seconds if seconds > 0 else 0.0,
        "work_cpu_s": cpu,
        "peak_rss_kib": _vm("VmHWM"),
    }


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def case_runner(
    impl: str, loop: str, connections: int, window: int = 1
) -> Callable[[Params], dict[str, float]]:
    """A bench Case.run: a server process and a client process (each pinned to its
    core where there are two), ``params.count`` request/replies spread over
    ``connections`` with ``window`` in flight on each; the client's requests per
    second, and the CPU both processes spent per request (less noisy than wall
    time on a shared machine)."""

    def run(params: Params) -> dict[str, float]:
        workdir = tempfile.mkdtemp(prefix="sockwire-bench-aio-")
        endpoint = f"unix:{workdir}/bench.sock"
        errors = open(f"{workdir}/client.err", "w+")  # noqa: SIM115  # closed in finally
        base = [sys.executable, "-m", "sockwire.bench.aioload"]
        server = subprocess.Popen(
            [*base, "server", impl, loop, endpoint, *_cpu_args(params.cpu_parent)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line.startswith("ready "):
                raise RuntimeError(f"the {impl} server did not start")
            client = subprocess.Popen(
                [
                    *base,
                    "client",
                    impl,
                    loop,
                    line.split(" ", 1)[1].strip(),
                    "--connections",
                    str(connections),
                    "--requests",
                    str(max(1, params.count // connections)),
                    "--size",
                    str(params.size),
                    "--window",
                    str(window),
                    *_cpu_args(params.cpu_child),
                ],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            stdout = client.stdout
            assert stdout is not None
            try:
                marks = {}
                for _ in range(2):  # the server's CPU at the start and the end of the work
                    mark = stdout.readline().strip()
                    if mark not in ("working", "finished"):
                        break
                    marks[mark] = _process_cpu(server.pid)
                out = stdout.read()  # the rest (communicate() would skip what
                client.wait(600)  # readline() already buffered)
            finally:
                client.kill()
                client.wait()
                stdout.close()
            errors.seek(0)
            err = errors.read()
            lines = out.strip().splitlines()
            if client.returncode != 0 or len(marks) != 2 or not lines:
                detail = (err.strip() or f"exit {client.returncode}, marks {sorted(marks)}")[-300:]
                raise RuntimeError(f"the {impl} client failed: {detail}")
            report = json.loads(lines[-1])
            if report["error_count"] or report["lost"] or report["duplicated"]:
                raise RuntimeError(f"the {impl} run lost or broke messages: {report}")
            server_cpu = marks["finished"] - marks["working"]
            cpu = server_cpu + float(report["work_cpu_s"])
            return {
                "req_per_s": float(report["req_per_s"]),
                "cpu_us_per_req": cpu * 1e6 / max(1, report["messages"]),
            }
        finally:
            server.kill()
            server.communicate()
            errors.close()
            shutil.rmtree(workdir, ignore_errors=True)

    return run


def _cpu_args(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["--cpu", str(cpu)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sockwire.bench.aioload")
    parser.add_argument("role", choices=("server", "client", "trickle"))
    parser.add_argument("impl", choices=("aio", "streams"))
    parser.add_argument("loop", choices=("asyncio", "uvloop"))
    parser.add_argument("endpoint")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--window",
        type=int,
        default=1,
        help="requests in flight per connection (1: one at a time)",
    )
    parser.add_argument("--connect-concurrency", type=int, default=256)
    parser.add_argument("--max-connections", type=int, default=20_000)
    parser.add_argument("--frame-deadline", type=float, default=60.0)
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    from sockwire.aio import run

    runners = {
        ("server", "aio"): _aio_server,
        ("server", "streams"): _streams_server,
        ("client", "aio"): _aio_client,
        ("client", "streams"): _streams_client,
        ("trickle", "aio"): _trickle,
        ("trickle", "streams"): _trickle,
    }
    chosen = runners[(args.role, args.impl)]
    result = run(chosen(args.endpoint, args), loop=args.loop)
    if args.role == "server":
        result["peak_rss_kib"] = _vm("VmHWM")
        result["rss_kib"] = _vm("VmRSS")
    result["cpu_s"] = _cpu()
    if args.role == "server":
        result["work_cpu_s"] = result["cpu_s"] - _READY_CPU[0]
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
