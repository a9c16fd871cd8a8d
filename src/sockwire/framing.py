"""Message framing on a byte stream, sans-IO (bytes in, messages out; no socket here).

A stream socket keeps no record boundaries: three ``send()`` calls may arrive
as one ``recv()`` or as ten. Framing puts them back. Each mode has an
:class:`Encoder` (message -> bytes to write) and a :class:`Decoder`
(``feed(data) -> [messages]``, ``b""`` meaning EOF), in the style of h11:
the same decoder serves the blocking Channel, the asyncio driver and the CLI.

Modes (the endpoint option ``?framing=``, see :data:`MODES`)::

    len16 / len32 / len64   big-endian length, then the payload     (len32 default)
    netstring               b"5:hello,"  (djb's netstrings)
    line / nul              payload, then b"\\n" / b"\\0" (the payload may not contain it)
    none                    no framing: each chunk read is a message (for relays)

Bounds, stated once: a decoder holds at most ``max_size`` (default 16 MiB)
plus one read of bytes. A declared length over ``max_size`` is refused
(:class:`FrameTooLarge`) as soon as the header is complete, before any
allocation for the body; a netstring length with more digits than
``max_size`` has, or a delimited frame that grows past ``max_size``, is
refused the same way. EOF inside a frame is :class:`BadFrame`; after a
:class:`ProtocolError` the decoder stays broken and raises it again.

Driver contract (what makes a Channel fast): :meth:`Decoder.read_size` says
how much to ask the kernel for next. It is :data:`READ_SIZE` normally, so one
``recv`` returns many small frames at once. While the body of a frame of
:data:`BIG` bytes or more is outstanding it is the exact remainder and
:attr:`Decoder.exact` is true: the driver may read it with one
``recv(n, MSG_WAITALL)`` and the message is that very ``bytes`` object (no
copy). After a big frame the decoder asks for just one header, so the next
big body starts with nothing of it buffered and takes the zero-copy path too.
"""

from __future__ import annotations

import functools
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from .address import STREAM_FRAMINGS
from .errors import AddressError, BadFrame, FrameTooLarge, InvalidOperation, ProtocolError

__all__ = [
    "BIG",
    "DEFAULT_MAX_SIZE",
    "MODES",
    "READ_SIZE",
    "BytesLike",
    "Decoder",
    "DelimitedDecoder",
    "DelimitedEncoder",
    "Encoder",
    "FrameCodec",
    "LengthPrefixDecoder",
    "LengthPrefixEncoder",
    "NetstringDecoder",
    "NetstringEncoder",
    "RawDecoder",
    "RawEncoder",
    "decode_all",
    "encode_all",
    "make_codec",
]

BytesLike: TypeAlias = bytes | bytearray | memoryview

#: Largest message a decoder accepts unless told otherwise (16 MiB).
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
#: How much a driver asks the kernel for per read when no big body is pending.
READ_SIZE = 256 * 1024
#: Payloads of this size or more are written without a copy (encoders return
#: ``[header, payload]``) and read straight into their own buffer.
BIG = 64 * 1024

#: Names of the framing modes, as the ``framing=`` endpoint option spells them.
MODES = STREAM_FRAMINGS

_WIDTHS = {"len16": 2, "len32": 4, "len64": 8}
_STRUCTS = {2: struct.Struct("!H"), 4: struct.Struct("!I"), 8: struct.Struct("!Q")}


def _as_bytes(data: BytesLike) -> bytes:
    return data if type(data) is bytes else bytes(data)


# --------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------


class Encoder(ABC):
    """Turns one message into the bytes that carry it on a stream."""

    name: str = ""

    @abstractmethod
    def encode(self, msg: BytesLike) -> bytes | list[BytesLike]:
        """The frame for ``msg``: one ``bytes``, or buffers to write in order.

        Big payloads come back as ``[header, msg, trailer?]`` so the caller
        can hand them to ``sendmsg`` without copying them.
        """

    @abstractmethod
    def append(self, out: bytearray, msg: BytesLike) -> None:
        """Append the frame for ``msg`` to ``out`` (the coalescing send buffer)."""

    @abstractmethod
    def head(self, msg: BytesLike) -> tuple[bytes, bytes]:
        """``(header, trailer)`` that surround ``msg`` (for scatter-gather writes)."""


