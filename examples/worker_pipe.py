"""A parent and a forked worker talking over sockwire.pipe(): multiprocessing.Pipe for sockets.

Run: python examples/worker_pipe.py

The parent sends jobs as JSON, the worker answers each one; message
boundaries are kept by framing, and the worker's end of the pipe is a
real socket (see /proc/PID/fd). Everything stops by itself.
"""

from __future__ import annotations

import os

import sockwire


def worker(channel: sockwire.Channel) -> None:
    for job in channel:  # ends at the parent's close (EOF)
        channel.send({"job": job["id"], "square": job["n"] ** 2, "pid": os.getpid()})


def main() -> None:
    parent_end, child_end = sockwire.pipe(codec="json")
    pid = os.fork()
    if pid == 0:
        parent_end.close()
        try:
            worker(child_end)
        finally:
            child_end.close()
            os._exit(0)
    child_end.close()
    with parent_end:
        for n in range(5):
            parent_end.send({"id": n, "n": n})
        for _ in range(5):
            reply = parent_end.recv(timeout=10)
            print(f"job {reply['job']}: {reply['square']} (worker pid {reply['pid']})")
    _, status = os.waitpid(pid, 0)
    print("worker exited with", os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
