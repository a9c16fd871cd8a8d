"""The benchmark suites: which cases run, with which driver, and which ratios matter.

A new suite is one function here returning Suites.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

from . import aioload, contenders, drivers, peers
from .harness import Case, Comparison, Params, Suite

__all__ = ["SUITES", "build"]

MIB = 1 << 20


def latency() -> list[Suite]:
    cases = [
        contenders.channel("unix"),
        contenders.channel("seqpacket"),
        contenders.channel("dgram"),
        contenders.channel("tcp"),
        contenders.channel("udp"),
        peers.stdlib_framed_unix(),
        peers.stdlib_framed_tcp(),
        peers.mp_connection(),
        peers.pyzmq("REQ", "REP", "ipc"),
        peers.pyzmq("REQ", "REP", "tcp"),
        peers.c_pingpong("unix-stream"),
        contenders.channel("unix", one_core=True),
        peers.stdlib_framed_unix(one_core=True),
        peers.c_pingpong("unix-stream", one_core=True),
    ]
    comparisons = [
        # across two cores the round trip is mostly wake-up latency, which swings
        # widely on a VM; pinned to one core it measures the CPU cost per message
        Comparison("sockwire-unix", "stdlib-unix", "mean_us", 0.9, "<="),
        Comparison("sockwire-unix-1core", "stdlib-unix-1core", "mean_us", 0.9, "<="),
        Comparison("sockwire-unix-1core", "c-unix-stream-1core", "mean_us", 1.3, "<="),
        Comparison("sockwire-unix", "mp-connection", "mean_us", None, "<="),
        Comparison("sockwire-unix", "pyzmq-req-ipc", "mean_us", None, "<="),
        Comparison("sockwire-tcp", "stdlib-tcp", "mean_us", None, "<="),
        Comparison("sockwire-tcp", "pyzmq-req-tcp", "mean_us", None, "<="),
        Comparison("sockwire-unix", "c-unix-stream", "mean_us", None, "<="),
    ]
    return [
        Suite(
            "latency",
            "64 B round trip (microseconds; lower is better)",
            [("mean_us", "us", False), ("p50_us", "us", False), ("p99_us", "us", False)],
            cases,
            comparisons,
            drivers.roundtrip,
            full=Params(64, 5000, None, None),
            quick=Params(64, 1000, None, None),
        )
    ]


def throughput() -> list[Suite]:
    small = [
        contenders.channel("unix"),
        contenders.channel("seqpacket"),
        contenders.channel("tcp"),
        peers.stdlib_framed_unix(),
        peers.mp_connection(),
        peers.pyzmq("PUSH", "PULL", "ipc"),
        peers.pyzmq("PAIR", "PAIR", "ipc"),
        peers.pyzmq("PUSH", "PULL", "tcp"),
    ]
    big = [
        contenders.channel("unix"),
        contenders.channel("tcp"),
        peers.stdlib_framed_unix(),
        peers.stdlib_framed_tcp(),
        peers.mp_connection(),
        peers.pyzmq("PUSH", "PULL", "ipc"),
        peers.pyzmq("PUSH", "PULL", "tcp"),
    ]
    metrics = [("msgs_per_s", "msg/s", True), ("bytes_per_s", "B/s", True)]
    return [
        Suite(
            "throughput-64b",
            "64 B messages one way (higher is better)",
            metrics,
            small,
            [
                Comparison("sockwire-unix", "pyzmq-push-ipc", "msgs_per_s", 3.0),
                Comparison("sockwire-unix", "stdlib-unix", "msgs_per_s"),
                Comparison("sockwire-unix", "mp-connection", "msgs_per_s"),
                Comparison("sockwire-tcp", "pyzmq-push-tcp", "msgs_per_s"),
            ],
            drivers.oneway,
            full=Params(64, 200_000, None, None),
            quick=Params(64, 20_000, None, None),
        ),
        Suite(
            "throughput-1mib",
            "1 MiB messages one way (higher is better)",
            metrics,
            big,
            [
                Comparison("sockwire-unix", "stdlib-unix", "bytes_per_s", 1.0),
                Comparison("sockwire-unix", "mp-connection", "bytes_per_s", 2.0),
                Comparison("sockwire-unix", "pyzmq-push-ipc", "bytes_per_s"),
                Comparison("sockwire-tcp", "stdlib-tcp", "bytes_per_s"),
            ],
            drivers.oneway,
            full=Params(MIB, 1000, None, None),
            quick=Params(MIB, 100, None, None),
        ),
    ]


def relay() -> list[Suite]:
    def socat_missing() -> str | None:
        return None if shutil.which("socat") else "socat is not installed (apt-get install socat)"

    cases = [
        Case(
            "sockwire-relay",
            "sockwire relay unix -> tcp",
            "sockwire",
            run=drivers.relay_case_runner(contenders.relay_command),
        ),
        Case(
            "socat",
            "socat unix -> tcp (default 8 KiB buffer)",
            "peer",
            run=drivers.relay_case_runner(
                lambda path, port: ["socat", f"UNIX-LISTEN:{path},fork", f"TCP:127.0.0.1:{port}"]
            ),
            missing=socat_missing,
        ),
        Case(
            "socat-256k",
            "socat -b 262144 unix -> tcp",
            "peer",
            run=drivers.relay_case_runner(
                lambda path, port: [
                    "socat",
                    "-b",
                    "262144",
                    f"UNIX-LISTEN:{path},fork",
                    f"TCP:127.0.0.1:{port}",
                ]
            ),
            missing=socat_missing,
        ),
    ]
    return [
        Suite(
            "relay",
            "bytes through a relay, unix -> tcp (higher is better)",
            [("bytes_per_s", "B/s", True)],
            cases,
            [
                Comparison("sockwire-relay", "socat", "bytes_per_s", 1.3),
                Comparison("sockwire-relay", "socat-256k", "bytes_per_s", 1.2),
            ],
            None,
            full=Params(MIB, 0, None, None, total=1024 * MIB),
            quick=Params(MIB, 0, None, None, total=64 * MIB),
        )
    ]


def memory() -> list[Suite]:
    cases = [
        contenders.channel("unix"),
        peers.stdlib_framed_unix(),
        peers.mp_connection(),
    ]
    return [
        Suite(
            "memory",
            "receiver's peak RSS growth, 64 KiB messages (MiB; lower is better)",
            [("rss_growth_mib", "MiB", False)],
            cases,
            [
                Comparison("sockwire-unix", "", "rss_growth_mib", 64.0, "<="),
                Comparison("sockwire-unix", "stdlib-unix", "rss_growth_mib"),
            ],
            drivers.memory,
            full=Params(64 * 1024, 0, None, None, total=1024 * MIB),
            quick=Params(64 * 1024, 0, None, None, total=128 * MIB),
        )
    ]


def async_() -> list[Suite]:
    """Request/reply throughput of sockwire.aio against plain asyncio streams.

    Both sides of each case are the implementation named: an aio.serve echo
    server and aio.connect clients, or asyncio.start_server and
    open_connection with ``readexactly`` (the same len32 frames), over a UNIX
    socket; server and clients in separate processes, on the default loop
    and on uvloop, with 50 and 1,000 connections. Each connection does its
    requests one at a time, then with 8 in flight (a pipelining client):
    only then can one read carry several messages, which sockwire.aio parses
    in one go and answers with one write per loop iteration.
    ``cpu_us_per_req`` is the CPU both processes spent per request while the
    requests ran (the server's counts its accepts too): on a shared machine
    it moves less than the wall-clock rate.
    """
    cases = []
    comparisons = []
    for window, suffix in ((1, ""), (8, "-w8")):
        for connections in (50, 1000):
            for loop, tag in (("asyncio", ""), ("uvloop", "-uvloop")):
                for impl, group, name in (
                    ("aio", "sockwire", "sockwire.aio"),
                    ("streams", "peer", "asyncio streams"),
                ):
                    loop_name = "uvloop" if tag else "default loop"
                    flight = "1 at a time" if window == 1 else f"{window} in flight"
                    cases.append(
                        Case(
                            f"{impl}{tag}-{connections}{suffix}",
                            f"{name}, {loop_name}, {connections} conns, {flight}",
                            group,
                            run=aioload.case_runner(impl, loop, connections, window),
                            missing=_uvloop_missing if tag else (lambda: None),
                        )
                    )
                target = 1.5 if tag else 1.0
                key = f"{tag}-{connections}{suffix}"
                comparisons.append(Comparison(f"aio{key}", f"streams{key}", "req_per_s", target))
    return [
        Suite(
            "async",
            "asyncio request/reply, 64 B messages (higher is better)",
            [("req_per_s", "req/s", True), ("cpu_us_per_req", "us", False)],
            cases,
            comparisons,
            None,
            full=Params(64, 50_000, None, None),
            quick=Params(64, 20_000, None, None),
        )
    ]


def zmtp() -> list[Suite]:
    """sockwire.zmq against libzmq (pyzmq): the issue's three ratios."""
    oneway = [
        contenders.zmq_socket("PUSH", "PULL", "ipc"),
        contenders.zmq_socket("PUSH", "PULL", "tcp"),
        contenders.zmq_socket("PUSH", "PULL", "tcp", child="pyzmq"),
        peers.pyzmq("PUSH", "PULL", "ipc"),
        peers.pyzmq("PUSH", "PULL", "tcp"),
    ]
    roundtrip = [
        contenders.zmq_socket("REQ", "REP", "tcp", child="pyzmq"),
        contenders.zmq_socket("REQ", "REP", "tcp"),
        peers.pyzmq("REQ", "REP", "tcp"),
    ]
    return [
        Suite(
            "zmtp",
            "ZeroMQ PUSH/PULL, 64 B messages one way (higher is better)",
            [("msgs_per_s", "msg/s", True)],
            oneway,
            [
                Comparison("sockwire-zmq-push-ipc", "pyzmq-push-ipc", "msgs_per_s", 2.0),
                Comparison("sockwire-zmq-push-tcp", "pyzmq-push-tcp", "msgs_per_s", 2.0),
                Comparison("sockwire-push-pyzmq-pull-tcp", "pyzmq-push-tcp", "msgs_per_s", 1.0),
            ],
            drivers.oneway,
            full=Params(64, 200_000, None, None),
            quick=Params(64, 20_000, None, None),
        ),
        Suite(
            "zmtp-reqrep",
            "ZeroMQ REQ/REP, 64 B round trip (microseconds; lower is better)",
            [("mean_us", "us", False), ("p50_us", "us", False), ("p99_us", "us", False)],
            roundtrip,
            [
                Comparison("sockwire-req-pyzmq-rep-tcp", "pyzmq-req-tcp", "mean_us", 1.0, "<="),
                Comparison("sockwire-zmq-req-tcp", "pyzmq-req-tcp", "mean_us", None, "<="),
            ],
            drivers.roundtrip,
            full=Params(64, 5000, None, None),
            quick=Params(64, 1000, None, None),
        ),
    ]


def startup() -> list[Suite]:
    """``sockwire --help`` and ``sockwire relay --help`` beside the interpreter's own start."""
    script = os.path.join(os.path.dirname(sys.executable), "sockwire")
    command = [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "sockwire"]
    cases = [
        Case(
            "sockwire-help",
            "sockwire --help",
            "sockwire",
            run=drivers.startup_case_runner([*command, "--help"]),
        ),
        Case(
            "sockwire-relay-help",
            "sockwire relay --help",
            "sockwire",
            run=drivers.startup_case_runner([*command, "relay", "--help"]),
        ),
        Case(
            "python-import-socket",
            "python -c 'import socket'",
            "peer",
            run=drivers.startup_case_runner([sys.executable, "-c", "import socket"]),
        ),
    ]
    return [
        Suite(
            "startup",
            "start-up to exit, median of 31 runs (11 quick; milliseconds, lower is better)",
            [("startup_ms", "ms", False)],
            cases,
            [
                Comparison("sockwire-help", "python-import-socket", "startup_ms", 2.5, "<="),
                Comparison("sockwire-relay-help", "python-import-socket", "startup_ms", 2.5, "<="),
            ],
            None,
            full=Params(0, 31, None, None),
            quick=Params(0, 11, None, None),
        )
    ]


def _uvloop_missing() -> str | None:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "uvloop is not installed (pip install 'sockwire[uvloop]')"
    return None


SUITES: dict[str, Callable[[], list[Suite]]] = {
    "latency": latency,
    "throughput": throughput,
    "relay": relay,
    "memory": memory,
    "zmtp": zmtp,
    "startup": startup,
    "async": async_,
}


def build(names: list[str] | None) -> list[Suite]:
    """The Suites for ``names`` (all when empty); unknown names raise KeyError."""
    chosen: list[Suite] = []
    for name in names or list(SUITES):
        chosen.extend(SUITES[name]())
    return chosen
