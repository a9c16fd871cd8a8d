"""sockwire for asyncio: the same endpoints, Channels, servers and patterns, awaitable.

Built on the same sans-IO cores as the blocking API (``channel/core.py``,
``framing.py``, ``packet.py``, the pattern cores, ``auth.py``) and the same
socket-level functions (``dial``, ``unix``, ``secure``, ``tls``), so the bytes
on the wire, the errors and the security checks are the blocking API's. It
adds what asyncio itself lacks: SEQPACKET, peer credentials, fd passing, and
socket files that are never unlinked while live.

Runs on any loop; :func:`run` makes one (``loop="uvloop"`` for uvloop).
"""

from __future__ import annotations

from .channel import Channel
from .client import connect, connect_once
from .loops import run
from .patterns import Liveness, Policy, Pub, Pull, Push, Rep, Req, Sub
from .pipes import pipe
from .server import Server, serve
from .socket import Socket

__all__ = [
    "Channel",
    "Liveness",
    "Policy",
    "Pub",
    "Pull",
    "Push",
    "Rep",
    "Req",
    "Server",
    "Socket",
    "Sub",
    "connect",
    "connect_once",
    "pipe",
    "run",
    "serve",
]