class LengthPrefixEncoder(Encoder):
    """A big-endian unsigned length of ``width`` bytes (2, 4 or 8), then the payload.

    ``pack(size)`` is the header of a ``size``-byte message and ``headers``
    the headers of sizes 0-255 made once (indexing a tuple beats calling
    ``struct.pack``): the public pieces a driver's hot path appends with.
    """

    def __init__(self, width: int = 4) -> None:
        if width not in _STRUCTS:
            raise ValueError(f"length prefix width must be 2, 4 or 8 bytes, not {width}")
        self.width = width
        self.name = f"len{width * 8}"
        self.pack = _STRUCTS[width].pack
        self.limit = (1 << (8 * width)) - 1
        self.headers = _small_headers(width)

    def _check(self, size: int) -> None:
        if size > self.limit:
            raise InvalidOperation(
                f"a {size}-byte message in {self.name} framing",
                f"{self.name} carries at most {self.limit} bytes per message; use len32 or len64",
            )

    def encode(self, msg: BytesLike) -> bytes | list[BytesLike]:
        size = len(msg)
        if size > 0xFFFF:
            self._check(size)
        if size >= BIG:
            return [self.pack(size), msg]
        return self.pack(size) + msg

    def append(self, out: bytearray, msg: BytesLike) -> None:
        size = len(msg)
        if size > 0xFFFF:
            self._check(size)
        out += self.pack(size)
        out += msg

    def head(self, msg: BytesLike) -> tuple[bytes, bytes]:
        self._check(len(msg))
        return self.pack(len(msg)), b""


@functools.cache
def _small_headers(width: int) -> tuple[bytes, ...]:
    pack = _STRUCTS[width].pack
    return tuple(pack(size) for size in range(256))


class NetstringEncoder(Encoder):
    """``<decimal length>:<payload>,`` (no leading zeros)."""

    name = "netstring"

    def encode(self, msg: BytesLike) -> bytes | list[BytesLike]:
        head = b"%d:" % len(msg)
        if len(msg) >= BIG:
            return [head, msg, b","]
        return head + msg + b","

    def append(self, out: bytearray, msg: BytesLike) -> None:
        out += b"%d:" % len(msg)
        out += msg
        out += b","

    def head(self, msg: BytesLike) -> tuple[bytes, bytes]:
        return b"%d:" % len(msg), b","


class DelimitedEncoder(Encoder):
    """The payload, then a delimiter byte it must not contain (line: ``\\n``, nul: ``\\0``)."""

    def __init__(self, delimiter: bytes, name: str) -> None:
        self.delimiter = delimiter
        self.name = name

    def _check(self, msg: BytesLike) -> None:
        if self.delimiter in msg:
            raise InvalidOperation(
                f"a message containing {self.delimiter!r} in {self.name} framing",
                f"{self.name} framing ends a message at the first {self.delimiter!r}; "
                "use len32 or netstring framing for arbitrary bytes",
            )

    def encode(self, msg: BytesLike) -> bytes | list[BytesLike]:
        self._check(msg)
        if len(msg) >= BIG:
            return [msg, self.delimiter]
        return bytes(msg) + self.delimiter

    def append(self, out: bytearray, msg: BytesLike) -> None:
        self._check(msg)
        out += msg
        out += self.delimiter

    def head(self, msg: BytesLike) -> tuple[bytes, bytes]:
        self._check(msg)
        return b"", self.delimiter


class RawEncoder(Encoder):
    """No framing: the bytes as they are (an empty message writes nothing)."""

    name = "none"

    def encode(self, msg: BytesLike) -> bytes | list[BytesLike]:
        return [msg] if len(msg) >= BIG else bytes(msg)

    def append(self, out: bytearray, msg: BytesLike) -> None:
        out += msg

    def head(self, msg: BytesLike) -> tuple[bytes, bytes]:
        return b"", b""


# --------------------------------------------------------------------------
# Decoders
# --------------------------------------------------------------------------


