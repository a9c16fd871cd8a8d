"""Endpoint -> Socket for every scheme, against the real kernel."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

import sockwire
from sockwire import dial, socketpair


@pytest.mark.parametrize("scheme", ["unix", "unix+seqpacket"])
def test_listen_connect_unix_path_with_mode(tmp_path: Path, scheme: str) -> None:
    path = tmp_path / "s.sock"
    with dial.listen(f"{scheme}:{path}?mode=0600&backlog=4") as server:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        with dial.connect(f"{scheme}:{path}") as client:
            conn, peer = server.accept()
            with conn:
                client.send(b"x")
                assert conn.recv(1) == b"x"
                assert peer.pid == os.getpid()


def test_existing_path_is_never_removed(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.write_text("precious")
    with pytest.raises(sockwire.AddressInUse, match="already exists"):
        dial.listen(f"unix:{path}")
    assert path.read_text() == "precious"


def test_abstract_and_tcp_and_udp() -> None:
    name = "@sockwire-test-" + os.urandom(4).hex()
    with dial.listen(f"unix:{name}") as server, dial.connect(f"unix:{name}") as client:
        conn, _ = server.accept()
        conn.close()
        client.close()
    with dial.listen("tcp://127.0.0.1:0") as server:
        port = server.getsockname()[1]  # type: ignore[index]
        with dial.connect(f"tcp://localhost:{port}") as client:
            conn, peer = server.accept()
            conn.close()
            assert peer.address is not None
    with dial.bind("udp://127.0.0.1:0") as receiver:
        port = receiver.getsockname()[1]  # type: ignore[index]
        with dial.connect(f"udp://127.0.0.1:{port}") as sender:
            sender.send(b"dgram")
            assert receiver.recv(100) == b"dgram"


def test_ipv6_loopback() -> None:
    with dial.listen("tcp://[::1]:0") as server:
        port = server.getsockname()[1]  # type: ignore[index]
        with dial.connect(f"tcp://[::1]:{port}"):
            conn, _ = server.accept()
            conn.close()


def test_refused_and_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(sockwire.NotFound):
        dial.connect(f"unix:{tmp_path}/none.sock")
    with pytest.raises(sockwire.InvalidOperation, match="datagram"):
        dial.listen(f"unix+dgram:{tmp_path}/d.sock")
    with (
        dial.listen(f"unix+seqpacket:{tmp_path}/q.sock"),
        pytest.raises(sockwire.ConnectError, match="unix\\+seqpacket"),
    ):
        dial.connect(f"unix:{tmp_path}/q.sock")


def test_buffer_options_are_applied() -> None:
    with dial.bind("udp://127.0.0.1:0?rcvbuf=4096") as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 8192  # kernel doubles


def test_netlink_route_binds() -> None:
    with dial.connect("netlink:route") as sock:
        assert sock.family == socket.AF_NETLINK


def test_adopt_checks_the_type() -> None:
    a, b = socketpair(socket.SOCK_SEQPACKET)
    with a, b:
        dup = os.dup(a.fd)
        with dial.adopt(f"fd:{dup}?type=seqpacket") as sock:
            assert sock.type == socket.SOCK_SEQPACKET
        dup = os.dup(a.fd)
        with pytest.raises(sockwire.InvalidOperation, match="another type"):
            dial.adopt(f"fd:{dup}?type=stream")
        os.close(dup)
    r, w = os.pipe()
    try:
        with pytest.raises(sockwire.InvalidOperation, match="not a socket"):
            dial.adopt(f"fd:{r}")
    finally:
        os.close(r)
        os.close(w)


# ---- one side's options on the other side: refused, never ignored -------------


def test_connect_refuses_listener_options(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with dial.listen(f"unix:{path}?mode=0600&backlog=4") as server:
        server.settimeout(0)
        for option in ("mode=0600", "owner=0", "group=0", "backlog=4", "unsafe_dir=1"):
            with pytest.raises(sockwire.AddressError, match="not for connecting"):
                dial.connect(f"unix:{path}?{option}")
        with pytest.raises(sockwire.WouldBlock):  # refused before any connect()
            server.accept()


def test_listen_and_bind_refuse_client_options() -> None:
    with pytest.raises(sockwire.AddressError, match="'bind' is not for listening"):
        dial.listen("tcp://127.0.0.1:0?bind=127.0.0.1")
    with pytest.raises(sockwire.AddressError, match="'sourceport' is not for listening"):
        dial.bind("udp://127.0.0.1:0?sourceport=4000")


def test_connect_to_port_0_is_refused() -> None:
    for url in ("udp://127.0.0.1:0", "tcp://127.0.0.1:0", "tls+tcp://127.0.0.1:0"):
        with pytest.raises(sockwire.AddressError, match="port 0 only makes sense to bind"):
            dial.connect(url)


def test_client_socket_is_ready_but_unconnected() -> None:
    with dial.bind("udp://127.0.0.1:0") as receiver:
        port = receiver.getsockname()[1]  # type: ignore[index]
        with dial.client_socket(f"udp://127.0.0.1:{port}?bind=127.0.0.1&ttl=3") as sock:
            assert sock.getsockname()[0] == "127.0.0.1"  # type: ignore[index]
            assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 3
            with pytest.raises(sockwire.SockwireError):
                sock.getpeername()


def test_server_endpoint_is_a_client_endpoint(tmp_path: Path) -> None:
    with sockwire.serve(
        f"unix+seqpacket:{tmp_path}/s.sock?mode=0600&backlog=8", lambda ch, peer: None
    ) as server:
        assert "mode" not in server.endpoint and "backlog" not in server.endpoint
