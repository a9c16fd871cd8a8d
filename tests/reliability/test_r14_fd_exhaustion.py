"""R14: out of descriptors. A server survives, backs off (never spins), and recovers.

* EMFILE on accept is backed off every 100 ms, not spun on (a child whose
  RLIMIT_NOFILE leaves no free descriptor for exactly one pending client).
* A server under ``prlimit --nofile=128`` hit by 500 connects at once: it
  accepts what fits, backs off on EMFILE, stays alive, and once the flood
  goes away serves a good client again.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from tests.helpers import need_tool
from tests.reliability.support import WAIT, good_client

EMFILE_CHILD = textwrap.dedent(
    """
    import json, os, resource, socket, sys, threading
    from sockwire.server import serve

    def echo(ch, peer):
        for msg in ch:
            ch.send(msg)

    name = sys.argv[1]
    window = float(sys.argv[2])
    server = serve(f"unix:@{name}", echo).start()
    client = socket.socket(socket.AF_UNIX)        # its fd exists before the limit drops
    client.settimeout(10)
    lowest = os.dup(0)
    os.close(lowest)                               # the lowest free descriptor
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))  # no new fd fits
    client.connect(b"\\0" + name.encode())         # waits in the backlog; accept fails
    threading.Event().wait(window)                 # the measuring window (not a sync)
    during = (server.stats.accept_attempts, server.stats.accept_backoffs)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    client.sendall(b"\\0\\0\\0\\x05hello")
    reply = client.recv(100)
    client.close()
    server.shutdown(5)
    print(json.dumps({"during": during, "reply": reply.decode("latin-1"),
                      "accepted": server.stats.accepted}), flush=True)
    """
)


@pytest.mark.timeout(60)
def test_r14_emfile_on_accept_backs_off_instead_of_spinning(report: Callable[..., None]) -> None:
    window = 0.5
    proc = subprocess.run(
        [sys.executable, "-c", EMFILE_CHILD, f"sw-emfile-{os.getpid()}", str(window)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    attempts, backoffs = result["during"]
    # one attempt per 100 ms back-off: about 5 in the window; a spinning loop makes
    # tens of thousands. Counts, not timings: a slower machine makes fewer.
    assert backoffs >= 2
    assert attempts == backoffs, "every attempt in the window failed and was backed off"
    assert attempts <= window / 0.1 + 3
    assert result["reply"] == "\0\0\0\x05hello", "accepted once descriptors were free again"
    assert result["accepted"] == 1
    assert "EMFILE" in proc.stderr, "the back-off is logged"
    report("R14", emfile_backoffs=backoffs, spins=0)


FLOODED_CHILD = textwrap.dedent(
    """
    import json, sys
    from sockwire.server import serve

    def echo(ch, peer):
        for msg in ch:
            ch.send(msg)

    server = serve("tcp://127.0.0.1:0", echo, max_connections=1000, backlog=1024).start()
    print(server.endpoint, flush=True)
    for line in sys.stdin:
        if line.strip() == "wait-backoff":
            server.wait_for(lambda s: s.stats.accept_backoffs >= 1, 30)
        s = server.stats
        print(json.dumps({"accepted": s.accepted, "attempts": s.accept_attempts,
                          "backoffs": s.accept_backoffs, "active": s.active}), flush=True)
    server.shutdown(5)
    """
)


@pytest.mark.timeout(120)
def test_r14_500_connects_against_nofile_128(report: Callable[..., None]) -> None:
    prlimit = need_tool("prlimit")
    proc = subprocess.Popen(
        [prlimit, "--nofile=128:128", sys.executable, "-c", FLOODED_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def stats(command: str = "stats") -> dict[str, int]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]

    flood: list[socket.socket] = []
    try:
        endpoint = proc.stdout.readline().strip()
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        for _ in range(500):
            sock = socket.socket()
            flood.append(sock)
            sock.settimeout(WAIT)
            sock.connect((host, int(port)))  # the kernel completes it; accept may not
        # the server took what fits under 128 descriptors and backs off on the rest
        during = stats("wait-backoff")
        assert proc.poll() is None, "the server is alive"
        assert 50 < during["accepted"] < 128
        for sock in flood:
            sock.close()
        flood.clear()
        took = good_client(endpoint, 10, timeout=WAIT * 2)  # recovers once the flood is gone
        after = stats()
        assert after["backoffs"] >= 1, "EMFILE was met and backed off"
        # backed off, not spun: at most one attempt per back-off beyond those that worked
        assert after["attempts"] <= after["accepted"] + after["backoffs"] + 5
    finally:
        for sock in flood:
            sock.close()
        proc.stdin.close()
        try:
            proc.wait(30)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            assert proc.stderr is not None
            err = proc.stderr.read()
            proc.stderr.close()
    assert proc.returncode == 0, err[-2000:]
    assert "EMFILE" in err
    report(
        "R14",
        connects=500,
        accepted_under_nofile_128=during["accepted"],
        flood_backoffs=after["backoffs"],
        recovered_in_s=round(took, 2),
    )
