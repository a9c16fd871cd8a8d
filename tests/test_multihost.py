"""Across hosts: a server and a client in two network namespaces joined by a veth pair.

Each "host" is a forked child in its own, private network namespace (made by
:func:`sockwire.netns.enter`; gone when the child exits). The server's child
creates the veth pair with the far end directly in the client's namespace,
and each side gives its end an address from TEST-NET-2 (198.51.100.0/24,
RFC 5737), inside its own namespace only. Nothing is added to the host's
network; the test checks that too. The children talk to the test over
socketpairs (one JSON object per line) and are reaped through pidfds.

What crosses the veth: TLS Channels (mutual TLS, a 1 MiB message), an
HMAC-authenticated Channel (pickle), TLS with the HMAC inside it, a wrong
key (refused), request/reply over mutual TLS, and publish/subscribe over an
HMAC-authenticated TCP connection (the Rep publishes when asked, so no
extra coordination is needed between the hosts).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sockwire import dial, netlink, netns
from sockwire.address import parse
from sockwire.channel import Channel
from sockwire.errors import PermissionDenied
from sockwire.patterns import Pub, Rep, Req, Sub
from sockwire.secure import secure_server
from tests.helpers import need_root, need_tool
from tests.tls_helpers import Certs, make_certs, write_key

SERVER_IP = "198.51.100.1"  # TEST-NET-2, only ever inside the test's namespaces
CLIENT_IP = "198.51.100.2"
PREFIX = 24
SERVER_LINK, CLIENT_LINK = "sw-srv", "sw-cli"
DEADLINE = 20.0  # seconds any one step of a child may take

Json = dict[str, Any]


# ---- a child process with a line-of-JSON pipe to the test


class Child:
    """A forked child running ``fn(self)``; the child never returns into pytest."""

    def __init__(self, name: str, fn: Callable[[Child], Json]) -> None:
        self.name = name
        parent_end, child_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            parent_end.close()
            self._sock = child_end
            self._buf = b""
            code = 0
            try:
                result = fn(self)
                self.send({"done": result})
            except BaseException as exc:
                code = 1
                try:
                    self.send(
                        {"error": f"{type(exc).__name__}: {exc}", "tb": traceback.format_exc()}
                    )
                except BaseException:  # the test is gone: nothing left to tell
                    code = 2
            finally:
                os._exit(code)
        child_end.close()
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)
        self._sock = parent_end
        self._buf = b""

    def send(self, obj: Json) -> None:
        self._sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self, timeout: float = DEADLINE) -> Json:
        """The next JSON line; fails on timeout, EOF, or the other side's error report."""
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self._sock], [], [], timeout)
            if not ready:
                raise AssertionError(f"{self.name}: nothing within {timeout} s")
            chunk = self._sock.recv(65536)
            if not chunk:
                raise AssertionError(f"{self.name}: ended without a word")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        message: Json = json.loads(line)
        if "error" in message:
            raise AssertionError(f"{self.name} failed: {message['error']}\n{message.get('tb')}")
        return message

    def expect(self, key: str) -> Any:
        message = self.recv()
        assert key in message, (self.name, key, message)
        return message[key]

    def reap(self) -> int:
        """Wait for the child (killing it after DEADLINE s); its exit code."""
        if not select.select([self.pidfd], [], [], DEADLINE)[0]:
            os.kill(self.pid, signal.SIGKILL)  # only ever our own child
        _, status = os.waitpid(self.pid, 0)
        os.close(self.pidfd)
        self._sock.close()
        return os.waitstatus_to_exitcode(status)


# ---- what each host does


def _configure(link: str, address: str) -> None:
    netns.ip(["addr", "add", f"{address}/{PREFIX}", "dev", link])
    netns.ip(["link", "set", link, "up"])


def _my_network() -> Json:
    return {
        "links": sorted(link.name for link in netlink.links()),
        "addresses": sorted(a.address for a in netlink.addresses(family=socket.AF_INET)),
    }


def _echo_all(channel: Channel) -> int:
    count = 0
    for message in channel:
        channel.send(message)
        count += 1
    return count


