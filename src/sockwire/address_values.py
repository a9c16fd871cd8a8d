"""Typed values of endpoint options: text -> value -> one canonical text.

Each :class:`Value` parses the text of a query option into a typed value
(``int``, ``float``, ``bool``, a tuple...) or raises ``ValueError`` with a
reason written for the user, and formats the value back into its one
canonical spelling, so ``format(parse(text))`` is what ``str(Endpoint)``
shows and ``parse(format(v)) == v``. Pure functions: no socket calls, no
name lookups (a user name stays a name until the socket file is made).

Scheme authors (the ZMTP endpoints, say) build their options from these.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ID_MAX",
    "Value",
    "boolean",
    "choice",
    "file_path",
    "host_name",
    "id_list",
    "integer",
    "interface_name",
    "ip_literal",
    "keepalive",
    "mode",
    "multicast_group",
    "name_or_id",
    "seconds",
    "text",
]

#: uid_t/gid_t are 32 bits and (uid_t)-1 means "unchanged" to chown(2):
#: the largest id a file can be given is 2**32 - 2.
ID_MAX = 2**32 - 2

#: A value's text is bounded before any regex or int() sees it.
_MAX_TEXT = 4096


@dataclass(frozen=True)
class Value:
    """How one option's text becomes a typed value and back.

    ``parse`` raises ``ValueError(reason)``; ``metavar`` names the value in
    help and the README; ``examples`` are valid texts (for property tests
    and help), not necessarily canonical.
    """

    parse: Callable[[str], Any]
    format: Callable[[Any], str]
    metavar: str
    examples: tuple[str, ...]


def _bounded(text: str, limit: int = _MAX_TEXT) -> str:
    if len(text) > limit:
        raise ValueError(f"is {len(text)} characters long (at most {limit})")
    return text


def _whole_number(text: str, lo: int, hi: int, what: str = "a whole number") -> int:
    if len(text) > 24 or not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f"must be {what} from {lo} to {hi}")
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f"must be from {lo} to {hi}")
    return value


def integer(lo: int, hi: int, *, hex_ok: bool = False) -> Value:
    """A whole number in ``[lo, hi]``, written in decimal (``0x`` too with ``hex_ok``)."""

    def parse(text: str) -> int:
        if hex_ok and text[:2].lower() == "0x" and re.fullmatch(r"[0-9A-Fa-f]{1,8}", text[2:]):
            value = int(text[2:], 16)
            if not lo <= value <= hi:
                raise ValueError(f"must be from {lo} to {hi}")
            return value
        return _whole_number(text, lo, hi)

    middle = (lo + hi) // 2
    return Value(parse, str, "N", tuple(dict.fromkeys(map(str, (lo, hi, middle)))))


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0 (true/false, yes/no, on/off)")


boolean = Value(_parse_bool, lambda v: "1" if v else "0", "0|1", ("1", "0", "yes", "off"))


def choice(*choices: str) -> Value:
    """One of ``choices`` (case-insensitive; canonical lower case)."""

    def parse(text: str) -> str:
        lowered = text.lower()
        if lowered not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return lowered

    return Value(parse, str, "|".join(choices), choices)


def _parse_mode(text: str) -> int:
    # setuid/setgid/sticky mean nothing on a socket file and setgid on a
    # socket is a confused deputy in waiting: only permission bits are taken
    if not re.fullmatch(r"0?[0-7]{1,3}", text):
        if re.fullmatch(r"0?[0-7]{4}", text):
            raise ValueError(
                "must be 0 to 0777: a socket file takes permission bits only "
                "(no setuid, setgid or sticky bit)"
            )
        raise ValueError("must be an octal file mode such as 0600 or 660")
    return int(text, 8)


mode = Value(_parse_mode, lambda v: f"{v:04o}", "OCTAL", ("600", "0660", "0777", "0"))

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")


def _parse_name_or_id(text: str) -> int | str:
    if re.fullmatch(r"[0-9]+", text):
        if len(text) > 10 or int(text) > ID_MAX:
            raise ValueError(f"a user or group id is a number from 0 to {ID_MAX}")
        return int(text)
    if not _NAME.fullmatch(text):
        raise ValueError(
            "must be a user/group name (letters, digits, _ . -; at most 32) "
            f"or a number from 0 to {ID_MAX}"
        )
    return text


name_or_id = Value(_parse_name_or_id, str, "NAME|ID", ("root", "0", "nobody", "1000"))


def _parse_id_list(text: str) -> tuple[int | str, ...]:
    """``1000,0,www-data,0`` -> ``(0, 1000, 'www-data')``: ids ascending, then names, once each."""
    items = [item.strip() for item in _bounded(text).split(",")]
    if not text or len(items) > 64:
        raise ValueError("must be 1 to 64 user/group names or numbers, separated by commas")
    numbers: set[int] = set()
    names: set[str] = set()
    for item in items:
        value = _parse_name_or_id(item)
        if isinstance(value, int):
            numbers.add(value)
        else:
            names.add(value)
    return (*sorted(numbers), *sorted(names))


id_list = Value(
    _parse_id_list,
    lambda v: ",".join(map(str, v)),
    "ID,...",
    ("0", "100,0", "nogroup", "0,0", "1000,root"),
)


def _parse_seconds(text: str) -> float:
    try:
        value = float(_bounded(text, 64))
    except ValueError:
        raise ValueError("must be a number of seconds, such as 2 or 0.5") from None
    if math.isnan(value) or not 0 < value <= 86400:
        raise ValueError("must be more than 0 and at most 86400 seconds")
    return value


def _format_seconds(value: float) -> str:
    return repr(value).removesuffix(".0") if value == int(value) else repr(value)


seconds = Value(_parse_seconds, _format_seconds, "SECONDS", ("1", "0.5", "2.25", "30", "1e2"))


def _parse_file(text: str) -> str:
    if not text:
        raise ValueError("must name a file")
    if "\0" in text:
        raise ValueError("must not contain a NUL byte")
    return _bounded(text)


file_path = Value(_parse_file, str, "FILE", ("/etc/ca.pem", "key", "my file&x.pem"))


def text(pattern: str, reason: str, examples: tuple[str, ...], metavar: str = "TEXT") -> Value:
    """Free text matching ``pattern`` (a regex over the whole value)."""
    compiled = re.compile(pattern)

    def parse(value: str) -> str:
        if not compiled.fullmatch(_bounded(value)):
            raise ValueError(reason)
        return value

    return Value(parse, str, metavar, examples)


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def parse_host_name(value: str) -> str:
    """A DNS name in canonical (lower case, no trailing dot) form, or ValueError."""
    name = value.rstrip(".") if value != "." else value
    if (
        not name
        or len(name) > 253
        or not all(_LABEL.fullmatch(label) for label in name.split("."))
    ):
        raise ValueError(
            "a host name is letters, digits and hyphens in dot-separated labels of at most "
            "63 characters, 253 in all"
        )
    return name.lower()


host_name = Value(parse_host_name, str, "NAME", ("example.test", "localhost", "db-1.lan"))


def _parse_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.removeprefix("[").removesuffix("]")))
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address, e.g. 127.0.0.1 or ::1") from None


ip_literal = Value(_parse_ip, str, "ADDR", ("127.0.0.1", "::1", "[::1]", "0.0.0.0"))

#: IFNAMSIZ is 16 with the NUL; the kernel refuses '/', ':' only in some
#: places, whitespace everywhere (dev_valid_name)
_IFNAME = re.compile(r"[A-Za-z0-9_.@:+-]{1,15}")


def _parse_ifname(value: str) -> str:
    if not _IFNAME.fullmatch(value) or value in (".", ".."):
        raise ValueError("must be a network interface name of 1 to 15 characters, e.g. lo or eth0")
    return value


interface_name = Value(_parse_ifname, str, "IF", ("lo", "eth0", "veth-a"))


def _parse_group(value: str) -> tuple[str, str | None]:
    group_text, at, interface = _bounded(value, 128).partition("@")
    try:
        group = ipaddress.ip_address(group_text.removeprefix("[").removesuffix("]"))
    except ValueError:
        raise ValueError(
            "must be a multicast group address, e.g. 239.1.2.3 or ff02::1:3"
        ) from None
    if not group.is_multicast:
        raise ValueError(f"{group} is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)")
    return str(group), (_parse_ifname(interface) if at else None)


def _format_group(value: tuple[str, str | None]) -> str:
    group, interface = value
    return group if interface is None else f"{group}@{interface}"


multicast_group = Value(
    _parse_group, _format_group, "GROUP[@IF]", ("239.1.2.3", "239.0.0.9@lo", "ff02::1:3@lo")
)

# TCP_KEEPIDLE/TCP_KEEPINTVL are capped at MAX_TCP_KEEPIDLE/INTVL = 32767 s
# and TCP_KEEPCNT at MAX_TCP_KEEPCNT = 127 (include/net/tcp.h)
_KEEPALIVE_LIMITS = ((1, 32767, "IDLE"), (1, 32767, "INTVL"), (1, 127, "CNT"))


def _parse_keepalive(value: str) -> tuple[int, int, int] | bool:
    if "," not in value:
        try:
            return _parse_bool(value)
        except ValueError:
            raise ValueError(
                "must be 1 (on, with the system's timers), 0 (off) or IDLE,INTVL,CNT "
                "(seconds idle, seconds between probes, probes), e.g. 60,10,5"
            ) from None
    parts = _bounded(value, 64).split(",")
    if len(parts) != 3:
        raise ValueError("must be IDLE,INTVL,CNT: three numbers, e.g. 60,10,5")
    numbers = []
    for part, (lo, hi, what) in zip(parts, _KEEPALIVE_LIMITS, strict=True):
        try:
            numbers.append(_whole_number(part, lo, hi))
        except ValueError as exc:
            raise ValueError(f"{what} {exc}") from None
    return numbers[0], numbers[1], numbers[2]


def _format_keepalive(value: tuple[int, int, int] | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return ",".join(map(str, value))


keepalive = Value(
    _parse_keepalive, _format_keepalive, "1|IDLE,INTVL,CNT", ("1", "0", "60,10,5", "1,1,1")
)
