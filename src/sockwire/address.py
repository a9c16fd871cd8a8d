"""Endpoint strings <-> :class:`Endpoint`: one grammar for the library and the CLI.

::

    unix:/run/app.sock            unix+seqpacket:/run/app.sock   unix+dgram:/tmp/log.sock
    unix:@name                    (Linux abstract namespace: no file, no permissions)
    tcp://127.0.0.1:7000          tcp://[::1]:7000               tcp://localhost:0
    udp://127.0.0.1:7001          tls+tcp://host:7443            raw://127.0.0.1?proto=icmp
    netlink:route                 fd:3                           systemd:   systemd:NAME

Options ride as a query (``?backlog=128&mode=0600``). Parsing is strict: an
unknown scheme, option or malformed part raises :class:`AddressError` naming
the bad part and the valid choices. ``str(endpoint)`` is canonical and parses
back to an equal Endpoint. UNIX paths and option values are percent-encoded
where they hold ``%``, ``?``, ``&``, ``#``, spaces or control bytes.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from .errors import AddressError

__all__ = [
    "FRAMINGS",
    "OPTIONS",
    "PACKET_FRAMINGS",
    "SCHEMES",
    "STREAM_FRAMINGS",
    "UNIX_PATH_MAX",
    "Endpoint",
    "OptionSpec",
    "parse",
]

#: sun_path is 108 bytes; a filesystem path needs its terminating NUL, and
#: Python refuses 108 bytes or more without an errno. An abstract name
#: (leading NUL, no terminator) may use 107 bytes after the NUL.
UNIX_PATH_MAX = 107

# scheme -> (family, type); inet schemes resolve AF_INET/AF_INET6 from the host
_STREAM, _DGRAM, _SEQ, _RAW = (
    socket.SOCK_STREAM,
    socket.SOCK_DGRAM,
    socket.SOCK_SEQPACKET,
    socket.SOCK_RAW,
)
SCHEMES: dict[str, tuple[int, int]] = {
    "unix": (socket.AF_UNIX, _STREAM),
    "unix+seqpacket": (socket.AF_UNIX, _SEQ),
    "unix+dgram": (socket.AF_UNIX, _DGRAM),
    "tcp": (socket.AF_INET, _STREAM),
    "udp": (socket.AF_INET, _DGRAM),
    "tls+tcp": (socket.AF_INET, _STREAM),
    "raw": (socket.AF_INET, _RAW),
    "netlink": (socket.AF_NETLINK, _RAW),
    "fd": (socket.AF_UNSPEC, 0),
    "systemd": (socket.AF_UNSPEC, 0),
}
_UNIX_SCHEMES = frozenset({"unix", "unix+seqpacket", "unix+dgram"})
_INET_SCHEMES = frozenset({"tcp", "udp", "tls+tcp"})
_STREAM_SCHEMES = frozenset({"unix", "tcp", "tls+tcp", "fd", "systemd"})
_LISTEN_SCHEMES = frozenset({"unix", "unix+seqpacket", "tcp", "tls+tcp", "fd", "systemd"})
_ALL = frozenset(SCHEMES)

NETLINK_PROTOCOLS: dict[str, int] = {
    "route": 0,  # NETLINK_ROUTE: links, addresses, routes (the notes' ROUTE domain)
    "sock_diag": 4,  # NETLINK_SOCK_DIAG: socket listings, as ss uses
    "generic": 16,  # NETLINK_GENERIC
    "kobject_uevent": 15,  # NETLINK_KOBJECT_UEVENT: device events
}

RAW_PROTOCOLS: dict[str, int] = {
    "icmp": socket.IPPROTO_ICMP,
    "icmpv6": socket.IPPROTO_ICMPV6,
    "tcp": socket.IPPROTO_TCP,
    "udp": socket.IPPROTO_UDP,
    "raw": socket.IPPROTO_RAW,
}

#: Framings of a byte stream (sockwire.framing) and of a packet socket (sockwire.packet):
#: the one list of their names. ``none`` adds no bytes; ``sockwire`` is the
#: opt-in packet header (docs/PROTOCOL.md sections 2-3).
STREAM_FRAMINGS = ("len16", "len32", "len64", "netstring", "line", "nul", "none")
PACKET_FRAMINGS = ("none", "sockwire")
FRAMINGS = (*STREAM_FRAMINGS, "sockwire")
_PACKET_SCHEMES = frozenset({"unix+seqpacket", "unix+dgram", "udp"})
SOCKET_TYPES = ("stream", "dgram", "seqpacket")


# --------------------------------------------------------------------------
# Options. Each has the schemes it applies to and a canonicaliser that turns
# the text into its one canonical spelling or raises ValueError with a reason.
# Later layers add options here, in one table, so the CLI and the library
# agree on them.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """One query option: where it applies, how it is spelled, what it means."""

    schemes: frozenset[str]
    canonical: Callable[[str], str]
    help: str
    path_only: bool = False  # unix path sockets only (not @abstract)


def _int_range(lo: int, hi: int) -> Callable[[str], str]:
    def canon(text: str) -> str:
        if not re.fullmatch(r"[0-9]+", text):
            raise ValueError(f"must be a whole number from {lo} to {hi}")
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(f"must be from {lo} to {hi}")
        return str(value)

    return canon


def _bool(text: str) -> str:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return "1"
    if lowered in ("0", "false", "no", "off"):
        return "0"
    raise ValueError("must be 1 or 0 (true/false, yes/no, on/off)")


def _mode(text: str) -> str:
    if not re.fullmatch(r"0?[0-7]{1,4}", text):
        raise ValueError("must be an octal file mode such as 0600 or 660")
    return f"{int(text, 8):04o}"


def _name_or_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}", text):
        raise ValueError("must be a user/group name or a number")
    return text


def _id_list(text: str) -> str:
    """``1000,0,www-data,0`` -> ``0,1000,www-data``: ids ascending, then names, once each."""
    items = [item.strip() for item in text.split(",")]
    if not text or len(items) > 64:
        raise ValueError("must be 1 to 64 user/group names or numbers, separated by commas")
    numbers: set[int] = set()
    names: set[str] = set()
    for item in items:
        if re.fullmatch(r"[0-9]{1,10}", item) and int(item) < 2**32 - 1:
            numbers.add(int(item))
        else:
            names.add(_name_or_id(item))
    return ",".join([str(n) for n in sorted(numbers)] + sorted(names))


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def canon(text: str) -> str:
        lowered = text.lower()
        if lowered not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return lowered

    return canon


def _raw_proto(text: str) -> str:
    lowered = text.lower()
    if lowered in RAW_PROTOCOLS:
        return lowered
    if re.fullmatch(r"[0-9]{1,3}", text) and 0 < int(text) < 256:
        by_number = {v: k for k, v in RAW_PROTOCOLS.items()}
        return by_number.get(int(text), str(int(text)))
    raise ValueError(f"must be one of {', '.join(RAW_PROTOCOLS)} or a number from 1 to 255")


def _seconds(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number of seconds, such as 2 or 0.5") from None
    if math.isnan(value) or not 0 < value <= 86400:
        raise ValueError("must be more than 0 and at most 86400 seconds")
    return repr(value).removesuffix(".0") if value == int(value) else repr(value)


def _file_path(text: str) -> str:
    if not text:
        raise ValueError("must name a file")
    if "\0" in text:
        raise ValueError("must not contain a NUL byte")
    return text


OPTIONS: dict[str, OptionSpec] = {
    "backlog": OptionSpec(
        _LISTEN_SCHEMES, _int_range(0, 65535), "listen() queue length (default 128)"
    ),
    "mode": OptionSpec(
        frozenset({"unix", "unix+seqpacket", "unix+dgram"}),
        _mode,
        "file mode of the socket file, in force before anyone can connect",
        path_only=True,
    ),
    "owner": OptionSpec(_UNIX_SCHEMES, _name_or_id, "owner of the socket file", path_only=True),
    "group": OptionSpec(_UNIX_SCHEMES, _name_or_id, "group of the socket file", path_only=True),
    "unsafe_dir": OptionSpec(
        _UNIX_SCHEMES,
        _bool,
        "allow a socket file in a directory others may write without the sticky bit "
        "(anyone there can replace it); refused by default",
        path_only=True,
    ),
    "allowed_uids": OptionSpec(
        frozenset({"unix", "unix+seqpacket", "fd", "systemd"}),
        _id_list,
        "accept only peers with these uids (SO_PEERCRED; names or numbers, comma-separated); "
        "others are closed before a byte is read",
    ),
    "allowed_gids": OptionSpec(
        frozenset({"unix", "unix+seqpacket", "fd", "systemd"}),
        _id_list,
        "accept only peers whose primary gid is one of these (SO_PEERCRED); with "
        "allowed_uids, matching either admits",
    ),
    "reuseaddr": OptionSpec(
        frozenset({"tcp", "udp", "tls+tcp"}), _bool, "SO_REUSEADDR (default 1 for listeners)"
    ),
    "reuseport": OptionSpec(
        frozenset({"tcp", "udp", "tls+tcp"}),
        _bool,
        "SO_REUSEPORT: several processes bind the same port",
    ),
    "rcvbuf": OptionSpec(_ALL - {"netlink"}, _int_range(1, 2**31 - 1), "SO_RCVBUF in bytes"),
    "sndbuf": OptionSpec(_ALL - {"netlink"}, _int_range(1, 2**31 - 1), "SO_SNDBUF in bytes"),
    "timeout": OptionSpec(_ALL, _seconds, "connect/IO timeout in seconds"),
    "framing": OptionSpec(
        _STREAM_SCHEMES | _PACKET_SCHEMES,
        _choice(FRAMINGS),
        "message framing: on a byte stream "
        + ", ".join(STREAM_FRAMINGS)
        + "; on seqpacket/datagram sockets none (the kernel's boundaries, the default) "
        "or sockwire (the sockwire packet header)",
    ),
    "proto": OptionSpec(
        frozenset({"raw"}), _raw_proto, "IP protocol of a raw socket: " + ", ".join(RAW_PROTOCOLS)
    ),
    "type": OptionSpec(
        frozenset({"fd", "systemd"}),
        _choice(SOCKET_TYPES),
        "the socket type the inherited descriptor must have",
    ),
    "groups": OptionSpec(
        frozenset({"netlink"}), _int_range(0, 2**32 - 1), "netlink multicast group bitmask"
    ),
    "certfile": OptionSpec(frozenset({"tls+tcp"}), _file_path, "PEM certificate chain file"),
    "keyfile": OptionSpec(frozenset({"tls+tcp"}), _file_path, "PEM private key file"),
    "cafile": OptionSpec(frozenset({"tls+tcp"}), _file_path, "PEM CA bundle to verify the peer"),
    "authfile": OptionSpec(
        frozenset({"tcp", "tls+tcp", "unix", "unix+seqpacket"}),
        _file_path,
        "file holding the shared key for the HMAC challenge handshake (never the key itself)",
    ),
    "servername": OptionSpec(
        frozenset({"tls+tcp"}),
        lambda text: _host(text, "servername"),
        "host name to verify in the server's certificate",
    ),
}


# --------------------------------------------------------------------------
# Percent-encoding of paths and values
# --------------------------------------------------------------------------

_SPECIAL = frozenset("%?&#= ")


def _encode(text: str, extra: str = "") -> str:
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogate-escaped raw byte (non-UTF-8 path)
            out.append(f"%{code - 0xDC00:02X}")
        elif ch in _SPECIAL or ch in extra or code < 0x20 or code == 0x7F:
            out.append(f"%{code:02X}")
        else:
            out.append(ch)
    return "".join(out)


def _decode(text: str, what: str, whole: str) -> str:
    if "%" not in text:
        return text
    raw = bytearray()
    i = 0
    encoded = text.encode("utf-8", "surrogateescape")
    while i < len(encoded):
        byte = encoded[i]
        if byte == 0x25:  # '%'
            pair = encoded[i + 1 : i + 3]
            if len(pair) != 2 or not re.fullmatch(rb"[0-9A-Fa-f]{2}", bytes(pair)):
                raise AddressError(
                    f"bad percent-escape in {what} of {whole!r}",
                    "write %XX with two hex digits; a literal % is %25",
                    part=text,
                )
            raw.append(int(pair, 16))
            i += 3
        else:
            raw.append(byte)
            i += 1
    return bytes(raw).decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# Hosts
# --------------------------------------------------------------------------

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host(text: str, whole: str) -> str:
    """Canonical host: compressed IPv6 (no brackets), dotted IPv4, lower-case name."""
    if not text:
        raise AddressError(
            f"missing host in {whole!r}",
            "give a host, e.g. 127.0.0.1 for this machine only or 0.0.0.0 for all interfaces",
            part="host",
        )
    if ":" in text:
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError as exc:
            raise AddressError(
                f"malformed IPv6 address {text!r} in {whole!r}",
                f"{exc}; write it in brackets, e.g. tcp://[::1]:7000",
                part=text,
            ) from None
    if re.fullmatch(r"[0-9.]+", text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError as exc:
            raise AddressError(
                f"malformed IPv4 address {text!r} in {whole!r}",
                f"{exc}; write four numbers 0-255, e.g. 127.0.0.1",
                part=text,
            ) from None
    name = text.rstrip(".") if text != "." else text
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise AddressError(
            f"malformed host name {shown!r}",
            "a host name is letters, digits and hyphens in dot-separated labels of at most "
            "63 characters, 253 in all",
            part="host",
        )
    return name.lower()


# --------------------------------------------------------------------------
# Endpoint
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint. Build one with :func:`parse`; ``str()`` gives it back.

    Exactly the fields of its scheme are set: ``path`` (unix schemes; an
    abstract name starts with ``@``), ``host``/``port`` (tcp, udp, tls+tcp,
    raw without port), ``name`` (netlink protocol, systemd fd name),
    ``fd`` (fd:N).
    """

    scheme: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    name: str | None = None
    fd: int | None = None
    options: tuple[tuple[str, str], ...] = field(default=())

    # ---- what kind of socket this is

    @property
    def family(self) -> int:
        """AF_UNIX, AF_INET or AF_INET6 (from a literal host), AF_NETLINK; 0 if unknown."""
        family, _ = SCHEMES[self.scheme]
        if family == socket.AF_INET and self.host is not None and ":" in self.host:
            return socket.AF_INET6
        return family

    @property
    def type(self) -> int:
        """SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET or SOCK_RAW (0 if set by ``?type=``)."""
        _, sock_type = SCHEMES[self.scheme]
        if self.scheme in ("fd", "systemd"):
            wanted = self.option("type")
            return {
                "stream": _STREAM,
                "dgram": _DGRAM,
                "seqpacket": _SEQ,
            }.get(wanted or "", 0)
        return sock_type

    @property
    def protocol(self) -> int:
        """The protocol number to pass to socket(): 0 except for raw and netlink."""
        if self.scheme == "raw":
            proto = self.option("proto") or "icmp"
            default = (
                socket.IPPROTO_ICMPV6
                if proto == "icmp" and self.family == socket.AF_INET6
                else RAW_PROTOCOLS.get(proto)
            )
            return default if default is not None else int(proto)
        if self.scheme == "netlink":
            return NETLINK_PROTOCOLS[self.name or "route"]
        return 0

    @property
    def is_unix(self) -> bool:
        return self.scheme in _UNIX_SCHEMES

    @property
    def is_abstract(self) -> bool:
        """True for ``unix:@name``: no file, no permissions, per network namespace."""
        return self.path is not None and self.path.startswith("@")

    @property
    def is_stream(self) -> bool:
        return self.type == _STREAM

    @property
    def sockaddr(self) -> str | bytes | tuple[str, int] | tuple[int, int]:
        """The address for bind()/connect(), for schemes that need no resolving.

        UNIX: the path (``str``), or ``b"\\0name"`` for an abstract name. INET
        with a literal host: ``(host, port)``. Netlink: ``(0, groups)``.
        Host names need resolving first: see :meth:`resolve`.
        """
        if self.path is not None:
            if self.is_abstract:
                return b"\0" + os.fsencode(self.path[1:])
            return self.path
        if self.scheme == "netlink":
            return (0, int(self.option("groups") or 0))
        if self.host is not None:
            return (self.host, self.port or 0)
        raise AddressError(f"{self} has no socket address", "fd: and systemd: are inherited")

    def resolve(self) -> list[tuple[int, tuple[str, int] | tuple[str, int, int, int]]]:
        """``[(family, sockaddr), ...]`` for an inet endpoint, literal or by name."""
        if self.host is None:
            raise AddressError(f"{self} has no host to resolve", part=self.scheme)
        _, sock_type = SCHEMES[self.scheme]
        infos = socket.getaddrinfo(self.host, self.port or 0, type=sock_type or _STREAM)
        seen: list[tuple[int, tuple[str, int] | tuple[str, int, int, int]]] = []
        for family, _, _, _, addr in infos:
            item = (int(family), addr)
            if item not in seen:
                seen.append(item)  # type: ignore[arg-type]
        return seen

    # ---- options

    def option(self, name: str) -> str | None:
        """The canonical text of option ``name``, or None when it is not given."""
        for key, value in self.options:
            if key == name:
                return value
        return None

    def int_option(self, name: str, default: int) -> int:
        value = self.option(name)
        return default if value is None else int(value)

    def float_option(self, name: str, default: float | None) -> float | None:
        value = self.option(name)
        return default if value is None else float(value)

    def bool_option(self, name: str, default: bool) -> bool:
        value = self.option(name)
        return default if value is None else value == "1"

    @property
    def mode(self) -> int | None:
        """``?mode=0600`` as an int, or None."""
        value = self.option("mode")
        return None if value is None else int(value, 8)

    def with_options(self, **changes: str | int | None) -> Endpoint:
        """A copy with options set (canonicalised and checked) or removed (None)."""
        merged = dict(self.options)
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        return parse(_format(self, tuple(sorted(merged.items()))))

    def without_options(self) -> Endpoint:
        return Endpoint(self.scheme, self.path, self.host, self.port, self.name, self.fd)

    # ---- text

    def __str__(self) -> str:
        return _format(self, self.options)

    def display(self) -> str:
        """A short human form: the canonical string without options."""
        return _format(self, ())


