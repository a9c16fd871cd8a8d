"""Collect log lines from unnamed senders on a UNIX datagram socket, with their credentials.

Run: python examples/log_collector.py

Like syslog's /dev/log: senders never bind a name (netcat then fails with
"connect: Invalid argument"), yet each datagram arrives with the sender's
pid/uid/gid (SO_PASSCRED / SCM_CREDENTIALS). Boundaries are kept, and
UNIX datagrams are never dropped: a full queue holds the sender back.
"""

from __future__ import annotations

import os
import socket
import tempfile

from sockwire import dial
from sockwire.sock import format_address


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        path = os.path.join(home, "log.sock")
        with dial.bind(f"unix+dgram:{path}") as collector:
            collector.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            children = []
            for n in range(3):
                pid = os.fork()
                if pid == 0:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                        sender.sendto(b"<14>worker %d started" % n, path)  # never bound
                    os._exit(0)
                children.append(pid)
            collector.settimeout(10)
            for _ in children:
                msg = collector.recvmsg(4096, creds=True)
                who = format_address(socket.AF_UNIX, msg.address)  # "unnamed": never bound
                creds = msg.creds
                assert creds is not None
                print(f"{msg.data.decode()!r} from {who} pid={creds.pid} uid={creds.uid}")
            for pid in children:
                os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
