"""The pattern messages on the wire (docs/PROTOCOL.md sections 7 and 8), sans-IO.

Every pattern message is the payload of one Channel message (so the framing
underneath is the Channel's: len32 frames on streams, packets on seqpacket
and datagrams). Its first byte is ``version << 4 | type``; version 1::

    type  name         after the first byte
    ----  -----------  ------------------------------------------------------
    0     HELLO        u8 role, u32 heartbeat interval in ms (0: none)
    1     HEARTBEAT    nothing
    2     REQUEST      u32 request id, body
    3     REPLY        u32 request id, body
    4     ERROR        u32 request id, UTF-8 text (the replier failed it)
    5     SUBSCRIBE    u32 token, topic prefix (UTF-8, at most 1,024 bytes)
    6     UNSUBSCRIBE  u32 token, topic prefix
    7     READY        u32 token (that (un)subscription is in force)
    8     PUBLISH      u32 sequence, u16 topic length, topic (UTF-8), body
    9     ITEM         body
    10    CREDIT       u32 count (the puller takes that many more ITEMs)

Integers are big-endian. :func:`parse` raises :class:`BadFrame` for anything
else (another version, an unknown type, a short message): the link closes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ..errors import BadFrame

__all__ = [
    "MAX_PREFIX",
    "MAX_TOPIC",
    "VERSION",
    "Credit",
    "Error",
    "Heartbeat",
    "Hello",
    "Item",
    "Msg",
    "Publish",
    "Ready",
    "Reply",
    "Request",
    "Role",
    "Subscribe",
    "Type",
    "Unsubscribe",
    "parse",
]

VERSION = 1
_V = VERSION << 4
#: Longest subscription prefix (bytes of UTF-8); a longer one is a protocol error.
MAX_PREFIX = 1024
#: Longest topic of a PUBLISH (its length is a u16).
MAX_TOPIC = 0xFFFF
U32 = 0xFFFFFFFF


class Type(IntEnum):
    HELLO = 0
    HEARTBEAT = 1
    REQUEST = 2
    REPLY = 3
    ERROR = 4
    SUBSCRIBE = 5
    UNSUBSCRIBE = 6
    READY = 7
    PUBLISH = 8
    ITEM = 9
    CREDIT = 10


class Role(IntEnum):
    """What a node is; HELLO carries it so a SUB that reached a PUSH is told at once."""

    REQ = 1
    REP = 2
    PUB = 3
    SUB = 4
    PUSH = 5
    PULL = 6

    @property
    def peer(self) -> Role:
        """The one role this role talks to."""
        return _PEERS[self]


_PEERS = {
    Role.REQ: Role.REP,
    Role.REP: Role.REQ,
    Role.PUB: Role.SUB,
    Role.SUB: Role.PUB,
    Role.PUSH: Role.PULL,
    Role.PULL: Role.PUSH,
}

_HELLO = struct.Struct("!BBI")
_ID = struct.Struct("!BI")
_PUB = struct.Struct("!BIH")


@dataclass(frozen=True, slots=True)
class Hello:
    role: Role
    interval_ms: int

    def encode(self) -> bytes:
        return _HELLO.pack(_V | Type.HELLO, self.role, self.interval_ms)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    def encode(self) -> bytes:
        return HEARTBEAT_BYTES


HEARTBEAT_BYTES = bytes([_V | Type.HEARTBEAT])


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    body: bytes

    def encode(self) -> bytes:
        return _ID.pack(_V | Type.REQUEST, self.id) + self.body


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    body: bytes

    def encode(self) -> bytes:
        return _ID.pack(_V | Type.REPLY, self.id) + self.body


@dataclass(frozen=True, slots=True)
class Error:
    id: int
    text: str

    def encode(self) -> bytes:
        return _ID.pack(_V | Type.ERROR, self.id) + self.text.encode("utf-8", "replace")[:4096]


@dataclass(frozen=True, slots=True)
class Subscribe:
    token: int
    prefix: bytes

    def encode(self) -> bytes:
        return _ID.pack(_V | Type.SUBSCRIBE, self.token) + self.prefix


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    token: int
    prefix: bytes

    def encode(self) -> bytes:
        return _ID.pack(_V | Type.UNSUBSCRIBE, self.token) + self.prefix


@dataclass(frozen=True, slots=True)
class Ready:
    token: int

    def encode(self) -> bytes:
        return _ID.pack(_V | Type.READY, self.token)


@dataclass(frozen=True, slots=True)
class Publish:
    seq: int
    topic: bytes
    body: bytes

    def encode(self) -> bytes:
        return publish_head(self.seq, self.topic) + self.body


def publish_head(seq: int, topic: bytes) -> bytes:
    """The bytes of a PUBLISH before its body (the body is appended by the caller)."""
    return _PUB.pack(_V | Type.PUBLISH, seq, len(topic)) + topic


@dataclass(frozen=True, slots=True)
class Item:
    body: bytes

    def encode(self) -> bytes:
        return ITEM_HEAD + self.body


ITEM_HEAD = bytes([_V | Type.ITEM])


@dataclass(frozen=True, slots=True)
class Credit:
    count: int

    def encode(self) -> bytes:
        return _ID.pack(_V | Type.CREDIT, self.count)


Msg = (
    Hello
    | Heartbeat
    | Request
    | Reply
    | Error
    | Subscribe
    | Unsubscribe
    | Ready
    | Publish
    | Item
    | Credit
)

_HEARTBEAT = Heartbeat()


def _bad(what: str, hint: str) -> BadFrame:
    return BadFrame(what, hint)


def parse(payload: bytes) -> Msg:
    """One pattern message from a Channel message's payload; BadFrame if it is not one."""
    if not payload:
        raise _bad("an empty pattern message", "every pattern message has a type byte")
    head = payload[0]
    if head >> 4 != VERSION:
        raise _bad(
            f"a pattern message of protocol version {head >> 4}",
            f"this end speaks version {VERSION}; is the peer a sockwire pattern of this release?",
        )
    kind = head & 0x0F
    size = len(payload)
    if kind == Type.HEARTBEAT and size == 1:
        return _HEARTBEAT
    if kind == Type.ITEM:
        return Item(payload[1:])
    if kind == Type.PUBLISH:
        if size < _PUB.size:
            raise _bad("a short PUBLISH", f"{size} bytes, the header alone is {_PUB.size}")
        _, seq, tlen = _PUB.unpack_from(payload)
        end = _PUB.size + tlen
        if end > size:
            raise _bad("a PUBLISH whose topic runs past its end", f"topic length {tlen}")
        return Publish(seq, payload[_PUB.size : end], payload[end:])
    if kind == Type.HELLO:
        if size != _HELLO.size:
            raise _bad("a HELLO of the wrong size", f"{size} bytes, expected {_HELLO.size}")
        _, role, interval = _HELLO.unpack(payload)
        try:
            return Hello(Role(role), interval)
        except ValueError:
            raise _bad(f"a HELLO with unknown role {role}", "roles are 1 to 6") from None
    if size < _ID.size or kind > Type.CREDIT:
        raise _bad(f"a pattern message of type {kind} and {size} bytes", "unknown or too short")
    _, number = _ID.unpack_from(payload)
    rest = payload[_ID.size :]
    if kind == Type.REQUEST:
        return Request(number, rest)
    if kind == Type.REPLY:
        return Reply(number, rest)
    if kind == Type.ERROR:
        return Error(number, rest.decode("utf-8", "replace"))
    if kind in (Type.SUBSCRIBE, Type.UNSUBSCRIBE):
        if len(rest) > MAX_PREFIX:
            raise _bad(f"a {len(rest)}-byte topic prefix", f"at most {MAX_PREFIX} bytes")
        return Subscribe(number, rest) if kind == Type.SUBSCRIBE else Unsubscribe(number, rest)
    if rest:
        raise _bad(f"a {Type(kind).name} with {len(rest)} extra bytes", "it has none")
    if kind == Type.READY:
        return Ready(number)
    if kind == Type.CREDIT:
        return Credit(number)
    raise _bad(f"a {Type(kind).name} of {size} bytes", "a heartbeat is one byte")
