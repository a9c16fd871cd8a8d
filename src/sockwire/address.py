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
where they hold ``%``, ``?``, ``&``, ``#``, ``=``, spaces or control bytes.

Every scheme is one :class:`Scheme` in a registry (the built-in ones are in
:mod:`sockwire.schemes`); other modules add theirs with
:func:`register_scheme`. A scheme names its options, each an :class:`Option`
with a typed value (``ep.get("backlog") -> int``), the sides it makes sense
on (``listen``: listen/bind; ``connect``) and, for socket options, the
``setsockopt`` calls it stands for, which :mod:`sockwire.dial` makes.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from . import errors
from .address_values import Value, parse_host_name
from .errors import AddressError

__all__ = [
    "BOTH",
    "CONNECT",
    "FRAMINGS",
    "LISTEN",
    "OPTIONS",
    "PACKET_FRAMINGS",
    "SCHEMES",
    "SIDES",
    "SOCKET_TYPES",
    "STREAM_FRAMINGS",
    "UNIX_PATH_MAX",
    "Body",
    "Endpoint",
    "Option",
    "Scheme",
    "check_side",
    "format_sockaddr",
    "merge_options",
    "parse",
    "register_option",
    "register_scheme",
    "static_packet_limit",
]

#: sun_path is 108 bytes; a filesystem path needs its terminating NUL, and
#: Python refuses 108 bytes or more without an errno. An abstract name
#: (leading NUL, no terminator) may use 107 bytes after the NUL.
UNIX_PATH_MAX = 107

#: Framings of a byte stream (sockwire.framing) and of a packet socket (sockwire.packet):
#: the one list of their names. ``none`` adds no bytes; ``sockwire`` is the
#: opt-in packet header (docs/PROTOCOL.md sections 2-3).
STREAM_FRAMINGS = ("len16", "len32", "len64", "netstring", "line", "nul", "none")
PACKET_FRAMINGS = ("none", "sockwire")
FRAMINGS = (*STREAM_FRAMINGS, "sockwire")
SOCKET_TYPES = ("stream", "dgram", "seqpacket")

#: The two sides an endpoint is used on: ``listen`` (listen, or bind a
#: datagram receiver) and ``connect``.
LISTEN = "listen"
CONNECT = "connect"
SIDES = (LISTEN, CONNECT)
BOTH = frozenset(SIDES)
_SIDE_WORDS = {LISTEN: "listening or binding", CONNECT: "connecting"}

#: How many values one repeatable option may have (``?join=`` x N).
MAX_REPEATS = 64

#: ``(level, optname, value)`` for one setsockopt(2) call.
SockOpt = tuple[int, int, int | bytes]