def _format(ep: Endpoint, options: tuple[tuple[str, str], ...]) -> str:
    if ep.scheme in _UNIX_SCHEMES:
        assert ep.path is not None
        # a path that itself starts with "//" is written unix:////x, since
        # unix://x is refused as ambiguous and unix:///x means /x
        lead = "//" if ep.path.startswith("//") else ""
        body = f"{ep.scheme}:{lead}{_encode(ep.path)}"
    elif ep.scheme in _INET_SCHEMES or ep.scheme == "raw":
        assert ep.host is not None
        host = f"[{ep.host}]" if ":" in ep.host else ep.host
        body = f"{ep.scheme}://{host}"
        if ep.port is not None:
            body += f":{ep.port}"
    elif ep.scheme == "netlink":
        body = f"netlink:{ep.name}"
    elif ep.scheme == "fd":
        body = f"fd:{ep.fd}"
    else:
        body = f"systemd:{_encode(ep.name or '', ':')}"
    if options:
        body += "?" + "&".join(f"{k}={_encode(v)}" for k, v in options)
    return body


def parse(text: str | Endpoint) -> Endpoint:
    """Parse an endpoint string; raise :class:`AddressError` naming the bad part."""
    if isinstance(text, Endpoint):
        return text
    if not isinstance(text, str):
        raise AddressError(
            f"an endpoint must be a string, not {type(text).__name__}", part=repr(text)
        )
    whole = text if len(text) <= 200 else text[:197] + "..."
    if not text:
        raise AddressError(
            "empty endpoint",
            "write e.g. unix:/run/app.sock or tcp://127.0.0.1:7000",
            valid=tuple(SCHEMES),
        )
    if "\0" in text:
        raise AddressError(
            f"NUL byte in endpoint {whole!r}",
            "paths and names cannot contain NUL",
            part="\\0",
        )
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() not in SCHEMES:
        shown = scheme if sep else text
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise AddressError(
            f"unknown scheme {shown!r}",
            "valid schemes: " + ", ".join(SCHEMES) + " (e.g. unix:/run/app.sock)",
            part=shown,
            valid=tuple(SCHEMES),
        )
    scheme = scheme.lower()
    body, qmark, query = rest.partition("?")
    options = _parse_query(scheme, query, whole) if qmark else ()
    if qmark and not query:
        raise AddressError(f"empty query in {whole!r}", "remove the '?' or add options", part="?")
    if scheme in _UNIX_SCHEMES:
        ep = Endpoint(scheme, path=_parse_unix_path(body, whole), options=options)
    elif scheme in _INET_SCHEMES or scheme == "raw":
        host, port = _parse_authority(scheme, body, whole)
        ep = Endpoint(scheme, host=host, port=port, options=options)
    elif scheme == "netlink":
        name = body.lower()
        if name not in NETLINK_PROTOCOLS:
            raise AddressError(
                f"unknown netlink protocol {body!r} in {whole!r}",
                "valid: " + ", ".join(NETLINK_PROTOCOLS),
                part=body,
                valid=tuple(NETLINK_PROTOCOLS),
            )
        ep = Endpoint(scheme, name=name, options=options)
    elif scheme == "fd":
        if not re.fullmatch(r"[0-9]{1,10}", body) or int(body) > 2**31 - 1:
            raise AddressError(
                f"bad descriptor number {body!r} in {whole!r}",
                "write fd:N with N a whole number, e.g. fd:3",
                part=body,
            )
        ep = Endpoint(scheme, fd=int(body), options=options)
    else:  # systemd
        name = _decode(body, "the name", whole)
        if len(name) > 255 or ":" in name:
            raise AddressError(
                f"bad systemd socket name {body!r}",
                "a name from LISTEN_FDNAMES has at most 255 characters and no ':'",
                part=body,
            )
        ep = Endpoint(scheme, name=name or None, options=options)
    _check_option_fit(ep, whole)
    return ep


