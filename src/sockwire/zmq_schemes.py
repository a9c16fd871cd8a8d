"""``zmq+tcp`` and ``zmq+ipc`` in the scheme registry of :mod:`sockwire.address`.

Two registry entries made from the ``tcp`` and ``unix`` ones (the same body
syntax, socket options and socket-file options) plus the ZeroMQ options,
typed, so ``sockwire.address.parse("zmq+tcp://h:5555?type=req")`` validates
like any endpoint and the CLI's hints and the README's tables list them.
Imported by :mod:`sockwire.schemes` after the built-ins (it needs ``tcp`` and
``unix``); it imports nothing that does I/O. :mod:`sockwire.zmq.endpoint`
still reads the raw values itself: a binary topic (``subscribe=%00%ff``) is
bytes, not text.
"""

from __future__ import annotations

from dataclasses import replace

from . import address_values as v
from .address import SCHEMES, Body, Endpoint, Option, register_scheme

__all__ = ["SOCKET_TYPES", "ZMQ_OPTIONS"]

#: zmtp.SOCKET_TYPES, repeated so that parsing an endpoint does not import the
#: protocol (2 ms of every command's start-up); tests/test_zmq.py checks they agree.
SOCKET_TYPES = (
    "REQ", "REP", "DEALER", "ROUTER", "PUB", "XPUB", "SUB", "XSUB", "PUSH", "PULL", "PAIR",
)  # fmt: skip

_ANY = v.text(r"(?s).*", "any text", ("weather", "", "a%20b"))

#: The ZeroMQ options, as the registry types them (zmq/endpoint.py reads them).
ZMQ_OPTIONS: dict[str, Option] = {
    option.name: option
    for option in (
        Option("type", v.choice(*(t.lower() for t in SOCKET_TYPES)), "the ZeroMQ socket type"),
        Option("bind", v.boolean, "1: bind (listen) instead of connecting"),
        Option(
            "subscribe",
            _ANY,
            "SUB/XSUB: a topic prefix to subscribe to (empty: everything)",
            repeatable=True,
        ),
        Option("identity", _ANY, "REQ/DEALER/ROUTER: the routing id announced (1-255 bytes)"),
        Option("heartbeat", v.seconds, "seconds between ZMTP PINGs; silence as long drops"),
        Option("handshake", v.seconds, "seconds a new peer has for the ZMTP handshake"),
        Option("sndhwm", v.integer(1, 2**31 - 1), "messages queued per peer for sending"),
        Option("rcvhwm", v.integer(1, 2**31 - 1), "messages queued per peer received"),
        Option("max_size", v.integer(1, 2**62), "largest message accepted, in bytes"),
        Option("plain", v.file_path, "PLAIN (cleartext) credentials file: user:password lines"),
        Option("curve_secret", v.file_path, "CURVE: file with our secret key"),
        Option("curve_server", v.file_path, "CURVE client: file with the server's public key"),
        Option("curve_clients", v.file_path, "CURVE server: file of admitted client keys"),
        Option("as_server", v.boolean, "1/0: the PLAIN/CURVE server role (default: binder)"),
    )
}


def _strip_slashes(body: str, whole: str) -> str:
    return body[2:] if body.startswith("//") else body


def _tcp_body(body: str, whole: str) -> Body:
    tcp = SCHEMES["tcp"]
    if body.startswith("//*:"):  # ZeroMQ's "every interface" (bind only)
        body = "//0.0.0.0:" + body[4:]
    return tcp.parse_body(body, whole)


def _ipc_body(body: str, whole: str) -> Body:
    return SCHEMES["unix"].parse_body(_strip_slashes(body, whole), whole)


def _ipc_format(ep: Endpoint) -> str:
    return "//" + SCHEMES["unix"].format_body(ep)


#: tcp/unix options that mean nothing under ZMTP: framing is ZMTP's, the HMAC
#: handshake is not ZeroMQ's (PLAIN/CURVE are), ``bind`` is ZeroMQ's own here
_NOT_FOR_ZMQ = frozenset({"framing", "authfile", "bind"})


def _transport_options(scheme_name: str) -> dict[str, Option]:
    return {
        name: option
        for name, option in SCHEMES[scheme_name].options.items()
        if name not in _NOT_FOR_ZMQ
    }


def _register() -> None:
    if "zmq+tcp" in SCHEMES:
        return
    tcp, unix = SCHEMES["tcp"], SCHEMES["unix"]
    register_scheme(
        replace(
            tcp,
            name="zmq+tcp",
            syntax="zmq+tcp://HOST:PORT, zmq+tcp://*:PORT",
            summary="ZeroMQ (ZMTP 3.1) over TCP: ?type=REQ|REP|...|PAIR, ?bind=1",
            parse_body=_tcp_body,
            options={**_transport_options("tcp"), **ZMQ_OPTIONS},
            examples=(
                "zmq+tcp://127.0.0.1:5555?type=req",
                "zmq+tcp://*:5556?type=pub&bind=1",
                "zmq+tcp://[::1]:5557?type=sub&subscribe=weather",
            ),
        )
    )
    register_scheme(
        replace(
            unix,
            name="zmq+ipc",
            syntax="zmq+ipc:///PATH, zmq+ipc://@NAME",
            summary="ZeroMQ (ZMTP 3.1) over a UNIX stream socket at PATH",
            parse_body=_ipc_body,
            format_body=_ipc_format,
            options={**_transport_options("unix"), **ZMQ_OPTIONS},
            examples=("zmq+ipc:///run/app/zmq.sock?type=pull&bind=1", "zmq+ipc://rel/z.sock"),
        )
    )


_register()
