"""The copy engine behind ``listen``, ``connect``, ``relay`` and ``echo``.

One thread runs one poll(2) loop over every descriptor: listening sockets,
connections, stdin and stdout. Why one thread rather than two per
connection:

* stdin cannot be interrupted in a thread blocked in read(); in one loop it
  is just another descriptor, and ending means closing, not cancelling.
* Signals land in the loop's own thread: SIGUSR1 (print the counts) wakes
  poll through ``signal.set_wakeup_fd``; SIGINT/SIGTERM unwind it with
  ``finally`` blocks that close sockets and remove socket files.
* Half-close is a state of a direction (:class:`Flow`), not a thread's
  death, so its order is deterministic and testable.
* Throughput does not need a second thread: between two stream sockets,
  when nobody watches (no --trace/--hex/--json/--peek/--send-flags), a
  direction moves up to :data:`SPLICE_ROUNDS` chunks per poll(2) wakeup,
  toward a UNIX socket with splice(2) through a kernel pipe of up to 1 MiB,
  toward TCP with recv_into + send on the raw sockets through a 1 MiB
  buffer (why not splice there: ``relay_cmd.splice_into``). Otherwise one
  reused buffer per direction through the Socket wrappers, which trace.
  (A reader thread and a writer thread per direction were measured too:
  no faster than this, on 2 cores shared with the two ends.)

Bounds: each direction holds one buffer (``--bufsize``; 1 MiB on the
fast path), one pipe, or one
turn's worth of messages: up to :data:`BATCH` receives or ``--bufsize``
bytes (many small messages per poll(2); a framed destination gets them as
one batch of frames, one send(2)). A source is not read while its direction has
something pending, so a slow reader slows its writer (backpressure), never
memory. Every socket in the loop is non-blocking; stdin/stdout are left as
they are (they may be shared with the shell) and used only when poll says so.

Platform notes:

* splice(2) needs a pipe on one side; SPLICE_F_NONBLOCK makes the pipe side
  non-blocking and O_NONBLOCK on the socket the socket side. A pipe larger
  than 64 KiB needs F_SETPIPE_SZ (capped by /proc/sys/fs/pipe-max-size for
  non-root; we fall back to the default size when refused).
* A SEQPACKET recv of 0 bytes is EOF *or* an empty message. With
  SO_PASSCRED on, every packet (an empty one too) arrives with
  SCM_CREDENTIALS and EOF with none, so UNIX seqpacket ends tell them apart
  (:meth:`sockwire.sock.Socket.tell_empty_from_eof`); with the sockwire
  packet header every packet has a header byte, so 0 bytes is EOF.
* A UNIX datagram sender that never bound a name cannot be answered; such
  senders show as ``unnamed`` and replies to them are dropped and counted.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import fcntl
import os
import select
import signal
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .. import trace
from ..errors import (
    ConnectionLost,
    FrameTooLarge,
    InvalidOperation,
    SockwireError,
    TimeoutError,
    WouldBlock,
    translate,
)
from ..flags import MsgFlag
from ..sock import Address, Peer, Socket, format_address
from .observe import Observer, flush_limited, limited_due, say
from .options import IoOptions

if TYPE_CHECKING:
    from ..framing import BytesLike, Decoder, FrameCodec
    from ..packet import PacketCodec
    from .admit import Gate

__all__ = [
    "Acceptor",
    "Conn",
    "DatagramEcho",
    "DatagramRelay",
    "End",
    "Flow",
    "Item",
    "Loop",
    "Stats",
    "StdinHub",
    "deferred_signals",
    "feed",
    "handled_signals",
    "is_message",
    "labelled",
    "to_crlf",
]

_IN = select.POLLIN | select.POLLPRI
_OUT = select.POLLOUT
_TROUBLE = select.POLLERR | select.POLLHUP | select.POLLNVAL
_MESSAGE_TYPES = frozenset({socket.SOCK_DGRAM, socket.SOCK_SEQPACKET, socket.SOCK_RAW})
_DATAGRAM_TYPES = frozenset({socket.SOCK_DGRAM, socket.SOCK_RAW})
PIPE_SIZE = 1024 * 1024
#: pipes' worth one splice turn may move before the loop polls again (fairness bound)
SPLICE_ROUNDS = 16
#: the buffer of an unwatched byte stream copied with read + send (as big as a pipe)
FAST_BUFFER = PIPE_SIZE
#: Messages received, or framed and sent, per turn of the loop (bounded batches).
BATCH = 64
#: Connections one listener accepts per turn of the loop: a burst of clients (or of
#: evictions for waiting clients) does not cost a poll(2) each; bounded, so a
#: server may hold this many more than --max-clients until its evicted ones close
ACCEPT_BATCH = 16
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


def labelled(label: str, exc: SockwireError) -> str:
    """``label: error`` for a server's report line, the label said once.

    An error raised about this connection already names it in its ``what``
    (a Conn's idle timeout, a tunnel's TLS handshake); prefixing it again gave
    lines like ``A -> B: A -> B (ETIMEDOUT): ...``.
    """
    return str(exc) if label in exc.what else f"{label}: {exc}"


def to_crlf(data: bytes, after_cr: bool) -> bytes:
    """Every LF as CRLF, an existing CRLF kept (nc -C); ``after_cr``: the last read ended in CR."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if after_cr and data.startswith(b"\n"):
        out = out[1:]  # that LF's CR came at the end of the previous read
    return out


def is_message(sock_type: int) -> bool:
    return sock_type in _MESSAGE_TYPES


@dataclass(slots=True)
class Item:
    """One message in flight, with its sender (None: unnamed or not a socket)."""

    data: bytes
    address: Address | None = None
    flags: MsgFlag = MsgFlag.NONE
    eof: bool = False  # not a message: the source ended (a framed stream can carry b"")


