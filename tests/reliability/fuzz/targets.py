"""R2: the fuzz targets. Each takes any bytes; only the documented errors may escape it.

``make fuzz`` runs each under atheris (coverage-guided, ``tools/fuzz.py``),
1,000,000 executions per target; ``make test`` replays the committed corpus
(``corpus/<target>/``) through the same functions. A target catches exactly
the errors its parser documents, so anything else (an IndexError, a
struct.error, a MemoryError from an unbounded allocation, a hang caught by
the fuzzer's timeout) is a finding.

The first byte(s) of an input choose a variant (framing mode, chunking,
handshake side) so one corpus file covers one path, replayable by hand:
``.venv/bin/python -c "from tests.reliability.fuzz.targets import TARGETS;
TARGETS['framing'](open(FILE, 'rb').read())"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from sockwire import auth, netlink, procnet, sock_diag, zmtp
from sockwire.address import parse
from sockwire.codecs import get_codec
from sockwire.errors import (
    AddressError,
    ConnectionLost,
    PermissionDenied,
    ProtocolError,
)
from sockwire.framing import MODES, make_codec
from sockwire.packet import DatagramCodec, SeqpacketCodec
from sockwire.patterns import wire

__all__ = ["TARGETS"]

MAX = 4096  # every decoder gets a small max_size, so limits are reached too
KEY = b"fuzzing key of 32 bytes........."


def _chunks(data: bytes, seed: int) -> Iterator[bytes]:
    """``data`` cut into pieces of 1..16 bytes, the sizes drawn from ``seed``."""
    pos, state = 0, seed | 1
    while pos < len(data):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        step = 1 + state % 16
        yield data[pos : pos + step]
        pos += step


def framing(data: bytes) -> None:
    """Every stream framing mode, fed in pieces, then EOF: messages or ProtocolError."""
    if len(data) < 2:
        return
    mode = MODES[data[0] % len(MODES)]
    decoder = make_codec(mode, max_size=MAX).decoder
    with contextlib.suppress(ProtocolError):
        for piece in _chunks(data[2:], data[1]):
            for msg in decoder.feed(piece):
                assert len(msg) <= MAX or mode == "none", (mode, len(msg))
        decoder.feed(b"")


def _packets(data: bytes) -> Iterator[bytes]:
    """Packets from ``data``: a length byte, then that many bytes, repeatedly."""
    pos = 0
    while pos < len(data):
        size = data[pos]
        yield data[pos + 1 : pos + 1 + size]
        pos += 1 + size


def packet(data: bytes) -> None:
    """SEQPACKET (plain and sockwire) and datagram (sockwire) codecs."""
    if not data:
        return
    kind = data[0] % 3
    buf = memoryview(bytearray(256))
    codec: SeqpacketCodec | DatagramCodec
    if kind == 2:
        codec = DatagramCodec("sockwire", max_size=MAX)
    else:
        codec = SeqpacketCodec("sockwire" if kind else "none", max_size=MAX)
    with contextlib.suppress(ProtocolError, ConnectionLost):
        for pkt in _packets(data[1:]):
            buf[: len(pkt)] = pkt
            msg = codec.decode(buf, len(pkt) + (data[0] >> 7), "peer")  # sometimes "truncated"
            assert msg is None or len(msg) <= MAX
        codec.end()


def endpoint(data: bytes) -> None:
    """The endpoint parser: an Endpoint whose canonical form re-parses equal, or AddressError."""
    text = data.decode("utf-8", "replace")
    try:
        found = parse(text)
    except AddressError as exc:
        assert "\n" not in str(exc)
        return
    assert parse(str(found)) == found


def handshake(data: bytes) -> None:
    """Both sides of the HMAC handshake fed peer bytes: they fail only as documented."""
    if not data:
        return
    side = data[0] % 2
    machine: auth.ServerHandshake | auth.ClientHandshake
    if side:
        machine = auth.ServerHandshake(KEY, challenge=b"c" * 32)
    else:
        machine = auth.ClientHandshake(KEY, challenge=b"c" * 32)
        machine.start()
    packets = data[0] & 2
    with contextlib.suppress(ProtocolError, PermissionDenied, ConnectionLost):
        for piece in _chunks(data[1:], data[0]):
            if machine.done:
                break
            want = machine.wanted()
            if packets:
                machine.receive_packet(piece[:want], len(piece))
            else:
                machine.receive(piece[:want] if want else piece)
        if not machine.done:
            machine.receive(b"")


def procfs(data: bytes) -> None:
    """/proc/net/{unix,tcp,tcp6,udp,netlink} parsers: entries or ParseError."""
    text = data.decode("utf-8", "replace")
    for parse_one in (
        procnet.parse_unix,
        lambda t: procnet.parse_inet(t, "tcp"),
        lambda t: procnet.parse_inet(t, "udp", v6=True),
        procnet.parse_netlink,
        procnet.parse_inet_address,
    ):
        with contextlib.suppress(procnet.ParseError):
            parse_one(text)


def netlink_route(data: bytes) -> None:
    """NETLINK_ROUTE messages and their link/address/route payloads: BadFrame at worst."""
    with contextlib.suppress(ProtocolError):
        for msg in netlink.parse_messages(data):
            for decode in (netlink.decode_link, netlink.decode_addr, netlink.decode_route):
                with contextlib.suppress(ProtocolError):
                    decode(msg.payload)


def diag(data: bytes) -> None:
    """sock_diag replies (unix, inet, netlink): entries or BadFrame."""
    for decode in (
        sock_diag.decode_unix,
        lambda p: sock_diag.decode_inet(p, "tcp"),
        sock_diag.decode_netlink,
    ):
        with contextlib.suppress(ProtocolError):
            decode(data)


def pattern_wire(data: bytes) -> None:
    """Pattern messages (docs/PROTOCOL.md 7-8): a message that encodes back, or BadFrame."""
    try:
        msg = wire.parse(data)
    except ProtocolError:
        return
    assert wire.parse(msg.encode()) == msg


def json_codec(data: bytes) -> None:
    """The strict json codec: what it decodes it can encode again, or ProtocolError."""
    codec = get_codec("json")
    try:
        value = codec.decode(data)
    except ProtocolError:
        return
    codec.encode(value)


def zmtp_peer(data: bytes) -> None:
    """ZMTP 3.1 after a valid NULL greeting, in pieces: events, or ProtocolError/PermissionDenied.

    (tools/fuzz_zmtp.py is the zmtp module's own quick loop; this is the same
    entry point under the battery's atheris runner and corpus.)
    """
    if not data:
        return
    kinds = zmtp.SOCKET_TYPES
    conn = zmtp.Connection(kinds[data[0] % len(kinds)], max_size=MAX)
    body = zmtp.greeting(b"NULL", False) + data[1:]
    with contextlib.suppress(ProtocolError, PermissionDenied):
        for piece in _chunks(body, data[0]):
            conn.feed(piece)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "framing": framing,
    "packet": packet,
    "endpoint": endpoint,
    "handshake": handshake,
    "procfs": procfs,
    "netlink": netlink_route,
    "sock_diag": diag,
    "pattern_wire": pattern_wire,
    "json_codec": json_codec,
    "zmtp": zmtp_peer,
}