class Decoder(ABC):
    """Bytes in, whole messages out. ``feed(b"")`` is EOF."""

    name: str = ""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 0:
            raise ValueError("max_size must be 0 or more")
        self.max_size = max_size
        self._error: ProtocolError | None = None
        self._eof = False

    @abstractmethod
    def feed(self, data: BytesLike) -> list[bytes]:
        """Every message completed by ``data``; ``b""`` is EOF (raises inside a frame)."""

    def feed_into(self, data: BytesLike, append: Callable[[bytes], object]) -> None:
        """:meth:`feed`, each message handed to ``append`` (a driver's queue) in order."""
        for msg in self.feed(data):
            append(msg)

    def read_size(self) -> int:
        """How many bytes the driver should ask for next."""
        return READ_SIZE

    #: True when the next ``read_size()`` bytes are all one frame's body.
    exact = False
    #: ``read_size()`` as of the last ``feed``: a driver's hot loop reads this
    #: attribute instead of calling the method (the same number).
    want = READ_SIZE

    @property
    @abstractmethod
    def in_frame(self) -> bool:
        """True while part of a frame is buffered (EOF now would be an error)."""

    @property
    @abstractmethod
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""

    @property
    def at_eof(self) -> bool:
        return self._eof

    def _fail(self, error: ProtocolError) -> ProtocolError:
        self._error = error
        return error

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._eof:
            raise InvalidOperation(
                f"feed after EOF to a {self.name} decoder", "a new stream needs a new decoder"
            )

    def _eof_now(self) -> list[bytes]:
        if self._eof:
            return []
        if self.in_frame:
            raise self._fail(
                BadFrame(
                    f"EOF inside a {self.name} frame",
                    f"the peer stopped after {self.buffered} bytes of an unfinished message",
                )
            )
        self._eof = True
        return []


class _BodyDecoder(Decoder):
    """Shared by the length-prefix and netstring decoders: header, body, trailer.

    States: HEADER (``_tail`` holds the start of a header cut by a read: a
    few bytes) and BODY (``_need`` >= 0: the body of a frame whose header
    is complete arrives; ``_have`` bytes so far). A body's first piece is
    kept as it came (a big body read whole by ``recv(n, MSG_WAITALL)`` *is*
    the message, no copy); later pieces are appended to one ``bytearray``,
    so a frame trickled in tiny reads costs its own size, not an object per
    read. Parsing takes offsets into the read, never slices of what is left.
    """

    trailer = b""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__(max_size)
        self._tail = b""
        self._need = -1  # body bytes of the frame being collected; -1: none
        self._have = 0
        self._head = 0  # its header's size
        self._first = b""  # its first piece
        self._acc: bytearray | None = None  # and the rest, appended in place
        self._header_only = False  # after a big frame: read one header next

    @property
    def in_frame(self) -> bool:
        return bool(self._tail) or self._need >= 0

    @property
    def buffered(self) -> int:
        return len(self._tail) + (self._head + self._have if self._need >= 0 else 0)

    def read_size(self) -> int:
        if self.exact:
            return self._need - self._have + len(self.trailer)
        if self._header_only and not self._tail:
            return self._min_header
        return READ_SIZE

    _min_header = 1

    def feed(self, data: BytesLike) -> list[bytes]:
        if self._error is not None:
            raise self._error
        if not data:
            return self._eof_now()
        if self._eof:
            self._check_usable()
        if type(data) is not bytes:
            data = bytes(data)
        out: list[bytes] = []
        start = 0
        if self._need >= 0:
            start = self._body(data, 0, out)
            if self._need >= 0 or start == len(data):
                self.want = self.read_size()
                return out
        elif self._tail:
            data = self._tail + data  # a cut header: a few bytes in front of this read
            self._tail = b""
        self._parse(data, start, out)
        self.want = self.read_size()
        return out

    def _body(self, data: bytes, start: int, out: list[bytes]) -> int:
        """Take the pending body (and trailer) from ``data[start:]``; the offset after it."""
        end = len(data)
        want = self._need - self._have
        if want > 0:
            stop = start + want if want < end - start else end
            piece = data if start == 0 and stop == end else data[start:stop]
            if not self._have:
                self._first = piece
            elif self._acc is None:
                self._acc = bytearray(self._first)
                self._acc += piece
                self._first = b""
            else:
                self._acc += piece
            self._have += stop - start
            start = stop
            if self._have < self._need:
                return end
        trailer = self.trailer
        if trailer:
            if start >= end:
                return end  # the body is whole; its trailer comes with the next read
            if data[start] != trailer[0]:
                raise self._fail(
                    BadFrame(
                        f"{self.name} frame not closed by {trailer!r}",
                        f"got {data[start : start + 1]!r} after a {self._need}-byte payload",
                    )
                )
            start += 1
        acc = self._acc
        out.append(self._first if acc is None else bytes(acc))
        self._header_only = self.exact
        self._first = b""
        self._acc = None
        self._need = -1
        self._have = 0
        self.exact = False
        return start

    def _start_body(self, data: bytes, head: int, body: int, size: int, out: list[bytes]) -> None:
        """The header at ``data[head:body]`` declared ``size`` bytes, not all in ``data``."""
        self._need = size
        self._head = body - head
        self._have = 0
        self.exact = size >= BIG
        self._body(data, body, out)

    def _parse(self, data: bytes, start: int, out: list[bytes]) -> None:
        raise NotImplementedError


