"""Pass an open file from one process to another over a UNIX socket (SCM_RIGHTS).

Run: python examples/fd_passing.py

The child opens a file the parent could not name (it is already deleted),
sends the descriptor, and the parent reads it: the kernel duplicated the
open file into the parent. Up to 253 fds fit in one message.
"""

from __future__ import annotations

import os
import tempfile

import sockwire
from sockwire import unix


def main() -> None:
    parent_sock, child_sock = sockwire.socketpair()
    pid = os.fork()
    if pid == 0:
        parent_sock.close()
        with tempfile.TemporaryFile() as f:  # unlinked at once: no name left
            f.write(b"written by the child, read by the parent\n")
            f.seek(0)
            unix.send_fds(child_sock, b"here", [f])
        child_sock.close()
        os._exit(0)
    child_sock.close()
    with parent_sock:
        msg = unix.recv_fds(parent_sock, maxfds=4)
        print(f"got {msg.data!r} with {len(msg.fds)} fd(s): {msg.fds}")
        for fd in msg.fds:
            with os.fdopen(fd, "rb") as f:
                print("the file says:", f.read().decode().strip())
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
