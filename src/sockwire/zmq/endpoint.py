"""``zmq+tcp://HOST:PORT`` and ``zmq+ipc:///PATH`` endpoints, with their ZeroMQ options.

::

    zmq+tcp://127.0.0.1:5555?type=REQ
    zmq+tcp://*:5556?type=PUB&bind=1                  (* = every interface, bind only)
    zmq+ipc:///run/app/zmq.sock?type=PULL&bind=1&mode=0600
    zmq+tcp://10.0.0.5:5556?type=SUB&subscribe=weather&subscribe=news

The transport part maps onto sockwire's own endpoints (``tcp://HOST:PORT``
and ``unix:/PATH``: ZeroMQ's ipc is a UNIX stream socket at that path), so
the safe socket-file rules of :mod:`sockwire.unix` and the options of
:mod:`sockwire.address` (``mode``, ``backlog``, ``unsafe_dir``, ...) apply
unchanged. The ZeroMQ options are parsed here; secrets never ride in the
string, only the names of files that hold them (``plain=``, ``curve_secret=``,
``curve_server=``, ``curve_clients=``).

Both schemes are entries of the scheme registry (:mod:`sockwire.zmq.schemes`),
which checks every option and names the valid ones; this module then reads
the values as ZeroMQ needs them (a topic is bytes) and splits off the
transport part as a plain ``tcp://``/``unix:`` Endpoint for :mod:`sockwire.dial`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote_from_bytes, unquote_to_bytes

from .. import address, zmtp
from ..errors import AddressError

__all__ = ["OPTIONS", "SCHEMES", "ZmqEndpoint", "is_zmq", "parse"]

SCHEMES = ("zmq+tcp", "zmq+ipc")

#: option -> help; ``subscribe`` may repeat.
OPTIONS: dict[str, str] = {
    "type": "the ZeroMQ socket type: " + "|".join(zmtp.SOCKET_TYPES),
    "bind": "1: bind (listen) on the address instead of connecting to it",
    "subscribe": "SUB/XSUB: a topic prefix to subscribe to (repeatable; empty = everything)",
    "identity": "REQ/DEALER/ROUTER: the routing id announced to a ROUTER (1-255 bytes)",
    "heartbeat": "seconds between ZMTP PINGs; a peer silent for as long again is dropped",
    "handshake": "seconds a new peer has to finish the ZMTP handshake (default 30)",
    "sndhwm": "messages queued per peer before sending waits or drops (default 1000)",
    "rcvhwm": "messages queued per peer before reading it pauses (default 1000)",
    "max_size": "largest message accepted in bytes (default 16 MiB)",
    "plain": "PLAIN (cleartext!) credentials file: user:password lines",
    "curve_secret": "CURVE: file with our secret key (z85, 40 chars, or 32 raw bytes)",
    "curve_server": "CURVE client: file with the server's public key (z85)",
    "curve_clients": "CURVE server: file of allowed client public keys (z85, one a line)",
    "as_server": "1/0: take the server role of PLAIN/CURVE (default: the binding side)",
}
_REPEATABLE = frozenset({"subscribe"})


@dataclass(frozen=True)
class ZmqEndpoint:
    """A parsed ``zmq+`` endpoint: the transport as a sockwire Endpoint plus ZeroMQ options."""

    scheme: str
    target: address.Endpoint
    options: tuple[tuple[str, bytes], ...] = field(default=())
    host_any: bool = False

    @property
    def transport(self) -> str:
        return self.scheme.removeprefix("zmq+")

    def option(self, name: str) -> str | None:
        for key, value in self.options:
            if key == name:
                return value.decode("utf-8", "surrogateescape")
        return None

    def raw_option(self, name: str) -> bytes | None:
        for key, value in self.options:
            if key == name:
                return value
        return None

    @property
    def socket_type(self) -> str | None:
        value = self.option("type")
        return value.upper() if value else None

    @property
    def bind(self) -> bool:
        return self.option("bind") == "1"

    @property
    def subscriptions(self) -> tuple[bytes, ...]:
        return tuple(value for key, value in self.options if key == "subscribe")

    def float_option(self, name: str) -> float | None:
        value = self.option(name)
        return float(value) if value is not None else None

    def int_option(self, name: str) -> int | None:
        value = self.option(name)
        return int(value) if value is not None else None

    def __str__(self) -> str:
        ours = "&".join(f"{k}={quote_from_bytes(v, safe='')}" for k, v in self.options)
        return self.display() + ("?" + ours if ours else "")

    def display(self) -> str:
        """The address without options (for messages and traces: no file names)."""
        target = self.target.without_options()
        if self.scheme == "zmq+ipc":
            assert target.path is not None
            return f"zmq+ipc://{target.path}"
        host = "*" if self.host_any else target.host or ""
        if ":" in host:
            host = f"[{host}]"
        return f"zmq+tcp://{host}:{target.port}"

    def with_port(self, port: int) -> ZmqEndpoint:
        """The same endpoint with the port a bind to port 0 got."""
        target = address.parse(f"tcp://{_host_text(self.target.host or '')}:{port}")
        return ZmqEndpoint(self.scheme, target, self.options, self.host_any)


def is_zmq(text: str) -> bool:
    """True for strings this module parses (``zmq+tcp://``, ``zmq+ipc://``)."""
    return text.startswith(("zmq+tcp://", "zmq+ipc://"))


def parse(text: str | ZmqEndpoint) -> ZmqEndpoint:
    """Parse a ``zmq+`` endpoint; :class:`AddressError` names the bad part."""
    if isinstance(text, ZmqEndpoint):
        return text
    if is_zmq(text):
        address.parse(text)  # the registry's checks and messages (zmq/schemes.py)
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEMES:
        raise AddressError(
            f"not a ZeroMQ endpoint: {text!r}",
            "write zmq+tcp://HOST:PORT or zmq+ipc:///PATH",
            part=scheme,
            valid=SCHEMES,
        )
    body, _, query = rest.partition("?")
    ours, theirs = _split_query(query, text)
    host_any = False
    if scheme == "zmq+tcp":
        if body.startswith("*:"):
            host_any = True
            body = "0.0.0.0" + body[1:]
        inner = f"tcp://{body}"
    else:
        if not body:
            raise AddressError(f"no path in {text!r}", "write zmq+ipc:///PATH", part="path")
        inner = f"unix:{body}"
    if theirs:
        inner += "?" + "&".join(theirs)
    try:
        target = address.parse(inner)
    except AddressError as exc:
        raise AddressError(
            f"{exc.what} (in {text!r})",
            exc.hint + "; ZeroMQ options: " + ", ".join(OPTIONS),
            part=exc.part,
            valid=exc.valid + tuple(OPTIONS),
        ) from None
    if target.port is None and scheme == "zmq+tcp":
        raise AddressError(f"no port in {text!r}", "write zmq+tcp://HOST:PORT", part="port")
    ep = ZmqEndpoint(scheme, target, ours, host_any)
    _check(ep, text)
    return ep


def _split_query(query: str, whole: str) -> tuple[tuple[tuple[str, bytes], ...], list[str]]:
    ours: list[tuple[str, bytes]] = []
    theirs: list[str] = []
    seen: set[str] = set()
    for item in query.split("&") if query else []:
        key, has_value, value = item.partition("=")
        if key in OPTIONS:
            if key in seen and key not in _REPEATABLE:
                raise AddressError(
                    f"option {key!r} given twice in {whole!r}", "give it once", part=key
                )
            seen.add(key)
            ours.append((key, unquote_to_bytes(value) if has_value else b"1"))
        else:
            theirs.append(item)
    return tuple(ours), theirs


def _check(ep: ZmqEndpoint, whole: str) -> None:
    kind = ep.socket_type
    if kind is not None and kind not in zmtp.SOCKET_TYPES:
        raise AddressError(
            f"ZeroMQ socket type {kind!r} in {whole!r}",
            "one of " + ", ".join(zmtp.SOCKET_TYPES),
            part="type",
            valid=zmtp.SOCKET_TYPES,
        )
    for name in ("bind", "as_server"):
        value = ep.option(name)
        if value is not None and value not in ("0", "1"):
            raise AddressError(f"{name}={value!r} in {whole!r}", "write 0 or 1", part=name)
    for name in ("heartbeat", "handshake"):
        value = ep.option(name)
        if value is not None and not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
            raise AddressError(
                f"{name}={value!r} in {whole!r}", "seconds, e.g. 1 or 0.5", part=name
            )
    for name in ("sndhwm", "rcvhwm", "max_size"):
        value = ep.option(name)
        if value is not None and not (re.fullmatch(r"[0-9]+", value) and int(value) >= 1):
            raise AddressError(f"{name}={value!r} in {whole!r}", "a whole number >= 1", part=name)
    identity = ep.raw_option("identity")
    if identity is not None and (len(identity) > 255 or identity[:1] == b"\x00"):
        raise AddressError(
            f"identity in {whole!r}",
            "1 to 255 bytes, not starting with a zero byte (RFC 37)",
            part="identity",
        )


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host
