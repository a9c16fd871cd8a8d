"""vsock://CID:PORT: a scheme added as one registry entry, through parse, dial and the CLI.

Whether a vsock connection can be made here depends on the machine: a VM
guest has its own CID and reaches the host (CID 2); CID 1 is this machine
only with the vsock_loopback transport. The tests find out which case
holds (binding CID 1 needs no traffic) and assert the documented behaviour
of that case: a round trip through dial where loopback exists, otherwise
the one-line error with its hint (exit 3 on the CLI). They never connect
to the host or to CID 1 without loopback (that would leave the machine).
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sockwire
from sockwire import dial
from sockwire.address import parse
from tests.cli_helpers import run
from tests.cli_helpers import sockwire as run_sockwire

AF_VSOCK = getattr(socket, "AF_VSOCK", 40)
ANY = 0xFFFFFFFF


def _vsock_state() -> str:
    """'none' (no AF_VSOCK), 'loopback' (CID 1 bindable), else 'guest'."""
    try:
        probe = socket.socket(AF_VSOCK, socket.SOCK_STREAM)
    except OSError:
        return "none"
    with probe:
        try:
            probe.bind((1, ANY))
        except OSError as exc:
            assert exc.errno == errno.EADDRNOTAVAIL, exc
            return "guest"
    return "loopback"


def _local_cid() -> int | None:
    """This machine's CID (IOCTL_VM_SOCKETS_GET_LOCAL_CID on /dev/vsock), if it has one."""
    try:
        with open("/dev/vsock", "rb") as dev:
            raw = fcntl.ioctl(dev, socket.IOCTL_VM_SOCKETS_GET_LOCAL_CID, b"\0" * 4)
    except (OSError, AttributeError):
        return None
    cid = int(struct.unpack("I", raw)[0])
    return None if cid in (ANY, 1, 2) else cid


# ---- the grammar ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical", "sockaddr"),
    [
        ("vsock://2:5000", "vsock://2:5000", (2, 5000)),
        ("vsock://any:5000", "vsock://any:5000", (ANY, 5000)),
        ("vsock://ANY:5000", "vsock://any:5000", (ANY, 5000)),
        ("vsock://host:5000", "vsock://2:5000", (2, 5000)),
        ("vsock://local:5000", "vsock://1:5000", (1, 5000)),
        ("vsock://4294967295:7", "vsock://any:7", (ANY, 7)),
        ("vsock://any:0", "vsock://any:0", (ANY, ANY)),  # port 0: any free port
        ("vsock://3:1024?backlog=8", "vsock://3:1024?backlog=8", (3, 1024)),
    ],
)
def test_parse_and_canonical_form(text: str, canonical: str, sockaddr: tuple[int, int]) -> None:
    ep = parse(text)
    assert ep.family == AF_VSOCK
    assert ep.type == socket.SOCK_STREAM
    assert str(ep) == canonical
    assert parse(canonical) == ep
    assert ep.sockaddr == sockaddr


@given(
    st.one_of(st.integers(0, 2**32 - 1).map(str), st.sampled_from(["any", "host", "local"])),
    st.integers(0, 2**32 - 2),
    st.sampled_from(["", "?backlog=4", "?timeout=2.5&framing=len32"]),
)
def test_every_vsock_endpoint_round_trips(cid: str, port: int, query: str) -> None:
    ep = parse(f"vsock://{cid}:{port}{query}")
    assert parse(str(ep)) == ep


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("vsock://x:1", ["bad vsock CID 'x'", "2: the host"]),
        ("vsock://4294967296:1", ["bad vsock CID"]),
        ("vsock://2", ["missing port"]),
        ("vsock://2:4294967295", ["out of range", "4294967294"]),
        ("vsock://2:ssh", ["ports are numbers"]),
        ("vsock:2:1", ["missing '//'", "did you mean vsock://2:1?"]),
        ("vsock://2:1?nodelay=1", ["unknown option 'nodelay' for vsock:", "backlog"]),
    ],
)
def test_mistakes_are_one_line(text: str, words: list[str]) -> None:
    with pytest.raises(sockwire.AddressError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_sides() -> None:
    with pytest.raises(sockwire.AddressError, match="only make sense to listen on"):
        dial.connect("vsock://any:5000")
    with pytest.raises(sockwire.AddressError, match="only make sense to listen on"):
        dial.connect("vsock://2:0")
    with pytest.raises(sockwire.AddressError, match="'backlog' is not for connecting"):
        dial.connect("vsock://2:5000?backlog=4")


# ---- through dial and the CLI, as this machine allows ------------------------------


def test_listen_on_any_cid_through_dial() -> None:
    if _vsock_state() == "none":
        with pytest.raises(sockwire.UnsupportedError, match="AF_VSOCK"):
            dial.listen("vsock://any:0")
        return
    with dial.listen("vsock://any:0?backlog=4") as server:
        name = server.getsockname()
        assert isinstance(name, tuple)
        assert name[0] == ANY and name[1] != ANY
        bound = parse("vsock://any:0").bound(name)
        assert str(bound) == f"vsock://any:{name[1]}"


@pytest.mark.timeout(30)
def test_connect_through_dial_or_the_documented_error() -> None:
    state = _vsock_state()
    if state == "loopback":
        with dial.listen("vsock://1:0") as server:
            port = server.getsockname()[1]  # type: ignore[index]
            with dial.connect(f"vsock://1:{port}?timeout=5") as client:
                conn, _ = server.accept()
                with conn:
                    client.send(b"over vsock")
                    assert conn.recv(100) == b"over vsock"
        return
    if state == "none":
        with pytest.raises(sockwire.UnsupportedError, match="AF_VSOCK"):
            dial.connect("vsock://3:5000")
        return
    # a guest without vsock_loopback: CID 1 cannot be bound, our own CID not reached
    with pytest.raises(sockwire.Unreachable) as info:
        dial.listen("vsock://1:5000")
    message = str(info.value)
    assert "(EADDRNOTAVAIL)" in message and "vsock_loopback" in message
    assert "vsock://any:PORT" in message
    own = _local_cid()
    if own is not None:
        with dial.listen("vsock://any:0") as server:
            port = server.getsockname()[1]  # type: ignore[index]
            with pytest.raises(sockwire.Unreachable, match=r"\(ENODEV\).*own CID"):
                dial.connect(f"vsock://{own}:{port}")


@pytest.mark.timeout(30)
def test_cli_listen_and_connect() -> None:
    state = _vsock_state()
    if state == "loopback":
        with run("listen", "vsock://1:0", "--trace") as server:
            address = server.address()
            assert address.startswith("vsock://1:")
            proc = run_sockwire("send", address, "--framing", "line", "hi")
            assert proc.returncode == 0, proc.stderr
            server.wait_out(b"hi")
        return
    expected = 1 if state == "none" else 3  # UnsupportedError / Unreachable
    proc = run_sockwire("listen", "vsock://1:5000")
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == expected, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("sockwire: "), lines
    if state == "guest":
        assert "(EADDRNOTAVAIL)" in lines[0] and "vsock_loopback" in lines[0]
        with run("listen", "vsock://any:0", "--trace") as server:
            address = server.address()
            assert address.startswith("vsock://any:"), address
            server.kill()
        own = _local_cid()
        if own is not None:
            proc = run_sockwire("connect", f"vsock://{own}:5000")
            assert proc.returncode == 3, proc.stderr
            assert b"(ENODEV)" in proc.stderr
