"""R5: slowloris against a default ``serve()``, ``sockwire echo`` and ``sockwire relay``.

A separate process holds N connections (fast tier 200, soak 1,000) to a
default server (64 slots) and trickles one byte into each every 0.5 s:
valid empty len32 frames at 2 bytes a second, so no connection is ever idle
for long nor mid-frame past a deadline. A connection the server closes is
opened again at once (the attacker keeps up the pressure). Meanwhile a
well-behaved client connects and does 100 request/replies: within 5 s
(asserted with 3x slack), every run.

The command-line servers run as real processes with their defaults
(``--max-clients 64``, no ``--timeout``); ``relay`` forwards to a library
echo server with room for everything the relay lets through. Their counts
come from the summary line SIGUSR1 asks for.
"""

from __future__ import annotations

import contextlib
import re
import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest

from sockwire.server import serve
from tests.cli_helpers import Proc, host_port, run
from tests.reliability.support import echo, good_client

TRICKLER = textwrap.dedent(
    """
    import selectors, socket, sys, time
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sel = selectors.DefaultSelector()
    socks = set()
    reopened = 0

    def open_one():
        sock = socket.create_connection((host, port))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        socks.add(sock)

    for _ in range(count):
        open_one()
    sel.register(sys.stdin, selectors.EVENT_READ)
    print("ready", flush=True)
    next_tick = time.monotonic()
    while True:
        timeout = max(0.0, next_tick - time.monotonic())
        for key, _ in sel.select(timeout):
            if key.fileobj is sys.stdin:
                if not sys.stdin.readline():
                    print(reopened, flush=True)
                    sys.exit(0)
                continue
            sock = key.fileobj
            try:
                data = sock.recv(4096)  # the echoed empty frames, or the end
            except OSError:
                data = b""
            if not data:  # closed by the server: come back at once
                sel.unregister(sock)
                socks.discard(sock)
                sock.close()
                open_one()
                reopened += 1
        if time.monotonic() >= next_tick:
            next_tick += 0.5
            for sock in list(socks):
                try:
                    sock.send(b"\\0")
                except OSError:
                    pass
    """
)


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))


def _trickle(host: str, port: int, count: int, endpoint: str) -> tuple[list[float], int]:
    """N tricklers against host:port while a good client does 3 x 100 req/rep on
    ``endpoint``; the good client's times and how often the tricklers reconnected."""
    proc = subprocess.Popen(
        [sys.executable, "-c", TRICKLER, host, str(port), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: _raise_fd_limit(2 * count + 512),  # noqa: PLW1509  # no lock taken
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        took = [good_client(endpoint, 100) for _ in range(3)]
        proc.stdin.close()
        reopened = int(proc.stdout.readline())
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert max(took) < 5.0 * 3, f"the good client took {max(took):.2f} s"
    return took, reopened


def _run(count: int, report: Callable[..., None]) -> None:
    _raise_fd_limit(2 * count + 512)
    with serve("tcp://127.0.0.1:0", echo, backlog=2 * count).start() as server:
        host, port = server.address[:2]  # type: ignore[index]
        took, reopened = _trickle(str(host), int(port), count, server.endpoint)
    report(
        "R5",
        trickling_connections=count,
        good_clients=len(took),
        req_rep=100 * len(took),
        slowest_s=round(max(took), 2),
        evicted=server.stats.evicted,
        reconnects=reopened,
    )


@contextlib.contextmanager
def _cli_server(*argv: str) -> Iterator[tuple[Proc, str]]:
    """``sockwire ARGV`` (stdin empty); the process and the address it listens on."""
    with open("/dev/null", "rb") as stdin, run(*argv, stdin=stdin.fileno()) as proc:
        yield proc, proc.address()


_COUNTS = {
    "evicted": r"(\d+) evicted for newcomers",
    "no_first_bytes": r"(\d+) closed without first bytes",
    "idle": r"(\d+) closed idle",
}


def _summary(proc: Proc, name: str) -> dict[str, int]:
    """The counts of the summary SIGUSR1 asks ``proc`` for (``evicted`` and the like)."""
    proc.err = b""
    proc.p.send_signal(signal.SIGUSR1)
    text = proc.wait_err(" connections (")  # not a report line still in the pipe
    assert text.startswith(f"sockwire: {name}: "), text
    return {
        key: int(found.group(1)) if (found := re.search(pattern, text)) else 0
        for key, pattern in _COUNTS.items()
    }


def _run_cli(command: str, count: int, report: Callable[..., None]) -> None:
    """``sockwire echo`` or ``relay`` (to a library echo server) under N tricklers."""
    _raise_fd_limit(2 * count + 512)
    backlog = str(2 * count)
    with contextlib.ExitStack() as stack:
        if command == "echo":
            argv = ["echo", "tcp://127.0.0.1:0", "--backlog", backlog]
        else:
            target = stack.enter_context(
                serve("tcp://127.0.0.1:0", echo, max_connections=256).start()
            )
            argv = ["relay", "tcp://127.0.0.1:0", target.endpoint, "--backlog", backlog]
        proc, address = stack.enter_context(_cli_server(*argv))
        host, port = host_port(address)
        took, reopened = _trickle(host, port, count, address)
        counts = _summary(proc, command)
        assert proc.stop() == 143
    assert "Traceback" not in proc.text
    report(
        f"R5 {command}",
        trickling_connections=count,
        good_clients=len(took),
        req_rep=100 * len(took),
        slowest_s=round(max(took), 2),
        evicted=counts["evicted"],
        reconnects=reopened,
    )


@pytest.mark.timeout(120)
def test_r05_trickling_connections_against_a_default_serve(report: Callable[..., None]) -> None:
    _run(200, report)


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_r05_1000_trickling_connections_against_a_default_serve(
    report: Callable[..., None],
) -> None:
    _run(1000, report)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["echo", "relay"])
def test_r05_trickling_connections_against_the_cli_servers(
    command: str, report: Callable[..., None]
) -> None:
    _run_cli(command, 200, report)


@pytest.mark.soak
@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", ["echo", "relay"])
def test_r05_1000_trickling_connections_against_the_cli_servers(
    command: str, report: Callable[..., None]
) -> None:
    _run_cli(command, 1000, report)
