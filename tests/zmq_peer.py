"""A pyzmq (libzmq) peer process for the ZMTP interop tests, driven by JSON lines.

stdin: one job a line, ``{"type": "PULL", "endpoint": "tcp://...", "bind": true,
"n": 10000, "mech": "NULL"|"PLAIN"|"CURVE", ...}``; stdout: ``{"ready": ENDPOINT}``
once bound/connected, then ``{"done": ...}`` (or ``{"error": ...}``). Messages
are ``b"%d" % i``; each role checks order and count itself and reports them.
The process exits at EOF on stdin. Bounded: every wait has a timeout.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

TIMEOUT_MS = 20_000
ctx = zmq.Context()
_auth: list[ThreadAuthenticator] = []  # started on first use


def say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def wait_line() -> str:
    """The next stdin line (for "go" signals), bounded by TIMEOUT_MS."""
    poller = zmq.Poller()
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    if not poller.poll(TIMEOUT_MS):
        raise RuntimeError("no go signal")
    return sys.stdin.readline().strip()


def stdin_ready() -> bool:
    poller = zmq.Poller()
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    return bool(poller.poll(0))


def authenticator() -> ThreadAuthenticator:
    if not _auth:
        _auth.append(ThreadAuthenticator(ctx))
        _auth[0].start()
    return _auth[0]


def secure(sock: zmq.Socket, job: dict[str, Any]) -> None:
    mech = job.get("mech", "NULL")
    server = job["bind"]
    if mech == "PLAIN":
        if server:
            authenticator().configure_plain(domain="*", passwords={"admin": "secret"})
            sock.plain_server = True
        else:
            sock.plain_username = b"admin"
            sock.plain_password = job.get("password", "secret").encode()
    elif mech == "CURVE":
        if server:
            authenticator().configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
            sock.curve_secretkey = job["secret"].encode()
            sock.curve_publickey = job["public"].encode()
            sock.curve_server = True
        else:
            sock.curve_secretkey = job["secret"].encode()
            sock.curve_publickey = job["public"].encode()
            sock.curve_serverkey = job["server"].encode()


def open_socket(job: dict[str, Any]) -> tuple[zmq.Socket, str]:
    sock = ctx.socket(getattr(zmq, job["type"]))
    sock.linger = 2000
    sock.rcvtimeo = TIMEOUT_MS
    sock.sndtimeo = TIMEOUT_MS
    sock.sndhwm = job.get("hwm", 0)
    sock.rcvhwm = job.get("hwm", 0)
    if job.get("heartbeat"):
        sock.heartbeat_ivl = int(job["heartbeat"] * 1000)
        sock.heartbeat_timeout = int(job["heartbeat"] * 3000)
        sock.heartbeat_ttl = int(job["heartbeat"] * 3000)
    if job.get("identity"):
        sock.identity = job["identity"].encode()
    secure(sock, job)
    endpoint = job["endpoint"]
    if job["bind"]:
        if endpoint.endswith(":0"):
            port = sock.bind_to_random_port(endpoint[: -len(":0")])
            endpoint = f"{endpoint[: -len(':0')]}:{port}"
        else:
            sock.bind(endpoint)
    else:
        sock.connect(endpoint)
    return sock, endpoint


def in_order(received: list[bytes], n: int, start: int = 0) -> bool:
    return [int(x) for x in received] == list(range(start, start + n))


def run(job: dict[str, Any]) -> dict[str, Any]:
    sock, endpoint = open_socket(job)
    n = job["n"]
    kind = job["type"]
    topic = job.get("topic", "t").encode()
    start = job.get("start", 0)
    try:
        if kind == "SUB":
            sock.subscribe(topic)
        if kind == "XSUB":
            sock.send(b"\x01" + topic)
        say({"ready": endpoint})
        if kind in ("PULL", "SUB", "XSUB"):
            got: list[bytes] = []
            warm = 0
            while len(got) < n:
                frames = sock.recv_multipart()
                if frames[-1] == b"warm":
                    if warm == 0:
                        say({"warm": True})
                    warm += 1
                    continue
                got.append(frames[-1])
                if job.get("progress") and len(got) % job["progress"] == 0:
                    say({"progress": len(got)} if in_order(got, len(got), start) else {})
            return {"count": len(got), "ordered": in_order(got, n, start)}
        if kind == "PUSH":
            for i in range(n):
                sock.send(b"%d" % i)
            return {"sent": n}
        if kind == "PUB":
            while not stdin_ready():  # warm up until the sockwire SUB saw a message
                sock.send_multipart([topic + b"warm", b"warm"])
                zmq.Poller().poll(10)
            wait_line()
            for i in range(n):
                sock.send_multipart([topic, b"%d" % i])
            return {"sent": n}
        if kind == "XPUB":
            sub = sock.recv()
            for i in range(n):
                sock.send_multipart([topic, b"%d" % i])
            return {"subscription": sub.decode("latin-1"), "sent": n}
        if kind == "REQ":
            ok = 0
            for i in range(n):
                sock.send(b"%d" % i)
                if sock.recv() == b"re:%d" % i:
                    ok += 1
            return {"ok": ok}
        if kind == "REP":
            for _ in range(n):
                msg = sock.recv()
                sock.send(b"re:" + msg)
            return {"served": n}
        if kind == "DEALER":
            for i in range(n):
                sock.send_multipart([b"", b"%d" % i])
            got = [sock.recv_multipart()[-1] for _ in range(n)]
            return {
                "count": len(got),
                "ordered": [g[3:] for g in got] == [b"%d" % i for i in range(n)],
            }
        if kind == "ROUTER":
            ids = set()
            for _ in range(n):
                frames = sock.recv_multipart()
                ids.add(frames[0].hex())
                sock.send_multipart([*frames[:-1], b"re:" + frames[-1]])
            return {"served": n, "ids": sorted(ids)}
        if kind == "PAIR":
            for _ in range(n):
                sock.send(b"re:" + sock.recv())
            return {"served": n}
        raise ValueError(kind)
    finally:
        sock.close(linger=0 if kind in ("PULL", "SUB", "XSUB") else 2000)


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            say({"done": run(job)})
        except Exception as exc:  # reported to the test, which fails with it
            say({"error": f"{type(exc).__name__}: {exc}"})
    for auth in _auth:
        auth.stop()
    ctx.destroy(linger=0)
    os._exit(0)


if __name__ == "__main__":
    main()
