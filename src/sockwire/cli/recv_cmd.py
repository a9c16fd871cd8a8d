"""``sockwire recv ENDPOINT``: receive messages, each shown with sender, length and flags."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "receive messages and show each one's sender, length, flags and truncation"

DESCRIPTION = """\
Bind ENDPOINT (datagrams) or listen on it (seqpacket, or a byte stream
with --framing; --connect: connect to it instead) and print one line per
message:

  #1 from unnamed (pid=812 uid=0 gid=0) 31 bytes: <13>Nov 25 12:00:00 root: hi

A sender that never bound a name is shown as `unnamed`: normal, not an
error (UNIX datagram receivers also show the sender's pid/uid/gid, from
SCM_CREDENTIALS). A message longer than --bufsize is shown TRUNCATED with
its full length (MSG_TRUNC). --format raw writes only the payloads; --format
json (the default with --json) one JSON object per message. Stops after --count messages; otherwise
datagrams are received until interrupted, and seqpacket and framed streams
until the sender's EOF. On a framed stream a frame declared longer than
--bufsize, or EOF inside a frame, is a one-line error (exit 1).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import add_io_options, add_zmq_options, count_type

    parser.description = DESCRIPTION
    parser.add_argument("endpoint", metavar="ENDPOINT", help="e.g. unix+dgram:/tmp/log.sock")
    parser.add_argument("--count", type=count_type, metavar="N", help="stop after N messages")
    parser.add_argument(
        "--format",
        choices=("text", "raw", "json"),
        default=None,
        help="text: one described line per message (default; with --json: json); raw: "
        "payloads only; json: JSON lines",
    )
    parser.add_argument(
        "--connect",
        action="store_true",
        help="connect to ENDPOINT (a seqpacket server) instead of binding or listening",
    )
    group = parser.add_argument_group("serving")
    group.add_argument("--backlog", type=_backlog, metavar="N", help="listen() queue (seqpacket)")
    group.add_argument("--mode", metavar="OCTAL", help="file mode of a UNIX socket file")
    add_io_options(parser)
    add_zmq_options(parser)


def _backlog(text: str) -> int:
    from .options import backlog_type

    return int(backlog_type(text))


def describe(
    number: int, sender: str, msg: Any, *, peeked: bool = False, creds: Any = None
) -> dict[str, Any]:
    """The facts about one received message, as the text and JSON forms show them.

    ``creds``: the connected peer's SO_PEERCRED, when the message has none
    of its own (seqpacket connections).
    """
    from ..flags import MsgFlag

    shown = MsgFlag(msg.flags & ~MsgFlag.TRUNC)
    doc: dict[str, Any] = {
        "n": number,
        "from": sender,
        "size": msg.size,
        "len": len(msg.data),
        "truncated": msg.truncated,
        "flags": str(MsgFlag(msg.flags)),
        "data": msg.data.decode("utf-8", "backslashreplace"),
        "hex": msg.data.hex(),
    }
    # pid 0 (with the overflow uid/gid): the kernel attached no credentials, e.g. to a
    # datagram queued before SO_PASSCRED was set (an inherited socket, or a seqpacket
    # message sent before we turned it on): unknown, so the connection's SO_PEERCRED
    who = msg.creds if msg.creds is not None and msg.creds.pid != 0 else creds
    if who is not None and who.pid != 0:
        doc.update(pid=who.pid, uid=who.uid, gid=who.gid)
    if peeked:
        doc["peeked"] = True
    doc["_other_flags"] = str(shown) if shown else ""
    return doc


def text_line(doc: dict[str, Any], data: bytes) -> str:
    """One message as one line: the sender's name and the payload escaped (another user
    chose both: a newline or a terminal escape in them must not forge lines)."""
    from ..escape import printable

    who = doc["from"]
    if "pid" in doc:
        who += f" (pid={doc['pid']} uid={doc['uid']} gid={doc['gid']})"
    size = f"{doc['size']} bytes"
    if doc["truncated"]:
        size += f", TRUNCATED to {doc['len']} (MSG_TRUNC; raise --bufsize)"
    if doc["_other_flags"]:
        size += f", flags {doc['_other_flags']}"
    if doc.get("peeked"):
        size += ", peeked (left queued)"
    return f"#{doc['n']} from {printable(who)} {size}: {printable(data)}"


