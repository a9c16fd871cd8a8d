"""ZMTP 3.1 (ZeroMQ's wire protocol), sans-IO: bytes in, events out; no socket here.

The specifications are ZeroMQ's RFCs (https://rfc.zeromq.org): 23 (ZMTP 3.0),
37 (ZMTP 3.1), 24 (PLAIN); CURVE (25/26) lives in :mod:`sockwire.zmtp_curve`.
This module restates none of them; it is one :class:`Connection` per peer:

``Connection(socket_type, mechanism=Null())`` queues our 64-byte greeting;
the driver writes :meth:`Connection.data_to_send`, feeds what it reads to
:meth:`Connection.feed` (``b""`` is EOF) and acts on the returned events
(:class:`Ready`, a message as the ``list`` of its frames, :class:`Subscribe`,
:class:`Cancel`, :class:`Ping`, :class:`Pong`, :class:`Closed`). Replies the protocol makes
by itself (the mechanism's commands, PONG) are queued for ``data_to_send``.

State table (``Connection.state``)::

    state      input                                   next       output
    ---------  --------------------------------------  ---------  -------------------------
    GREETING   peer greeting byte by byte, valid       GREETING   (waits for 64 bytes)
    GREETING   64 bytes: version >= 3.0, same mech.    HANDSHAKE  the mechanism's first commands
    GREETING   bad signature, version < 3, other mech  BROKEN     ProtocolError (as soon as seen)
    HANDSHAKE  a command of the mechanism              HANDSHAKE  its replies
    HANDSHAKE  the command that completes it           READY      Ready(peer metadata)
    HANDSHAKE  ERROR                                   BROKEN     PermissionDenied(reason)
    HANDSHAKE  a message frame, a bad socket type      BROKEN     ERROR queued; ProtocolError
    READY      message frames (MORE ... last)          READY      [frames] (a list)
    READY      SUBSCRIBE / CANCEL (or 3.0 0x01/0x00)   READY      Subscribe / Cancel (PUB, XPUB)
    READY      PING (ttl, context)                     READY      Ping; PONG queued
    READY      PONG, unknown command                   READY      Pong / nothing
    READY      ERROR                                   BROKEN     ProtocolError(reason)
    any        b"" (EOF)                               CLOSED     Closed(clean)
    any        reserved flag bits, MORE on a command   BROKEN     BadFrame
    any        declared frame or message > max_size    BROKEN     FrameTooLarge (before allocating)

After a ProtocolError the connection stays BROKEN and raises it again; what
it queued (an ERROR command) may still be written before closing.

Bounds, stated once: a message (all its frames) holds at most ``max_size``
bytes, each frame counting its body plus :data:`FRAME_COST` (so a flood of
empty MORE frames is bounded too); a command at most :data:`COMMAND_MAX`
bytes. A longer declared size is refused as soon as its header is complete.
Buffered input is at most one frame plus one read; a complete long frame is
copied once into its own ``bytes``.

Interop notes (libzmq 4.3 is the reference peer):

- We send the whole greeting at once (RFC 37 "second case"): we do not talk
  to ZMTP 1.0/2.0 peers, and refuse a major version below 3 at byte 10.
- The signature is checked strictly (0xFF at byte 0, 0x7F at byte 9); the
  padding is never interpreted, nor is the as-server bit (libzmq 4.3 sends 0
  as a PLAIN server).
- Subscriptions go as SUBSCRIBE/CANCEL commands to 3.1 peers and as message
  frames starting 0x01/0x00 to 3.0 peers; both forms are accepted from either.
- Commands between the frames of a multipart message are processed, not
  refused (the grammar forbids them; accepting them costs nothing).
- CURVE MESSAGE boxes go out as message frames (flags 0x00/0x02), as libzmq
  4.3 writes and expects them (RFC 37 says commands; libzmq ignores a
  MESSAGE command); both are accepted.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from .errors import BadFrame, FrameTooLarge, InvalidOperation, PermissionDenied, ProtocolError

__all__ = [
    "COMMAND_MAX",
    "DEFAULT_MAX_SIZE",
    "FRAME_COST",
    "GREETING_SIZE",
    "SOCKET_TYPES",
    "Cancel",
    "Closed",
    "Connection",
    "Event",
    "Mechanism",
    "Message",
    "Null",
    "Ping",
    "PlainClient",
    "PlainServer",
    "Pong",
    "Ready",
    "Subscribe",
    "compatible",
    "decode_metadata",
    "encode_command",
    "encode_metadata",
]

#: Largest message accepted unless told otherwise (16 MiB, as framing.py).
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
#: Each frame of a message costs its body plus this toward ``max_size``.
FRAME_COST = 32
#: Largest command body accepted (handshake commands, SUBSCRIBE topics, PING).
COMMAND_MAX = 64 * 1024
GREETING_SIZE = 64

MORE, LONG, COMMAND = 0x01, 0x02, 0x04
_RESERVED = 0xF8
_U64 = struct.Struct("!Q")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_LONG_MAX = (1 << 63) - 1

#: RFC 37's socket types (the thread-safe draft types are not spoken here).
SOCKET_TYPES = (
    "REQ",
    "REP",
    "DEALER",
    "ROUTER",
    "PUB",
    "XPUB",
    "SUB",
    "XSUB",
    "PUSH",
    "PULL",
    "PAIR",
)
_PEERS: dict[str, frozenset[str]] = {
    "REQ": frozenset({"REP", "ROUTER"}),
    "REP": frozenset({"REQ", "DEALER"}),
    "DEALER": frozenset({"REP", "DEALER", "ROUTER"}),
    "ROUTER": frozenset({"REQ", "DEALER", "ROUTER"}),
    "PUB": frozenset({"SUB", "XSUB"}),
    "XPUB": frozenset({"SUB", "XSUB"}),
    "SUB": frozenset({"PUB", "XPUB"}),
    "XSUB": frozenset({"PUB", "XPUB"}),
    "PUSH": frozenset({"PULL"}),
    "PULL": frozenset({"PUSH"}),
    "PAIR": frozenset({"PAIR"}),
}
_PUBLISHERS = frozenset({"PUB", "XPUB"})


def compatible(ours: str, theirs: str) -> bool:
    """RFC 37's table of legal socket-type pairs."""
    return theirs in _PEERS.get(ours, frozenset())


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


