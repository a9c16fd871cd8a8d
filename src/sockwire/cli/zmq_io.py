"""The ``zmq+`` endpoints of send, recv, listen/connect and relay (ZeroMQ over ZMTP 3.1).

Each message command hands a ``zmq+tcp://`` or ``zmq+ipc://`` endpoint here
before its own endpoint parsing (one line in each command), so the byte and
packet paths of those commands stay as they are:

- ``send``: each MSG (or stdin line) is one message; ``--separator SEP``
  splits it into frames. A REQ prints each reply; other types only send.
  A PUB first waits for a subscriber (``--timeout``, default 5 s) and serves
  it briefly so its subscription is in force (ZeroMQ's "slow joiner").
- ``recv``: one line per message, frames joined by ``--separator`` (a tab by
  default); ``--format json``: ``{"frames": [...]}``; ``--format raw``: the
  frames and a newline. ``--count N`` stops after N messages.
- ``listen``/``connect``: stdin lines out as messages, messages in as lines
  (``listen`` binds; ``connect`` connects).
- ``relay A B``: both ``zmq+`` endpoints; every message from one side goes
  to the other (ZeroMQ's proxy: ROUTER/DEALER, XSUB/XPUB, PULL/PUSH).

Endpoints connect unless they say ``?bind=1`` (``listen`` binds).
``--trace`` prints the ZMTP conversation decoded, one line per greeting,
command and message (frame sizes and flags), on stderr (``--json``: JSON lines).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator

from ..errors import TimeoutError
from ..zmq import Socket, is_zmq
from ..zmq.endpoint import parse
from .exitcodes import UsageError

__all__ = ["is_zmq", "run_bridge", "run_recv", "run_relay", "run_send"]

_RECEIVERS = ("SUB", "XSUB", "PULL", "PAIR", "DEALER", "ROUTER", "XPUB")
_SENDERS = ("PUSH", "PUB", "XPUB", "XSUB", "PAIR", "DEALER", "ROUTER", "REQ")


def _tracer(args: argparse.Namespace) -> Callable[[str], None] | None:
    if not getattr(args, "trace", False) and not getattr(args, "json", False):
        return None
    as_json = bool(getattr(args, "json", False))

    def emit(line: str) -> None:
        if as_json:
            sys.stderr.write(json.dumps({"event": "zmtp", "text": line}) + "\n")
        else:
            sys.stderr.write(f"sockwire: {line}\n")
        sys.stderr.flush()

    return emit


def _kind(text: str) -> str:
    """The endpoint's ?type=, checked before any socket is made."""
    ep = parse(text)
    if ep.socket_type is None:
        raise UsageError(
            f"no ZeroMQ socket type in {ep.display()}",
            "add ?type=REQ|REP|DEALER|ROUTER|PUB|SUB|XPUB|XSUB|PUSH|PULL|PAIR",
        )
    return ep.socket_type


def _socket(text: str, args: argparse.Namespace, *, bind: bool | None = None) -> Socket:
    return Socket(_kind(text), parse(text), bind=bind, trace=_tracer(args))


def _frames(text: bytes, separator: str | None) -> list[bytes]:
    if separator is None:
        return [text]
    return text.split(separator.encode("utf-8", "surrogateescape"))


def _line(frames: list[bytes], args: argparse.Namespace) -> bytes:
    fmt = getattr(args, "format", "text")
    if fmt == "json":
        return (json.dumps({"frames": [_json_frame(f) for f in frames]}) + "\n").encode()
    separator = args.separator if args.separator is not None else "\t"
    if fmt == "raw":
        return separator.encode("utf-8", "surrogateescape").join(frames) + b"\n"
    from ..escape import printable

    return (separator.join(printable(f) for f in frames) + "\n").encode("utf-8", "surrogateescape")


def _json_frame(frame: bytes) -> str | dict[str, str]:
    try:
        return frame.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": frame.hex()}


def _write(data: bytes) -> None:
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


def _stdin_lines(bufsize: int = 65536) -> Iterator[bytes]:
    partial = b""
    while True:
        data = os.read(sys.stdin.fileno(), bufsize)
        if not data:
            break
        partial += data
        *lines, partial = partial.split(b"\n")
        yield from (line.rstrip(b"\r") for line in lines)
    if partial:
        yield partial.rstrip(b"\r")


def _deadline(args: argparse.Namespace, default: float | None) -> float | None:
    timeout = getattr(args, "timeout", None)
    return float(timeout) if timeout is not None else default


# ---- commands