def _parse_unix_path(body: str, whole: str) -> str:
    if body.startswith("//"):
        # accept the URL-ish unix:///abs/path; canonical form is unix:/abs/path
        if not body.startswith("///"):
            raise AddressError(
                f"ambiguous UNIX path in {whole!r}",
                "write unix:/absolute/path, unix:relative/path or unix:@abstract",
                part=body,
            )
        body = body[2:]
    path = _decode(body, "the path", whole)
    if not path or path == "@":
        raise AddressError(
            f"missing path in {whole!r}",
            "write unix:/run/app.sock for a file or unix:@name for an abstract name",
            part="path",
        )
    if "\0" in path:
        raise AddressError(
            f"NUL byte in the path of {whole!r}",
            "UNIX socket paths cannot contain NUL",
            part="\\0",
        )
    size = len(os.fsencode(path[1:] if path.startswith("@") else path))
    if size > UNIX_PATH_MAX:
        kind = "abstract name" if path.startswith("@") else "path"
        raise AddressError(
            f"UNIX socket {kind} is {size} bytes, over the kernel limit of {UNIX_PATH_MAX} bytes",
            "use a shorter path, or an abstract name (unix:@name) that needs no file",
            part=path[:40] + "...",
        )
    return path


def _parse_authority(scheme: str, body: str, whole: str) -> tuple[str, int | None]:
    if not body.startswith("//"):
        raise AddressError(
            f"missing '//' after {scheme}: in {whole!r}",
            f"write {scheme}://HOST" + ("" if scheme == "raw" else ":PORT"),
            part=body[:40],
        )
    authority = body[2:]
    if "/" in authority:
        raise AddressError(
            f"unexpected path in {whole!r}",
            f"{scheme} endpoints have no path; options go after '?'",
            part=authority[authority.index("/") :][:40],
        )
    port_text: str | None
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise AddressError(
                f"malformed IPv6 literal in {whole!r}",
                "close the bracket, e.g. tcp://[::1]:7000",
                part=authority[:40],
            )
        host_text = authority[1:close]
        after = authority[close + 1 :]
        if after and not after.startswith(":"):
            raise AddressError(
                f"unexpected {after!r} after the IPv6 literal in {whole!r}",
                "write [ADDRESS]:PORT",
                part=after[:40],
            )
        port_text = after[1:] if after else None
        if ":" not in host_text:
            raise AddressError(
                f"malformed IPv6 literal [{host_text}] in {whole!r}",
                "brackets are only for IPv6 addresses, e.g. [::1]",
                part=host_text,
            )
    else:
        if authority.count(":") > 1:
            raise AddressError(
                f"malformed IPv6 literal in {whole!r}",
                "put IPv6 addresses in brackets, e.g. tcp://[::1]:7000",
                part=authority[:40],
            )
        host_text, colon, port_part = authority.partition(":")
        port_text = port_part if colon else None
    host = _host(host_text, whole)
    if scheme == "raw":
        if port_text is not None:
            raise AddressError(
                f"raw endpoints have no port: {whole!r}",
                "write raw://HOST?proto=icmp",
                part=port_text,
            )
        return host, None
    if port_text is None or port_text == "":
        raise AddressError(
            f"missing port in {whole!r}",
            f"write {scheme}://HOST:PORT with PORT from 0 to 65535 (0 = any free port)",
            part="port",
        )
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) > 65535:
        shown = port_text if len(port_text) <= 20 else port_text[:17] + "..."
        raise AddressError(
            f"port {shown!r} out of range in {whole!r}",
            "a port is a whole number from 0 to 65535 (0 = any free port)",
            part=shown,
        )
    return host, int(port_text)