def server_host(me: Child, certs: Certs, keyfile: str) -> Json:
    netns.enter(user=False)  # root: a network namespace alone is enough
    me.send({"ready": True})
    client_pid = me.expect("client_pid")
    netns.add_veth(SERVER_LINK, CLIENT_LINK, client_pid)  # the far end lands in the client's
    _configure(SERVER_LINK, SERVER_IP)
    # now: when the client's process ends, its namespace and the veth pair go with it
    network = _my_network()
    tls_q = f"certfile={certs.server_cert}&keyfile={certs.server_key}"
    services = {
        # name: (endpoint, connections to serve, codec)
        "mtls": (f"tls+tcp://{SERVER_IP}:7443?{tls_q}&cafile={certs.ca}", 1, "bytes"),
        "hmac": (f"tcp://{SERVER_IP}:7000?authfile={keyfile}", 2, "pickle"),
        "tls_hmac": (f"tls+tcp://{SERVER_IP}:7444?{tls_q}&authfile={keyfile}", 1, "json"),
    }
    results: dict[str, list[Json]] = {name: [] for name in services}
    listeners = {name: dial.listen(url) for name, (url, _, _) in services.items()}

    def serve(name: str) -> None:
        url, count, codec = services[name]
        ep = parse(url)
        listener = listeners[name]
        listener.settimeout(DEADLINE)
        for _ in range(count):
            conn, peer = listener.accept()
            entry: Json = {"peer": peer.address[0] if peer.address else None}
            try:
                sock, entry["authenticated"] = secure_server(conn, ep, timeout=DEADLINE)
                with Channel.from_socket(
                    sock, authenticated=entry["authenticated"], codec=codec
                ) as channel:
                    entry["echoed"] = _echo_all(channel)
            except Exception as exc:  # reported to the test, which judges it
                entry["error"] = type(exc).__name__
            results[name].append(entry)

    rep_url = f"tls+tcp://{SERVER_IP}:7500?{tls_q}&cafile={certs.ca}"  # mutual TLS
    pub_url = f"tcp://{SERVER_IP}:7600?authfile={keyfile}"
    threads = [threading.Thread(target=serve, args=(name,)) for name in services]
    with Pub(pub_url) as pub:

        def handle(request: Any) -> Any:
            if request == {"op": "publish"}:  # the client's Sub is subscribed by now
                sent = [pub.publish(f"news.{i}", b"headline %d" % i) for i in range(3)]
                sent.append(pub.publish("sport.rugby", b"nobody asked"))
                return {"published": sent}
            return {"sum": sum(request["numbers"])}

        with Rep(rep_url, handle, codec="json"):
            for thread in threads:
                thread.start()
            me.send({"listening": True})
            for thread in threads:
                thread.join()
            me.expect("stop")  # the client is done with the patterns too
        pub_stats = {"dropped": pub.stats.dropped}
    for listener in listeners.values():
        listener.close()
    return {"served": results, "network": network, "pub": pub_stats}


def client_host(me: Child, certs: Certs, keyfile: str, wrong_keyfile: str) -> Json:
    netns.enter(user=False)
    me.send({"ready": True})
    me.expect("go")
    _configure(CLIENT_LINK, CLIENT_IP)
    report: Json = {"network": _my_network()}

    mtls = (
        f"tls+tcp://{SERVER_IP}:7443?cafile={certs.ca}"
        f"&certfile={certs.client_cert}&keyfile={certs.client_key}"
    )
    with Channel.connect(mtls, timeout=DEADLINE) as channel:
        big = os.urandom(1 << 20)
        channel.send(b"across")
        channel.send(big)
        report["mtls"] = {
            "authenticated": channel.authenticated,
            "small": channel.recv(timeout=DEADLINE).decode(),
            "big_ok": channel.recv(timeout=DEADLINE) == big,
        }

    hmac_url = f"tcp://{SERVER_IP}:7000?authfile={keyfile}"
    with Channel.connect(hmac_url, codec="pickle", timeout=DEADLINE) as channel:
        channel.send({"set": {1, 2}})
        report["hmac"] = {
            "authenticated": channel.authenticated,
            "echo_ok": channel.recv(timeout=DEADLINE) == {"set": {1, 2}},
        }
    try:
        Channel.connect(f"tcp://{SERVER_IP}:7000?authfile={wrong_keyfile}", timeout=DEADLINE)
        report["wrong_key"] = "accepted"
    except PermissionDenied as exc:
        report["wrong_key"] = str(exc)

    both = f"tls+tcp://{SERVER_IP}:7444?cafile={certs.ca}&authfile={keyfile}"
    with Channel.connect(both, codec="json", timeout=DEADLINE) as channel:
        channel.send({"n": [1, 2, 3]})
        report["tls_hmac"] = {
            "authenticated": channel.authenticated,
            "echo": channel.recv(timeout=DEADLINE),
        }

    req_url = (
        f"tls+tcp://{SERVER_IP}:7500?cafile={certs.ca}"
        f"&certfile={certs.client_cert}&keyfile={certs.client_key}"
    )
    sub_url = f"tcp://{SERVER_IP}:7600?authfile={keyfile}"
    with Req(req_url, codec="json", timeout=DEADLINE) as req, Sub(sub_url) as sub:
        sub.subscribe("news.", timeout=DEADLINE)  # in force at the Pub when it returns
        report["reqrep"] = req.request({"numbers": [1, 2, 3, 4]})
        report["published"] = req.request({"op": "publish"})
        received = [sub.recv(timeout=DEADLINE) for _ in range(3)]
        report["pubsub"] = [[topic, body.decode()] for topic, body in received]
        report["sub_missed"] = sub.stats.missed
        report["req_stats"] = [req.stats.replied, req.stats.timed_out, req.stats.late]
    return report


