"""Running sockwire (and other programs) as real processes, ready-checked without sleeping.

A server is started with ``--trace`` and is ready when its stderr shows the
``listening ADDRESS`` or ``bound ADDRESS`` note (which also carries the port
the kernel chose for ``:0``). Every wait is bounded by a deadline; every
process is killed and reaped on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

SOCKWIRE = [sys.executable, "-m", "sockwire"]
DEADLINE = 15.0


class Proc:
    """A child process whose stdout/stderr we read incrementally, with deadlines."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        stdin: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | None = subprocess.PIPE,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.p = subprocess.Popen(
            self.argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
        self.out = b""
        self.err = b""

    # ---- reading with deadlines

    def _read_some(self, which: str, deadline: float) -> bool:
        stream = self.p.stdout if which == "out" else self.p.stderr
        assert stream is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"timed out waiting on {self.argv[3:] or self.argv}; "
                f"stdout={self.out[-500:]!r} stderr={self.err[-2000:]!r}"
            )
        ready, _, _ = select.select([stream], [], [], left)
        if not ready:
            return True
        chunk = os.read(stream.fileno(), 65536)
        if which == "out":
            self.out += chunk
        else:
            self.err += chunk
        return bool(chunk)

    def wait_err(self, text: str, timeout: float = DEADLINE) -> str:
        """The first stderr line containing ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.err.decode(errors="replace").splitlines():
                if text in line:
                    return line
            if not self._read_some("err", deadline):
                raise AssertionError(
                    f"{self.argv} ended (rc={self.p.wait()}) before {text!r}: "
                    f"{self.err.decode(errors='replace')}"
                )

    def wait_err_count(self, text: str, count: int, timeout: float = DEADLINE) -> list[str]:
        """Wait until ``count`` stderr lines contain ``text``; those lines."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.text.splitlines() if text in line]
            if len(lines) >= count:
                return lines
            if not self._read_some("err", deadline):
                raise AssertionError(f"{self.argv} ended before {count} x {text!r}: {self.text}")

    def wait_out(self, data: bytes, timeout: float = DEADLINE) -> bytes:
        """Read stdout until it contains ``data``; returns everything so far."""
        deadline = time.monotonic() + timeout
        while data not in self.out:
            if not self._read_some("out", deadline):
                raise AssertionError(f"stdout ended before {data!r}: {self.out!r}")
        return self.out

    def address(self, timeout: float = DEADLINE) -> str:
        """Wait for ``sockwire: listening on ADDRESS`` (or --trace's ``listening``/``bound``
        note, or the JSON ``listening`` event); the bound address."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.err.decode(errors="replace").splitlines():
                words = line.split()
                if words[:3] == ["sockwire:", "listening", "on"] and len(words) == 4:
                    return words[3]
                if len(words) >= 3 and words[1] in ("listening", "bound") and words[2] != "on":
                    return words[2]
                if line.startswith('{"event": "listening"'):
                    return str(json.loads(line)["address"])
            if not self._read_some("err", deadline):
                raise AssertionError(
                    f"{self.argv} ended (rc={self.p.wait()}) before listening: "
                    f"{self.err.decode(errors='replace')}"
                )

    # ---- talking

    def send(self, data: bytes) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def close_stdin(self) -> None:
        if self.p.stdin is not None:
            if not self.p.stdin.closed:
                self.p.stdin.close()
            self.p.stdin = None  # communicate() would flush a closed file

    def finish(self, timeout: float = DEADLINE) -> int:
        """Close stdin, wait for the exit, collect the rest of stdout/stderr."""
        self.close_stdin()
        out, err = self.p.communicate(timeout=timeout)
        self.out += out or b""
        self.err += err or b""
        return self.p.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
        return self.finish(timeout)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        with contextlib.suppress(Exception):
            self.p.communicate(timeout=DEADLINE)
        for stream in (self.p.stdin, self.p.stdout, self.p.stderr):
            if stream is not None and not stream.closed:
                stream.close()

    @property
    def text(self) -> str:
        return self.err.decode(errors="replace")


@contextlib.contextmanager
def run(*args: str, **kwargs: Any) -> Iterator[Proc]:
    """``sockwire ARGS`` as a child; killed and reaped however the block ends."""
    proc = Proc([*SOCKWIRE, *args], **kwargs)
    try:
        yield proc
    finally:
        proc.kill()


@contextlib.contextmanager
def program(*argv: str, **kwargs: Any) -> Iterator[Proc]:
    """Any program as a child; killed and reaped however the block ends."""
    proc = Proc(list(argv), **kwargs)
    try:
        yield proc
    finally:
        proc.kill()


def sockwire(
    *args: str, input: bytes = b"", timeout: float = DEADLINE
) -> subprocess.CompletedProcess[bytes]:
    """Run sockwire to completion."""
    return subprocess.run(
        [*SOCKWIRE, *args], input=input, capture_output=True, timeout=timeout, check=False
    )


def wait_path(path: str, timeout: float = DEADLINE) -> None:
    """Wait until ``path`` exists, polling with select timeouts (bounded count and time)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        select.select([], [], [], 0.02)


def connect_when_ready(
    family: int, sock_type: int, address: Any, timeout: float = DEADLINE
) -> socket.socket:
    """Connect, retrying refused/missing targets a bounded number of times."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(family, sock_type)
        try:
            sock.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            if time.monotonic() > deadline:
                raise
            select.select([], [], [], 0.02)
        except BaseException:
            sock.close()
            raise
        else:
            return sock


def host_port(address: str) -> tuple[str, int]:
    """``tcp://127.0.0.1:4000`` -> ("127.0.0.1", 4000)."""
    rest = address.split("://", 1)[1]
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def recv_all(sock: socket.socket, timeout: float = DEADLINE) -> bytes:
    """Everything until EOF, with a deadline."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


@contextlib.contextmanager
def short_dir() -> Iterator[str]:
    """A private directory with a short path (UNIX socket paths must fit 107 bytes)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="sw", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
