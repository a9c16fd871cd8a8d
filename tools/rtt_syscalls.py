"""System calls per round trip: sockwire Channel vs the stdlib framed loop (10,000 x 64 B).

Run: strace -f -c .venv/bin/python tools/rtt_syscalls.py sockwire   (or: stdlib)
"""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
N = 10000
which = sys.argv[1]
if which == "sockwire":
    import sockwire

    a, b = sockwire.pipe()
    pid = os.fork()
    if pid == 0:
        a.close()
        for _ in range(N):
            b.send(b.recv())
        b.close()
        os._exit(0)
    b.close()
    msg = b"x" * 64
    for _ in range(N):
        a.send(msg)
        a.recv()
    a.close()
    os.waitpid(pid, 0)
else:
    a, b = socket.socketpair()

    def recv_exact(s, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            got += s.recv_into(view[got:])
        return bytes(buf)

    pid = os.fork()
    if pid == 0:
        a.close()
        for _ in range(N):
            (n,) = struct.unpack(">I", recv_exact(b, 4))
            data = recv_exact(b, n)
            b.sendall(struct.pack(">I", n) + data)
        os._exit(0)
    b.close()
    msg = b"x" * 64
    for _ in range(N):
        a.sendall(struct.pack(">I", 64) + msg)
        (n,) = struct.unpack(">I", recv_exact(a, 4))
        recv_exact(a, n)
    os.waitpid(pid, 0)
