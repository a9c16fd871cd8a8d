"""``sockwire send ENDPOINT [MSG ...]``: one message per argument (or per stdin line)."""

from __future__ import annotations

import argparse

#: the messages may also come after options (`send EP --framing len32 a b`)
MORE_POSITIONALS = "messages"

HELP = "send messages to a datagram, seqpacket or framed stream endpoint"

DESCRIPTION = """\
Send each MSG as one message to ENDPOINT (a datagram or seqpacket socket,
or a byte stream with --framing); with no MSG, each stdin line is one
message (--split read: each read). Nothing is appended: `sockwire send
udp://127.0.0.1:7001 hello` sends 5 bytes. On a framed stream each message
is one frame and a stdin line's newline is left out (it separated the
messages); then the connection is shut down (SHUT_WR) and closed. A UNIX
datagram sender is autobound, so the receiver sees a name it can answer.
A byte stream without --framing has no message boundaries: use `sockwire
connect`. To talk to a sockwire serve() or Channel: on a stream add
--framing len32 (the library's default framing); on seqpacket and datagram
endpoints nothing (both sides use the kernel's boundaries), unless the
library side says ?framing=sockwire: then give --framing sockwire too.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .options import add_family_options, add_io_options, add_zmq_options

    parser.description = DESCRIPTION
    parser.add_argument("endpoint", metavar="ENDPOINT", help="e.g. unix+dgram:/tmp/log.sock")
    parser.add_argument("messages", nargs="*", metavar="MSG", help="messages to send")
    parser.add_argument(
        "--split",
        choices=("line", "read"),
        default="line",
        help="without MSG: one message per stdin line (default) or per read",
    )
    add_io_options(parser)
    add_family_options(parser)
    add_zmq_options(parser)


def run(args: argparse.Namespace) -> int:
    if args.endpoint.startswith("zmq+"):  # ZeroMQ: cli/zmq_io.py
        from .zmq_io import run_send

        return run_send(args)
    import os
    import socket
    import sys

    from ..framing import make_codec
    from .exitcodes import UsageError
    from .observe import Observer, say
    from .options import check_framing, endpoint, io_options, packet_framing
    from .pump import handled_signals, is_message
    from .secured import end_writes
    from .sockets import connect_socket, inherited

    opts = io_options(args)
    given = endpoint(args.endpoint, args)
    with inherited(given) as (ep, adopted):
        encoder = None
        packet_header = "none"
        if is_message(ep.type):
            packet_header = packet_framing(ep, opts)
        else:
            framing = check_framing(ep, opts)
            if framing == "none":
                raise UsageError(
                    f"send to {ep.display()}",
                    "a byte stream has no message boundaries; give --framing (e.g. len32), "
                    "use `sockwire connect` to send bytes, or a unix+seqpacket:, unix+dgram: "
                    "or udp:// endpoint",
                )
            encoder = make_codec(framing, max_size=opts.bufsize).encoder
        for text in args.messages:
            if len(text.encode("utf-8", "surrogateescape")) > opts.bufsize:
                raise UsageError(
                    f"a message of {len(text)} characters", f"is over --bufsize ({opts.bufsize})"
                )
        observer = Observer(trace_lines=opts.trace, hex_dump=opts.hex, json_lines=opts.json)
        with observer, handled_signals(), connect_socket(ep, adopted) as sock:
            if opts.timeout is not None:
                sock.settimeout(opts.timeout)
            count = 0
            packets = None
            if packet_header != "none":
                from ..packet import MAX_PACKET, make_packet_codec

                packets = make_packet_codec(
                    "seqpacket" if sock.type == socket.SOCK_SEQPACKET else "dgram",
                    packet_header,
                    max_size=opts.bufsize,
                    packet_limit=sock.packet_limit() or MAX_PACKET,
                )

            def send(data: bytes) -> None:
                nonlocal count
                observer.check()
                if packets is not None:
                    for packet in packets.encode(data):
                        sock.sendmsg(packet, flags=opts.send_flags)
                elif encoder is None:
                    sock.send(data, opts.send_flags)
                else:
                    if args.split == "line" and not args.messages:
                        data = data.rstrip(b"\r\n") if data.endswith(b"\n") else data.rstrip(b"\r")
                    frame = encoder.encode(data)
                    whole = frame if isinstance(frame, bytes) else b"".join(frame)
                    sock.sendall(whole, opts.send_flags)
                count += 1
                say("message", f"#{count}", f"{len(data)} bytes", f"to {ep.display()}")

            if args.messages:
                for text in args.messages:
                    send(text.encode("utf-8", "surrogateescape"))
            else:
                partial = b""
                while True:
                    data = os.read(sys.stdin.fileno(), opts.bufsize)
                    if not data:
                        break
                    if args.split == "read":
                        send(data)
                        continue
                    lines = (partial + data).splitlines(keepends=True)
                    partial = b""
                    if lines and not lines[-1].endswith((b"\n", b"\r")):
                        partial = lines.pop()
                        if len(partial) >= opts.bufsize:
                            lines.append(partial)
                            partial = b""
                    for line in lines:
                        send(line)
                if partial:
                    send(partial)
            if encoder is not None:
                end_writes(sock)  # the receiver sees EOF after the last frame
            say("done", f"{count} messages sent")
        return 0
