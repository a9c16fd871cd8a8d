"""Fuzz target for sockwire.zmtp: only ProtocolError / PermissionDenied may escape.

Run with atheris (coverage-guided) when installed:
    .venv/bin/pip install atheris && .venv/bin/python tools/fuzz_zmtp.py -max_total_time=60
Without atheris it runs a bounded random mutation loop (N cases, seeded):
    .venv/bin/python tools/fuzz_zmtp.py 100000
"""

import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from sockwire import zmtp
from sockwire.errors import PermissionDenied, ProtocolError


def one(data: bytes) -> None:
    """Feed ``data`` after a valid NULL greeting (first byte picks type and split)."""
    if not data:
        return
    kinds = zmtp.SOCKET_TYPES
    conn = zmtp.Connection(kinds[data[0] % len(kinds)], max_size=4096)
    body = zmtp.greeting(b"NULL", False) + data[1:]
    cut = data[0] % (len(body) + 1)
    try:
        for piece in (body[:cut], body[cut:]):
            if piece:
                conn.feed(piece)
    except (ProtocolError, PermissionDenied):
        return


def main() -> None:
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
        rng = random.Random(0)  # noqa: S311 - a seeded, repeatable fuzz loop
        seed = zmtp.encode_command(b"READY", zmtp.encode_metadata([("Socket-Type", b"PAIR")]))
        for _ in range(count):
            data = bytearray(b"\x0a" + seed + b"\x01\x03abc\x00\x02hi\x04\x06\x04PING\x00\x0a")
            for _ in range(rng.randint(0, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            one(bytes(data))
        print(f"{count} cases, only documented errors")
        return
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