# --------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One query option: its typed value, where it applies, what it does.

    ``sides``: where it makes sense; elsewhere :func:`check_side` refuses it.
    ``sockopts(value, family)``: the setsockopt calls it stands for (dial
    makes them on every path, before bind/connect). ``repeatable``: may be
    given more than once (``?join=A&join=B``); its value is then a tuple.
    """

    name: str
    value: Value
    help: str
    sides: frozenset[str] = BOTH
    repeatable: bool = False
    path_only: bool = False  # unix path sockets only (not @abstract)
    default: Any = None
    sockopts: Callable[[Any, int], Sequence[SockOpt]] | None = None

    def for_sides(self, *sides: str) -> Option:
        """This option restricted to ``sides`` (for one scheme's table)."""
        return replace(self, sides=frozenset(sides))


@dataclass(frozen=True)
class Body:
    """The fields a scheme's body sets on an Endpoint (the rest stay None)."""

    path: str | None = None
    host: str | None = None
    port: int | None = None
    name: str | None = None
    fd: int | None = None


@dataclass(frozen=True)
class Scheme:
    """One scheme, declared once: what socket it makes and how it is written.

    ``parse_body(body, whole)`` reads what follows ``scheme:`` (before
    ``?``), raising AddressError; ``format_body(ep)`` writes it back in
    canonical form. ``sockaddr(ep)`` builds the bind/connect address
    (None: the scheme names inherited sockets). ``addresses(ep)`` lists
    ``(family, sockaddr)`` to try when names need resolving. ``family_of``,
    ``type_of``, ``protocol_of`` refine ``family``/``type``/0 per endpoint;
    ``packet_limit`` is the largest message one packet carries, or None
    (a stream, or a limit set by the socket, such as SO_SNDBUF on UNIX
    packet types, which the channel layer reads). ``check(ep, whole)``
    holds rules across fields and options; ``check_side(ep, side)`` rules
    for one side (port 0 on connect). ``from_sockaddr(ep, sockname)`` is
    the endpoint as bound (port 0 -> the chosen port); ``format_sockaddr``
    writes a raw address of a family the trace does not know. ``error_rules`` are
    :func:`sockwire.errors.rule` hints where this scheme's errors differ;
    each must name its family.
    """

    name: str
    family: int
    type: int
    syntax: str
    summary: str
    parse_body: Callable[[str, str], Body]
    format_body: Callable[[Endpoint], str]
    options: Mapping[str, Option]
    sockaddr: Callable[[Endpoint], Any] | None = None
    addresses: Callable[[Endpoint], list[tuple[int, Any]]] | None = None
    family_of: Callable[[Endpoint], int] | None = None
    type_of: Callable[[Endpoint], int] | None = None
    protocol_of: Callable[[Endpoint], int] | None = None
    packet_limit: Callable[[Endpoint], int | None] | None = None
    check: Callable[[Endpoint, str], None] | None = None
    check_side: Callable[[Endpoint, str], None] | None = None
    from_sockaddr: Callable[[Endpoint, Any], Endpoint] | None = None
    format_sockaddr: Callable[[Any], str] | None = None
    error_rules: tuple[errors.Rule, ...] = ()
    examples: tuple[str, ...] = ()

    def options_for(self, side: str) -> tuple[str, ...]:
        return tuple(name for name, option in self.options.items() if side in option.sides)


_SCHEMES: dict[str, Scheme] = {}
_OPTIONS: dict[str, Option] = {}
#: Every registered scheme by name (read-only; add with :func:`register_scheme`).
SCHEMES: Mapping[str, Scheme] = MappingProxyType(_SCHEMES)
#: The options shared by the built-in schemes, by name (a scheme may add its own).
OPTIONS: Mapping[str, Option] = MappingProxyType(_OPTIONS)

_SCHEME_NAME = re.compile(r"[a-z][a-z0-9]*(?:\+[a-z0-9]+)*")
_OPTION_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register_option(option: Option) -> Option:
    """Add an option to the shared table (schemes still choose theirs)."""
    if not _OPTION_NAME.fullmatch(option.name):
        raise ValueError(f"bad option name {option.name!r}")
    if option.name in _OPTIONS and _OPTIONS[option.name] != option:
        raise ValueError(f"option {option.name!r} is already registered")
    _OPTIONS[option.name] = option
    return option


def register_scheme(scheme: Scheme, *, replace_existing: bool = False) -> Scheme:
    """Add ``scheme`` to the registry: from now on :func:`parse` knows it.

    Its ``error_rules`` go before the built-in rules of
    :func:`sockwire.errors.translate`. A name already taken is a
    ``ValueError`` unless ``replace_existing``.
    """
    if not _SCHEME_NAME.fullmatch(scheme.name):
        raise ValueError(f"bad scheme name {scheme.name!r}: lower case, parts joined by '+'")
    if scheme.name in _SCHEMES and not replace_existing:
        raise ValueError(f"scheme {scheme.name!r} is already registered")
    for key, option in scheme.options.items():
        if key != option.name or not _OPTION_NAME.fullmatch(key):
            raise ValueError(f"scheme {scheme.name!r}: option {key!r} is named {option.name!r}")
    for rule in scheme.error_rules:
        if rule.family is None:
            raise ValueError(f"scheme {scheme.name!r}: an error rule must name its family")
    errors.add_rules(scheme.error_rules)
    _SCHEMES[scheme.name] = scheme
    return scheme


def scheme_of(name: str) -> Scheme:
    """The registered scheme ``name`` (AddressError when there is none)."""
    found = _SCHEMES.get(name)
    if found is None:
        raise _unknown_scheme(name, name)
    return found


def format_sockaddr(family: int, sockaddr: Any) -> str | None:
    """A registered scheme's text for a raw address of ``family`` (for traces), or None."""
    for spec in _SCHEMES.values():
        if spec.family == family and spec.format_sockaddr is not None:
            try:
                return spec.format_sockaddr(sockaddr)
            except (TypeError, ValueError):
                return None
    return None


def static_packet_limit(family: int, sock_type: int) -> int | None:
    """The largest payload one packet can carry by protocol alone, or None.

    UDP: 65,535 minus the IPv4 (20) and UDP (8) headers = 65,507; over IPv6
    the payload-length field excludes the fixed header: 65,535 - 8 = 65,527.
    Raw IPv4: 65,535 - 20. None for streams and for UNIX packet types, whose
    limit is the socket's SO_SNDBUF (less ~32 bytes), read by the channel.
    """
    limits: dict[tuple[int, int], int] = {
        (socket.AF_INET, socket.SOCK_DGRAM): 65507,
        (socket.AF_INET6, socket.SOCK_DGRAM): 65527,
        (socket.AF_INET, socket.SOCK_RAW): 65515,
        (socket.AF_INET6, socket.SOCK_RAW): 65535,
    }
    return limits.get((family, sock_type))


# --------------------------------------------------------------------------
# Percent-encoding of paths and values
# --------------------------------------------------------------------------

_SPECIAL = frozenset("%?&#= ")


def quote(text: str, extra: str = "") -> str:
    """Percent-encode what would break the grammar (and control bytes)."""
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


def unquote(text: str, what: str, whole: str) -> str:
    """Undo :func:`quote`; a bad escape is an AddressError naming ``what``."""
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
                    part=text[:40],
                )
            raw.append(int(pair, 16))
            i += 3
        else:
            raw.append(byte)
            i += 1
    return bytes(raw).decode("utf-8", "surrogateescape")


def shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------
# Hosts and ports (shared by the inet schemes, and by others written HOST:PORT)
# --------------------------------------------------------------------------


def parse_host(text: str, whole: str) -> str:
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
                f"malformed IPv6 address {shorten(text)!r} in {whole!r}",
                f"{exc}; write it in brackets, e.g. tcp://[::1]:7000",
                part=shorten(text),
            ) from None
    if re.fullmatch(r"[0-9.]+", text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError as exc:
            raise AddressError(
                f"malformed IPv4 address {shorten(text)!r} in {whole!r}",
                f"{exc}; write four numbers 0-255, e.g. 127.0.0.1",
                part=shorten(text),
            ) from None
    try:
        return parse_host_name(text)
    except ValueError as exc:
        raise AddressError(
            f"malformed host name {shorten(text)!r}", str(exc), part="host"
        ) from None


def split_authority(
    scheme: str, body: str, whole: str, *, example: str = "HOST:PORT"
) -> tuple[str, str | None]:
    """``//HOST:PORT`` or ``//[V6]:PORT`` -> (host text, port text or None)."""
    if not body.startswith("//"):
        hint = f"write {scheme}://{example}"
        if re.fullmatch(r"[^/?#\s]+", body):
            hint = f"did you mean {scheme}://{quote(body)}? {hint}"
        raise AddressError(f"missing '//' after {scheme}: in {whole!r}", hint, part=body[:40])
    authority = body[2:]
    v6 = f"{scheme}://[::1]" + (":7000" if example.endswith("PORT") else "")
    if "/" in authority:
        raise AddressError(
            f"unexpected path in {whole!r}",
            f"{scheme} endpoints have no path; options go after '?'",
            part=authority[authority.index("/") :][:40],
        )
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise AddressError(
                f"malformed IPv6 literal in {whole!r}",
                f"close the bracket, e.g. {v6}",
                part=authority[:40],
            )
        host_text = authority[1:close]
        after = authority[close + 1 :]
        if after and not after.startswith(":"):
            raise AddressError(
                f"unexpected {shorten(after)!r} after the IPv6 literal in {whole!r}",
                "write [ADDRESS]:PORT",
                part=after[:40],
            )
        if ":" not in host_text:
            raise AddressError(
                f"malformed IPv6 literal [{shorten(host_text)}] in {whole!r}",
                "brackets are only for IPv6 addresses, e.g. [::1]",
                part=shorten(host_text),
            )
        return host_text, (after[1:] if after else None)
    if authority.count(":") > 1:
        raise AddressError(
            f"malformed IPv6 literal in {whole!r}",
            f"put IPv6 addresses in brackets, e.g. {v6}",
            part=authority[:40],
        )
    host_text, colon, port_part = authority.partition(":")
    return host_text, (port_part if colon else None)


def parse_port(
    scheme: str, host: str, port_text: str | None, whole: str, *, hi: int = 65535
) -> int:
    """A port number ``0..hi``; a service name is refused with its number as the hint.

    Why numbers only: the same endpoint string must mean the same port on
    every machine and in its canonical form, and /etc/services differs
    between machines (a minimal container has none). The name is looked
    up only to write the hint.
    """
    shown_host = f"[{host}]" if ":" in host else host
    if port_text is None or port_text == "":
        raise AddressError(
            f"missing port in {whole!r}",
            f"write {scheme}://{shown_host}:PORT with PORT from 0 to {hi} (0 = any free port)",
            part="port",
        )
    if re.fullmatch(r"[0-9]{1,10}", port_text) and int(port_text) <= hi:
        return int(port_text)
    shown = shorten(port_text, 20)
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,31}", port_text):
        hint = "ports are numbers"
        number = _service_port(port_text.lower(), "udp" if "udp" in scheme else "tcp")
        if number is not None:
            hint += (
                f": write {scheme}://{shown_host}:{number} "
                f"(/etc/services here says {port_text.lower()} is {number})"
            )
        else:
            hint += f" from 0 to {hi}; write {scheme}://{shown_host}:PORT"
        raise AddressError(f"port {shown!r} is a name in {whole!r}", hint, part=shown)
    raise AddressError(
        f"port {shown!r} out of range in {whole!r}",
        f"a port is a whole number from 0 to {hi} (0 = any free port)",
        part=shown,
    )


