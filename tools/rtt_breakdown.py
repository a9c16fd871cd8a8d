"""Where a Channel's round trip goes: each piece of the hot path timed alone.

Run: .venv/bin/python tools/rtt_breakdown.py   (one process, no peer: CPU cost only)

Each line is the best of 7 timeit repeats, in nanoseconds per operation. The
pieces are what one side of a pinned round trip does: send() appends a frame;
recv() takes its locks, flushes (a copy of the buffer and one send(2)), reads
(one recv_into(2) and a bytes copy), parses (feed_into) and pops the message.
The sum of the pieces against one measured send()+recv() of a real Channel
over a socketpair tells what the driver itself adds.
"""

from __future__ import annotations

import collections
import os
import socket
import sys
import threading
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import sockwire
from sockwire.framing import LengthPrefixDecoder, LengthPrefixEncoder

N = 100_000
MSG = b"x" * 64
FRAME = LengthPrefixEncoder().pack(64) + MSG


def best(stmt: str, setup: str = "pass", number: int = N, **names: object) -> float:
    timer = timeit.Timer(stmt, setup, globals=names)
    return min(timer.repeat(7, number)) / number * 1e9


def main() -> None:
    a, b = socket.socketpair()
    view = memoryview(bytearray(262144))
    lock = threading.Lock()
    dq: collections.deque[bytes] = collections.deque()
    dec = LengthPrefixDecoder()
    out = bytearray()
    heads = LengthPrefixEncoder().headers
    rows = {
        "send(): header lookup + bytearray +=": best(
            "o += heads[64] + msg\nif len(o) > 1 << 20: del o[:]",
            "o = out",
            out=out,
            heads=heads,
            msg=MSG,
        ),
        "two lock acquire/release pairs": best(
            "lock.acquire(); lock.release(); lock.acquire(False); lock.release()", lock=lock
        ),
        "flush copy: bytes(out) + del (68 B)": best(
            "o += f; d = bytes(o); del o[: len(d)]", "o = out", out=bytearray(), f=FRAME
        ),
        "send(2) + recv_into(2), 68 B (the kernel's part)": best(
            "a.sendall(f, flags); b.recv_into(view, 262144)",
            number=N // 5,
            a=a,
            b=b,
            f=FRAME,
            view=view,
            flags=socket.MSG_NOSIGNAL,
        ),
        "read copy: memoryview slice .tobytes() (68 B)": best("view[:68].tobytes()", view=view),
        "parse: feed_into one frame": best(
            "feed(f, dq.append); dq.clear()", feed=dec.feed_into, f=FRAME, dq=dq
        ),
        "deque append + popleft": best("dq.append(m); dq.popleft()", dq=dq, m=MSG),
    }
    # the real path: send() buffers, recv() flushes it (one send(2)) and reads the
    # answer (one recv_into(2)); a raw peer provides the answer and takes the frame,
    # which costs the same two system calls again: subtract one more kernel part
    mine, peer = socket.socketpair()
    x = sockwire.Channel.from_socket(mine)
    whole = best(
        "x.send(m); peer.sendall(f); x.recv(); peer.recv_into(view, 262144)",
        number=N // 5,
        x=x,
        peer=peer,
        m=MSG,
        f=FRAME,
        view=memoryview(bytearray(262144)),
    )
    whole -= rows["send(2) + recv_into(2), 68 B (the kernel's part)"]
    x.close()
    peer.close()
    a.close()
    b.close()
    total = sum(rows.values())
    for name, ns in rows.items():
        print(f"{ns:8.0f} ns  {name}")
    print(f"{total:8.0f} ns  the pieces together")
    print(f"{whole:8.0f} ns  a Channel's send() + recv() (the peer's system calls taken out)")
    print(f"{whole - total:8.0f} ns  what the Channel adds (calls, checks, state)")


if __name__ == "__main__":
    main()