def run(args: argparse.Namespace) -> int:
    if args.endpoint.startswith("zmq+"):  # ZeroMQ: cli/zmq_io.py
        from .zmq_io import run_recv

        return run_recv(args)
    import socket
    import sys
    from collections import deque

    from ..flags import MsgFlag
    from ..framing import Decoder, make_codec
    from ..sock import Message, Socket, format_address
    from .exitcodes import UsageError
    from .observe import Observer, say
    from .options import check_framing, endpoint, io_options, packet_framing, server_endpoint
    from .pump import feed, handled_signals, is_message
    from .secured import secure_accepted
    from .sockets import connect_socket, inherited, is_listening, is_unix, server_socket

    opts = io_options(args)
    if args.format is None:  # --json: the messages are JSON too (stdout), the events stderr
        args.format = "json" if opts.json else "text"
    given = endpoint(args.endpoint, args) if args.connect else server_endpoint(args.endpoint, args)
    with inherited(given) as (ep, adopted):
        framed: str | None = None
        packet_header = "none"
        if is_message(ep.type):
            packet_header = packet_framing(ep, opts)
            if packet_header != "none" and opts.peek:
                raise UsageError(
                    "--peek with --framing sockwire",
                    "a message may span packets; peek without the packet header",
                )
        else:
            framing = check_framing(ep, opts)
            if framing == "none":
                raise UsageError(
                    f"recv on {ep.display()}",
                    "a byte stream has no message boundaries; give --framing (e.g. len32), use "
                    "`sockwire listen` for bytes, or a unix+seqpacket:, unix+dgram: or udp:// "
                    "endpoint",
                )
            if opts.peek:
                raise UsageError(
                    "--peek with --framing", "a frame may span reads; peek at datagrams only"
                )
            framed = framing

        limit = 1 if opts.peek else args.count
        datagram = ep.type in (socket.SOCK_DGRAM, socket.SOCK_RAW)
        out = sys.stdout
        received = 0

        def show(sock: Socket, msg: Any, peer_creds: Any) -> None:
            nonlocal received
            received += 1
            # exact in the document (JSON escapes it); text_line escapes it
            sender = format_address(sock.family, msg.address, exact=True)
            doc = describe(received, sender, msg, peeked=opts.peek, creds=peer_creds)
            say(
                "message",
                f"#{received}",
                f"{msg.size} bytes",
                f"from {format_address(sock.family, msg.address)}",
                f"flags {MsgFlag(msg.flags)}",
            )
            if args.format == "raw":
                out.buffer.write(msg.data)
                out.buffer.flush()
                return
            if args.format == "json":
                doc.pop("_other_flags")
                out.write(json.dumps(doc) + "\n")
            else:
                out.write(text_line(doc, msg.data) + "\n")
            out.flush()

        def drain(sock: Socket, *, creds: bool, peer_creds: Any = None) -> bool:
            """Receive from one socket; True when the limit is reached, False at EOF."""
            if opts.timeout is not None:
                sock.settimeout(opts.timeout)
            if framed is not None:
                return drain_frames(
                    sock, make_codec(framed, max_size=opts.bufsize).decoder, peer_creds
                )
            if packet_header != "none":
                return drain_packets(sock, creds=creds, peer_creds=peer_creds)
            # a zero-length seqpacket message is not the end: credentials tell them apart
            marks = not datagram and sock.tell_empty_from_eof()
            creds = creds or marks
            while limit is None or received < limit:
                observer.check()
                if opts.peek:
                    msg = sock.recvmsg(opts.bufsize, creds=creds, flags=MsgFlag.PEEK)
                else:
                    msg = sock.recvmsg(opts.bufsize, creds=creds)
                if not msg.size and not datagram and not (marks and msg.creds is not None):
                    say("eof", f"fd={sock.fd}", f"after {received} messages")
                    return False
                show(sock, msg, peer_creds)
            return True

        def drain_packets(sock: Socket, *, creds: bool, peer_creds: Any) -> bool:
            """Packets with the sockwire header: fragments joined, datagram loss counted."""
            from ..packet import MAX_PACKET, make_packet_codec

            packets = make_packet_codec(
                "dgram" if datagram else "seqpacket",
                packet_header,
                max_size=opts.bufsize,
                packet_limit=sock.packet_limit() or MAX_PACKET,
            )
            buffer = bytearray(MAX_PACKET)
            while limit is None or received < limit:
                observer.check()
                msg = sock.recvmsg(MAX_PACKET, creds=creds, buffer=buffer)
                if not msg.size and not datagram:
                    say("eof", f"fd={sock.fd}", f"after {received} messages")
                    return False
                stats = packets.stats
                before = (stats.lost, stats.late, stats.invalid)
                data = packets.decode(memoryview(msg.data), msg.size, msg.address)
                if (stats.lost, stats.late, stats.invalid) != before:
                    say(
                        "datagrams",
                        f"lost {stats.lost}",
                        f"late {stats.late}",
                        f"invalid {stats.invalid}",
                        f"truncated {stats.truncated}",
                    )
                if data is not None:
                    whole = Message(data, creds=msg.creds, address=msg.address, size=len(data))
                    show(sock, whole, peer_creds)
            return True

        def drain_frames(sock: Socket, decoder: Decoder, peer_creds: Any) -> bool:
            """Frames from a stream, one message each; the sender is the connected peer."""
            address = sock.getpeername()
            waiting: deque[bytes] = deque()
            while limit is None or received < limit:
                observer.check()
                if waiting:
                    data = waiting.popleft()
                    show(sock, Message(data, address=address or None, size=len(data)), peer_creds)
                    continue
                chunk = sock.recv(min(decoder.read_size(), opts.bufsize + 16))
                waiting.extend(
                    feed(decoder, chunk, format_address(sock.family, address), opts.bufsize)
                )
                if not chunk:
                    say("eof", f"fd={sock.fd}", f"after {received} messages")
                    return False
            return True

        observer = Observer(trace_lines=opts.trace, hex_dump=opts.hex, json_lines=opts.json)
        with observer, handled_signals():
            if args.connect or (
                adopted is not None and not datagram and not is_listening(adopted)
            ):
                # --connect, or an inherited connection (inetd style): receive from it
                with connect_socket(ep, adopted) as sock:
                    drain(sock, creds=False, peer_creds=sock.peercred())
                return 0
            unix = is_unix(ep, adopted)
            with server_socket(ep, passcred=unix and datagram, adopted=adopted) as sock:
                if datagram:
                    drain(sock, creds=unix)
                    return 0
                while True:
                    if opts.timeout is not None:
                        sock.settimeout(opts.timeout)
                    accepted, peer = sock.accept()
                    with secure_accepted(accepted, ep) as conn:
                        if drain(conn, creds=False, peer_creds=peer.creds) or limit is None:
                            return 0