# ---- the test


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _host_addresses() -> set[str]:
    return {a.address for a in netlink.addresses()}


@pytest.mark.timeout(60)
def test_tls_and_hmac_channels_between_two_network_namespaces(
    certs: Certs, tmp_path: Path
) -> None:
    need_root()
    need_tool("ip")
    keyfile = write_key(tmp_path / "key", os.urandom(32))
    wrong = write_key(tmp_path / "wrong", os.urandom(32))
    host_before = _host_addresses()
    assert SERVER_IP not in host_before and CLIENT_IP not in host_before

    server = Child("server host", lambda me: server_host(me, certs, keyfile))
    client = Child("client host", lambda me: client_host(me, certs, keyfile, wrong))
    try:
        server.expect("ready")
        client.expect("ready")
        server.send({"client_pid": client.pid})
        server.expect("listening")
        client.send({"go": True})
        report = client.expect("done")
        server.send({"stop": True})
        served = server.expect("done")
    finally:
        codes = (server.reap(), client.reap())
    assert codes == (0, 0)

    # each host saw only its own network: lo and its end of the veth
    assert report["network"] == {
        "links": sorted(["lo", CLIENT_LINK]),
        "addresses": sorted(["127.0.0.1", CLIENT_IP]),
    }
    assert served["network"] == {
        "links": sorted(["lo", SERVER_LINK]),
        "addresses": sorted(["127.0.0.1", SERVER_IP]),
    }
    # mutual TLS: both ends authenticated, a 1 MiB message intact
    assert report["mtls"] == {"authenticated": True, "small": "across", "big_ok": True}
    # HMAC over plain TCP: pickle allowed; a wrong key refused with a clear error
    assert report["hmac"] == {"authenticated": True, "echo_ok": True}
    assert "key files differ" in report["wrong_key"]
    # TLS without a client certificate, made authenticated by the HMAC inside it
    assert report["tls_hmac"] == {"authenticated": True, "echo": {"n": [1, 2, 3]}}

    results = served["served"]
    assert results["mtls"] == [{"peer": CLIENT_IP, "authenticated": True, "echoed": 2}]
    assert results["hmac"] == [
        {"peer": CLIENT_IP, "authenticated": True, "echoed": 1},
        {"peer": CLIENT_IP, "error": "ConnectionLost"},  # the wrong key: the client hung up
    ]
    assert results["tls_hmac"] == [{"peer": CLIENT_IP, "authenticated": True, "echoed": 1}]

    # request/reply over mutual TLS, publish/subscribe over HMAC-authenticated TCP
    assert report["reqrep"] == {"sum": 10}
    assert report["published"] == {"published": [1, 1, 1, 0]}  # one subscriber; sport: none
    assert report["pubsub"] == [[f"news.{i}", f"headline {i}"] for i in range(3)]
    assert report["sub_missed"] == 0 and served["pub"] == {"dropped": 0}
    assert report["req_stats"] == [2, 0, 0]

    # and the host's own network never saw any of it
    assert _host_addresses() == host_before
    host_links = {link.name for link in netlink.links()}
    assert SERVER_LINK not in host_links and CLIENT_LINK not in host_links
