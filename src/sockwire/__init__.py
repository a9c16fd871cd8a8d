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


def __getattr__(name: str) -> Any:
    """Channel and pipe are imported on first use (higher layer, lazy)."""
    if name in ("Channel", "pipe"):
        from . import channel

        return getattr(channel, name)
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
    "ResourceExhausted",
    "Socket",
    "SockwireError",
    "TimeoutError",
    "TooManyFdsInFlight",
    "TruncatedError",
    "Unreachable",
    "UnsupportedError",
    "WouldBlock",
    "__version__",
    "families",
    "parse",
    "pipe",
    "socketpair",
]