class LengthPrefixDecoder(_BodyDecoder):
    """Big-endian length of ``width`` bytes, then that many payload bytes."""

    def __init__(self, width: int = 4, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if width not in _STRUCTS:
            raise ValueError(f"length prefix width must be 2, 4 or 8 bytes, not {width}")
        super().__init__(max_size)
        self.width = width
        self._min_header = width
        self.name = f"len{width * 8}"
        self._unpack_from = _STRUCTS[width].unpack_from

    def _too_large(self, size: int) -> FrameTooLarge:
        return FrameTooLarge(
            f"a {self.name} frame declares {size} bytes",
            f"over this receiver's max_size of {self.max_size} bytes; the sender is broken "
            "or hostile (raise max_size if such messages are expected)",
        )

    def feed(self, data: BytesLike) -> list[bytes]:
        out: list[bytes] = []
        self.feed_into(data, out.append)
        return out

    def feed_into(self, data: BytesLike, append: Callable[[bytes], object]) -> None:
        # The hot path: _BodyDecoder.feed with the parse loop inline, one
        # Python call per read however many frames it holds. One unpack and
        # one slice per message; a header cut short raises struct.error:
        # rare (the read ended inside a header), and cheaper than a second
        # length test per message.
        if self._error is not None:
            raise self._error
        if not data:
            self._eof_now()
            return
        if self._eof:
            self._check_usable()
        if type(data) is not bytes:
            data = bytes(data)
        start = 0
        if self._need >= 0:
            out: list[bytes] = []
            start = self._body(data, 0, out)
            if out:
                append(out[0])
            if self._need >= 0 or start == len(data):
                self.want = self.read_size()
                return
        elif self._tail:
            data = self._tail + data  # a cut header: a few bytes in front of this read
            self._tail = b""
        width = self.width
        unpack_from = self._unpack_from
        max_size = self.max_size
        end = len(data)
        size = 0
        body = start
        self._header_only = False
        try:
            while start < end:
                (size,) = unpack_from(data, start)
                body = start + width
                stop = body + size
                if stop > end or size > max_size:
                    break
                append(data[body:stop])
                start = stop
        except struct.error:
            self._tail = data[start:]  # fewer than `width` bytes: a cut header
            self.want = READ_SIZE
            return
        if start < end:
            if size > max_size:
                raise self._fail(self._too_large(size))
            out = []
            self._start_body(data, start, body, size, out)
            for msg in out:
                append(msg)
            self.want = self.read_size()
            return
        self.want = READ_SIZE


class NetstringDecoder(_BodyDecoder):
    """``<length>:<payload>,``; leading zeros and non-digits are refused."""

    name = "netstring"
    trailer = b","

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__(max_size)
        self._digits = len(str(max_size))
        self._min_header = 2

    def _parse(self, data: bytes, start: int, out: list[bytes]) -> None:
        end = len(data)
        max_size = self.max_size
        digits = self._digits
        self._header_only = False
        while start < end:
            colon = data.find(b":", start, start + digits + 1)
            if colon < 0:
                head = data[start : start + digits + 1]
                if not head.isdigit() or (len(head) > 1 and head[:1] == b"0"):
                    self._bad_length(head)
                if len(head) > digits:
                    raise self._fail(
                        FrameTooLarge(
                            f"a netstring length of more than {digits} digits",
                            f"over this receiver's max_size of {max_size} bytes",
                        )
                    )
                self._tail = data[start:]  # the header is not complete yet
                return
            head = data[start:colon]
            if not head.isdigit() or (len(head) > 1 and head[:1] == b"0"):
                self._bad_length(head)
            size = int(head)
            if size > max_size:
                raise self._fail(
                    FrameTooLarge(
                        f"a netstring declares {size} bytes",
                        f"over this receiver's max_size of {max_size} bytes",
                    )
                )
            body = colon + 1
            stop = body + size
            if stop >= end:
                self._start_body(data, start, body, size, out)
                return
            if data[stop] != 0x2C:  # ","
                raise self._fail(
                    BadFrame(
                        "netstring frame not closed by b','",
                        f"got {data[stop : stop + 1]!r} after a {size}-byte payload",
                    )
                )
            out.append(data[body:stop])
            start = stop + 1

    def _bad_length(self, head: bytes) -> None:
        raise self._fail(
            BadFrame(
                f"bad netstring length {head[:24]!r}",
                "a netstring starts with a decimal length without leading zeros, then ':'",
            )
        )


class DelimitedDecoder(Decoder):
    """Messages end at a delimiter byte; a frame longer than ``max_size`` is refused.

    The incomplete tail is appended to one ``bytearray`` and only new data is
    searched, so a long frame fed one byte at a time costs linear time and
    its own size in memory.
    """

    def __init__(self, delimiter: bytes, name: str, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if len(delimiter) != 1:
            raise ValueError("the delimiter is one byte")
        super().__init__(max_size)
        self.delimiter = delimiter
        self.name = name
        self._acc = bytearray()

    @property
    def in_frame(self) -> bool:
        return bool(self._acc)

    @property
    def buffered(self) -> int:
        return len(self._acc)

    def feed(self, data: BytesLike) -> list[bytes]:
        if self._error is not None:
            raise self._error
        if not data:
            return self._eof_now()
        if self._eof:
            self._check_usable()
        data = _as_bytes(data)
        out: list[bytes] = []
        delim = self.delimiter
        max_size = self.max_size
        start = 0
        end = len(data)
        found = data.find(delim)
        acc = self._acc
        if found >= 0 and acc:
            self._check_size(len(acc) + found)
            acc += memoryview(data)[:found]
            out.append(bytes(acc))
            self._acc = acc = bytearray()
            start = found + 1
            found = data.find(delim, start)
        while found >= 0:
            if found - start > max_size:
                self._check_size(found - start)
            out.append(data[start:found])
            start = found + 1
            found = data.find(delim, start)
        if start < end:
            self._check_size(len(acc) + end - start)
            acc += memoryview(data)[start:]
        return out

    def _check_size(self, size: int) -> None:
        if size > self.max_size:
            raise self._fail(
                FrameTooLarge(
                    f"a {self.name} frame of more than {self.max_size} bytes",
                    f"no {self.delimiter!r} within this receiver's max_size; the sender "
                    "is broken or hostile (raise max_size if such messages are expected)",
                )
            )


class RawDecoder(Decoder):
    """No framing: every non-empty chunk is a message; EOF is always clean."""

    name = "none"

    @property
    def in_frame(self) -> bool:
        return False

    @property
    def buffered(self) -> int:
        return 0

    def feed(self, data: BytesLike) -> list[bytes]:
        if self._error is not None:
            raise self._error
        if not data:
            return self._eof_now()
        if self._eof:
            self._check_usable()
        return [_as_bytes(data)]

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__(max_size)
        self.want = self.read_size()

    def read_size(self) -> int:
        return min(READ_SIZE, max(1, self.max_size))


# --------------------------------------------------------------------------
# The factory the Channel and the CLI use
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameCodec:
    """An encoder and a decoder of one framing mode."""

    name: str
    encoder: Encoder
    decoder: Decoder


def make_codec(name: str = "len32", *, max_size: int = DEFAULT_MAX_SIZE) -> FrameCodec:
    """The encoder and decoder of framing mode ``name`` (one of :data:`MODES`)."""
    lowered = name.lower()
    encoder: Encoder
    decoder: Decoder
    if lowered in _WIDTHS:
        width = _WIDTHS[lowered]
        encoder, decoder = LengthPrefixEncoder(width), LengthPrefixDecoder(width, max_size)
    elif lowered == "netstring":
        encoder, decoder = NetstringEncoder(), NetstringDecoder(max_size)
    elif lowered == "line":
        encoder = DelimitedEncoder(b"\n", "line")
        decoder = DelimitedDecoder(b"\n", "line", max_size)
    elif lowered == "nul":
        encoder = DelimitedEncoder(b"\0", "nul")
        decoder = DelimitedDecoder(b"\0", "nul", max_size)
    elif lowered == "none":
        encoder, decoder = RawEncoder(), RawDecoder(max_size)
    else:
        raise AddressError(
            f"unknown framing {name!r}",
            "valid framings: " + ", ".join(MODES),
            part=name,
            valid=MODES,
        )
    return FrameCodec(lowered, encoder, decoder)


def encode_all(encoder: Encoder, messages: list[bytes]) -> bytes:
    """All frames of ``messages`` as one ``bytes`` (tests, small tools)."""
    out = bytearray()
    for msg in messages:
        encoder.append(out, msg)
    return bytes(out)


def decode_all(decoder: Decoder, data: BytesLike) -> list[bytes]:
    """Every message in ``data`` followed by EOF (raises on a cut-short frame)."""
    return decoder.feed(data) + decoder.feed(b"")
