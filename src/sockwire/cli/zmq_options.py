"""The one option the zmq+ endpoints add to send, recv, listen and connect.

Kept apart from cli/zmq_io.py so building a parser imports nothing of sockwire.zmq.
"""

from __future__ import annotations

import argparse

__all__ = ["add_zmq_options"]


def add_zmq_options(parser: argparse.ArgumentParser) -> None:
    """``--separator``: how frames of a multipart message share one line."""
    group = parser.add_argument_group("ZeroMQ endpoints (zmq+tcp://, zmq+ipc://)")
    group.add_argument(
        "--separator",
        metavar="SEP",
        help="zmq+ only: frames of a multipart message on one line are separated by SEP "
        "(input is split at it; output joins with it; default: input is one frame, "
        "output joins with a tab)",
    )
