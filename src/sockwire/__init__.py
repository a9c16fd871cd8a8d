"""sockwire: socket IPC on Linux, every domain and type, made visible.

Every name below is imported on first use (PEP 562): ``import sockwire``
costs next to nothing, so ``sockwire --help`` and programs that need one
corner of the package do not pay for all of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .address import Endpoint, parse
    from .channel import Channel, pipe
    from .client import connect
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
    from .server import Server, serve
    from .sock import Creds, FamilyInfo, Message, Peer, Socket, families, socketpair

#: public name -> the module that defines it (imported by __getattr__ on first use)
_WHERE: dict[str, str] = {
    "Endpoint": "address",
    "parse": "address",
    "Channel": "channel",
    "pipe": "channel",
    "connect": "client",
    "serve": "server",
    "Server": "server",
    "MsgFlag": "flags",
    **dict.fromkeys(
        ("Creds", "FamilyInfo", "Message", "Peer", "Socket", "families", "socketpair"), "sock"
    ),
    **dict.fromkeys(
        (
            "AddressError",
            "AddressInUse",
            "BadFrame",
            "ClosedError",
            "ConnectError",
            "ConnectionLost",
            "ConnectionRefused",
            "FrameTooLarge",
            "InvalidOperation",
            "MessageTooLarge",
            "NotFound",
            "PermissionDenied",
            "ProtocolError",
            "RemoteError",
            "ResourceExhausted",
            "SockwireError",
            "TimeoutError",
            "TooManyFdsInFlight",
            "TruncatedError",
            "Unreachable",
            "UnsupportedError",
            "WouldBlock",
        ),
        "errors",
    ),
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` and cache the value here."""
    module = _WHERE.get(name)
    if module is None:
        # AttributeError also lets `from sockwire import trace` find the submodule
        raise AttributeError(f"module 'sockwire' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


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