def run_send(args: argparse.Namespace) -> int:
    """``sockwire send zmq+...``: one message per MSG or stdin line; a REQ prints replies."""
    kind = _kind(args.endpoint)
    if kind not in _SENDERS:
        raise UsageError(
            f"send on a ZeroMQ {kind} socket",
            "a " + kind + " only receives: use `sockwire recv`, or a sending type",
        )
    sock = _socket(args.endpoint, args)
    try:
        timeout = _deadline(args, None if kind != "PUB" else 5.0)
        if kind in ("PUB", "XPUB"):
            sock.wait_peers(1, timeout=timeout or 5.0)
            sock.poll(0.2)  # let the subscriptions of who just came arrive (slow joiner)
        messages = (
            [m.encode("utf-8", "surrogateescape") for m in args.messages]
            if args.messages
            else _stdin_lines()
        )
        for text in messages:
            sock.send(_frames(text, args.separator), timeout=timeout)
            if kind == "REQ":
                _write(_line(sock.recv(timeout=timeout), args))
        if not sock.flush(timeout=timeout if timeout is not None else 30.0):
            raise TimeoutError(f"{kind} send", "queued messages did not leave before the timeout")
    finally:
        sock.close()
    return 0


def run_recv(args: argparse.Namespace) -> int:
    """``sockwire recv zmq+...``: print each message as one line."""
    kind = _kind(args.endpoint)
    if kind not in _RECEIVERS:
        hint = (
            "a REP answers what it receives: use `sockwire listen`/`connect` with "
            "type=REP (stdin lines are the replies), or DEALER/ROUTER"
            if kind == "REP"
            else f"a {kind} only sends: use `sockwire send`"
        )
        raise UsageError(f"recv on a ZeroMQ {kind} socket", hint)
    sock = _socket(args.endpoint, args)
    try:
        timeout = _deadline(args, None)
        count = 0
        while args.count is None or count < args.count:
            _write(_line(sock.recv(timeout=timeout), args))
            count += 1
    finally:
        sock.close(linger=0)
    return 0


def run_bridge(args: argparse.Namespace, *, bind: bool) -> int:
    """``listen``/``connect`` with a zmq+ endpoint: stdin lines <-> messages.

    After stdin's EOF a sending-only socket (PUSH, PUB, REQ) flushes and
    exits; one that receives goes on printing until ``--timeout`` passes
    without a message (or until interrupted).
    """
    from ..zmq import poll

    sock = _socket(args.endpoint, args, bind=True if bind else None)
    separator = getattr(args, "separator", None)
    receives = sock.type in (*_RECEIVERS, "REP")
    timeout = _deadline(args, None)
    fd = sys.stdin.fileno()
    stdin_open = True
    partial = b""

    def send_line(line: bytes) -> None:
        sock.send(_frames(line, separator))
        if sock.type == "REQ":  # a REQ alternates: its reply first
            _write(_line(sock.recv(timeout=timeout), args))

    try:
        while True:
            if receives:
                while sock.poll(0):
                    _write(_line(sock.recv(), args))
            if not stdin_open:
                if not receives:
                    return 0
                if not poll([sock], timeout):
                    return 0  # --timeout without a message
                continue
            if not poll([sock] if receives else [], 0) and not _readable(fd):
                poll([sock], timeout=None, fds=[fd])
            if not _readable(fd):
                continue
            data = os.read(fd, 65536)
            if not data:
                stdin_open = False
                if partial:
                    send_line(partial.rstrip(b"\r"))
                    partial = b""
                sock.flush(timeout=timeout if timeout is not None else 30.0)
                continue
            partial += data
            *lines, partial = partial.split(b"\n")
            for line in lines:
                send_line(line.rstrip(b"\r"))
            sock.flush(timeout=timeout if timeout is not None else 30.0)
    finally:
        sock.close()


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def run_relay(args: argparse.Namespace) -> int:
    """``relay A B`` with two zmq+ endpoints: ZeroMQ's proxy, both ways where types allow."""
    from ..zmq import poll

    if not (is_zmq(args.listen) and is_zmq(args.target)):
        raise UsageError(
            "relay between a zmq+ endpoint and another kind",
            "relay joins two zmq+ endpoints (a ZeroMQ proxy); for other endpoints use "
            "`sockwire recv zmq+... | sockwire send ...`",
        )
    front = _socket(args.listen, args)
    try:
        back = _socket(args.target, args)
    except BaseException:
        front.close()
        raise
    try:
        while True:
            for ready in poll([front, back], timeout=1.0):
                other = back if ready is front else front
                while ready.poll(0):
                    frames = ready.recv()
                    if _accepts(other):
                        other.send(frames)
    finally:
        back.close()
        front.close()


def _accepts(sock: Socket) -> bool:
    return sock.type in _SENDERS or sock.type == "REP"
