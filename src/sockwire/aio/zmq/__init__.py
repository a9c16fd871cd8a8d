"""ZeroMQ sockets for asyncio: :class:`sockwire.zmq.Socket`, awaitable, on the same core.

::

    from sockwire.aio import zmq

    async with zmq.Socket("REQ", "zmq+tcp://127.0.0.1:5555") as req:
        await req.send(b"hello")
        print(await req.recv())      # [b'world']

Layers: :mod:`sockwire.zmtp` (the wire protocol, sans-IO),
:mod:`sockwire.zmq.core` (socket semantics, pure), :mod:`sockwire.zmq.endpoint`
and :mod:`sockwire.zmq.security` (endpoints, NULL/PLAIN/CURVE from files):
all shared with the blocking :mod:`sockwire.zmq`. New here: :mod:`.driver`
(transports in loop callbacks) and :mod:`.socket` (the awaitable API).
"""

from __future__ import annotations

from ...zmq.core import SocketCore
from ...zmq.endpoint import ZmqEndpoint, is_zmq, parse
from ...zmtp import SOCKET_TYPES
from .socket import Socket, poll

__all__ = ["SOCKET_TYPES", "Socket", "SocketCore", "ZmqEndpoint", "is_zmq", "parse", "poll"]
