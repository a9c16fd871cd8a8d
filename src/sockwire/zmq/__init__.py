"""ZeroMQ sockets over ZMTP 3.1: talk to libzmq, pyzmq, JeroMQ, NetMQ and czmq peers.

::

    from sockwire import zmq

    with zmq.Socket("REQ", "zmq+tcp://127.0.0.1:5555") as req:
        req.send(b"hello")
        print(req.recv())          # [b'world']

Layers: :mod:`sockwire.zmtp` (the wire protocol, sans-IO), :mod:`.core`
(socket semantics, pure), :mod:`.blocking` (this :class:`Socket`),
:mod:`.endpoint` (``zmq+tcp://``, ``zmq+ipc://``), :mod:`.options` (type and
settings from arguments and endpoint), :mod:`.security` (NULL, PLAIN, CURVE
from files). :mod:`sockwire.aio.zmq` is the asyncio driver over the same
``core``, ``options`` and ``security``.
"""

from __future__ import annotations

from ..zmtp import SOCKET_TYPES
from .blocking import Socket, poll
from .core import SocketCore
from .endpoint import ZmqEndpoint, is_zmq, parse

__all__ = ["SOCKET_TYPES", "Socket", "SocketCore", "ZmqEndpoint", "is_zmq", "parse", "poll"]
