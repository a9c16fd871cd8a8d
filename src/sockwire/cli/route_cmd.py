"""``sockwire route``: links, addresses and routes from a NETLINK_ROUTE dump, like ``ip``.

Everything comes from :mod:`sockwire.netlink` over one traced Socket, so
``--trace`` shows the conversation with the kernel (socket, bind, one
``sendto`` per dump request to port 0, the ``recvfrom`` of each reply
datagram) and ``--hex`` the netlink messages themselves.

Conventions copied from iproute2 so the output reads the same:

* ``ip route`` shows the ``main`` table: so does ``--table main`` (the
  default); ``--table all`` adds ``local`` and the rest, each route naming
  its table.
* A host route (/32, /128) is written without its prefix length, the
  default route as ``default``; ``proto boot`` (what ``ip route add``
  records) and ``scope global`` are left out of the text, as ip does.
* Unlike ``ip route``, both families are listed unless -4 or -6 is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..netlink import Addr, Link, Route

HELP = "links, addresses and routes from a NETLINK_ROUTE dump, like ip addr / ip route"

DESCRIPTION = """\
Ask the kernel over a NETLINK_ROUTE socket (the notes' ROUTE domain) for
its links, addresses and routes, decode the replies, and print them aligned
like `ip link`, `ip addr` and `ip route` (--json: one JSON document for
machines). Name some of WHAT to print only those. Routes are those of the
main table unless --table says otherwise. --trace and --hex show the
netlink conversation on stderr.

JSON: {"links": [{"ifindex", "ifname", "flags", "mtu", "operstate",
"address", "kind"}], "addresses": [{"ifindex", "dev", "family", "local",
"prefixlen", "scope", "label"}], "routes": [{"family", "type", "dst",
"prefixlen", "gateway", "dev", "ifindex", "table", "protocol", "scope",
"prefsrc", "metric"}]}; dst is "default" or written as ip writes it.
"""

_WHAT = {
    "links": "links",
    "link": "links",
    "addresses": "addresses",
    "address": "addresses",
    "addr": "addresses",
    "routes": "routes",
    "route": "routes",
}
_ORDER = ("links", "addresses", "routes")


def _what(text: str) -> str:
    found = _WHAT.get(text.lower())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not one of: links, addresses, routes")
    return found


def _table(text: str) -> str:
    lowered = text.lower()
    if lowered in ("main", "local", "default", "all"):
        return lowered
    if lowered.isdigit() and len(lowered) <= 10 and int(lowered) < 2**32:
        return str(int(lowered))
    raise argparse.ArgumentTypeError(
        f"table must be main, local, default, all or a number, not {text[:40]!r}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument(
        "what",
        nargs="*",
        type=_what,
        metavar="WHAT",
        help="links, addresses, routes (default: all three)",
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ipv4", action="store_true", help="IPv4 addresses and routes")
    family.add_argument("-6", dest="ipv6", action="store_true", help="IPv6 addresses and routes")
    parser.add_argument(
        "--table",
        type=_table,
        default="main",
        metavar="T",
        help="routes of table T: main (default, as ip route), local, default, a number, or all",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    watch = parser.add_argument_group("watching the wire (all on stderr)")
    watch.add_argument(
        "--trace", action="store_true", help="one line per socket call of the netlink dump"
    )
    watch.add_argument(
        "--hex", action="store_true", help="hex dump of every netlink request and reply"
    )


def run(args: argparse.Namespace) -> int:
    import socket

    from .. import netlink
    from .observe import Observer, say

    wanted = [w for w in _ORDER if w in args.what] if args.what else list(_ORDER)
    family = socket.AF_INET if args.ipv4 else socket.AF_INET6 if args.ipv6 else socket.AF_UNSPEC
    with Observer(trace_lines=args.trace, hex_dump=args.hex), netlink.open_route_socket() as sock:
        # links are always dumped: addresses and routes name their interface
        links = netlink.links(sock)
        say("decoded", f"{len(links)} links")
        addrs = netlink.addresses(sock, family) if "addresses" in wanted else []
        if "addresses" in wanted:
            say("decoded", f"{len(addrs)} addresses")
        routes: list[netlink.Route] = []
        if "routes" in wanted:
            routes = [r for r in netlink.routes(sock, family) if _in_table(r, args.table)]
            say("decoded", f"{len(routes)} routes in table {args.table}")
    names = {link.index: link.name for link in links}
    doc = {
        "links": [link_doc(link) for link in links] if "links" in wanted else None,
        "addresses": [addr_doc(a, names) for a in addrs] if "addresses" in wanted else None,
        "routes": [route_doc(r, names) for r in _sorted(routes)] if "routes" in wanted else None,
    }
    shown = {key: value for key, value in doc.items() if value is not None}
    if args.json:
        json.dump(shown, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    blocks = []
    if "links" in shown:
        blocks.append(["links", *_indent(link_rows(shown["links"]))])
    if "addresses" in shown:
        blocks.append(["addresses", *_indent(addr_rows(shown["addresses"]))])
    if "routes" in shown:
        title = "routes" if args.table == "all" else f"routes (table {args.table})"
        blocks.append([title, *_indent(route_rows(shown["routes"], args.table == "all"))])
    sys.stdout.write("\n\n".join("\n".join(block) for block in blocks) + "\n")
    return 0


def _in_table(route: Route, table: str) -> bool:
    if table == "all":
        return True
    return str(route.table_name) == table or str(route.table) == table


def _sorted(routes: list[Route]) -> list[Route]:
    import socket

    # as ip lists them: IPv4 first, then by table, then in the kernel's order
    order = {"main": 0, "local": 2, "default": 1}
    return sorted(
        routes,
        key=lambda r: (r.family != socket.AF_INET, order.get(r.table_name, 3), r.table),
    )


# --------------------------------------------------------------------------
# values -> documents (the JSON form; the text is made from these)
# --------------------------------------------------------------------------


def _family_name(family: int) -> str:
    import socket

    names = {int(socket.AF_INET): "inet", int(socket.AF_INET6): "inet6"}
    return names.get(family, str(family))


#: ip's order of link flags (iproute2 print_link_flags); like ip, RUNNING is not shown
_IP_FLAG_ORDER = ("LOOPBACK", "BROADCAST", "POINTOPOINT", "MULTICAST", "NOARP", "PROMISC", "UP")


def ip_flags(link: Link) -> list[str]:
    """The link's flags as ip lists them: its order, without RUNNING, LOWER_UP last."""
    names = set(link.flag_names)
    out = [name for name in _IP_FLAG_ORDER if name in names]
    out += sorted(names - set(_IP_FLAG_ORDER) - {"RUNNING", "LOWER_UP"})
    if "LOWER_UP" in names:
        out.append("LOWER_UP")
    return out


def link_doc(link: Link) -> dict[str, Any]:
    return {
        "ifindex": link.index,
        "ifname": link.name,
        "flags": ip_flags(link),
        "mtu": link.mtu,
        "operstate": link.operstate,
        "address": link.mac,
        "kind": link.kind,
    }


def addr_doc(addr: Addr, names: dict[int, str]) -> dict[str, Any]:
    return {
        "ifindex": addr.ifindex,
        "dev": names.get(addr.ifindex, f"if{addr.ifindex}"),
        "family": _family_name(addr.family),
        "local": addr.address,
        "prefixlen": addr.prefixlen,
        "scope": addr.scope_name,
        "label": addr.label,
    }


def route_dst(route: Route) -> str:
    """As ip writes it: ``default``, ``10.0.0.0/8``, or a host route without /32 or /128."""
    import socket

    if route.dst is None and route.prefixlen == 0:
        return "default"
    dst = route.dst or ("::" if route.family == socket.AF_INET6 else "0.0.0.0")
    full = 128 if route.family == socket.AF_INET6 else 32
    return dst if route.prefixlen == full else f"{dst}/{route.prefixlen}"


def route_doc(route: Route, names: dict[int, str]) -> dict[str, Any]:
    return {
        "family": _family_name(route.family),
        "type": route.type_name,
        "dst": route_dst(route),
        "prefixlen": route.prefixlen,
        "gateway": route.gateway,
        "dev": None if route.oif is None else names.get(route.oif, f"if{route.oif}"),
        "ifindex": route.oif,
        "table": route.table_name,
        "protocol": route.protocol_name,
        "scope": route.scope_name,
        "prefsrc": route.prefsrc,
        "metric": route.priority,
    }


# --------------------------------------------------------------------------
# documents -> aligned text
# --------------------------------------------------------------------------


def _align(rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; the last column is never padded."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
        for row in rows
    ]


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line.rstrip() for line in lines] or ["  (none)"]


