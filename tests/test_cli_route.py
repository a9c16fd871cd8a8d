"""sockwire route: the NETLINK_ROUTE dump agrees with iproute2, here and in a private netns."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest

from sockwire.cli.route_cmd import route_dst, route_rows, route_words
from sockwire.netlink import Route
from tests.helpers import need, need_root, need_tool

SOCKWIRE = [sys.executable, "-m", "sockwire"]


def _sockwire(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SOCKWIRE, *args], capture_output=True, text=True, timeout=30, check=False
    )


def _ip_json(*args: str) -> Any:
    need_tool("ip")
    proc = subprocess.run(
        ["ip", "-j", *args], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(proc.stdout or "[]")


def _with_prefix(dst: str, family: str) -> str:
    """ip writes host routes without /32 (/128); make every dst comparable."""
    if dst == "default" or "/" in dst:
        return dst
    return f"{dst}/{128 if family == 'inet6' else 32}"


def test_json_lists_lo_with_127_0_0_1_and_agrees_with_ip_addr() -> None:
    proc = _sockwire("route", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"links", "addresses", "routes"}
    lo = next(link for link in doc["links"] if link["ifname"] == "lo")
    assert "LOOPBACK" in lo["flags"] and lo["ifindex"] == 1
    assert {
        "ifindex": 1,
        "dev": "lo",
        "family": "inet",
        "local": "127.0.0.1",
        "prefixlen": 8,
        "scope": "host",
        "label": "lo",
    } in doc["addresses"]
    ip_links = _ip_json("addr")
    ours = {(a["dev"], a["family"], a["local"], a["prefixlen"]) for a in doc["addresses"]}
    theirs = {
        (link["ifname"], info["family"], info["local"], info["prefixlen"])
        for link in ip_links
        for info in link.get("addr_info", [])
    }
    assert ours == theirs
    assert [(x["ifindex"], x["ifname"], x["mtu"]) for x in doc["links"]] == [
        (x["ifindex"], x["ifname"], x["mtu"]) for x in ip_links
    ]
    assert [x["flags"] for x in doc["links"]] == [x["flags"] for x in ip_links]


def _route_key(route: dict[str, Any], family: str) -> tuple[Any, ...]:
    return (
        _with_prefix(route["dst"], family),
        route.get("gateway"),
        route.get("dev"),
        route.get("prefsrc"),
    )


@pytest.mark.parametrize(("flag", "family"), [("-4", "inet"), ("-6", "inet6")])
def test_routes_agree_with_ip_route(flag: str, family: str) -> None:
    proc = _sockwire("route", "routes", flag, "--json")
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(proc.stdout)["routes"]
    assert all(r["family"] == family and r["table"] == "main" for r in ours)
    theirs = _ip_json(flag, "route")
    assert sorted(_route_key(r, family) for r in ours) == sorted(
        _route_key(r, family) for r in theirs
    )


def test_table_all_includes_the_local_route_of_127_0_0_1() -> None:
    doc = json.loads(_sockwire("route", "routes", "-4", "--table", "all", "--json").stdout)
    assert {
        "family": "inet",
        "type": "local",
        "dst": "127.0.0.1",
        "prefixlen": 32,
        "gateway": None,
        "dev": "lo",
        "ifindex": 1,
        "table": "local",
        "protocol": "kernel",
        "scope": "host",
        "prefsrc": "127.0.0.1",
        "metric": None,
    } in doc["routes"]
    local = json.loads(_sockwire("route", "routes", "--table", "local", "--json").stdout)
    assert local["routes"] and all(r["table"] == "local" for r in local["routes"])


def test_text_is_aligned_like_ip() -> None:
    proc = _sockwire("route")
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.rstrip("\n").split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["links", "addresses", "routes (table main)"]
    addresses = blocks[1].splitlines()[1:]
    assert addresses[0].split() == ["dev", "family", "address", "scope", "label"]
    column = addresses[0].index("address")
    assert any(line.split()[:3] == ["lo", "inet", "127.0.0.1/8"] for line in addresses)
    assert all(line[column - 2 : column] == "  " and line[column] != " " for line in addresses)
    links = blocks[0].splitlines()[1:]
    lo = next(line for line in links if line.split()[1] == "lo")
    assert lo.split()[0] == "1:" and "<LOOPBACK,UP,LOWER_UP>" in lo


def test_trace_and_hex_show_the_netlink_conversation() -> None:
    proc = _sockwire("route", "links", "--trace", "--hex")
    assert proc.returncode == 0
    err = proc.stderr
    assert "socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) = 3" in err
    assert "sendto(3, " in err and "netlink pid=0 groups=0" in err
    assert "recvfrom(3, 65536, 0) = " in err
    assert any(line.startswith("> ") and "sendto 32 bytes" in line for line in err.splitlines())
    assert any(line.startswith("< ") and "recvfrom" in line for line in err.splitlines())
    assert "decoded " in err and " links" in err
    assert proc.stdout.startswith("links\n")


@pytest.mark.parametrize(
    "args", [["route", "tables"], ["route", "--table", "main2"], ["route", "-4", "-6"]]
)
def test_bad_arguments_are_usage_errors(args: list[str]) -> None:
    proc = _sockwire(*args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith("sockwire: ")


@pytest.mark.timeout(60)
def test_a_veth_created_in_a_private_netns_shows_up() -> None:
    need_root()
    need_tool("unshare")
    need_tool("ip")
    script = (
        "ip link set lo up\n"
        "ip link add swa0 type veth peer name swb0\n"
        "ip addr add 10.123.0.1/24 dev swa0\n"
        "ip link set swa0 up; ip link set swb0 up\n"
        "$SW route --json; echo ===; $SW route; echo ===; ip -j addr; echo ===; ip -j route\n"
    )
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-ec", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SW": " ".join(SOCKWIRE)},
    )
    need("unshare failed" not in proc.stderr, f"no private network namespace: {proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    ours_json, text, ip_addr, ip_route = proc.stdout.split("===\n")
    doc = json.loads(ours_json)
    links = {link["ifname"]: link for link in doc["links"]}
    assert set(links) == {"lo", "swa0", "swb0"}  # private: nothing of the host's
    assert links["swa0"]["kind"] == links["swb0"]["kind"] == "veth"
    assert {"dev": "swa0", "local": "10.123.0.1", "prefixlen": 24}.items() <= next(
        a for a in doc["addresses"] if a["local"] == "10.123.0.1"
    ).items()
    route = next(r for r in doc["routes"] if r["dst"] == "10.123.0.0/24")
    assert (route["dev"], route["protocol"], route["scope"], route["prefsrc"]) == (
        "swa0",
        "kernel",
        "link",
        "10.123.0.1",
    )
    theirs = {
        (link["ifname"], info["local"], info["prefixlen"])
        for link in json.loads(ip_addr)
        for info in link.get("addr_info", [])
    }
    assert {(a["dev"], a["local"], a["prefixlen"]) for a in doc["addresses"]} == theirs
    assert [r["dst"] for r in doc["routes"] if r["family"] == "inet"] == [
        r["dst"] for r in json.loads(ip_route)
    ]
    assert "10.123.0.0/24  dev swa0 proto kernel scope link src 10.123.0.1" in text
    assert "veth" in text


def _route(**changes: Any) -> Route:
    base: dict[str, Any] = {
        "family": socket.AF_INET,
        "dst": None,
        "prefixlen": 0,
        "table": 254,
        "protocol": 3,
        "scope": 0,
        "type": 1,
    }
    base.update(changes)
    return Route(**base)


def test_route_text_follows_ip_conventions() -> None:
    from sockwire.cli.route_cmd import route_doc

    names = {2: "eth0"}
    default = route_doc(_route(gateway="192.0.2.1", oif=2), names)
    assert route_dst(_route()) == "default"
    assert route_words(default, table=False) == "via 192.0.2.1 dev eth0"  # proto boot hidden
    host = _route(dst="127.0.0.1", prefixlen=32, table=255, type=2, protocol=2, scope=254, oif=1)
    assert route_dst(host) == "127.0.0.1"
    six = _route(family=socket.AF_INET6, dst="fd00::", prefixlen=64, protocol=2, priority=256)
    assert route_dst(six) == "fd00::/64"
    rows = route_rows([route_doc(host, {1: "lo"}), route_doc(six, {}), default], table=True)
    assert rows == [
        "local 127.0.0.1  dev lo table local proto kernel scope host",
        "fd00::/64        proto kernel metric 256",
        "default          via 192.0.2.1 dev eth0",
    ]