def _parse_query(scheme: str, query: str, whole: str) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    valid = tuple(name for name, spec in OPTIONS.items() if scheme in spec.schemes)
    for item in query.split("&") if query else ():
        key, eq, raw_value = item.partition("=")
        if key not in OPTIONS or scheme not in OPTIONS[key].schemes:
            shown = key if len(key) <= 40 else key[:37] + "..."
            raise AddressError(
                f"unknown option {shown!r} for {scheme}: in {whole!r}",
                "valid options for " + scheme + ": " + (", ".join(valid) or "none"),
                part=shown,
                valid=valid,
            )
        if not eq:
            raise AddressError(
                f"option {key!r} has no value in {whole!r}",
                f"write {key}=VALUE (e.g. {key}=1)",
                part=key,
            )
        if key in found:
            raise AddressError(
                f"option {key!r} given twice in {whole!r}", "give each option once", part=key
            )
        value = _decode(raw_value, f"option {key}", whole)
        try:
            found[key] = OPTIONS[key].canonical(value)
        except AddressError:
            raise
        except ValueError as exc:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise AddressError(
                f"bad value {shown!r} for option {key!r}", str(exc), part=f"{key}={shown}"
            ) from None
    return tuple(sorted(found.items()))


def _check_option_fit(ep: Endpoint, whole: str) -> None:
    framing = ep.option("framing")
    if framing is not None and ep.scheme not in ("fd", "systemd"):
        check_framing_fits(framing, ep.type, whole)
    for key, _ in ep.options:
        if OPTIONS[key].path_only and ep.is_abstract:
            raise AddressError(
                f"option {key!r} does not apply to the abstract name in {whole!r}",
                "abstract names have no file and no permissions; restrict who may connect "
                "with a peer-credential filter (allowed_uids) instead",
                part=key,
            )