@dataclass
class Stats:
    """Counts per direction name (``a->b``), for the summary and SIGUSR1."""

    connections: int = 0
    open: int = 0
    bytes: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    dropped: int = 0
    #: closed by the fail-safe policy (:mod:`.admit`): for a newcomer, silent from accept, idle
    evicted: int = 0
    no_first_bytes: int = 0
    idle_closed: int = 0

    def add(self, direction: str, nbytes: int, messages: int = 0) -> None:
        self.bytes[direction] = self.bytes.get(direction, 0) + nbytes
        if messages:
            self.messages[direction] = self.messages.get(direction, 0) + messages

    def to_dict(self) -> dict[str, object]:
        """The counts as the JSON ``summary`` event carries them."""
        return {
            "connections": self.connections,
            "open": self.open,
            "bytes": dict(self.bytes),
            "messages": dict(self.messages),
            "truncated": self.truncated,
            "dropped": self.dropped,
            "evicted": self.evicted,
            "no_first_bytes": self.no_first_bytes,
            "idle_closed": self.idle_closed,
        }

    def summary(self) -> str:
        parts = [f"{self.connections} connections ({self.open} open)"]
        for direction in sorted(set(self.bytes) | set(self.messages)):
            text = f"{direction} {self.bytes.get(direction, 0)} bytes"
            if direction in self.messages:
                text += f" in {self.messages[direction]} messages"
            parts.append(text)
        if self.truncated:
            parts.append(f"{self.truncated} truncated")
        if self.dropped:
            parts.append(f"{self.dropped} dropped")
        if self.evicted:
            parts.append(f"{self.evicted} evicted for newcomers")
        if self.no_first_bytes:
            parts.append(f"{self.no_first_bytes} closed without first bytes")
        if self.idle_closed:
            parts.append(f"{self.idle_closed} closed idle")
        return "; ".join(parts)


def feed(decoder: Decoder, data: bytes, source: str, bufsize: int) -> list[bytes]:
    """``decoder.feed(data)``, its FrameTooLarge said in the command line's terms (--bufsize)."""
    try:
        return decoder.feed(data)  # b"" is EOF; inside a frame that is BadFrame
    except FrameTooLarge as exc:
        raise FrameTooLarge(
            f"{exc.what} from {source}",
            f"over --bufsize ({bufsize} bytes), the largest frame accepted; raise --bufsize "
            "if such messages are expected",
        ) from exc


