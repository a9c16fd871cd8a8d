"""CPU time per 64 B PUSH/PULL message, each side (sockwire.zmq or pyzmq, 300,000 over ipc).

Run: .venv/bin/python tools/zmtp_cpu.py sockwire   (or: pyzmq)

CPU time (time.process_time: every thread of the process, libzmq's I/O
thread included) does not depend on what else the machine runs, unlike the
msg/s of `sockwire bench zmtp` on a shared VM.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
N = 300_000
which = sys.argv[1] if len(sys.argv) > 1 else "sockwire"
path = os.path.join(tempfile.mkdtemp(prefix="zmtp-cpu-"), "z.sock")


def pull() -> float:
    if which == "sockwire":
        from sockwire import zmq as swz

        sock = swz.Socket("PULL", f"zmq+ipc://{path}")
        recv = sock.recv
    else:
        import zmq

        sock = zmq.Context().socket(zmq.PULL)
        sock.connect(f"ipc://{path}")
        recv = sock.recv
    recv()
    started = time.process_time()
    for _ in range(N - 1):
        recv()
    return (time.process_time() - started) / N * 1e6


def push() -> float:
    msg = b"x" * 64
    if which == "sockwire":
        from sockwire import zmq as swz

        sock = swz.Socket("PUSH", f"zmq+ipc://{path}?bind=1")
        sock.wait_peers()
        send = sock.send
    else:
        import zmq

        sock = zmq.Context().socket(zmq.PUSH)
        sock.bind(f"ipc://{path}")
        send = sock.send
    started = time.process_time()
    for _ in range(N):
        send(msg)
    if which == "sockwire":
        sock.flush()
    return (time.process_time() - started) / N * 1e6


r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, b"%f" % pull())
    os._exit(0)
os.close(w)
sender = push()
receiver = float(os.read(r, 100))
os.waitpid(pid, 0)
print(f"{which}: sender {sender:.3f} us/msg, receiver {receiver:.3f} us/msg (CPU)")
