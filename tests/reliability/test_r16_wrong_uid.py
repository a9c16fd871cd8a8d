"""R16: a peer of the wrong uid is refused, every time, before a byte is read.

100 trials each (uid 65534 against a root server with ``?allowed_uids=0``):
a socket file (mode 0666, so only the filter stands in the way), an abstract
name (no file, no permissions at all), a seqpacket socket file; and a 0600
socket file that uid 65534 may not even connect to. The handler never runs
for a refused peer. Plus the directory rule of defect 6: 100 attempts to
bind in a directory uid 65534 owns are refused.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import sockwire
from sockwire import dial
from sockwire.channel import Channel
from sockwire.server import serve
from sockwire.sock import Peer
from tests.helpers import need_root
from tests.reliability.support import WAIT, good_client

NOBODY = 65534
TRIALS = 100


@pytest.fixture
def shared() -> Iterator[Path]:
    """A 0755 root-owned directory uid 65534 may traverse (pytest's tmp_path is 0700)."""
    import shutil

    path = Path(tempfile.mkdtemp(prefix="sw-r16-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _as_nobody(targets: list[tuple[int, int, str | bytes]]) -> dict[str, int]:
    """Fork; the child drops to uid 65534 and connects TRIALS times to each target.

    Returns, per target, how many attempts were refused: connect failed
    (EACCES) or the connection ended (EOF, reset) without a byte back.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no threads of its own; report and _exit
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            result: dict[str, int] = {}
            for family, kind, address in targets:
                refused = 0
                for _ in range(TRIALS):
                    with socket.socket(family, kind) as sock:
                        sock.settimeout(WAIT)
                        try:
                            sock.connect(address)
                            sock.send(
                                b"\0\0\0\x05hello" if kind == socket.SOCK_STREAM else b"\x10hello"
                            )
                            refused += sock.recv(64) == b""
                        except (PermissionError, ConnectionResetError, BrokenPipeError):
                            refused += 1
                result[repr(address)] = refused
            os.write(write_end, json.dumps(result).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)  # type: ignore[no-any-return]


@pytest.mark.timeout(120)
def test_r16_wrong_uid_is_refused_every_time(shared: Path, report: Callable[..., None]) -> None:
    need_root()
    reached: list[Peer] = []

    def handler(ch: Channel, peer: Peer) -> None:
        reached.append(peer)
        for msg in ch:
            ch.send(msg)

    abstract = f"sw-r16-{os.getpid()}"
    endpoints = {
        "path": f"unix:{shared}/s.sock?mode=0666&allowed_uids=0",
        "abstract": f"unix:@{abstract}?allowed_uids=0",
        "seqpacket": f"unix+seqpacket:{shared}/q.sock?mode=0666&allowed_uids=0",
        "mode-0600": f"unix:{shared}/p.sock?mode=0600",
    }
    servers = [serve(ep, handler).start() for ep in endpoints.values()]
    try:
        targets = [
            (socket.AF_UNIX, socket.SOCK_STREAM, f"{shared}/s.sock"),
            (socket.AF_UNIX, socket.SOCK_STREAM, b"\0" + abstract.encode()),
            (socket.AF_UNIX, socket.SOCK_SEQPACKET, f"{shared}/q.sock"),
            (socket.AF_UNIX, socket.SOCK_STREAM, f"{shared}/p.sock"),
        ]
        refused = _as_nobody(targets)
        for server in servers:
            assert server.wait_for(lambda s: s.stats.active == 0, WAIT)
        assert reached == [], "a refused peer reached the handler"
        for (_, _, address), name in zip(targets, endpoints, strict=True):
            assert refused[repr(address)] == TRIALS, f"{name}: {refused}"
        for server in servers[:3]:
            assert server.stats.refused == TRIALS
            assert good_client(server.endpoint.split("?")[0], 1) < WAIT  # root is served
    finally:
        for server in servers:
            server.shutdown(5)
    report(
        "R16", wrong_uid_attempts=TRIALS * len(targets), refused=sum(refused.values()), reached=0
    )


@pytest.mark.timeout(60)
def test_r16_a_directory_another_user_owns_is_refused(
    shared: Path, report: Callable[..., None]
) -> None:
    need_root()
    theirs = shared / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    for i in range(TRIALS):
        with pytest.raises(sockwire.PermissionDenied, match="belongs to uid 65534"):
            dial.listen(f"unix:{theirs}/s{i}.sock")
    assert os.listdir(theirs) == []
    report("R16", other_owner_dir_binds_refused=TRIALS)