class End:
    """One side of a direction: a non-blocking Socket, or a plain fd (stdin/stdout).

    ``framing`` (a mode of :mod:`sockwire.framing` other than ``none``) makes a
    byte stream carry messages: received bytes go through the mode's sans-IO
    decoder (its ``max_size`` is ``--bufsize``: a longer declared frame is a
    FrameTooLarge error, never an allocation), and each message sent is
    encoded into one frame. A frame only partly written when the socket's
    buffer fills is finished by the next ``send_item`` of the same item.
    On a seqpacket or datagram socket, framing ``sockwire`` adds the sockwire
    packet header (:mod:`sockwire.packet`): fragments are joined, datagram
    sequence numbers counted; the packets of a message only partly sent are
    finished by the next ``send_item`` of the same item.
    ``line_end``: on a plain fd (stdout), write each message followed by a
    newline; ``strip_line_ends``: stdin lines lose their line end before
    they become frames (the newline separated them; it is not content).
    ``pty``: the fd is a non-blocking pseudo-terminal master (``--pty``),
    whose read fails with EIO once the program's side is closed: its EOF.
    """

    def __init__(
        self,
        name: str,
        *,
        sock: Socket | None = None,
        fd: int | None = None,
        opts: IoOptions,
        creds: bool = False,
        framing: str = "none",
        line_end: bool = False,
        pty: bool = False,
    ) -> None:
        self.name = name
        self.sock = sock
        self.opts = opts
        self.line_end = line_end
        self.pty = pty
        self.codec: FrameCodec | None = None
        self.packets: PacketCodec | None = None
        #: a zero-length seqpacket read is told from EOF by its credentials
        self.marks = False
        if sock is not None:
            self.fd = sock.fd
            self.message = sock.type in _MESSAGE_TYPES
            self.datagram = sock.type in _DATAGRAM_TYPES
            if framing == "none":
                self.marks = sock.tell_empty_from_eof()
            if framing != "none" and self.message:
                from ..packet import MAX_PACKET, make_packet_codec

                self.packets = make_packet_codec(
                    "seqpacket" if sock.type == socket.SOCK_SEQPACKET else "dgram",
                    framing,
                    max_size=opts.bufsize,
                    packet_limit=sock.packet_limit() or MAX_PACKET,
                )
            elif framing != "none":
                from ..framing import make_codec

                self.codec = make_codec(framing, max_size=opts.bufsize)
                self.message = True
        else:
            assert fd is not None
            self.fd = fd
            self.message = False
            self.datagram = False
        self.framed = self.codec is not None
        self.strip_line_ends = False
        self.creds = creds
        #: for an unconnected datagram socket: where send_item sends (the last sender)
        self.reply_to: Address | None = None
        self.needs_reply_to = False
        self._rbuf: bytearray | None = None
        # frames being written: (the first item, how many items, their bytes, bytes sent)
        self._tx: tuple[Item, int, memoryview, int] | None = None
        # packets of one message being sent: (the item, its packets, how many are sent)
        self._ptx: tuple[Item, list[list[BytesLike]], int] | None = None

    @property
    def family(self) -> int:
        return self.sock.family if self.sock is not None else socket.AF_UNSPEC

    # ---- bytes

    def read_into(self, view: memoryview) -> int | None:
        """Bytes into ``view``: the count, 0 at EOF, None when nothing is ready."""
        if self.sock is None:
            try:
                return os.readv(self.fd, [view])
            except BlockingIOError:  # a non-blocking fd (a pty master)
                return None
            except OSError as exc:
                if self.pty and exc.errno == _errno.EIO:
                    return 0  # Linux: the slave side has no user left
                raise
        try:
            if self.opts.peek:
                self.sock.recv(len(view), MsgFlag.PEEK)
            return self.sock.recv_into(view)
        except WouldBlock:
            return None

    def write(self, view: memoryview) -> int | None:
        """Send what fits: the count, or None when the socket's buffer is full."""
        if self.sock is None:
            try:
                return os.write(self.fd, view)
            except BlockingIOError:  # a non-blocking fd (a pty master) is full
                return None
        try:
            return self.sock.send(view, self.opts.send_flags)  # type: ignore[arg-type]
        except WouldBlock:
            return None

    # ---- messages

    def recv_item(self, bufsize: int, stats: Stats | None) -> Item | None:
        """One message; None when nothing is ready (or a packet completed no message yet).

        The end of a seqpacket connection is ``Item(b"", eof=True)``: a
        zero-length read without credentials on a UNIX seqpacket socket (an
        empty message has them), any zero-length read elsewhere (see the
        module's platform notes).
        """
        assert self.sock is not None
        if self._rbuf is None or len(self._rbuf) < bufsize:
            self._rbuf = bytearray(bufsize)  # one per End, reused: not one per message
        try:
            if self.opts.peek:
                self.sock.recvmsg(bufsize, flags=MsgFlag.PEEK, buffer=self._rbuf)
            msg = self.sock.recvmsg(bufsize, creds=self.creds or self.marks, buffer=self._rbuf)
        except WouldBlock:
            return None
        if not msg.size and not self.datagram and not (self.marks and msg.creds is not None):
            return Item(b"", msg.address, msg.flags, eof=True)
        if msg.truncated:
            if stats is not None:
                stats.truncated += 1
            say(
                "truncated",
                f"fd={self.fd}",
                f"message of {msg.size} bytes cut to {len(msg.data)} (MSG_TRUNC);",
                "raise --bufsize",
            )
        packets = self.packets
        if packets is None:
            return Item(msg.data, msg.address, msg.flags)
        lost = packets.stats.lost
        data = packets.decode(memoryview(msg.data), msg.size, msg.address)
        if packets.stats.lost != lost:
            say("lost", f"{packets.stats.lost} datagrams missing so far (sequence numbers)")
        if data is None:
            return None  # a fragment, or a datagram without a valid header (counted)
        return Item(data, msg.address, msg.flags)

    def recv_items(self, bufsize: int, stats: Stats | None) -> list[Item] | None:
        """What one receive gives: messages (maybe none yet), or an ``eof`` Item; None
        when nothing is ready.

        A framed stream may give several messages at once (one read's worth:
        the bound), or none while a frame is incomplete.
        """
        if self.codec is None:
            item = self.recv_item(bufsize, stats)
            return None if item is None else [item]
        assert self.sock is not None
        decoder = self.codec.decoder
        try:
            data = self.sock.recv(min(decoder.read_size(), bufsize + 16))
        except WouldBlock:
            return None
        items = [Item(message) for message in feed(decoder, data, self.name, bufsize)]
        if not data:
            items.append(Item(b"", eof=True))
        return items

    def send_item(self, item: Item) -> bool:
        """Send one message (or write it to a plain fd); False when it would block."""
        if self.sock is None:
            data = item.data + b"\n" if self.line_end else item.data
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
            return True
        if self.codec is not None:
            return self._send_frame(item)
        if self.packets is not None:
            return self._send_packets(item)
        try:
            if self.needs_reply_to:
                assert self.reply_to is not None
                self.sock.sendto(item.data, self.reply_to, self.opts.send_flags)
            else:
                self.sock.send(item.data, self.opts.send_flags)
        except WouldBlock:
            return False
        return True

    def _send_frame(self, item: Item) -> bool:
        return self.send_frames([item]) == 1

    def _send_packets(self, item: Item) -> bool:
        """The sockwire packets of ``item``, one sendmsg each; False when the socket filled."""
        from ..packet import DatagramCodec

        assert self.sock is not None
        codec = self.packets
        assert codec is not None
        to = self.reply_to if self.needs_reply_to else None
        if self._ptx is None or self._ptx[0] is not item:
            if to is not None and isinstance(codec, DatagramCodec):
                packets = [codec.encode_to(item.data, to)]
            else:
                packets = codec.encode(item.data)
            self._ptx = (item, packets, 0)
        _, packets, done = self._ptx
        while done < len(packets):
            try:
                self.sock.sendmsg(packets[done], flags=self.opts.send_flags, address=to)
            except WouldBlock:
                self._ptx = (item, packets, done)
                return False
            done += 1
        self._ptx = None
        return True

    def send_frames(self, queue: Sequence[Item]) -> int:
        """Frames for the messages at the head of ``queue``, written as one batch.

        Returns how many messages are now fully sent, 0 when the socket filled
        up first: the rest of the batch goes out on the next call (with the
        same head). A batch is at most :data:`BATCH` messages or about
        ``--bufsize`` bytes, encoded into one buffer: one send(2) for many
        small messages.
        """
        assert self.sock is not None
        assert self.codec is not None
        if self._tx is None or self._tx[0] is not queue[0]:
            out = bytearray()
            count = 0
            for item in queue:
                if count and (count >= BATCH or len(out) >= self.opts.bufsize):
                    break
                data = item.data
                if self.strip_line_ends:
                    data = data.rstrip(b"\r\n") if data.endswith(b"\n") else data.rstrip(b"\r")
                self.codec.encoder.append(out, data)
                count += 1
            self._tx = (queue[0], count, memoryview(out), 0)
        first, count, view, sent = self._tx
        while sent < len(view):
            try:
                sent += self.sock.send(view[sent:], self.opts.send_flags)  # type: ignore[arg-type]
            except WouldBlock:
                self._tx = (first, count, view, sent)
                return 0
        self._tx = None
        return count

    def shutdown_write(self) -> None:
        """Tell the peer we are done (SHUT_WR); plain fds and datagrams have no such thing.

        A terminal (``pty``) gets its EOF character (VEOF, ^D unless changed):
        a program reading lines in canonical mode reads its end, as at a
        keyboard. A program in raw mode sees one byte; it ends at our close.
        """
        if self.pty:
            import termios

            with contextlib.suppress(OSError):  # a gone terminal needs no EOF
                os.write(self.fd, termios.tcgetattr(self.fd)[6][termios.VEOF])
            say("eof", "pty", "sent VEOF")
            return
        if self.sock is None or self.datagram or self.sock.closed:
            return
        with contextlib.suppress(ConnectionLost, InvalidOperation):
            self.sock.shutdown(socket.SHUT_WR)  # ENOTCONN: the peer is already gone

    def sender_text(self, address: Address | None) -> str:
        return format_address(self.family, address)


