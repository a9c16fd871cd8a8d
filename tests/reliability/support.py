"""Helpers the reliability scenarios share: fd counts, an echo handler, a good client."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sockwire.channel import Channel
from sockwire.client import connect
from sockwire.sock import Peer

WAIT = 15.0  # an event that does not come within this long is a hung test


def open_fds() -> int:
    """How many descriptors this process holds now."""
    return len(os.listdir("/proc/self/fd"))


def fds_of(pid: int) -> int:
    """How many descriptors process ``pid`` holds now."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextmanager
def short_tmp(prefix: str = "sw-rel-") -> Iterator[str]:
    """A directory in /tmp (UNIX socket paths must stay under 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as path:
        yield path


def echo(ch: Channel, peer: Peer) -> None:
    for msg in ch:
        ch.send(msg)


def good_client(endpoint: str, rounds: int = 100, timeout: float = WAIT) -> float:
    """``rounds`` request/replies on a fresh connection; seconds taken, connect included."""
    started = time.monotonic()
    with connect(endpoint, timeout=timeout) as client:
        for i in range(rounds):
            body = b"good %d" % i
            client.send(body)
            reply = client.recv(timeout=timeout)
            assert reply == body, f"round {i}: {reply!r}"
    return time.monotonic() - started


def hang_up_seen(sock: socket.socket, timeout: float = WAIT) -> None:
    """Read until the peer closes (EOF or reset); bounded by ``timeout``."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
