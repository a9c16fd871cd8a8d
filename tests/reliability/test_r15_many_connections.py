"""R15: many connections against the threaded server, with its fail-safe limit.

1,000 clients (one separate process, non-blocking sockets) connect at once
to a default ``serve()`` (64 slots) and each does 10 request/replies. The
server holds at most 64 handlers (twice that for a moment while evicted ones
leave); clients beyond wait in the backlog, and a client whose connection
is evicted while it pauses connects again and goes on where it was. Every
request gets exactly its own reply, in order per client; nothing is lost.
(10,000 connections per transport is the asyncio driver's row, in soak.)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from sockwire.server import serve
from tests.reliability.support import echo

CLIENTS = textwrap.dedent(
    """
    import json, selectors, socket, struct, sys, time
    host, port, count, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    sel = selectors.DefaultSelector()
    state = {}
    done = reconnects = wrong = 0

    def start(cid, step):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex((host, port))
        state[sock] = [cid, step, b"", False]
        sel.register(sock, selectors.EVENT_WRITE)

    for cid in range(count):
        start(cid, 0)
    deadline = time.monotonic() + 120
    while len(state) and time.monotonic() < deadline:
        for key, events in sel.select(1.0):
            sock = key.fileobj
            cid, step, buf, sent = state[sock]
            try:
                if not sent:
                    body = b"%d:%d" % (cid, step)
                    sock.sendall(struct.pack("!I", len(body)) + body)
                    state[sock][3] = True
                    sel.modify(sock, selectors.EVENT_READ)
                    continue
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:  # evicted (or reset): connect again, redo this step
                sel.unregister(sock)
                sock.close()
                del state[sock]
                reconnects += 1
                start(cid, step)
                continue
            buf += data
            state[sock][2] = buf
            if len(buf) >= 4 and len(buf) >= 4 + struct.unpack("!I", buf[:4])[0]:
                size = struct.unpack("!I", buf[:4])[0]
                if buf[4:4 + size] != b"%d:%d" % (cid, step):
                    wrong += 1
                step += 1
                if step == rounds:
                    sel.unregister(sock)
                    sock.close()
                    del state[sock]
                    done += 1
                    continue
                state[sock] = [cid, step, buf[4 + size:], False]
                sel.modify(sock, selectors.EVENT_WRITE)
    print(json.dumps({"done": done, "reconnects": reconnects, "wrong": wrong,
                      "unfinished": len(state)}), flush=True)
    """
)


@pytest.mark.timeout(180)
def test_r15_1000_clients_against_a_threaded_server(report: Callable[..., None]) -> None:
    count, rounds = 1000, 10

    def more_fds() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))

    more_fds()
    with serve("tcp://127.0.0.1:0", echo, backlog=2048).start() as server:
        host, port = server.address[:2]  # type: ignore[index]
        proc = subprocess.run(
            [sys.executable, "-c", CLIENTS, str(host), str(port), str(count), str(rounds)],
            capture_output=True,
            text=True,
            timeout=170,
            check=False,
            preexec_fn=more_fds,  # no lock is taken in it
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads(proc.stdout)
        peak = server.stats.peak
    assert result == {
        "done": count,
        "reconnects": result["reconnects"],
        "wrong": 0,
        "unfinished": 0,
    }
    assert peak <= 2 * 64
    report(
        "R15",
        clients=count,
        req_rep=count * rounds,
        lost=0,
        reordered=0,
        peak_handlers=peak,
        evicted_and_reconnected=result["reconnects"],
    )
