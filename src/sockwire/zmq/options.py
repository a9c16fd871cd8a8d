"""A socket's type and settings from its arguments and its endpoint: one reading for every driver.

``Socket("REQ", "zmq+tcp://h:5555")``, ``Socket("zmq+tcp://h:5555?type=REQ")``
and ``Socket("REQ", ..., sndhwm=10)`` mean the same in the blocking and the
asyncio driver because both call :func:`socket_core`: an argument wins over
the endpoint's option, the endpoint's option over the default.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import zmtp
from ..errors import AddressError
from .core import HANDSHAKE_TIMEOUT, SocketCore
from .endpoint import ZmqEndpoint, parse

__all__ = ["socket_core"]


def socket_core(
    socket_type: str | None,
    endpoint: str | ZmqEndpoint | None,
    *,
    identity: bytes | None = None,
    heartbeat: float | None = None,
    handshake_timeout: float | None = None,
    sndhwm: int | None = None,
    rcvhwm: int | None = None,
    max_size: int | None = None,
    log: Callable[[str, str, str], None] | None = None,
) -> tuple[SocketCore, ZmqEndpoint | None]:
    """The :class:`SocketCore` these arguments describe, and the parsed endpoint (if any)."""
    if endpoint is None and socket_type is not None and "://" in socket_type:
        socket_type, endpoint = None, socket_type  # Socket("zmq+tcp://...?type=REQ")
    ep = parse(endpoint) if endpoint is not None else None
    kind = socket_type.upper() if socket_type else (ep.socket_type if ep else None)
    if kind is None:
        raise AddressError(
            "no ZeroMQ socket type", "pass it, or add ?type=REQ|PUB|... to the endpoint"
        )
    if ep is not None and ep.socket_type and ep.socket_type != kind:
        raise AddressError(
            f"socket type {kind} but the endpoint says type={ep.socket_type}",
            "give the type once",
        )

    def number(value: int | None, name: str, default: int) -> int:
        if value is not None:
            return value
        given = ep.int_option(name) if ep is not None else None
        return default if given is None else given

    def seconds(value: float | None, name: str) -> float | None:
        if value is not None:
            return value
        return ep.float_option(name) if ep is not None else None

    ident = identity if identity is not None else (ep.raw_option("identity") if ep else None)
    handshake = seconds(handshake_timeout, "handshake")
    core = SocketCore(
        kind,
        identity=ident or b"",
        sndhwm=number(sndhwm, "sndhwm", 1000),
        rcvhwm=number(rcvhwm, "rcvhwm", 1000),
        max_size=number(max_size, "max_size", zmtp.DEFAULT_MAX_SIZE),
        heartbeat=seconds(heartbeat, "heartbeat"),
        handshake_timeout=HANDSHAKE_TIMEOUT if handshake is None else handshake,
        log=log,
    )
    return core, ep