@dataclass(slots=True)
class Ready:
    """The handshake is done; the peer's metadata (names lower-cased)."""

    socket_type: str
    identity: bytes
    metadata: dict[str, bytes]
    user: str | None = None  # PLAIN user name / CURVE client key (z85), when known
    minor: int = 1  # the peer's ZMTP minor version


#: One whole message: the list of its frames, in order (never empty). Events
#: that are not messages are the dataclasses here; a message is a plain ``list``
#: (``isinstance(event, list)``), so a driver queues it as it comes, no copy.
Message = list


@dataclass(slots=True)
class Subscribe:
    topic: bytes


@dataclass(slots=True)
class Cancel:
    topic: bytes


@dataclass(slots=True)
class Ping:
    """The peer pinged; a PONG is already queued. ``ttl`` in seconds (0: none)."""

    ttl: float
    context: bytes


@dataclass(slots=True)
class Pong:
    context: bytes


@dataclass(slots=True)
class Closed:
    """EOF from the peer; ``clean`` when it fell between messages."""

    clean: bool


Event: TypeAlias = Ready | list[bytes] | Subscribe | Cancel | Ping | Pong | Closed


# --------------------------------------------------------------------------
# Commands and metadata
# --------------------------------------------------------------------------


def encode_command(name: bytes, data: bytes = b"") -> bytes:
    """A whole command frame: flags, size, name length, name, data."""
    body_len = 1 + len(name) + len(data)
    if body_len < 256:
        return bytes((COMMAND, body_len, len(name))) + name + data
    return bytes((COMMAND | LONG,)) + _U64.pack(body_len) + bytes((len(name),)) + name + data


def encode_metadata(props: Sequence[tuple[str, bytes]]) -> bytes:
    """RFC 23 metadata: name (1-byte length) then value (4-byte length), in order."""
    out = bytearray()
    for name, value in props:
        raw = name.encode("ascii")
        if not 0 < len(raw) < 256:
            raise InvalidOperation(f"metadata name {name!r}", "names are 1 to 255 characters")
        out += bytes((len(raw),)) + raw + _U32.pack(len(value)) + value
    return bytes(out)


