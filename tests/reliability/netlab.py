"""Two hosts in network namespaces this test makes (TEST-NET-2 only), and nftables faults.

``TwoHosts`` creates two named network namespaces joined by a veth pair
(198.51.100.1 and .2; RFC 5737 addresses that exist only inside them) and
runs programs in either with ``ip netns exec``. Faults are nftables rules in
a table of our own inside a namespace: ``partition()`` drops everything on
the veth, ``heal()`` deletes the table, ``loss(percent)`` drops a random
share of UDP datagrams and counts the drops. Nothing touches the host's own
network; every namespace is deleted on exit, even after a failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from tests.helpers import need_root, need_tool

A_IP, B_IP = "198.51.100.1", "198.51.100.2"


class TwoHosts:
    def __init__(self, tag: str) -> None:
        need_root()
        self.ip = need_tool("ip")
        self.nft_path = need_tool("nft")
        suffix = f"{tag}-{os.getpid()}"
        self.a, self.b = f"swa-{suffix}", f"swb-{suffix}"
        self.veth_a, self.veth_b = f"swa{os.getpid() % 100000}", f"swb{os.getpid() % 100000}"

    def __enter__(self) -> TwoHosts:
        made: list[str] = []
        try:
            for name in (self.a, self.b):
                self._ip("netns", "add", name)
                made.append(name)
                self._ip("-n", name, "link", "set", "lo", "up")
            self._ip(
                "link",
                "add",
                self.veth_a,
                "netns",
                self.a,
                "type",
                "veth",
                "peer",
                "name",
                self.veth_b,
                "netns",
                self.b,
            )
            for ns, dev, addr in ((self.a, self.veth_a, A_IP), (self.b, self.veth_b, B_IP)):
                self._ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                self._ip("-n", ns, "link", "set", dev, "up")
        except BaseException:
            for name in made:
                subprocess.run([self.ip, "netns", "del", name], check=False)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for name in (self.a, self.b):
            subprocess.run([self.ip, "netns", "del", name], check=False, capture_output=True)

    def _ip(self, *argv: str) -> None:
        subprocess.run([self.ip, *argv], check=True, capture_output=True, text=True)

    def argv(self, host: str, command: Sequence[str]) -> list[str]:
        """``command`` to run inside ``host`` ("a" or "b")."""
        return [self.ip, "netns", "exec", self.a if host == "a" else self.b, *command]

    def nft(self, host: str, script: str) -> str:
        ns = self.a if host == "a" else self.b
        done = subprocess.run(
            [self.ip, "netns", "exec", ns, self.nft_path, "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def partition(self, host: str = "a") -> None:
        """Drop every packet in and out of ``host``'s veth (a cable pulled)."""
        dev = self.veth_a if host == "a" else self.veth_b
        self.nft(
            host,
            "table inet swfault {\n"
            f"  chain in {{ type filter hook input priority 0; iifname {dev} drop; }}\n"
            f"  chain out {{ type filter hook output priority 0; oifname {dev} drop; }}\n"
            "}\n",
        )

    def heal(self, host: str = "a") -> None:
        self.nft(host, "delete table inet swfault\n")

    def loss(self, host: str, percent: int, port: int) -> None:
        """Drop ``percent``% of UDP datagrams arriving at ``host`` for ``port``, counted."""
        self.nft(
            host,
            "table inet swloss {\n"
            "  chain in { type filter hook input priority 0;\n"
            f"    udp dport {port} numgen random mod 100 < {percent} counter drop;\n"
            "  }\n"
            "}\n",
        )

    def dropped(self, host: str) -> int:
        """Packets the loss rule dropped so far."""
        ns = self.a if host == "a" else self.b
        out = subprocess.run(
            [self.ip, "netns", "exec", ns, self.nft_path, "list", "table", "inet", "swloss"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        words = out.split()
        return int(words[words.index("packets") + 1])