def _service_port(name: str, proto: str) -> int | None:
    try:
        return socket.getservbyname(name, proto)
    except OSError:
        return None


# --------------------------------------------------------------------------
# Endpoint
# --------------------------------------------------------------------------

_MISSING: Any = object()


@dataclass(frozen=True)
class Endpoint:
    """A parsed endpoint. Build one with :func:`parse`; ``str()`` gives it back.

    Exactly the fields of its scheme are set: ``path`` (unix schemes; an
    abstract name starts with ``@``), ``host``/``port`` (tcp, udp, tls+tcp,
    raw without port), ``name`` (netlink
    protocol, systemd fd name), ``fd`` (fd:N). ``options`` holds the
    canonical text of each option; :meth:`get` the typed value.
    """

    scheme: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    name: str | None = None
    fd: int | None = None
    options: tuple[tuple[str, str], ...] = field(default=())
    _values: dict[str, Any] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        spec = _SCHEMES.get(self.scheme)
        if spec is None:
            raise _unknown_scheme(self.scheme, self.scheme)
        values: dict[str, Any] = {}
        for key, text in self.options:
            option = spec.options.get(key)
            if option is None:
                raise _unknown_option(spec, key, f"{self.scheme}:")
            try:
                value = option.value.parse(text)
            except ValueError as exc:
                raise _bad_value(key, text, exc) from None
            if option.repeatable:
                values[key] = (*values.get(key, ()), value)
            else:
                values[key] = value
        object.__setattr__(self, "_values", values)

    # ---- what kind of socket this is

    @property
    def spec(self) -> Scheme:
        """The registered :class:`Scheme` of this endpoint."""
        return _SCHEMES[self.scheme]

    @property
    def family(self) -> int:
        """AF_UNIX, AF_INET or AF_INET6 (a literal host, ``?family=``), ...; 0 if inherited."""
        spec = self.spec
        return spec.family_of(self) if spec.family_of is not None else spec.family

    @property
    def type(self) -> int:
        """SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET or SOCK_RAW (0 if set by ``?type=``)."""
        spec = self.spec
        return spec.type_of(self) if spec.type_of is not None else spec.type

    @property
    def protocol(self) -> int:
        """The protocol number to pass to socket(): 0 except for raw and netlink."""
        spec = self.spec
        return spec.protocol_of(self) if spec.protocol_of is not None else 0

    @property
    def is_unix(self) -> bool:
        return self.spec.family == socket.AF_UNIX

    @property
    def is_abstract(self) -> bool:
        """True for ``unix:@name``: no file, no permissions, per network namespace."""
        return self.is_unix and self.path is not None and self.path.startswith("@")

    @property
    def is_stream(self) -> bool:
        return self.type == socket.SOCK_STREAM

    @property
    def packet_limit(self) -> int | None:
        """The largest message one packet carries, or None (see :class:`Scheme`)."""
        spec = self.spec
        if spec.packet_limit is not None:
            return spec.packet_limit(self)
        return static_packet_limit(self.family, self.type)

    @property
    def sockaddr(self) -> Any:
        """The address for bind()/connect(), for schemes that need no resolving.

        UNIX: the path (``str``), or ``b"\\0name"`` for an abstract name. INET
        with a literal host: ``(host, port)``. Netlink: ``(0, groups)``.
        Host names need resolving: see :meth:`addresses`.
        """
        spec = self.spec
        if spec.sockaddr is None:
            raise AddressError(f"{self} has no socket address", "fd: and systemd: are inherited")
        return spec.sockaddr(self)

    def addresses(self) -> list[tuple[int, Any]]:
        """``[(family, sockaddr), ...]`` to try in turn, host names resolved (may block)."""
        spec = self.spec
        if spec.addresses is not None:
            return spec.addresses(self)
        return [(self.family, self.sockaddr)]

    def resolve(self) -> list[tuple[int, Any]]:
        """``[(family, sockaddr), ...]`` for an inet endpoint, literal or by name."""
        if self.host is None:
            raise AddressError(f"{self} has no host to resolve", part=self.scheme)
        return self.addresses()

    def bound(self, sockname: Any) -> Endpoint:
        """This endpoint as really bound (``tcp://h:0`` with the port the kernel chose)."""
        spec = self.spec
        if spec.from_sockaddr is None:
            return self
        return spec.from_sockaddr(self, sockname)

    # ---- options

    def get(self, name: str) -> Any:
        """The typed value of option ``name``, or its default when not given.

        A repeatable option gives a tuple (empty when not given). A name no
        scheme knows is a ``KeyError`` (a typo in the caller).
        """
        if name in self._values:
            return self._values[name]
        option = self.spec.options.get(name) or _OPTIONS.get(name)
        if option is None:
            raise KeyError(f"no endpoint option is called {name!r}")
        return () if option.repeatable else option.default

    def items(self) -> Iterator[tuple[str, str, Any]]:
        """``(name, canonical text, typed value)`` of each option given, in canonical order.

        A repeatable option comes once per value.
        """
        seen: dict[str, int] = {}
        options = self.spec.options
        for key, text in self.options:
            value = self._values[key]
            if options[key].repeatable:
                index = seen.get(key, 0)
                seen[key] = index + 1
                value = value[index]
            yield key, text, value

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
        value: int | None = self._values.get("mode")
        return value

    def with_options(self, **changes: object) -> Endpoint:
        """A copy with options set (canonicalised and checked) or removed (None).

        A repeatable option takes a list or tuple of values.
        """
        merged: dict[str, list[str]] = {}
        for key, value in self.options:
            merged.setdefault(key, []).append(value)
        for key, change in changes.items():
            if change is None:
                merged.pop(key, None)
            elif isinstance(change, list | tuple):
                merged[key] = [str(item) for item in change]
            else:
                merged[key] = [str(change)]
        pairs = tuple((key, value) for key in sorted(merged) for value in merged[key])
        return parse(_format(self, pairs))

    def without_options(self) -> Endpoint:
        return Endpoint(self.scheme, self.path, self.host, self.port, self.name, self.fd)

    def for_side(self, side: str) -> Endpoint:
        """A copy without the options that do not apply on ``side``.

        For handing a listener's endpoint (``?mode=0600&backlog=16``) to a client.
        """
        _check_side_name(side)
        options = self.spec.options
        keep = tuple((k, v) for k, v in self.options if side in options[k].sides)
        if keep == self.options:
            return self
        return replace(self, options=keep)

    # ---- text

    def __str__(self) -> str:
        return _format(self, self.options)

    def display(self) -> str:
        """A short human form: the canonical string without options."""
        return _format(self, ())


