"""Quick side-by-side check of the Channel against its peers (not a test).

Two real processes per case (fork), every case once per round, rounds
interleaved so machine noise hits all cases alike; the report is the median
of the per-round ratios. The cases are the issue's performance targets:

  one-way 64 B msgs/s:  sockwire pipe() send()      vs pyzmq PUSH/PULL ipc   (target >= 3x)
                        sockwire send_many()        vs pyzmq PUSH/PULL ipc
  round trip 64 B:      sockwire                    vs stdlib framed loop    (target <= 0.9x)
  one-way 1 MiB:        sockwire                    vs stdlib framed loop    (target >= 1.0x)
                        sockwire                    vs multiprocessing.connection (>= 2x)

usage: python benchmarks/quick_channel.py [--rounds N] [--scale F] [--pin CPU] [--profile CASE]
(pyzmq cases are skipped when pyzmq is not installed: pip install pyzmq)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import sockwire

SMALL = b"x" * 64
BIG = b"x" * (1 << 20)


# ---------------------------------------------------------------- harness


def _fork(child: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            child()
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def _reap(pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"benchmark child failed with status {status}")


# ---------------------------------------------------------------- sockwire


def sw_oneway(count: int, msg: bytes, *, many: bool = False) -> float:
    """Seconds for ``count`` messages one way (ack at the end)."""
    a, b = sockwire.pipe()

    def child() -> None:
        a.close()
        recv = b.recv
        for _ in range(count):
            recv()
        b.send(b"k")
        b.flush()
        b.close()

    pid = _fork(child)
    b.close()
    t0 = time.perf_counter()
    if many:
        a.send_many(msg for _ in range(count))
    else:
        send = a.send
        for _ in range(count):
            send(msg)
    a.recv()
    elapsed = time.perf_counter() - t0
    a.close()
    _reap(pid)
    return elapsed


def sw_rtt(count: int) -> float:
    a, b = sockwire.pipe()

    def child() -> None:
        a.close()
        for _ in range(count):
            b.send(b.recv())
        b.close()

    pid = _fork(child)
    b.close()
    send, recv = a.send, a.recv
    t0 = time.perf_counter()
    for _ in range(count):
        send(SMALL)
        recv()
    elapsed = time.perf_counter() - t0
    a.close()
    _reap(pid)
    return elapsed / count


# ---------------------------------------------------------------- stdlib framed loop

HDR = struct.Struct("!I")


def _framed(sock: socket.socket) -> tuple[Callable[[bytes], None], Callable[[], bytearray]]:
    """The issue's yardstick: 4-byte header, sendall, two recv_into per message."""

    def send(b: bytes) -> None:
        if len(b) < 65536:
            sock.sendall(HDR.pack(len(b)) + b)
        else:
            sock.sendall(HDR.pack(len(b)))
            sock.sendall(b)

    def recvn(n: int) -> bytearray:
        out = bytearray(n)
        view = memoryview(out)
        got = 0
        while got < n:
            k = sock.recv_into(view[got:])
            if not k:
                raise EOFError
            got += k
        return out

    def recv() -> bytearray:
        (n,) = HDR.unpack(recvn(4))
        return recvn(n)

    return send, recv


def std_oneway(count: int, msg: bytes) -> float:
    a, b = socket.socketpair()

    def child() -> None:
        a.close()
        send, recv = _framed(b)
        for _ in range(count):
            recv()
        send(b"k")

    pid = _fork(child)
    b.close()
    send, recv = _framed(a)
    t0 = time.perf_counter()
    for _ in range(count):
        send(msg)
    recv()
    elapsed = time.perf_counter() - t0
    a.close()
    _reap(pid)
    return elapsed


def std_rtt(count: int) -> float:
    a, b = socket.socketpair()

    def child() -> None:
        a.close()
        send, recv = _framed(b)
        for _ in range(count):
            send(bytes(recv()))

    pid = _fork(child)
    b.close()
    send, recv = _framed(a)
    t0 = time.perf_counter()
    for _ in range(count):
        send(SMALL)
        recv()
    elapsed = time.perf_counter() - t0
    a.close()
    _reap(pid)
    return elapsed / count


# ---------------------------------------------------------------- multiprocessing / pyzmq


def mp_oneway(count: int, msg: bytes) -> float:
    from multiprocessing import Pipe

    a, b = Pipe()

    def child() -> None:
        a.close()
        for _ in range(count):
            b.recv_bytes()
        b.send_bytes(b"k")

    pid = _fork(child)
    b.close()
    t0 = time.perf_counter()
    for _ in range(count):
        a.send_bytes(msg)
    a.recv_bytes()
    elapsed = time.perf_counter() - t0
    a.close()
    _reap(pid)
    return elapsed


