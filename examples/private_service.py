"""A UNIX service only its own user may use: mode 0600, peer credentials, clean shutdown.

Run: python examples/private_service.py

The socket file is created with mode 0600 before anyone can connect, a
peer whose uid is not ours is closed before a byte is read, each handler
sees its peer's pid/uid/gid (SO_PEERCRED), and the file is removed when
the server stops.
"""

from __future__ import annotations

import os
import stat
import tempfile

import sockwire


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        path = os.path.join(home, "app.sock")
        endpoint = f"unix+seqpacket:{path}?mode=0600&allowed_uids={os.getuid()}"

        def whoami(channel: sockwire.Channel, peer: sockwire.Peer) -> None:
            for request in channel:
                channel.send(request + f" from pid {peer.pid} uid {peer.uid}".encode())

        with sockwire.serve(endpoint, whoami).start() as server:
            print("mode of the socket file:", oct(stat.S_IMODE(os.stat(path).st_mode)))
            with sockwire.connect(server.endpoint) as channel:
                channel.send(b"hello")
                print(channel.recv(timeout=10).decode())
        print("socket file left behind:", os.path.exists(path))


if __name__ == "__main__":
    main()