def _format(ep: Endpoint, options: Iterable[tuple[str, str]]) -> str:
    body = f"{ep.scheme}:{ep.spec.format_body(ep)}"
    query = "&".join(f"{k}={quote(v)}" for k, v in options)
    return f"{body}?{query}" if query else body


def parse(text: str | Endpoint) -> Endpoint:
    """Parse an endpoint string; raise :class:`AddressError` naming the bad part.

    An Endpoint is returned unchanged: parse once, pass the Endpoint down.
    """
    if isinstance(text, Endpoint):
        return text
    if not isinstance(text, str):
        raise AddressError(
            f"an endpoint must be a string, not {type(text).__name__}", part=repr(text)[:40]
        )
    whole = shorten(text, 200)
    if not text:
        raise AddressError(
            "empty endpoint",
            "write e.g. unix:/run/app.sock or tcp://127.0.0.1:7000",
            valid=tuple(_SCHEMES),
        )
    if "\0" in text:
        raise AddressError(
            f"NUL byte in endpoint {whole!r}",
            "paths and names cannot contain NUL",
            part="\\0",
        )
    name, sep, rest = text.partition(":")
    spec = _SCHEMES.get(name.lower()) if sep else None
    if spec is None:
        raise _unknown_scheme(name if sep else text, text)
    body, qmark, query = rest.partition("?")
    options = _parse_query(spec, query, whole) if qmark else ()
    if qmark and not query:
        raise AddressError(f"empty query in {whole!r}", "remove the '?' or add options", part="?")
    fields = spec.parse_body(body, whole)
    ep = Endpoint(
        spec.name,
        path=fields.path,
        host=fields.host,
        port=fields.port,
        name=fields.name,
        fd=fields.fd,
        options=options,
    )
    _check_option_fit(ep, whole)
    if spec.check is not None:
        spec.check(ep, whole)
    return ep