def decode_metadata(data: bytes) -> dict[str, bytes]:
    """Parse a metadata block; names lower-cased (they are case-insensitive)."""
    props: dict[str, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        size = data[pos]
        pos += 1
        if size == 0 or pos + size + 4 > end:
            raise BadFrame("malformed ZMTP metadata", "a property name or value is cut short")
        name = data[pos : pos + size]
        pos += size
        (vlen,) = _U32.unpack_from(data, pos)
        pos += 4
        if vlen > end - pos:
            raise BadFrame("malformed ZMTP metadata", "a property value runs past its command")
        props[name.decode("latin-1").lower()] = data[pos : pos + vlen]
        pos += vlen
    return props


def _split_command(body: bytes) -> tuple[bytes, bytes]:
    if not body or body[0] == 0 or body[0] + 1 > len(body):
        raise BadFrame("malformed ZMTP command", "the command name is empty or cut short")
    size = body[0]
    return body[1 : 1 + size], body[1 + size :]


def _short_string(data: bytes, what: str) -> tuple[bytes, bytes]:
    if not data or data[0] + 1 > len(data):
        raise BadFrame(f"malformed ZMTP {what}", "a length-prefixed field is cut short")
    return data[1 : 1 + data[0]], data[1 + data[0] :]


# --------------------------------------------------------------------------
# Security mechanisms (the handshake part; CURVE is in zmtp_curve.py)
# --------------------------------------------------------------------------


class Mechanism:
    """One side of a security handshake. Subclasses fill in the commands.

    ``start(metadata)`` returns the command frames to send once the peer's
    greeting is in; ``on_command(name, data)`` returns replies and sets
    ``done`` and ``peer_metadata`` when the handshake completes. Encrypting
    mechanisms also implement ``wrap``/``unwrap`` for every frame after it.
    """

    name = b"NULL"
    as_server = False
    encrypts = False

    def __init__(self) -> None:
        self.done = False
        self.peer_metadata: dict[str, bytes] = {}
        self.user: str | None = None
        self._metadata = b""

    def check_peer(self, peer_as_server: bool) -> None:
        """The peer's as-server bit is not checked: libzmq 4.3 sends 0 even as a PLAIN
        server (seen with pyzmq 27), and checks nothing itself. Roles come from our
        configuration; two clients fail at the first command out of order."""

    def start(self, metadata: bytes) -> list[bytes]:
        self._metadata = metadata
        return []

    def on_command(self, name: bytes, data: bytes) -> list[bytes]:
        raise NotImplementedError

    def wrap(self, flags: int, body: bytes) -> bytes:  # pragma: no cover - CURVE overrides
        raise NotImplementedError

    def unwrap(self, body: bytes) -> tuple[int, bytes]:  # pragma: no cover - CURVE overrides
        raise NotImplementedError

    def _unexpected(self, name: bytes) -> ProtocolError:
        return ProtocolError(
            f"unexpected ZMTP {name.decode('latin-1')!r} command in the "
            f"{self.name.decode()} handshake",
            "the peer does not follow the mechanism's order of commands",
        )


class Null(Mechanism):
    """RFC 37's NULL: both sides send READY; no authentication, no encryption."""

    name = b"NULL"

    def start(self, metadata: bytes) -> list[bytes]:
        super().start(metadata)
        return [encode_command(b"READY", metadata)]

    def on_command(self, name: bytes, data: bytes) -> list[bytes]:
        if name != b"READY":
            raise self._unexpected(name)
        self.peer_metadata = decode_metadata(data)
        self.done = True
        return []


class PlainClient(Mechanism):
    """RFC 24 PLAIN, client side. User name and password travel in clear text."""

    name = b"PLAIN"

    def __init__(self, username: bytes, password: bytes) -> None:
        super().__init__()
        if len(username) > 255 or len(password) > 255:
            raise InvalidOperation("a PLAIN user name or password", "each is at most 255 bytes")
        self._hello = bytes((len(username),)) + username + bytes((len(password),)) + password
        self._step = "welcome"

    def start(self, metadata: bytes) -> list[bytes]:
        super().start(metadata)
        return [encode_command(b"HELLO", self._hello)]

    def on_command(self, name: bytes, data: bytes) -> list[bytes]:
        if self._step == "welcome" and name == b"WELCOME":
            self._step = "ready"
            return [encode_command(b"INITIATE", self._metadata)]
        if self._step == "ready" and name == b"READY":
            self.peer_metadata = decode_metadata(data)
            self.done = True
            return []
        raise self._unexpected(name)


#: Checks a PLAIN user name and password; True lets the peer in.
Authenticator: TypeAlias = Callable[[bytes, bytes], bool]


class PlainServer(Mechanism):
    """RFC 24 PLAIN, server side: ``authenticate(username, password)`` decides."""

    name = b"PLAIN"
    as_server = True

    def __init__(self, authenticate: Authenticator) -> None:
        super().__init__()
        self._authenticate = authenticate
        self._step = "hello"

    def on_command(self, name: bytes, data: bytes) -> list[bytes]:
        if self._step == "hello" and name == b"HELLO":
            username, rest = _short_string(data, "PLAIN HELLO")
            password, rest = _short_string(rest, "PLAIN HELLO")
            if rest:
                raise BadFrame("malformed ZMTP PLAIN HELLO", "bytes after the password")
            if not self._authenticate(username, password):
                raise PermissionDenied(
                    f"ZMTP PLAIN user {username.decode('latin-1')!r} refused",
                    "wrong user name or password",
                )
            self.user = username.decode("utf-8", "replace")
            self._step = "initiate"
            return [encode_command(b"WELCOME")]
        if self._step == "initiate" and name == b"INITIATE":
            self.peer_metadata = decode_metadata(data)
            self.done = True
            return [encode_command(b"READY", self._metadata)]
        raise self._unexpected(name)


# --------------------------------------------------------------------------
# The connection
# --------------------------------------------------------------------------

GREETING, HANDSHAKE, READY, CLOSED, BROKEN = (
    "GREETING",
    "HANDSHAKE",
    "READY",
    "CLOSED",
    "BROKEN",
)


def greeting(mechanism: bytes, as_server: bool, minor: int = 1) -> bytes:
    """Our 64-byte greeting: signature, version 3.minor, mechanism, as-server, filler."""
    return (
        b"\xff"
        + bytes(8)
        + b"\x7f"
        + bytes((3, minor))
        + mechanism.ljust(20, b"\x00")
        + bytes((1 if as_server else 0,))
        + bytes(31)
    )


@dataclass
class Connection:
    """One ZMTP peer connection, either side (see the state table above).

    ``socket_type`` is ours ("PUSH", ...); the peer's is checked against
    RFC 37's table when its metadata arrives. ``identity`` is announced as the
    Identity property (a ROUTER peer addresses us by it). ``log``, when given,
    receives one line per greeting, command and frame (``"<" | ">", text``):
    the CLI's ``--trace`` uses it; it never sees PLAIN passwords.
    """

    socket_type: str
    mechanism: Mechanism = field(default_factory=Null)
    identity: bytes = b""
    max_size: int = DEFAULT_MAX_SIZE
    log: Callable[[str, str], None] | None = None
    extra_metadata: Sequence[tuple[str, bytes]] = ()

    state: str = field(default=GREETING, init=False)
    peer: Ready | None = field(default=None, init=False)
    peer_minor: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        if self.socket_type not in _PEERS:
            raise InvalidOperation(
                f"ZMTP socket type {self.socket_type!r}", "one of " + ", ".join(SOCKET_TYPES)
            )
        if len(self.identity) > 255 or self.identity[:1] == b"\x00":
            raise InvalidOperation(
                "a ZMTP identity", "1 to 255 bytes, not starting with a zero byte (RFC 37)"
            )
        self._publisher = self.socket_type in _PUBLISHERS
        self._slow_send = self.mechanism.encrypts or self.log is not None
        self._fast_send = False  # READY and not _slow_send
        # single-frame messages skip _deliver: no log line, no subscription to spot
        self._fast_receive = not (self.mechanism.encrypts or self.log or self._publisher)
        self._out = bytearray(greeting(self.mechanism.name, self.mechanism.as_server))
        #: The queue itself, for a driver that writes from it and deletes what it
        #: wrote (``del conn.outgoing[:n]``): one buffer, no copy per message.
        self.outgoing = self._out
        self._buf = b""
        self._frames: list[bytes] = []
        self._held = 0  # bytes counted toward max_size for the message in progress
        self._error: ProtocolError | PermissionDenied | None = None
        self._long: bytearray | None = None  # body of a long frame being collected
        self._long_need = 0
        self._long_flags = 0
        if self.log:
            self.log(">", self._describe_greeting(bytes(self._out)))

    # ---- output

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call (b"" when nothing)."""
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    @property
    def pending(self) -> int:
        """Bytes queued and not yet taken by :meth:`data_to_send`."""
        return len(self._out)

    def send(self, frames: Sequence[bytes]) -> None:
        """Queue one message (a non-empty list of frames)."""
        if self.state != READY:
            raise InvalidOperation(
                f"send on a ZMTP connection in state {self.state}", "wait for its Ready event"
            )
        if not frames:
            raise InvalidOperation("send an empty ZMTP message", "a message has 1 frame or more")
        out = self._out
        last = len(frames) - 1
        if not last and not self._slow_send:
            frame = frames[0]
            size = len(frame)
            if size < 256:
                out += _SHORT_HEADS[size]
            else:
                out += _LONG_HEAD
                out += _U64.pack(size)
            out += frame
            return
        if self.mechanism.encrypts:
            for i, frame in enumerate(frames):
                body = self.mechanism.wrap(MORE if i < last else 0, bytes(frame))
                out += _frame_head(0, len(body))  # as libzmq frames a MESSAGE box
                out += body
        else:
            for i, frame in enumerate(frames):
                size = len(frame)
                if size < 256:
                    out += bytes((1 if i < last else 0, size))
                else:
                    out += bytes((LONG | (1 if i < last else 0),))
                    out += _U64.pack(size)
                out += frame
        if self.log:
            self.log(">", _describe_message(frames))

    def send_frame(self, frame: bytes) -> None:
        """Queue a one-frame message (the hot path of :meth:`send`)."""
        if not self._fast_send:
            self.send([frame])
            return
        size = len(frame)
        out = self._out
        if size < 256:
            out += _SHORT_HEADS[size]
        else:
            out += _LONG_HEAD
            out += _U64.pack(size)
        out += frame

    def subscribe(self, topic: bytes) -> None:
        """Queue a subscription (SUBSCRIBE command, or the 3.0 message form)."""
        self._subscription(b"SUBSCRIBE", b"\x01", topic)

    def cancel(self, topic: bytes) -> None:
        self._subscription(b"CANCEL", b"\x00", topic)

    def _subscription(self, name: bytes, prefix: bytes, topic: bytes) -> None:
        if self.peer_minor >= 1 and not self.mechanism.encrypts:
            self._command(name, topic)
        else:
            self.send([prefix + topic])

    def ping(self, ttl: float = 0.0, context: bytes = b"") -> None:
        """Queue a PING (ZMTP 3.1 peers only; a 3.0 peer gets nothing)."""
        if self.peer_minor < 1:
            return
        if len(context) > 16:
            raise InvalidOperation("a PING context", "at most 16 bytes")
        self._command(b"PING", _U16.pack(min(int(ttl * 10), 0xFFFF)) + context)

    def _command(self, name: bytes, data: bytes) -> None:
        if self.state != READY:
            raise InvalidOperation(
                f"a {name.decode()} command in state {self.state}", "wait for the Ready event"
            )
        body = bytes((len(name),)) + name + data
        if self.mechanism.encrypts:
            body = self.mechanism.wrap(COMMAND, body)  # CURVE boxes commands too
            self._out += _frame_head(0, len(body)) + body
        else:
            self._out += _frame_head(COMMAND, len(body)) + body
        if self.log:
            self.log(">", _describe_command(name, data))

    def error(self, reason: str) -> None:
        """Queue an ERROR command (the driver closes after writing it)."""
        raw = reason.encode("ascii", "replace")[:255]
        self._out += encode_command(b"ERROR", bytes((len(raw),)) + raw)
        if self.log:
            self.log(">", f"ERROR {reason!r}")

    # ---- input

    def feed(self, data: bytes) -> list[Event]:
        """Events completed by ``data``; ``b""`` is EOF."""
        if self._error is not None:
            raise self._error
        events: list[Event] = []
        if not data:
            if self.state not in (CLOSED, BROKEN):
                clean = not self._buf and not self._frames and self._long is None
                self.state = CLOSED
                events.append(Closed(clean))
            return events
        if self.state == CLOSED:
            raise InvalidOperation("feed after EOF to a ZMTP connection", "a new one is needed")
        try:
            self._feed(data, events)
        except (ProtocolError, PermissionDenied) as exc:
            self._error = exc
            self.state = BROKEN
            raise
        return events

    def _feed(self, data: bytes, events: list[Event]) -> None:
        if self._long is not None:
            data = self._collect(data, events)
            if not data:
                return
        buf = self._buf + data if self._buf else data
        if self.state == GREETING:
            buf = self._greeting(buf, events)
            if self.state == GREETING:
                self._buf = buf
                return
        pos, end = 0, len(buf)
        frames = self._frames
        max_size = self.max_size
        boxed = self.mechanism.encrypts and self.state == READY
        size_counted = 0
        fast = self._fast_receive and self.state == READY and max_size >= 255 + FRAME_COST
        while pos < end:
            flags = buf[pos]
            if fast and flags == 0 and not frames:
                # the hot path: a whole message in one short frame, nothing to check
                # but its length (bounded by 255 < max_size)
                stop = pos + 2
                if stop > end:
                    break
                stop += buf[pos + 1]
                if stop > end:
                    break
                events.append([buf[pos + 2 : stop]])
                pos = stop
                continue
            if flags & _RESERVED:
                raise BadFrame(f"ZMTP frame flags {flags:#04x}", "reserved bits 7-3 must be zero")
            if flags & LONG:
                if end - pos < 9:
                    break
                (size,) = _U64.unpack_from(buf, pos + 1)
                start = pos + 9
            else:
                if end - pos < 2:
                    break
                size = buf[pos + 1]
                start = pos + 2
            if flags & COMMAND:
                if flags & MORE:
                    raise BadFrame("ZMTP command frame with MORE set", "commands are one frame")
                if size > COMMAND_MAX and (
                    not self.mechanism.encrypts or self.state != READY or size > max_size + 64
                ):
                    raise FrameTooLarge(
                        f"ZMTP command of {size} bytes",
                        f"commands are limited to {COMMAND_MAX} bytes",
                    )
            else:
                if self.state != READY:
                    raise ProtocolError(
                        "ZMTP message frame before the handshake completed",
                        "the peer must finish its security handshake first",
                    )
                if size > _LONG_MAX:
                    raise BadFrame(f"ZMTP frame size {size}", "sizes are at most 2^63-1")
                if boxed:  # a CURVE MESSAGE: counted when it is opened
                    if size > max_size + 64:
                        raise FrameTooLarge(
                            f"CURVE MESSAGE of {size} bytes",
                            f"this peer accepts messages up to {max_size} bytes (max_size)",
                        )
                    size_counted = 0
                else:
                    size_counted = size + FRAME_COST
                self._held += size_counted
                if self._held > max_size:
                    raise FrameTooLarge(
                        f"ZMTP message of {self._held}+ bytes (frames counted with "
                        f"{FRAME_COST} bytes each)",
                        f"this peer accepts messages up to {max_size} bytes (max_size)",
                    )
            stop = start + size
            if stop > end:
                if size >= 4096:  # a long body: collect it without re-copying the buffer
                    self._long = bytearray(buf[start:end])
                    self._long_need = size
                    self._long_flags = flags
                    self._buf = b""
                    return
                if flags & COMMAND == 0:
                    self._held -= size_counted  # counted again when it is whole
                break
            body = buf[start:stop]
            pos = stop
            if flags & COMMAND or boxed:
                self._on_command(body, events)
                boxed = self.mechanism.encrypts and self.state == READY
            else:
                frames.append(body)
                if not flags & MORE:
                    self._deliver(events)
                    frames = self._frames
        self._buf = buf[pos:] if pos < end else b""

    def _collect(self, data: bytes, events: list[Event]) -> bytes:
        """Add to the long frame in progress; return what follows it."""
        assert self._long is not None
        want = self._long_need - len(self._long)
        if len(data) < want:
            self._long += data
            return b""
        self._long += data[:want]
        body, flags = bytes(self._long), self._long_flags
        self._long = None
        if flags & COMMAND or (self.mechanism.encrypts and self.state == READY):
            self._on_command(body, events)
        else:
            self._frames.append(body)
            if not flags & MORE:
                self._deliver(events)
        return data[want:]

    def _deliver(self, events: list[Event]) -> None:
        frames = self._frames
        self._frames = []
        self._held = 0
        if self.log:
            self.log("<", _describe_message(frames))
        if self._publisher and len(frames) == 1 and frames[0][:1] in (b"\x01", b"\x00"):
            topic = frames[0][1:]
            events.append(Subscribe(topic) if frames[0][0] == 1 else Cancel(topic))
            return
        events.append(frames)

    def _greeting(self, buf: bytes, events: list[Event]) -> bytes:
        """Check the peer's greeting as its bytes arrive; return what follows it."""
        have = len(buf)
        if have >= 1 and buf[0] != 0xFF:
            raise ProtocolError(
                f"not a ZMTP peer: greeting starts {buf[:1].hex()}",
                "ZMTP 3 greetings start with ff (signature); is this a ZeroMQ endpoint?",
            )
        if have >= 10 and buf[9] != 0x7F:
            raise ProtocolError(
                f"bad ZMTP signature: byte 9 is {buf[9]:#04x}, not 0x7f",
                "a ZMTP 1.0/2.0 peer or not ZMTP at all; sockwire speaks ZMTP 3.x",
            )
        if have >= 11 and buf[10] < 3:
            raise ProtocolError(
                f"ZMTP version {buf[10]} peer",
                "sockwire speaks ZMTP 3.0 and 3.1 (libzmq 4.x); upgrade the peer",
            )
        if have >= 32:
            theirs = buf[12:32].rstrip(b"\x00")
            if theirs != self.mechanism.name:
                self.error("mechanism mismatch")
                raise ProtocolError(
                    f"ZMTP mechanism {theirs.decode('latin-1')!r} offered, "
                    f"{self.mechanism.name.decode()} required",
                    "both sides must use the same security mechanism (NULL, PLAIN or CURVE)",
                )
        if have < GREETING_SIZE:
            return buf
        self.peer_minor = buf[11] if buf[10] == 3 else 1
        if self.log:
            self.log("<", self._describe_greeting(buf[:GREETING_SIZE]))
        self.mechanism.check_peer(buf[32] == 1)
        self.state = HANDSHAKE
        for command in self.mechanism.start(self._our_metadata()):
            self._out += command
            if self.log:
                self.log(">", _describe_command_frame(command, self.mechanism))
        return buf[GREETING_SIZE:]

    def _our_metadata(self) -> bytes:
        props: list[tuple[str, bytes]] = [("Socket-Type", self.socket_type.encode())]
        if self.socket_type in ("REQ", "DEALER", "ROUTER"):
            props.append(("Identity", self.identity))
        props.extend(self.extra_metadata)
        return encode_metadata(props)

    def _on_command(self, body: bytes, events: list[Event]) -> None:
        if self.mechanism.encrypts and self.state == READY:
            flags, body = self.mechanism.unwrap(body)
            if not flags & COMMAND:
                self._held += len(body) + FRAME_COST
                if self._held > self.max_size:
                    raise FrameTooLarge(
                        f"ZMTP message of {self._held}+ bytes",
                        f"this peer accepts messages up to {self.max_size} bytes (max_size)",
                    )
                self._frames.append(body)
                if not flags & MORE:
                    self._deliver(events)
                return
        name, data = _split_command(body)
        if self.log:
            self.log("<", _describe_command(name, data, self.mechanism))
        if name == b"ERROR":
            reason = data[1 : 1 + data[0]] if data else b""
            text = reason.decode("ascii", "replace")
            if self.state == READY:
                raise ProtocolError(f"ZMTP peer sent ERROR {text!r}", "the peer closes")
            raise PermissionDenied(
                f"the ZMTP peer refused the handshake: {text!r}",
                "check the mechanism, credentials and socket types on both sides",
            )
        if self.state == HANDSHAKE:
            try:
                replies = self.mechanism.on_command(name, data)
            except PermissionDenied as exc:
                self.error(exc.hint or "refused")
                raise
            except ProtocolError:
                self.error("protocol error")
                raise
            for reply in replies:
                self._out += reply
                if self.log:
                    self.log(">", _describe_command_frame(reply, self.mechanism))
            if self.mechanism.done:
                self._ready(events)
            return
        # READY: the commands of the traffic phase
        if name == b"SUBSCRIBE":
            if self._publisher:
                events.append(Subscribe(data))
        elif name == b"CANCEL":
            if self._publisher:
                events.append(Cancel(data))
        elif name == b"PING":
            if len(data) < 2 or len(data) > 18:
                raise BadFrame("malformed ZMTP PING", "a 2-byte TTL and up to 16 bytes context")
            (ttl,) = _U16.unpack_from(data)
            context = data[2:]
            self._command(b"PONG", context)
            events.append(Ping(ttl / 10, context))
        elif name == b"PONG":
            events.append(Pong(data))
        # other commands are ignored, as libzmq does

    def _ready(self, events: list[Event]) -> None:
        meta = self.mechanism.peer_metadata
        theirs = meta.get("socket-type", b"").decode("latin-1")
        if not compatible(self.socket_type, theirs):
            self.error("Invalid socket type")
            raise ProtocolError(
                f"ZMTP peer is a {theirs or 'socket of no type'!r}; a {self.socket_type} "
                "cannot talk to it",
                "pair compatible socket types (RFC 37): "
                + ", ".join(sorted(_PEERS[self.socket_type])),
            )
        identity = meta.get("identity", b"")
        if len(identity) > 255:
            raise BadFrame("ZMTP Identity over 255 bytes", "RFC 37 limits it to 255")
        self.state = READY
        self._fast_send = not self._slow_send
        self.peer = Ready(theirs, identity, meta, self.mechanism.user, self.peer_minor)
        events.append(self.peer)

    # ---- descriptions for --trace

    def _describe_greeting(self, data: bytes) -> str:
        mech = data[12:32].rstrip(b"\x00").decode("latin-1")
        return f"greeting ZMTP {data[10]}.{data[11]} mechanism {mech} as-server {data[32]}"


_SHORT_HEADS = [bytes((0, n)) for n in range(256)]
_LONG_HEAD = bytes((LONG,))


def _frame_head(flags: int, size: int) -> bytes:
    if size < 256:
        return bytes((flags, size))
    return bytes((flags | LONG,)) + _U64.pack(size)


def _describe_message(frames: Sequence[bytes]) -> str:
    last = len(frames) - 1
    parts = [f"{len(f)}B{' MORE' if i < last else ''}" for i, f in enumerate(frames[:8])]
    if len(frames) > 8:
        parts.append(f"... {len(frames)} frames")
    return "message " + ", ".join(parts)


def _describe_command(name: bytes, data: bytes, mech: Mechanism | None = None) -> str:
    text = name.decode("latin-1")
    if name in (b"READY", b"INITIATE") and not (mech and mech.encrypts):
        try:
            props = decode_metadata(data)
        except BadFrame:
            return f"{text} (malformed metadata, {len(data)}B)"
        shown = ", ".join(f"{k}={_printable(v)}" for k, v in props.items())
        return f"{text} {shown}"
    if name == b"HELLO" and mech is not None and mech.name == b"PLAIN":
        user = data[1 : 1 + data[0]] if data else b""
        return f"HELLO user={_printable(user)} password=(hidden)"
    if name in (b"SUBSCRIBE", b"CANCEL"):
        return f"{text} {_printable(data)}"
    if name == b"PING" and len(data) >= 2:
        return f"PING ttl={_U16.unpack_from(data)[0] / 10:g}s context={len(data) - 2}B"
    if name == b"ERROR" and data:
        return f"ERROR {_printable(data[1 : 1 + data[0]])}"
    return f"{text} {len(data)}B"


def _describe_command_frame(frame: bytes, mech: Mechanism) -> str:
    start = 9 if frame[0] & LONG else 2
    name, data = _split_command(frame[start:])
    return _describe_command(name, data, mech)


def _printable(value: bytes) -> str:
    """Peer-controlled bytes made safe for a terminal (escapes, bounded)."""
    text = repr(value[:64])[2:-1]
    return text + ("..." if len(value) > 64 else "")
