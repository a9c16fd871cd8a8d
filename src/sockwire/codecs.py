"""What a message *is*: bytes (default), JSON, msgpack, or pickle behind authentication.

A codec turns an object into the payload of one message and back. The
Channel's hot path never calls a codec for ``bytes`` (the default): the
payload goes straight into the frame.

Security default: ``pickle.loads`` runs code chosen by whoever sent the
bytes, so the pickle codec exists only when asked for by name *and* the
Channel is authenticated (the HMAC handshake or a peer-credential check has
proved who the peer is). Nothing ever falls back to pickle.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidOperation, PermissionDenied, ProtocolError, UnsupportedError

__all__ = ["CODECS", "Codec", "get_codec"]

#: Codec names, in the order help texts list them.
CODECS = ("bytes", "json", "msgpack", "pickle")


@dataclass(frozen=True, slots=True)
class Codec:
    """``dumps(obj) -> bytes`` and ``loads(bytes) -> obj``; both None for raw bytes."""

    name: str
    dumps: Callable[[Any], bytes] | None
    loads: Callable[[bytes], Any] | None
    needs_auth: bool = False

    def encode(self, obj: Any) -> bytes:
        """The payload for ``obj``; a caller error (unserialisable) is InvalidOperation."""
        if self.dumps is None:
            if not isinstance(obj, bytes | bytearray | memoryview):
                raise InvalidOperation(
                    f"send of a {type(obj).__name__} on a bytes channel",
                    "send bytes, or open the channel with codec='json' (or msgpack)",
                )
            return bytes(obj)
        try:
            return self.dumps(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidOperation(
                f"{self.name} cannot encode a {type(obj).__name__}", str(exc)
            ) from exc

    def decode(self, payload: bytes) -> Any:
        """The object in ``payload``; undecodable bytes are a ProtocolError.

        The framing is intact after such an error, so the channel stays usable.
        """
        if self.loads is None:
            return payload
        try:
            return self.loads(payload)
        except Exception as exc:  # any decoder failure is the peer's bad bytes
            raise ProtocolError(
                f"a message that is not valid {self.name}",
                f"{type(exc).__name__}: {exc}"[:200] + " (the channel stays usable)",
            ) from exc


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


#: A ``\uD800``-``\uDFFF`` escape: the only way JSON text spells a surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _json_loads(payload: bytes) -> Any:
    """Strict JSON: only what ``_json_dumps`` could have written comes back.

    ``json.loads`` on bytes decodes with ``surrogatepass`` and turns a lone
    ``"\\ud800"`` escape into a str that cannot be encoded again, so an echo
    handler's reply failed with a traceback per message. Here the payload
    must be valid UTF-8 (strict), and when it holds a surrogate escape every
    string in the result must be encodable (a proper pair is; a lone half is
    not). The check costs nothing for payloads without such escapes.
    """
    text = str(payload, "utf-8")  # strict: an encoded surrogate is refused here
    value = json.loads(text)
    if _SURROGATE_ESCAPE.search(payload):
        _refuse_lone_surrogates(value)
    return value


def _refuse_lone_surrogates(value: Any) -> None:
    """Walk ``value`` (iteratively: nesting depth is the peer's choice) for a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad = ord(item[exc.start])
                raise ValueError(
                    f"a lone UTF-16 surrogate \\u{bad:04x} in a string (JSON that no "
                    "encoder writes: it cannot be encoded as UTF-8 again)"
                ) from None
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())


def _msgpack() -> Codec:
    try:
        import msgpack  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise UnsupportedError(
            "the msgpack codec needs the msgpack package",
            "pip install sockwire[msgpack]",
        ) from None

    def dumps(obj: Any) -> bytes:
        return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]

    def loads(payload: bytes) -> Any:
        return msgpack.unpackb(payload, raw=False)

    return Codec("msgpack", dumps, loads)


def _pickle_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_loads(payload: bytes) -> Any:
    return pickle.loads(payload)  # noqa: S301  # only behind authentication: see get_codec


_BYTES = Codec("bytes", None, None)
_JSON = Codec("json", _json_dumps, _json_loads)
_PICKLE = Codec("pickle", _pickle_dumps, _pickle_loads, needs_auth=True)


def get_codec(name: str | Codec = "bytes", *, authenticated: bool = False) -> Codec:
    """The codec called ``name``; pickle only with ``authenticated=True``."""
    if isinstance(name, Codec):
        codec = name
    else:
        lowered = name.lower()
        if lowered == "bytes":
            codec = _BYTES
        elif lowered == "json":
            codec = _JSON
        elif lowered == "msgpack":
            codec = _msgpack()
        elif lowered == "pickle":
            codec = _PICKLE
        else:
            raise InvalidOperation(f"unknown codec {name!r}", "valid codecs: " + ", ".join(CODECS))
    if codec.needs_auth and not authenticated:
        raise PermissionDenied(
            f"the {codec.name} codec on an unauthenticated channel",
            "unpickling runs code chosen by the sender; use it only on a channel that "
            "proved its peer (authenticated=True after the HMAC handshake or a "
            "peer-credential check), or use json/msgpack",
        )
    return codec