def _parse_query(spec: Scheme, query: str, whole: str) -> tuple[tuple[str, str], ...]:
    found: dict[str, list[str]] = {}
    for item in query.split("&") if query else ():
        key, eq, raw_value = item.partition("=")
        option = spec.options.get(key)
        if option is None:
            raise _unknown_option(spec, key, whole)
        if not eq:
            raise AddressError(
                f"option {key!r} has no value in {whole!r}",
                f"write {key}=VALUE (e.g. {key}={option.value.examples[0]})",
                part=key,
            )
        values = found.setdefault(key, [])
        if values and not option.repeatable:
            raise AddressError(
                f"option {key!r} given twice in {whole!r}", "give each option once", part=key
            )
        if len(values) >= MAX_REPEATS:
            raise AddressError(
                f"option {key!r} given over {MAX_REPEATS} times in {whole!r}",
                f"at most {MAX_REPEATS} values per option",
                part=key,
            )
        value = unquote(raw_value, f"option {key}", whole)
        try:
            values.append(option.value.format(option.value.parse(value)))
        except AddressError:
            raise
        except ValueError as exc:
            raise _bad_value(key, value, exc) from None
    return tuple((key, value) for key in sorted(found) for value in found[key])


def _unknown_option(spec: Scheme, key: str, whole: str) -> AddressError:
    shown = shorten(key)
    valid = tuple(spec.options)
    return AddressError(
        f"unknown option {shown!r} for {spec.name}: in {whole!r}",
        "valid options for " + spec.name + ": " + (", ".join(valid) or "none"),
        part=shown,
        valid=valid,
    )


def _bad_value(key: str, value: str, exc: ValueError) -> AddressError:
    shown = shorten(value)
    return AddressError(f"bad value {shown!r} for option {key!r}", str(exc), part=f"{key}={shown}")


def _check_option_fit(ep: Endpoint, whole: str) -> None:
    for key, _ in ep.options:
        if ep.spec.options[key].path_only and ep.is_abstract:
            raise AddressError(
                f"option {key!r} does not apply to the abstract name in {whole!r}",
                "abstract names have no file and no permissions; restrict who may connect "
                "with a peer-credential filter (allowed_uids) instead",
                part=key,
            )


# --------------------------------------------------------------------------
# Unknown schemes: say what was probably meant
# --------------------------------------------------------------------------

