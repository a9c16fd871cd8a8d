"""codecs.py: bytes/json/msgpack round trips; pickle only when named and authenticated."""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys

import pytest

import sockwire
from sockwire.codecs import get_codec
from sockwire.errors import InvalidOperation, PermissionDenied, ProtocolError, UnsupportedError
from tests.helpers import need


def _need_msgpack() -> None:
    need(importlib.util.find_spec("msgpack") is not None, "needs msgpack (a dev extra)")


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_structured_codecs_round_trip(name: str) -> None:
    if name == "msgpack":
        _need_msgpack()
    codec = get_codec(name)
    value = {"a": [1, 2.5, "three", None, True], "b": {"c": "ü"}}
    assert codec.decode(codec.encode(value)) == value


def test_bytes_codec_is_the_identity_and_refuses_objects() -> None:
    codec = get_codec()
    assert codec.name == "bytes"
    assert codec.decode(b"raw") == b"raw"
    with pytest.raises(InvalidOperation, match="codec='json'"):
        codec.encode("text")


def test_missing_msgpack_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)  # makes `import msgpack` fail
    with pytest.raises(UnsupportedError, match=r"pip install sockwire\[msgpack\]"):
        get_codec("msgpack")


def test_pickle_needs_authentication() -> None:
    with pytest.raises(PermissionDenied, match="authenticated"):
        get_codec("pickle")
    codec = get_codec("pickle", authenticated=True)
    assert codec.decode(codec.encode({1, 2})) == {1, 2}
    with pytest.raises(PermissionDenied):
        sockwire.pipe(codec="pickle")


def test_unknown_codec_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidOperation, match="json"):
        get_codec("yaml")


class _Sentinel:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))  # creating the file is the proof of execution


def test_pickle_bytes_never_execute_on_default_channels(tmp_path: os.PathLike[str]) -> None:
    sentinel = os.path.join(os.fspath(tmp_path), "executed")
    payload = pickle.dumps(_Sentinel(sentinel))
    a, b = sockwire.pipe()
    with a, b:
        a.send(payload)
        a.flush()
        assert b.recv() == payload  # bytes stay bytes
    a, b = sockwire.pipe(codec="json")
    with a, b:
        a._core.queue(payload)  # the raw frame, under the codec
        a.flush()
        with pytest.raises(ProtocolError, match="not valid json"):
            b.recv()
        a.send({"still": "usable"})
        a.flush()
        assert b.recv() == {"still": "usable"}
    assert not os.path.exists(sentinel)


@pytest.mark.parametrize("kind", ["stream", "seqpacket", "dgram"])
def test_codecs_through_a_pipe(kind: str) -> None:
    _need_msgpack()
    a, b = sockwire.pipe(kind, codec="msgpack")
    with a, b:
        a.send_many([{"k": b"\0bin"}, [1, "two"]])
        a.flush()
        assert b.recv(timeout=5) == {"k": b"\0bin"}
        assert b.recv(timeout=5) == [1, "two"]
    a, b = sockwire.pipe(kind, codec="pickle", authenticated=True)
    with a, b:
        a.send({1, 2, 3})
        a.flush()
        assert b.recv(timeout=5) == {1, 2, 3}