class _Pipe:
    """The kernel pipe one splice direction moves its bytes through."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # EPERM over pipe-max-size for non-root: keep the default size
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.w, _F_SETPIPE_SZ, PIPE_SIZE)
        self.size = fcntl.fcntl(self.w, getattr(fcntl, "F_GETPIPE_SZ", 1032))

    def close(self) -> None:
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


class Flow:
    """One direction, ``src`` to ``dst``, through one bounded buffer.

    ``src`` None means the flow is fed by a :class:`StdinHub`. On the
    source's EOF, once everything is delivered, ``on_eof`` runs:
    ``"shutdown"`` sends SHUT_WR to ``dst`` (half-close), ``"close"`` ends the
    whole connection, ``"none"`` does nothing (stdout stays open).
    """

    def __init__(
        self,
        src: End | None,
        dst: End,
        opts: IoOptions,
        *,
        direction: str,
        stats: Stats,
        message: bool,
        on_eof: str = "shutdown",
        required: bool = True,
        on_item: Callable[[Item], None] | None = None,
        use_splice: bool = False,
        fast: bool = False,
    ) -> None:
        self.src = src
        self.dst = dst
        self.opts = opts
        self.direction = direction
        self.stats = stats
        self.message = message
        self.on_eof = on_eof
        self.required = required
        self.on_item = on_item
        self.src_eof = False
        #: when the source's EOF was seen (for --quit-after)
        self.eof_at: float | None = None
        self.finished = False
        self.discard = False  # count what arrives, deliver nothing (nobody to deliver to)
        self.close_all = False  # set when on_eof == "close" fires
        self.count_bytes = 0
        self.count_messages = 0
        #: when data last moved: a read that returned some, a write that made progress
        self.activity = time.monotonic()
        self._queue: deque[Item] = deque()
        self._pipe: _Pipe | None = _Pipe() if use_splice else None
        #: nobody watches this byte stream: raw socket calls (see _raw_copy_turn)
        self.fast = fast and not message
        self._piped = 0
        if self._pipe is None and not message:
            # the fast copy moves bigger chunks: fewer calls per byte (measured:
            # 1 MiB 1.06x socat -b 262144, 256 KiB 0.92x); the bound is the pipe's
            size = max(opts.bufsize, FAST_BUFFER) if self.fast else opts.bufsize
            self._buf = bytearray(size)
            self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    # ---- state

    @property
    def pending(self) -> bool:
        if self.message:
            return bool(self._queue)
        if self._pipe is not None:
            return self._piped > 0
        return self._start < self._end

    def _can_send(self) -> bool:
        return not self.dst.needs_reply_to or self.dst.reply_to is not None

    def interest(self) -> list[tuple[int, int]]:
        if self.finished:
            return []
        wants = []
        if self.src is not None and not self.src_eof and not self.pending:
            wants.append((self.src.fd, _IN))
        if self.pending and self._can_send():
            wants.append((self.dst.fd, _OUT))
        return wants

    def ready(self, fd: int, revents: int) -> None:
        if self.finished:
            return
        src = self.src
        if (
            src is not None
            and fd == src.fd
            and revents & (_IN | _TROUBLE)
            and not self.src_eof
            and not self.pending
        ):
            self.fill()
        if fd == self.dst.fd and revents & (_OUT | _TROUBLE) and self.pending:
            self.drain()

    # ---- fed by the hub

    def push(self, data: bytes) -> None:
        """Bytes from the hub; it only pushes when nothing is pending (room is certain)."""
        self._start, self._end = 0, len(data)
        self._buf[: len(data)] = data
        self._moved(len(data))
        self.drain()

    def push_items(self, items: list[Item]) -> None:
        for item in items:
            self._received(item)
        self._queue.extend(items)
        self.drain()

    def push_eof(self) -> None:
        self.src_eof = True
        self.eof_at = time.monotonic()
        self.drain()

    # ---- moving

    def fill(self) -> None:
        src = self.src
        assert src is not None
        if self.message:
            # up to BATCH receives (or --bufsize bytes) per turn of the loop: one
            # poll(2) for many small messages; the bound on what waits in the queue
            size = 0
            for _ in range(BATCH):
                items = src.recv_items(self.opts.bufsize, self.stats)
                if items is None:
                    break
                for item in items:
                    if item.eof:
                        self._eof()
                        break
                    self._received(item)
                    size += len(item.data)
                    if not self.discard:
                        self._queue.append(item)
                if self.src_eof or size >= self.opts.bufsize:
                    break
        elif self._pipe is not None:
            self._splice_turn(src, self._pipe)
            return
        else:
            self._copy_turn(src)
            return
        self.drain()

    def _copy_turn(self, src: End) -> None:
        """Read into the buffer and write it out, again while both sides keep up (as
        :meth:`_splice_turn`): up to :data:`SPLICE_ROUNDS` buffers per poll(2) wakeup."""
        if self.fast and src.sock is not None and self.dst.sock is not None:
            self._raw_copy_turn(src.sock, self.dst.sock)
            return
        for _ in range(SPLICE_ROUNDS):
            self._start = self._end = 0
            got = src.read_into(self._view)
            if got is None:
                return
            if got == 0:
                self._eof()
                self.drain()
                return
            self._end = got
            self._moved(got)
            self.drain()
            if self._start < self._end or self.finished or src.sock is None:
                return  # the destination is full (or a plain fd: one read per poll)

    def _raw_copy_turn(self, src: Socket, dst: Socket) -> None:
        """:meth:`_copy_turn` on the raw sockets: nobody watches (no trace, no flags,
        no peek), so no Socket wrapper per call; errors are translated here, the
        hot path's own boundary (as the Channel's fast path does)."""
        rs, ws, view = src.raw, dst.raw, self._view
        nosignal = socket.MSG_NOSIGNAL
        for _ in range(SPLICE_ROUNDS):
            try:
                got = rs.recv_into(view)
            except BlockingIOError:
                return
            except OSError as exc:
                raise translate(exc, "recv_into", src.label, family=src.family) from exc
            if not got:
                self._eof()
                self.drain()
                return
            self._moved(got)
            sent = 0
            while sent < got:
                try:
                    sent += ws.send(view[sent:got], nosignal)
                except BlockingIOError:
                    self._start, self._end = sent, got  # the rest: drain() at POLLOUT
                    return
                except OSError as exc:
                    raise translate(exc, "send", dst.label, family=dst.family) from exc
            self._start = self._end = 0

    def _splice_turn(self, src: End, pipe: _Pipe) -> None:
        """In and out through the pipe, again while both sides keep up: one poll(2)
        wakeup moves up to :data:`SPLICE_ROUNDS` pipes' worth, not one.

        Stops when the source has nothing (EAGAIN), at its EOF, or when the
        destination cannot take the whole pipe (its POLLOUT resumes it): the
        pipe is the only buffer, and it is never refilled before it is empty.
        """
        for _ in range(SPLICE_ROUNDS):
            try:
                count = os.splice(src.fd, pipe.w, pipe.size - self._piped, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                return
            except OSError as exc:
                raise translate(exc, "splice", src.name) from exc
            if count == 0:
                self._eof()
                self.drain()
                return
            self._piped += count
            self._moved(count)
            self.drain()
            if self._piped:
                return  # the destination is full: wait for its POLLOUT

    def drain(self) -> None:
        if self.message and self.dst.framed:
            while self._queue:
                done = self.dst.send_frames(self._queue)
                if not done:
                    return
                for _ in range(done):
                    self._queue.popleft()
                self.activity = time.monotonic()
        elif self.message:
            while self._queue and self._can_send():
                if not self.dst.send_item(self._queue[0]):
                    return
                self._queue.popleft()
                self.activity = time.monotonic()
        elif self._pipe is not None:
            while self._piped:
                try:
                    sent = os.splice(self._pipe.r, self.dst.fd, self._piped, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    return
                except OSError as exc:
                    raise translate(exc, "splice", self.dst.name) from exc
                self._piped -= sent
                self.activity = time.monotonic()
        else:
            while self._start < self._end:
                wrote = self.dst.write(self._view[self._start : self._end])
                if wrote is None:
                    return
                self._start += wrote
                self.activity = time.monotonic()
        if self.src_eof and not self.pending and not self.finished:
            self._finish()

    def _moved(self, count: int) -> None:
        self.count_bytes += count
        self.stats.add(self.direction, count)
        self.activity = time.monotonic()

    def _received(self, item: Item) -> None:
        self.count_messages += 1
        self.count_bytes += len(item.data)
        self.stats.add(self.direction, len(item.data), 1)
        self.activity = time.monotonic()
        src = self.src
        if src is not None and src.sock is not None and trace.installed:
            say(
                "message",
                f"#{self.count_messages}",
                f"{len(item.data)} bytes",
                f"from {src.sender_text(item.address)}",
                f"flags {item.flags}",
                f"fd={src.fd}",
                f"({self.direction})",
            )
        if self.on_item is not None:
            self.on_item(item)

    def _eof(self) -> None:
        self.src_eof = True
        self.eof_at = time.monotonic()
        name = self.src.name if self.src is not None else "stdin"
        say("eof", name, f"after {self.count_bytes} bytes", f"({self.direction})")

    def _finish(self) -> None:
        self.finished = True
        if self.on_eof == "shutdown":
            self.dst.shutdown_write()
        elif self.on_eof == "close":
            self.close_all = True

    def close(self) -> None:
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None


class Handler(Protocol):
    """What the loop drives."""

    def interest(self) -> list[tuple[int, int]]: ...
    def ready(self, fd: int, revents: int) -> None: ...
    def deadline(self) -> float | None: ...
    def expire(self, now: float) -> None: ...
    @property
    def done(self) -> bool: ...
    def close(self) -> None: ...


class Conn:
    """The flows of one connection and the sockets they use; done when its flows are.

    Errors: with ``raise_errors`` (a client command) the first error ends the
    program; otherwise (a server) it ends this connection with a one-line
    report and the server goes on. Either way a peer that already sent EOF
    and then closed entirely (EPIPE/ECONNRESET on our next send) ends the
    connection normally: it told us it was done.

    ``quit_after`` (--quit-after): once ``quit_flow``'s source (stdin) has
    ended, the connection ends normally at most that many seconds later,
    whatever the peer does (socat -t, nc -q).

    A server's connections are members of its :class:`~sockwire.cli.admit.Gate`
    (``last_moved``, ``evict``): the gate, not ``idle``, then bounds them.
    """

    def __init__(
        self,
        label: str,
        flows: list[Flow],
        socks: list[Socket],
        stats: Stats,
        *,
        raise_errors: bool,
        idle: float | None = None,
        linger: float = 0.0,
        report: Callable[[str], None] | None = None,
        on_close: Callable[[Conn], None] | None = None,
        quit_after: float | None = None,
        quit_flow: Flow | None = None,
    ) -> None:
        self.label = label
        self.quit_after = quit_after
        self.quit_flow = quit_flow
        self.flows = flows
        self.socks = socks
        self.stats = stats
        self.raise_errors = raise_errors
        self.idle = idle
        self.linger = linger
        self.report = report
        self.on_close = on_close
        self.error: SockwireError | None = None
        #: why the fail-safe policy ended it (it closes at the loop's next turn)
        self.evicted: str | None = None
        self._closed = False
        self._linger_until: float | None = None
        stats.connections += 1
        stats.open += 1

    def interest(self) -> list[tuple[int, int]]:
        # every socket is polled, for nothing if need be: poll always reports
        # POLLHUP/POLLERR, and that is how a vanished peer is noticed while
        # no direction is moving (e.g. stdin is quiet)
        wants: list[tuple[int, int]] = [(s.fd, 0) for s in self.socks if not s.closed]
        for flow in self.flows:
            wants.extend(flow.interest())
        return wants

    def ready(self, fd: int, revents: int) -> None:
        if self.done:
            return
        try:
            for flow in self.flows:
                flow.ready(fd, revents)
            if revents & _TROUBLE and not self.done:
                self._hangup(fd, revents)
        except ConnectionLost as exc:
            if any(f.src_eof and f.src is not None and f.src.sock for f in self.flows):
                say("closed", self.label, f"peer closed after its EOF ({exc.errno_name})")
                self._end_quietly()
            else:
                self._fail(exc)
        except SockwireError as exc:
            self._fail(exc)

    def _hangup(self, fd: int, revents: int) -> None:
        """POLLHUP/POLLERR on a socket no direction is reading or writing now.

        A flow still reading this fd meets the EOF or the error itself; one
        with data for it meets it on its send. Otherwise nobody would consume
        the (level-triggered) condition and poll would spin: after the peer's
        EOF it is a peer that closed entirely, which ends the connection
        normally; before, it is an error, and SO_ERROR says which.
        """
        for flow in self.flows:
            if flow.finished:
                continue
            if flow.src is not None and flow.src.fd == fd and not flow.src_eof:
                return
            if flow.dst.fd == fd and flow.pending:
                return
        sock = next((s for s in self.socks if s.fd == fd), None)
        if sock is None:
            return
        if any(f.src is not None and f.src.fd == fd and f.src_eof for f in self.flows):
            say("closed", self.label, "the peer closed entirely (POLLHUP)")
            self._end_quietly()
            return
        code = int(sock.raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        exc = OSError(code or _errno.EPIPE, os.strerror(code or _errno.EPIPE))
        raise translate(exc, "poll", self.label, family=sock.family, sock_type=sock.type)

    def _fail(self, exc: SockwireError) -> None:
        self.error = exc
        say("error", self.label, str(exc))
        if self.raise_errors:
            raise exc
        if self.report is not None:
            self.report(labelled(self.label, exc))

    def _end_quietly(self) -> None:
        for flow in self.flows:
            flow.finished = True

    def last_moved(self) -> float | None:
        """When data last moved either way (None: never), for the gate."""
        flows = self.flows
        if not any(f.count_bytes or f.count_messages for f in flows):
            return None
        return max(f.activity for f in flows)

    def bytes_moved(self) -> int:
        """Bytes moved either way so far, for the gate's minimum rate."""
        return sum(f.count_bytes for f in self.flows)

    def evict(self, reason: str) -> None:
        """Done from now on (the loop closes it next turn); ``reason`` for the trace."""
        if self.evicted is None:
            self.evicted = reason

    def _quit_at(self) -> float | None:
        flow = self.quit_flow
        if self.quit_after is None or flow is None or flow.eof_at is None:
            return None
        return flow.eof_at + self.quit_after

    @property
    def done(self) -> bool:
        if self.error is not None or self.evicted is not None:
            return True
        if any(f.close_all for f in self.flows):
            return True
        quit_at = self._quit_at()
        if quit_at is not None and time.monotonic() >= quit_at:
            if not all(f.finished for f in self.flows):
                say("quit", self.label, f"{self.quit_after:g} s after stdin's EOF (--quit-after)")
                self._end_quietly()
            return True
        required = [f for f in self.flows if f.required]
        if not all(f.finished for f in required):
            return False
        if all(f.finished for f in self.flows) or self.linger <= 0:
            return True
        if self._linger_until is None:
            self._linger_until = time.monotonic() + self.linger
        return time.monotonic() >= self._linger_until

    def deadline(self) -> float | None:
        times = []
        if self.idle is not None:
            times.append(max(f.activity for f in self.flows) + self.idle)
        if self._linger_until is not None:
            times.append(self._linger_until)
        quit_at = self._quit_at()
        if quit_at is not None:
            times.append(quit_at)
        return min(times) if times else None

    def expire(self, now: float) -> None:
        if self.idle is not None and now >= max(f.activity for f in self.flows) + self.idle:
            self._fail(
                TimeoutError(
                    self.label,
                    f"no data either way for {self.idle:g} s (--timeout); closing",
                )
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stats.open -= 1
        counts = ", ".join(
            f"{f.direction} {f.count_bytes} bytes"
            + (f" in {f.count_messages} messages" if f.message else "")
            for f in self.flows
        )
        say("close", self.label, counts)
        for flow in self.flows:
            flow.close()
        for sock in self.socks:
            sock.close()
        if self.on_close is not None:
            self.on_close(self)


class StdinHub:
    """Reads stdin for the flows fed from it: one read at a time, given to each.

    Reads only while every subscriber has delivered the previous read, so the
    slowest client sets the pace (bounded). After stdin's EOF a new
    subscriber gets EOF at once: its connection is half-closed right away.
    ``crlf`` (-C): line ends go out as CRLF (:func:`to_crlf`); a read is then
    at most half of --bufsize, so the doubled worst case still fits.
    """

    def __init__(
        self, opts: IoOptions, *, fd: int = 0, split: str = "line", crlf: bool = False
    ) -> None:
        self.fd = fd
        self.opts = opts
        self.split = split
        self.crlf = crlf
        self._after_cr = False
        self.eof = False
        self.subscribers: list[Flow] = []
        self._partial = b""
        try:
            os.fstat(fd)
        except OSError:  # stdin closed (`<&-`): nothing will ever come
            self.eof = True

    def subscribe(self, flow: Flow) -> None:
        if self.eof:
            flow.push_eof()
        else:
            self.subscribers.append(flow)

    def unsubscribe(self, flow: Flow) -> None:
        if flow in self.subscribers:
            self.subscribers.remove(flow)

    def interest(self) -> list[tuple[int, int]]:
        live = [s for s in self.subscribers if not s.finished]
        if self.eof or not live or any(s.pending for s in live):
            return []
        return [(self.fd, _IN)]

    def ready(self, fd: int, revents: int) -> None:
        if fd != self.fd or self.eof:
            return
        data = os.read(self.fd, max(1, self.opts.bufsize // 2) if self.crlf else self.opts.bufsize)
        if data and self.crlf:
            data, self._after_cr = to_crlf(data, self._after_cr), data.endswith(b"\r")
        if not data:
            self.eof = True
            say("eof", "stdin")
            tail, self._partial = self._partial, b""
            for flow in list(self.subscribers):
                if tail and flow.message:
                    flow.push_items([Item(tail)])
                flow.push_eof()
            return
        items: list[Item] = []
        if self.split == "line":
            lines = (self._partial + data).splitlines(keepends=True)
            self._partial = b""
            if lines and not lines[-1].endswith((b"\n", b"\r")):
                self._partial = lines.pop()
                if len(self._partial) >= self.opts.bufsize:  # bound: a huge line is cut
                    lines.append(self._partial)
                    self._partial = b""
            items = [Item(line) for line in lines]
        else:
            items = [Item(data)]
        for flow in list(self.subscribers):
            if flow.finished:
                continue
            if flow.message:
                flow.push_items(items)
            else:
                flow.push(data)

    def deadline(self) -> float | None:
        return None

    def expire(self, now: float) -> None:
        pass

    @property
    def done(self) -> bool:
        return False

    def close(self) -> None:
        pass


class Acceptor:
    """Accepts on a listening socket and hands each connection to ``on_accept``.

    Accept errors follow :mod:`sockwire.accepting`, the policy ``serve()``
    uses too: a connection that died in the queue is skipped; out of
    descriptors (EMFILE/ENFILE/ENOBUFS/ENOMEM) pauses accepting for
    ACCEPT_BACKOFF or until a connection closes, whichever comes first,
    rather than spinning on a listener that stays readable.

    Up to :data:`ACCEPT_BATCH` connections per turn. Without ``room()`` the
    listener is not polled, unless a ``gate`` (:class:`~sockwire.cli.admit.Gate`)
    can make room: then a readable listener means a client waits, the gate
    evicts the connection idle longest and the client is accepted at once
    (the evicted one closes at the loop's next turn). With nobody idle, the
    listener is left alone until the gate may find one
    (:meth:`~sockwire.cli.admit.Gate.next_room`, at most ``EVICT_WAIT``) or
    a connection closes (:meth:`resume`): a listener that stays readable
    must not make poll spin.
    """

    def __init__(
        self,
        sock: Socket,
        on_accept: Callable[[Socket, Peer], None],
        *,
        room: Callable[[], bool],
        accepts_left: int | None = None,
        idle: float | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.sock = sock
        self.on_accept = on_accept
        self.room = room
        self.accepts_left = accepts_left
        self.idle = idle
        self.gate = gate
        self.paused_until: float | None = None
        #: full with nobody to evict: the listener rests until then (or a close)
        self.full_until: float | None = None
        self.started = time.monotonic()

    @property
    def paused(self) -> bool:
        return self.paused_until is not None

    def interest(self) -> list[tuple[int, int]]:
        if self.paused or self.accepts_left == 0:
            return []
        if not self.room() and (self.gate is None or self.full_until is not None):
            return []
        return [(self.sock.fd, _IN)]

    def ready(self, fd: int, revents: int) -> None:
        if fd != self.sock.fd:
            return
        for turn in range(ACCEPT_BATCH):
            if self.paused or self.accepts_left == 0:
                return
            # poll said a client waits for the first; after an accept, ask the listener
            # again (no accept(2) that fails with EAGAIN, and no eviction for nobody)
            if turn and not self.sock.wait_readable(0):
                return
            if not self.room() and not self._make_room():
                return
            if not self._accept_one():
                return

    def _accept_one(self) -> bool:
        """One accept(2) and its hand-over; False when there is no one left to take now."""
        from ..accepting import ACCEPT_BACKOFF, on_accept_error

        try:
            conn, peer = self.sock.accept()
        except SockwireError as exc:
            action = on_accept_error(exc)
            if action == "raise":
                raise
            if action == "skip":
                say("skipped", "a connection that died before accept:", str(exc))
                return True
            if action == "backoff":
                say("paused", "accepting", f"for {ACCEPT_BACKOFF:g} s:", str(exc))
                self.paused_until = time.monotonic() + ACCEPT_BACKOFF
            return False
        self.idle = None  # the first client arrived: --timeout now applies per connection
        if self.accepts_left is not None:
            self.accepts_left -= 1
        try:
            conn.setblocking(False)
            self.on_accept(conn, peer)
        except BaseException:
            conn.close()
            raise
        return True

    def _make_room(self) -> bool:
        """Full, and a client waits: True when the gate evicted one (the newcomer may
        come in now; the evicted one closes at the top of the next turn, so no
        descriptor number is reused within this turn). Otherwise the listener rests."""
        from .admit import EVICT_WAIT

        gate = self.gate
        if gate is None:
            return False
        if gate.make_room():
            return True
        now = time.monotonic()
        when = gate.next_room()
        self.full_until = now + EVICT_WAIT if when is None else min(when, now + EVICT_WAIT)
        return False

    def resume(self) -> None:
        self.paused_until = None
        self.full_until = None

    def deadline(self) -> float | None:
        times = [self.paused_until, self.full_until]
        if self.idle is not None:
            times.append(self.started + self.idle)
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def expire(self, now: float) -> None:
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None
        if self.full_until is not None and now >= self.full_until:
            self.full_until = None
        if self.idle is not None and now >= self.started + self.idle:
            raise TimeoutError(
                f"accept on {self.sock.label}",
                f"no client connected within {self.idle:g} s (--timeout)",
            )

    @property
    def done(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _Session:
    """One datagram sender's socket to the relay target, and the way back."""

    def __init__(self, key: Address | None, target: Socket, back: Flow) -> None:
        self.key = key
        self.target = target
        self.back = back
        self.pending: Item | None = None


class DatagramRelay:
    """A datagram listener whose every sender gets its own socket to the target.

    Like a NAT: replies from the target go back to the sender that caused
    them. At most ``max_sessions`` senders at once (the least recently used
    is closed to make room). Unnamed senders share one session whose replies
    are dropped and counted, since nobody can send to an unnamed socket.
    While a message waits for its target the listener is not read
    (backpressure: UDP drops in the kernel, UNIX datagram senders block).
    """

    def __init__(
        self,
        listener: Socket,
        connect_target: Callable[[], Socket],
        opts: IoOptions,
        stats: Stats,
        *,
        max_sessions: int,
        idle: float | None,
        names: tuple[str, str],
        target_framing: str = "none",
        listen_framing: str = "none",
    ) -> None:
        self.listener = listener
        self.target_framing = target_framing
        self.listen_framing = listen_framing
        self.end = End(str(listener.label), sock=listener, opts=opts, framing=listen_framing)
        self.connect_target = connect_target
        self.opts = opts
        self.stats = stats
        self.max_sessions = max_sessions
        self.idle = idle
        self.forward, self.backward = names
        self.sessions: OrderedDict[Address | None, _Session] = OrderedDict()
        self._waiting: _Session | None = None

    def interest(self) -> list[tuple[int, int]]:
        wants: list[tuple[int, int]] = []
        if self._waiting is not None:
            wants.append((self._waiting.target.fd, _OUT))
        else:
            wants.append((self.listener.fd, _IN))
        for session in self.sessions.values():
            wants.extend(session.back.interest())
        return wants

    def ready(self, fd: int, revents: int) -> None:
        for session in list(self.sessions.values()):
            try:
                session.back.ready(fd, revents)
            except SockwireError as exc:
                say("error", f"session {self._name(session.key)}", str(exc))
                self._drop(session)
        if self._waiting is not None and fd == self._waiting.target.fd and revents & _OUT:
            self._send(self._waiting)
        elif self._waiting is None and fd == self.listener.fd and revents & (_IN | _TROUBLE):
            self._receive()

    def _name(self, key: Address | None) -> str:
        return format_address(self.listener.family, key)

    def _receive(self) -> None:
        item = self.end.recv_item(self.opts.bufsize, self.stats)
        if item is None:
            return
        self.stats.add(self.forward, len(item.data), 1)
        session = self.sessions.get(item.address)
        if session is None:
            session = self._open(item.address)
        else:
            self.sessions.move_to_end(item.address)
        say(
            "message",
            f"{len(item.data)} bytes",
            f"from {self._name(item.address)}",
            f"flags {item.flags}",
            f"({self.forward})",
        )
        session.pending = item
        self._send(session)

    def _send(self, session: _Session) -> None:
        assert session.pending is not None
        try:
            sent = session.back.src is not None and session.back.src.send_item(session.pending)
        except SockwireError as exc:
            say("error", f"session {self._name(session.key)}", str(exc))
            self.stats.dropped += 1
            self._drop(session)
            self._waiting = None
            return
        if sent:
            session.pending = None
            session.back.activity = time.monotonic()
            self._waiting = None
        else:
            self._waiting = session

    def _open(self, key: Address | None) -> _Session:
        while len(self.sessions) >= self.max_sessions:
            _, oldest = self.sessions.popitem(last=False)
            say("evict", f"session {self._name(oldest.key)}", "(--max-clients reached)")
            self._close_session(oldest)
        target = self.connect_target()
        target.setblocking(False)
        back_src = End(str(target.label), sock=target, opts=self.opts, framing=self.target_framing)
        back_dst = End(
            str(self.listener.label),
            sock=self.listener,
            opts=self.opts,
            framing=self.listen_framing,
        )
        back_dst.needs_reply_to = True
        back_dst.reply_to = key
        back = Flow(
            back_src,
            back_dst,
            self.opts,
            direction=self.backward,
            stats=self.stats,
            message=True,
            on_eof="none",
        )
        if key is None:
            say("unnamed", "sender has no name: replies to it are dropped")
            back.on_item = lambda item: self._count_drop()
            back.discard = True
        session = _Session(key, target, back)
        self.sessions[key] = session
        self.stats.connections += 1
        self.stats.open += 1
        say("session", f"from {self._name(key)}", f"to {target.label}")
        return session

    def _count_drop(self) -> None:
        self.stats.dropped += 1

    def _drop(self, session: _Session) -> None:
        self.sessions.pop(session.key, None)
        if self._waiting is session:
            self._waiting = None
        self._close_session(session)

    def _close_session(self, session: _Session) -> None:
        self.stats.open -= 1
        say("close", f"session {self._name(session.key)}")
        session.target.close()

    def deadline(self) -> float | None:
        if self.idle is None or not self.sessions:
            return None
        return min(s.back.activity for s in self.sessions.values()) + self.idle

    def expire(self, now: float) -> None:
        assert self.idle is not None
        for session in list(self.sessions.values()):
            if now >= session.back.activity + self.idle:
                say("idle", f"session {self._name(session.key)}", f"after {self.idle:g} s")
                self._drop(session)

    @property
    def done(self) -> bool:
        return False

    def close(self) -> None:
        for session in list(self.sessions.values()):
            self._drop(session)


class DatagramEcho:
    """Sends every datagram back to its sender; unnamed senders cannot be answered."""

    def __init__(
        self,
        sock: Socket,
        opts: IoOptions,
        stats: Stats,
        *,
        limit: int | None,
        framing: str = "none",
    ) -> None:
        self.sock = sock
        self.end = End(str(sock.label), sock=sock, opts=opts, framing=framing)
        self.end.needs_reply_to = True
        self.opts = opts
        self.stats = stats
        self.left = limit
        self._pending: Item | None = None

    def interest(self) -> list[tuple[int, int]]:
        return [(self.sock.fd, _OUT if self._pending else _IN)]

    def ready(self, fd: int, revents: int) -> None:
        if self._pending is not None:
            self._reply()
            return
        item = self.end.recv_item(self.opts.bufsize, self.stats)
        if item is None:
            return
        self.stats.add("in", len(item.data), 1)
        say(
            "message",
            f"{len(item.data)} bytes",
            f"from {self.end.sender_text(item.address)}",
            f"flags {item.flags}",
        )
        if self.left is not None:
            self.left -= 1
        if item.address is None:
            say("unnamed", "sender has no name: cannot reply")
            self.stats.dropped += 1
            return
        self._pending = item
        self._reply()

    def _reply(self) -> None:
        assert self._pending is not None
        self.end.reply_to = self._pending.address
        try:
            if not self.end.send_item(self._pending):
                return
        except SockwireError as exc:  # e.g. the sender's socket is gone (ECONNREFUSED)
            say("error", f"reply to {self.end.sender_text(self._pending.address)}", str(exc))
            self.stats.dropped += 1
        else:
            self.stats.add("out", len(self._pending.data), 1)
        self._pending = None

    def deadline(self) -> float | None:
        return None

    def expire(self, now: float) -> None:
        pass

    @property
    def done(self) -> bool:
        return self.left == 0 and self._pending is None

    def close(self) -> None:
        pass


class Loop:
    """poll(2) over every handler's descriptors until ``finished()`` says so."""

    def __init__(self, observer: Observer, *, on_usr1: Callable[[], None] | None = None) -> None:
        self.observer = observer
        self.on_usr1 = on_usr1
        self.handlers: list[Handler] = []

    def add(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def run(self, finished: Callable[[], bool]) -> None:
        with self._wakeup() as wake_fd:
            while True:
                self.observer.check()
                for handler in [h for h in self.handlers if h.done]:
                    self.handlers.remove(handler)
                    handler.close()
                if finished():
                    return
                wanted: dict[int, int] = {}
                for handler in self.handlers:
                    for fd, events in handler.interest():
                        wanted[fd] = wanted.get(fd, 0) | events
                if wake_fd is not None:
                    wanted[wake_fd] = _IN
                deadlines = [d for h in self.handlers if (d := h.deadline()) is not None]
                if not wanted and not deadlines:
                    return  # nothing can happen any more
                report_due = limited_due()  # rate-limited report lines' counts
                if report_due is not None:
                    deadlines.append(report_due)
                poller = select.poll()
                for fd, events in wanted.items():
                    poller.register(fd, events)
                wait = None
                if deadlines:
                    wait = max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)
                for fd, revents in poller.poll(wait):
                    if fd == wake_fd:
                        self._signals(fd)
                        continue
                    for handler in list(self.handlers):
                        handler.ready(fd, revents)
                now = time.monotonic()
                for handler in list(self.handlers):
                    deadline = handler.deadline()
                    if deadline is not None and now >= deadline:
                        handler.expire(now)
                if report_due is not None and now >= report_due:
                    flush_limited(now)

    def close(self) -> None:
        for handler in self.handlers:
            handler.close()
        self.handlers.clear()
        flush_limited(everything=True)  # what the rate limit held back, counted

    def _signals(self, fd: int) -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        if signal.SIGUSR1 in data and self.on_usr1 is not None:
            self.on_usr1()

    @contextlib.contextmanager
    def _wakeup(self) -> Iterator[int | None]:
        if self.on_usr1 is None or threading.current_thread() is not threading.main_thread():
            yield None
            return
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        old_handler = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        try:
            yield r
        finally:
            signal.set_wakeup_fd(old_fd)
            signal.signal(signal.SIGUSR1, old_handler)
            os.close(r)
            os.close(w)


class _Terminated(SystemExit):
    pass


class _Deferral:
    """How deep in :func:`deferred_signals` we are, and the signal that waits."""

    depth = 0
    pending: BaseException | None = None


def _interrupt(exc: BaseException) -> None:
    if _Deferral.depth:
        _Deferral.pending = _Deferral.pending or exc
        return
    raise exc


@contextlib.contextmanager
def handled_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C (``finally`` blocks run: sockets close,
    socket files go), then exit with 128 + the signal: 143, 129 (as socat cleans
    up on SIGHUP; a closed terminal must not leave a socket file behind).

    All of them (SIGINT too) wait while :func:`deferred_signals` is active.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: object) -> None:
        _interrupt(_Terminated(128 + signum))

    def on_int(signum: int, frame: object) -> None:
        _interrupt(KeyboardInterrupt())

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    if _default_sigint():
        old[signal.SIGINT] = signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _default_sigint() -> bool:
    # Python's own handler (raise KeyboardInterrupt); an ignored SIGINT (a
    # background job of a non-interactive shell) stays ignored
    return signal.getsignal(signal.SIGINT) is signal.default_int_handler


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP/SIGINT wait until the block is done, then unwind as usual.

    For a step that must not be cut in two, e.g. starting a child process
    and registering it for reaping: an exception between the two would
    leave an orphan nobody kills.
    """
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1
        pending = _Deferral.pending
        if not _Deferral.depth and pending is not None:
            _Deferral.pending = None
            raise pending