# socat's address types people type out of habit -> a sockwire template
_SOCAT = {
    "tcp-listen": "tcp://0.0.0.0:{}",
    "tcp4-listen": "tcp://0.0.0.0:{}",
    "tcp6-listen": "tcp://[::]:{}",
    "tcp-connect": "tcp://{}",
    "tcp4": "tcp://{}",
    "tcp6": "tcp://{}",
    "udp-listen": "udp://0.0.0.0:{}",
    "udp-recvfrom": "udp://0.0.0.0:{}",
    "udp-recv": "udp://0.0.0.0:{}",
    "udp-sendto": "udp://{}",
    "udp-connect": "udp://{}",
    "unix-connect": "unix:{}",
    "unix-listen": "unix:{}",
    "unix-client": "unix:{}",
    "unix-sendto": "unix+dgram:{}",
    "unix-recvfrom": "unix+dgram:{}",
    "unix-recv": "unix+dgram:{}",
    "abstract-connect": "unix:@{}",
    "abstract-listen": "unix:@{}",
    "openssl": "tls+tcp://{}",
    "ssl": "tls+tcp://{}",
    "openssl-listen": "tls+tcp://0.0.0.0:{}",
}
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):[0-9]{1,5}")


def _suggestions(name: str, text: str) -> Iterator[str]:
    """Candidate endpoint strings for a text with an unknown scheme, best first."""
    lowered = name.lower()
    rest = text[len(name) + 1 :]
    if lowered in _SOCAT and rest:
        yield _SOCAT[lowered].format(rest.split(",", 1)[0])
    if text.startswith(("/", "./", "../", "~/")) or (text.startswith("@") and len(text) > 1):
        yield "unix:" + text
    if _HOST_PORT.fullmatch(text.split("?", 1)[0]):
        yield "tcp://" + text
    import difflib  # only on this error path: it costs start-up time otherwise

    close = difflib.get_close_matches(lowered, list(_SCHEMES), n=1, cutoff=0.6)
    if close and rest:
        yield f"{close[0]}:{rest}"


def _unknown_scheme(name: str, text: str) -> AddressError:
    shown = shorten(name)
    hint = ""
    if len(text) <= 300:
        for candidate in _suggestions(name, text):
            try:
                canonical = str(parse(candidate))
            except AddressError:
                continue
            hint = f"did you mean {canonical}? "
            break
    valid = tuple(_SCHEMES)
    return AddressError(
        f"unknown scheme {shown!r}",
        hint + "valid schemes: " + ", ".join(valid) + " (e.g. unix:/run/app.sock)",
        part=shown,
        valid=valid,
    )


# --------------------------------------------------------------------------
# Sides
# --------------------------------------------------------------------------


def _check_side_name(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side must be {LISTEN!r} or {CONNECT!r}, not {side!r}")


def check_side(endpoint: Endpoint | str, side: str) -> Endpoint:
    """Refuse options (and values) that make no sense on ``side``; returns the Endpoint.

    ``listen`` covers listen and a datagram receiver's bind; ``connect`` a
    client. ``?mode=`` on a client, ``?bind=`` on a listener, ``udp://h:0``
    on a client: an AddressError naming the side, never silently ignored.
    """
    _check_side_name(side)
    ep = parse(endpoint)
    spec = ep.spec
    for key, _ in ep.options:
        if side in spec.options[key].sides:
            continue
        valid = spec.options_for(side)
        raise AddressError(
            f"option {key!r} is not for {_SIDE_WORDS[side]} in {ep}",
            f"{key} applies only when {_SIDE_WORDS[_other(side)]}; remove it. Options for "
            f"{_SIDE_WORDS[side]} on {spec.name}: " + (", ".join(valid) or "none"),
            part=key,
            valid=valid,
        )
    if spec.check_side is not None:
        spec.check_side(ep, side)
    return ep


def _other(side: str) -> str:
    return CONNECT if side == LISTEN else LISTEN


# --------------------------------------------------------------------------
# Help and CLI shorthands
# --------------------------------------------------------------------------


def iter_option_help(scheme: str | None = None) -> Iterator[tuple[str, Option]]:
    """Options (for ``scheme``, or all shared ones) with their specs, for help texts."""
    table = _OPTIONS if scheme is None else scheme_of(scheme).options
    yield from table.items()


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
                f"--{key} {shorten(text)} conflicts with ?{key}={given} in {ep}",
                "give the option once, as a flag or in the endpoint",
                part=key,
            )
        changes[key] = canonical
    return ep.with_options(**changes) if changes else ep


# The built-in schemes register themselves (kept in their own module so that
# the registry is one table; imported last, as it uses the names above).
from . import schemes as _schemes  # noqa: E402

NETLINK_PROTOCOLS = _schemes.NETLINK_PROTOCOLS
RAW_PROTOCOLS = _schemes.RAW_PROTOCOLS
