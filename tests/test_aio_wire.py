"""One protocol core: the sync and the asyncio API put the same bytes on the wire.

The same calls are made on a blocking Channel and on an asyncio Channel, each
over a socketpair whose other end is a plain socket that records exactly
what arrived (the stream's bytes, or each packet); the recordings must be
equal. The same for the patterns' first messages (HELLO, REQUEST, SUBSCRIBE,
CREDIT), recorded by a plain listener that plays the other role's HELLO.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

import sockwire
import sockwire.patterns
from sockwire import aio
from sockwire.patterns import wire

pytestmark = pytest.mark.timeout(30)

CALLS: list[tuple[str, Any]] = [
    ("send", b""),
    ("send", b"a"),
    ("send", b"x" * 300),
    ("send", b"\0\n,:"),
    ("send_many", [b"1", b"22", b"333"]),
    ("send", b"y" * 70_000),  # over the coalescing buffer: written with its header
    ("send", b"z" * 5000),
]
CASES = [
    ("stream", None, CALLS),
    ("stream", "netstring", CALLS),
    ("stream", "len64", CALLS),
    ("stream", "line", [c for c in CALLS if c[1] != b"\0\n,:"]),
    ("seqpacket", None, CALLS[:5]),
    ("seqpacket", "sockwire", [*CALLS[:5], ("send", b"f" * 300_000)]),  # fragments
    ("dgram", None, CALLS[:5]),
    ("dgram", "sockwire", CALLS[:5]),
]
TYPES = {
    "stream": socket.SOCK_STREAM,
    "seqpacket": socket.SOCK_SEQPACKET,
    "dgram": socket.SOCK_DGRAM,
}


def _record(raw: socket.socket, kind: str) -> list[bytes]:
    """Everything that arrived (streams: one bytes; packets: one per packet)."""
    raw.setblocking(False)
    packets: list[bytes] = []
    while True:
        try:
            data = raw.recv(1 << 20)
        except BlockingIOError:
            break
        if not data and kind == "stream":
            break
        packets.append(data)
    return [b"".join(packets)] if kind == "stream" else packets


def _pair(kind: str) -> tuple[socket.socket, socket.socket]:
    left, right = socket.socketpair(socket.AF_UNIX, TYPES[kind])
    for sock in (left, right):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return left, right


def _sync_bytes(kind: str, framing: str | None, calls: list[tuple[str, Any]]) -> list[bytes]:
    left, right = _pair(kind)
    with right, sockwire.Channel.from_socket(left, framing=framing) as ch:
        for name, arg in calls:
            getattr(ch, name)(arg)
        ch.flush()
        return _record(right, kind)


async def _async_bytes(
    kind: str, framing: str | None, calls: list[tuple[str, Any]]
) -> list[bytes]:
    left, right = _pair(kind)
    with right:
        async with aio.Channel.from_socket(left, framing=framing) as ch:
            for name, arg in calls:
                await getattr(ch, name)(arg)
            await ch.flush()
            return _record(right, kind)


@pytest.mark.parametrize(("kind", "framing", "calls"), CASES)
async def test_sync_and_async_channels_write_the_same_bytes(
    kind: str, framing: str | None, calls: list[tuple[str, Any]]
) -> None:
    expected = _sync_bytes(kind, framing, calls)
    assert expected and any(expected)
    assert await _async_bytes(kind, framing, calls) == expected


async def test_the_json_codec_writes_the_same_bytes() -> None:
    calls: list[tuple[str, Any]] = [("send", {"a": [1, None, "é"]}), ("send", [])]
    left, right = _pair("stream")
    with right, sockwire.Channel.from_socket(left, codec="json") as ch:
        for _, arg in calls:
            ch.send(arg)
        ch.flush()
        expected = _record(right, "stream")
    left, right = _pair("stream")
    with right:
        async with aio.Channel.from_socket(left, codec="json") as ach:
            for _, arg in calls:
                await ach.send(arg)
            await ach.flush()
            assert _record(right, "stream") == expected


# ---------------------------------------------------------------- patterns


def _frame(payload: bytes) -> bytes:
    return struct.pack("!I", len(payload)) + payload


def _frames(data: bytes) -> list[bytes]:
    out = []
    while len(data) >= 4:
        (size,) = struct.unpack_from("!I", data)
        if len(data) < 4 + size:
            break
        out.append(data[4 : 4 + size])
        data = data[4 + size :]
    return out


class Recorder:
    """A plain UNIX listener that plays ``role``'s HELLO and keeps the first ``count`` frames."""

    def __init__(self, path: Path, role: wire.Role, count: int) -> None:
        self.path = str(path)
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.role = role
        self.count = count
        self.frames: list[bytes] = []
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(_frame(wire.Hello(self.role, 1000).encode()))
            data = b""
            while len(_frames(data)) < self.count:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.frames = _frames(data)[: self.count]

    def join(self) -> list[bytes]:
        self.thread.join(15)
        self.listener.close()
        return self.frames


PATTERNS: list[tuple[str, wire.Role, int]] = [
    ("req", wire.Role.REP, 2),
    ("sub", wire.Role.PUB, 2),
    ("pull", wire.Role.PUSH, 2),
]


def _sync_pattern(kind: str, path: Path, role: wire.Role, count: int) -> list[bytes]:
    recorder = Recorder(path, role, count)
    ep = f"unix:{path}"
    with contextlib.suppress(sockwire.SockwireError):
        if kind == "req":
            with sockwire.patterns.Req(ep) as req:
                req.request(b"body", timeout=0.5)
        elif kind == "sub":
            with sockwire.patterns.Sub(ep) as sub:
                # tokens count subscriptions: subscribe once connected, so no
                # re-subscription on the new link takes a second one
                sub.wait_for(lambda s: s.core.connected, 5)
                sub.subscribe("topic.", timeout=0.5)
        else:
            with sockwire.patterns.Pull(ep, hwm=7) as pull:
                pull.recv(timeout=0.5)
    return recorder.join()


async def _async_pattern(kind: str, path: Path, role: wire.Role, count: int) -> list[bytes]:
    recorder = Recorder(path, role, count)
    ep = f"unix:{path}"
    with contextlib.suppress(sockwire.SockwireError):
        if kind == "req":
            async with aio.Req(ep) as req:
                await req.request(b"body", timeout=0.5)
        elif kind == "sub":
            async with aio.Sub(ep) as sub:
                await sub.wait_for(lambda s: s.core.connected, 5)
                await sub.subscribe("topic.", timeout=0.5)
        else:
            async with aio.Pull(ep, hwm=7) as pull:
                await pull.recv(timeout=0.5)
    return await asyncio.to_thread(recorder.join)


@pytest.mark.parametrize(("kind", "role", "count"), PATTERNS)
async def test_sync_and_async_patterns_open_with_the_same_bytes(
    kind: str, role: wire.Role, count: int, tmp_path: Path
) -> None:
    expected = await asyncio.to_thread(_sync_pattern, kind, tmp_path / "s.sock", role, count)
    assert len(expected) == count
    got = await _async_pattern(kind, tmp_path / "a.sock", role, count)
    assert got == expected