def zmq_oneway(count: int, msg: bytes) -> float:
    import zmq

    path = f"ipc://{tempfile.gettempdir()}/sw-quick-{os.getpid()}"
    ack_a, ack_b = socket.socketpair()

    def child() -> None:
        ack_a.close()
        ctx = zmq.Context()
        pull = ctx.socket(zmq.PULL)
        pull.connect(path)
        recv = pull.recv
        for _ in range(count):
            recv()
        ack_b.sendall(b"k")
        pull.close(linger=0)
        ctx.term()

    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.bind(path)
    pid = _fork(child)
    ack_b.close()
    send = push.send
    copy = len(msg) < 65536
    t0 = time.perf_counter()
    for _ in range(count):
        send(msg, copy=copy)
    ack_a.recv(1)
    elapsed = time.perf_counter() - t0
    ack_a.close()
    push.close(linger=0)
    ctx.term()
    _reap(pid)
    return elapsed


# ---------------------------------------------------------------- main


def _fresh(case: str, scale: float, pin: int | None) -> float:
    """Run one case in a new interpreter: no case inherits another's heap state.

    (glibc serves 1 MiB allocations with mmap until a free raises its
    threshold, so a forked child's speed depends on what its parent did:
    multiprocessing.connection measured 0.6 or 5 GB/s by that alone.)
    """
    argv = [sys.executable, __file__, "--one", case, "--scale", str(scale)]
    if pin is not None:
        argv += ["--pin", str(pin)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    parser.add_argument("--profile", choices=["send", "rtt", "big"], help="cProfile one case")
    parser.add_argument(
        "--pin",
        type=int,
        metavar="CPU",
        help="pin both processes to one CPU (CPU cost per message)",
    )
    parser.add_argument("--one", metavar="CASE", help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})  # children inherit it
    n_small = int(200_000 * args.scale)
    n_rtt = int(20_000 * args.scale)
    n_big = int(1_000 * args.scale)

    if args.profile:
        fn = {
            "send": lambda: sw_oneway(n_small, SMALL),
            "rtt": lambda: sw_rtt(n_rtt),
            "big": lambda: sw_oneway(n_big, BIG),
        }[args.profile]
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
        return

    try:
        import zmq  # noqa: F401

        have_zmq = True
    except ImportError:
        have_zmq = False
        print("pyzmq not installed: its cases are skipped (pip install pyzmq)")

    cases: dict[str, Callable[[], float]] = {
        "sw send 64B": lambda: n_small / sw_oneway(n_small, SMALL),
        "sw send_many 64B": lambda: n_small / sw_oneway(n_small, SMALL, many=True),
        "std 64B": lambda: n_small / std_oneway(n_small, SMALL),
        "sw rtt us": lambda: sw_rtt(n_rtt) * 1e6,
        "std rtt us": lambda: std_rtt(n_rtt) * 1e6,
        "sw 1MiB MB/s": lambda: n_big * len(BIG) / sw_oneway(n_big, BIG) / 1e6,
        "std 1MiB MB/s": lambda: n_big * len(BIG) / std_oneway(n_big, BIG) / 1e6,
        "mp 1MiB MB/s": lambda: n_big * len(BIG) / mp_oneway(n_big, BIG) / 1e6,
    }
    if have_zmq:
        cases["zmq 64B"] = lambda: n_small / zmq_oneway(n_small, SMALL)
    if args.one:
        print(cases[args.one]())
        return
    results: dict[str, list[float]] = {name: [] for name in cases}
    for round_no in range(args.rounds):
        for name in cases:
            results[name].append(_fresh(name, args.scale, args.pin))
        print(
            f"round {round_no + 1}: " + ", ".join(f"{k}={v[-1]:,.0f}" for k, v in results.items())
        )
        sys.stdout.flush()

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(results[a], results[b], strict=True))

    print()
    for name, values in results.items():
        print(f"{name:18s} median {statistics.median(values):14,.1f}")
    print()
    if have_zmq:
        print(f"send 64B / pyzmq PUSH/PULL     {ratio('sw send 64B', 'zmq 64B'):5.2f}x  (>= 3)")
        print(f"send_many 64B / pyzmq          {ratio('sw send_many 64B', 'zmq 64B'):5.2f}x")
    print(f"send 64B / stdlib loop         {ratio('sw send 64B', 'std 64B'):5.2f}x")
    print(f"rtt 64B / stdlib loop          {ratio('sw rtt us', 'std rtt us'):5.2f}x  (<= 0.9)")
    print(
        f"1 MiB / stdlib loop            {ratio('sw 1MiB MB/s', 'std 1MiB MB/s'):5.2f}x  (>= 1.0)"
    )
    print(f"1 MiB / multiprocessing        {ratio('sw 1MiB MB/s', 'mp 1MiB MB/s'):5.2f}x  (>= 2)")


if __name__ == "__main__":
    main()
