"""sockwire: socket IPC on Linux, every domain and type, made visible.

The core (endpoints, Socket, errors, trace) is standard library only and
imported eagerly; it is small. Higher layers are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .address import Endpoint, parse
from .errors import (
    AddressError,
    AddressInUse,
    BadFrame,
    ClosedError,
    ConnectError,
    ConnectionLost,
    ConnectionRefused,
    FrameTooLarge,
    InvalidOperation,
    MessageTooLarge,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RemoteError,
    ResourceExhausted,
    SockwireError,
    TimeoutError,
    TooManyFdsInFlight,
    TruncatedError,
    Unreachable,
    UnsupportedError,
    WouldBlock,
)
from .flags import MsgFlag
from .sock import Creds, FamilyInfo, Message, Peer, Socket, families, socketpair

if TYPE_CHECKING:
    from .channel import Channel, pipe
    from .client import connect
    from .server import Server, serve


def __getattr__(name: str) -> Any:
    """Channel, pipe, serve, connect are imported on first use (higher layers, lazy)."""
    if name in ("Channel", "pipe"):
        from . import channel

        return getattr(channel, name)
    if name in ("serve", "Server"):
        from . import server

        return getattr(server, name)
    if name == "connect":
        from . import client

        return client.connect
    raise AttributeError(f"module 'sockwire' has no attribute {name!r}")


__all__ = [
    "AddressError",
    "AddressInUse",
    "BadFrame",
    "Channel",
    "ClosedError",
    "ConnectError",
    "ConnectionLost",
    "ConnectionRefused",
    "Creds",
    "Endpoint",
    "FamilyInfo",
    "FrameTooLarge",
    "InvalidOperation",
    "Message",
    "MessageTooLarge",
    "MsgFlag",
    "NotFound",
    "Peer",
    "PermissionDenied",
    "ProtocolError",
    "RemoteError",
    "ResourceExhausted",
    "Server",
    "Socket",
    "SockwireError",
    "TimeoutError",
    "TooManyFdsInFlight",
    "TruncatedError",
    "Unreachable",
    "UnsupportedError",
    "WouldBlock",
    "__version__",
    "connect",
    "families",
    "parse",
    "pipe",
    "serve",
    "socketpair",
]
