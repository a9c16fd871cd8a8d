"""The Channel's round-trip hot path written inline, against the Channel itself.

Run: .venv/bin/python tools/rtt_mimic.py   (5 rounds, processes pinned to cores 0 and 1)

Why: to tell what the design costs (buffer, flush before a blocking
recv_into, frames sliced out of one read) from what the implementation adds.
"""

import collections
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
import sockwire

N = 20000


def pin(c):
    os.sched_setaffinity(0, {c})


class Mimic:
    def __init__(self, sock):
        self.sock = sock
        self.out = bytearray()
        self.buf = bytearray(262144)
        self.view = memoryview(self.buf)
        self.pending = collections.deque()
        self.lock = threading.Lock()
        self.slock = threading.Lock()
        self.unpack_from = struct.Struct(">I").unpack_from
        self.pack = struct.Struct(">I").pack

    def send(self, msg):
        self.out += self.pack(len(msg)) + msg

    def recv(self):
        pending = self.pending
        out = self.out
        self.lock.acquire()
        try:
            while not pending:
                if out and self.slock.acquire(False):
                    try:
                        data = bytes(out)
                        del out[: len(data)]
                        self.sock.sendall(data, socket.MSG_NOSIGNAL)
                    finally:
                        self.slock.release()
                count = self.sock.recv_into(self.view, 262144)
                data = self.view[:count].tobytes()
                start = 0
                while count - start >= 4:
                    (size,) = self.unpack_from(data, start)
                    stop = start + 4 + size
                    if stop > count:
                        break
                    pending.append(data[start + 4 : stop])
                    start = stop
            return pending.popleft()
        finally:
            self.lock.release()


def run(kind):
    if kind == "sockwire":
        a, b = sockwire.pipe()
    else:
        x, y = socket.socketpair()
        a, b = Mimic(x), Mimic(y)
    pid = os.fork()
    if pid == 0:
        pin(1)
        for _ in range(N + 200):
            b.send(b.recv())
        if kind == "sockwire":
            b.flush()
        else:
            b.sock.sendall(bytes(b.out))
        os._exit(0)
    pin(0)
    msg = b"x" * 64
    for _ in range(200):
        a.send(msg)
        a.recv()
    t = time.perf_counter_ns()
    for _ in range(N):
        a.send(msg)
        a.recv()
    dt = (time.perf_counter_ns() - t) / N / 1000
    os.waitpid(pid, 0)
    return dt


for _ in range(5):
    print(f"sockwire {run('sockwire'):.1f}  mimic {run('mimic'):.1f}")
