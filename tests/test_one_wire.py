"""One endpoint string means the same bytes in the library and on the command line.

The matrix of docs/PROTOCOL.md's table of defaults, with real processes:
the CLI's ``send`` into a ``serve()`` handler, a ``connect()`` Channel into
the CLI's ``recv``, on every transport with default options (streams with
the one documented flag, ``--framing len32``), and the same with
``?framing=sockwire`` on both sides of the packet types; then socat as the
peer of a Channel and of ``serve()`` on seqpacket (``type=5``) and UDP,
which needs nothing at all: the default is the kernel's own boundaries.
"""

from __future__ import annotations

import json
import queue
import socket
from collections.abc import Iterator

import pytest

import sockwire
from sockwire import Channel, Peer
from tests.cli_helpers import program, run, short_dir
from tests.cli_helpers import sockwire as run_sockwire
from tests.helpers import need_tool

pytestmark = pytest.mark.timeout(60)
WAIT = 15.0

#: transport -> (endpoint template, the CLI flags that make it speak the library's bytes)
TRANSPORTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "unix": ("unix:{d}/s.sock", ("--framing", "len32")),
    "unix+seqpacket": ("unix+seqpacket:{d}/q.sock", ()),
    "unix+dgram": ("unix+dgram:{d}/g.sock", ()),
    "tcp": ("tcp://127.0.0.1:0", ("--framing", "len32")),
    "udp": ("udp://127.0.0.1:0", ()),
    "unix+seqpacket sockwire": ("unix+seqpacket:{d}/q.sock?framing=sockwire", ()),
    "unix+dgram sockwire": ("unix+dgram:{d}/g.sock?framing=sockwire", ()),
    "udp sockwire": ("udp://127.0.0.1:0", ("--framing", "sockwire")),
}
MESSAGES = [b"hello", b"", b"two words", b"\x01\xff binary"]


@pytest.fixture
def d() -> Iterator[str]:
    with short_dir() as path:
        yield path


def _library_endpoint(name: str, d: str) -> str:
    template, flags = TRANSPORTS[name]
    ep = template.format(d=d)
    if flags == ("--framing", "sockwire"):
        ep += "?framing=sockwire"  # the library side says it in the endpoint
    return ep


@pytest.mark.parametrize("name", list(TRANSPORTS))
def test_cli_send_reaches_a_serve_handler(name: str, d: str) -> None:
    got: queue.Queue[bytes] = queue.Queue()

    def on_connection(channel: Channel, peer: Peer) -> None:
        for msg in channel:
            got.put(msg)

    def on_datagram(msg: bytes, peer: Peer) -> None:
        got.put(msg)

    ep = _library_endpoint(name, d)
    datagram = "dgram" in name or name.startswith("udp")
    handler = on_datagram if datagram else on_connection
    _, flags = TRANSPORTS[name]
    with sockwire.serve(ep, handler).start() as server:  # type: ignore[arg-type]
        target = str(server.endpoint)
        if flags == ("--framing", "sockwire"):
            target = target.replace("?framing=sockwire", "")  # the CLI says it with the flag
        proc = run_sockwire("send", target, *flags, *(m.decode("latin-1") for m in MESSAGES))
        assert proc.returncode == 0, proc.stderr.decode()
        received = [got.get(timeout=WAIT) for _ in MESSAGES]
    assert received == [m.decode("latin-1").encode() for m in MESSAGES]
    assert server.stats.invalid == 0


@pytest.mark.parametrize("name", list(TRANSPORTS))
def test_a_connect_channel_reaches_cli_recv(name: str, d: str) -> None:
    template, flags = TRANSPORTS[name]
    listen = template.format(d=d)
    count = str(len(MESSAGES))
    with run("recv", listen, *flags, "--count", count, "--format", "json", "--trace") as recv:
        address = recv.address()
        target = address if "://" in address else listen
        if "sockwire" in name and "?framing=sockwire" not in target:
            target += "?framing=sockwire"
        with sockwire.connect(target) as channel:
            for msg in MESSAGES:
                channel.send(msg)
            channel.flush()
            assert recv.finish(timeout=WAIT) == 0, recv.text
    lines = [json.loads(line) for line in recv.out.decode().splitlines()]
    assert [bytes.fromhex(doc["hex"]) for doc in lines] == MESSAGES


def test_the_cli_refuses_a_stream_framing_on_packets_and_the_packet_header_on_streams(
    d: str,
) -> None:
    for args in (
        ("send", f"unix+seqpacket:{d}/q.sock", "x", "--framing", "len32"),
        ("send", f"unix:{d}/s.sock", "x", "--framing", "sockwire"),
        ("send", f"unix:{d}/s.sock?framing=sockwire", "x"),
    ):
        proc = run_sockwire(*args)
        assert proc.returncode == 2, proc.stderr.decode()
        assert proc.stderr.decode().count("\n") == 1


# ---- socat, which knows nothing of sockwire, speaks the default


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.tool
def test_socat_seqpacket_talks_to_serve(d: str) -> None:
    socat = need_tool("socat")

    def upper(channel: Channel, peer: Peer) -> None:
        for msg in channel:
            channel.send(msg.upper())

    with sockwire.serve(f"unix+seqpacket:{d}/q.sock", upper).start():
        argv = (socat, "-t", "5", "-", f"UNIX-CONNECT:{d}/q.sock,type=5")
        with program(*argv) as client:
            client.send(b"plain seqpacket\n")
            client.wait_out(b"PLAIN SEQPACKET\n")


@pytest.mark.tool
def test_socat_udp_talks_to_serve() -> None:
    socat = need_tool("socat")
    with sockwire.serve("udp://127.0.0.1:0", lambda msg, peer: msg.upper()).start() as server:
        port = sockwire.parse(server.endpoint).port
        with program(socat, "-t", "5", "-", f"UDP:127.0.0.1:{port}") as client:
            client.send(b"hi from socat\n")
            client.wait_out(b"HI FROM SOCAT\n")
        assert server.stats.invalid == 0


@pytest.mark.tool
def test_socat_seqpacket_talks_to_a_channel(d: str) -> None:
    socat = need_tool("socat")
    path = f"{d}/l.sock"
    with program(socat, "-t", "5", f"UNIX-LISTEN:{path},type=5", "-") as server:
        channel = sockwire.connect(f"unix+seqpacket:{path}", retries=50)
        with channel:
            channel.send(b"from a channel\n")
            channel.flush()
            server.wait_out(b"from a channel\n")
            server.send(b"from socat\n")
            assert channel.recv(timeout=WAIT) == b"from socat\n"


@pytest.mark.tool
def test_socat_udp_talks_to_a_channel() -> None:
    socat = need_tool("socat")
    socat_port = _free_udp_port()
    mine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mine.bind(("127.0.0.1", 0))
    my_port = mine.getsockname()[1]
    mine.connect(("127.0.0.1", socat_port))
    argv = (socat, "-t", "5", "-", f"UDP:127.0.0.1:{my_port},bind=127.0.0.1:{socat_port}")
    with Channel.from_socket(mine) as channel, program(*argv) as peer:
        peer.send(b"datagram from socat\n")
        assert channel.recv(timeout=WAIT) == b"datagram from socat\n"
        channel.send(b"datagram from a channel\n")
        peer.wait_out(b"datagram from a channel\n")
        assert channel.stats.lost is None  # plain UDP: loss is not counted