def check_framing_fits(framing: str, sock_type: int, where: str) -> None:
    """Refuse a stream framing on a packet socket and the packet header on a stream."""
    if sock_type == _STREAM:
        if framing not in STREAM_FRAMINGS:
            raise AddressError(
                f"framing={framing} on the byte stream {where!r}",
                "the sockwire packet header is for seqpacket and datagram sockets; streams "
                "take " + ", ".join(STREAM_FRAMINGS),
                part=f"framing={framing}",
                valid=STREAM_FRAMINGS,
            )
    elif sock_type in (_SEQ, _DGRAM) and framing not in PACKET_FRAMINGS:
        raise AddressError(
            f"framing={framing} on the packet socket {where!r}",
            "seqpacket and datagram sockets keep message boundaries themselves: framing is "
            "none (the default) or sockwire (the sockwire header: fragments, sequence numbers)",
            part=f"framing={framing}",
            valid=PACKET_FRAMINGS,
        )


def iter_option_help(scheme: str | None = None) -> Iterator[tuple[str, OptionSpec]]:
    """Options (for ``scheme``, or all) with their specs, for help texts."""
    for name, spec in OPTIONS.items():
        if scheme is None or scheme in spec.schemes:
            yield name, spec


def merge_options(ep: Endpoint, flags: Mapping[str, object]) -> Endpoint:
    """Apply CLI flags that are shorthands for query options.

    ``--framing len32`` is ``?framing=len32``; giving both with different
    values is an AddressError (a usage error on the CLI).
    """
    changes: dict[str, str] = {}
    for key, value in flags.items():
        if value is None:
            continue
        text = str(value)
        given = ep.option(key)
        probe = parse(_format(ep.without_options(), ((key, text),)))
        canonical = probe.option(key)
        assert canonical is not None
        if given is not None and given != canonical:
            raise AddressError(
                f"--{key} {text} conflicts with ?{key}={given} in {ep}",
                "give the option once, as a flag or in the endpoint",
                part=key,
            )
        changes[key] = canonical
    return ep.with_options(**changes) if changes else ep