def link_rows(docs: list[dict[str, Any]]) -> list[str]:
    rows = [["index", "name", "state", "mtu", "kind", "address", "flags"]]
    for d in docs:
        rows.append(
            [
                f"{d['ifindex']}:",
                d["ifname"],
                d["operstate"] or "-",
                "-" if d["mtu"] is None else str(d["mtu"]),
                d["kind"] or "-",
                d["address"] or "-",
                "<" + ",".join(d["flags"]) + ">",
            ]
        )
    return _align(rows) if docs else []


def addr_rows(docs: list[dict[str, Any]]) -> list[str]:
    rows = [["dev", "family", "address", "scope", "label"]]
    for d in docs:
        rows.append(
            [
                d["dev"],
                d["family"],
                f"{d['local']}/{d['prefixlen']}",
                d["scope"],
                d["label"] or "",
            ]
        )
    return _align(rows) if docs else []


def route_words(d: dict[str, Any], *, table: bool) -> str:
    """The rest of an ``ip route`` line after the destination."""
    words = []
    if d["gateway"]:
        words += ["via", d["gateway"]]
    if d["dev"]:
        words += ["dev", d["dev"]]
    if table and d["table"] != "main":
        words += ["table", d["table"]]
    if d["protocol"] != "boot":
        words += ["proto", d["protocol"]]
    if d["scope"] != "global":
        words += ["scope", d["scope"]]
    if d["prefsrc"]:
        words += ["src", d["prefsrc"]]
    if d["metric"] is not None:
        words += ["metric", str(d["metric"])]
    return " ".join(words)


def route_rows(docs: list[dict[str, Any]], table: bool) -> list[str]:
    rows = []
    for d in docs:
        dst = d["dst"] if d["type"] == "unicast" else f"{d['type']} {d['dst']}"
        rows.append([dst, route_words(d, table=table)])
    return _align(rows)
