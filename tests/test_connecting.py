"""sockwire.connecting: what both drivers' connect decides, without any socket."""

from __future__ import annotations

import random

import pytest

from sockwire import connecting
from sockwire.address import parse
from sockwire.errors import (
    ConnectionRefused,
    InvalidOperation,
    NotFound,
    PermissionDenied,
    SockwireError,
    TimeoutError,
    WouldBlock,
)


def test_handshake_bound_prefers_the_call_then_timeout_then_endpoint_then_default() -> None:
    ep = parse("unix:/run/x.sock?timeout=3")
    assert connecting.handshake_timeout(ep, 1.5, 7.0) == 1.5
    assert connecting.handshake_timeout(ep, None, 7.0) == 7.0
    assert connecting.handshake_timeout(ep, None, None) == 3.0
    bare = parse("unix:/run/x.sock")
    assert connecting.handshake_timeout(bare, None, None) == connecting.DEFAULT_HANDSHAKE_TIMEOUT


def test_only_connected_types_are_handshaken() -> None:
    assert connecting.needs_handshake(parse("tcp://127.0.0.1:1"))
    assert connecting.needs_handshake(parse("unix+seqpacket:/run/x.sock"))
    assert not connecting.needs_handshake(parse("udp://127.0.0.1:1"))
    assert not connecting.needs_handshake(parse("unix+dgram:/run/x.sock"))


@pytest.mark.parametrize(
    ("endpoint", "error", "retried"),
    [
        ("tcp://127.0.0.1:1", ConnectionRefused("c", "h"), True),
        ("tcp://127.0.0.1:1", TimeoutError("c", "h"), True),
        ("unix:/run/x.sock", WouldBlock("c", "h"), True),
        ("unix:/run/x.sock", NotFound("c", "h"), True),
        ("unix:@abstract", NotFound("c", "h"), False),
        ("tcp://localhost:1", NotFound("c", "h"), False),
        ("unix:/run/x.sock", PermissionDenied("c", "h"), False),
    ],
)
def test_retry_pause_follows_retryable_and_the_count(
    endpoint: str, error: SockwireError, retried: bool
) -> None:
    ep = parse(endpoint)
    pauses = connecting.Backoff(initial=0.1, maximum=0.4, jitter=0.0).delays(random.Random(1))
    first = connecting.retry_pause(ep, error, 0, 2, pauses)
    assert (first is not None) is retried
    if retried:
        assert first == pytest.approx(0.1)
        assert connecting.retry_pause(ep, error, 1, 2, pauses) == pytest.approx(0.2)
        assert connecting.retry_pause(ep, error, 2, 2, pauses) is None  # none left


def test_check_connect_refuses_before_any_attempt() -> None:
    with pytest.raises(InvalidOperation, match="already connected"):
        connecting.check_connect(parse("fd:3"), 0, "bytes")
    with pytest.raises(InvalidOperation, match="0 or more"):
        connecting.check_connect(parse("tcp://127.0.0.1:1"), -1, "bytes")
