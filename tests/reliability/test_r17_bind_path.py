"""R17: the socket-file policy of unix.bind_path, as dial.listen/bind use it: every case x 3.

Each case runs three times in a row (a policy that works once by luck fails
a repeat) and is checked with os.lstat: what is at the path afterwards, and
whether it is still the same inode.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import sockwire
from sockwire import dial, trace, unix
from sockwire.trace import Event
from tests.helpers import need_root

REPEATS = 3
NOBODY = 65534


def _ident(path: Path) -> tuple[int, int, int, int]:
    st = os.lstat(path)
    return (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_mode)


def _stale(path: Path, kind: int = socket.SOCK_STREAM) -> None:
    """A socket file whose socket is gone: what a crashed server leaves behind."""
    with socket.socket(socket.AF_UNIX, kind) as sock:
        sock.bind(str(path))
        if kind != socket.SOCK_DGRAM:
            sock.listen(1)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A 0755 directory in /tmp: others may traverse it (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="sockwire-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


# ---- nothing there, stale, live ---------------------------------------------------


@pytest.mark.parametrize("scheme", ["unix", "unix+seqpacket", "unix+dgram"])
def test_free_path_is_bound_with_its_mode_and_removed_on_close(
    tmp_path: Path, scheme: str
) -> None:
    path = tmp_path / "s.sock"
    make = dial.bind if scheme == "unix+dgram" else dial.listen
    for _ in range(REPEATS):
        with make(f"{scheme}:{path}?mode=0640") as sock:
            st = os.lstat(path)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
            assert isinstance(sock, unix.UnixSocket)
            assert sock.socket_file is not None and sock.socket_file.is_ours()
        assert not os.path.lexists(path)


@pytest.mark.parametrize(
    ("scheme", "kind"),
    [
        ("unix", socket.SOCK_STREAM),
        ("unix+seqpacket", socket.SOCK_SEQPACKET),
        ("unix+dgram", socket.SOCK_DGRAM),
        ("unix", socket.SOCK_SEQPACKET),  # a stale file of another type is stale too
    ],
)
def test_stale_socket_file_is_replaced(
    tmp_path: Path, scheme: str, kind: int, report: Callable[..., None]
) -> None:
    path = tmp_path / "s.sock"
    make = dial.bind if scheme == "unix+dgram" else dial.listen
    for _ in range(REPEATS):
        _stale(path, kind)
        with trace.recording() as events, make(f"{scheme}:{path}") as sock:
            st = os.lstat(path)
            assert stat.S_ISSOCK(st.st_mode)
            if scheme != "unix+dgram":
                with dial.connect(f"{scheme}:{path}"):
                    conn, _ = sock.accept()
                    conn.close()
        refused = [e for e in events if e.call == "connect" and e.errno == "ECONNREFUSED"]
        unlinks = [e for e in events if e.call == "unlink"]
        assert len(refused) == 2, "two probes before calling a file stale"
        assert len(unlinks) == 2  # the stale file, then our own on close
        assert not os.path.lexists(path)
    report("R17", stale_replaced=REPEATS)


def test_live_listener_is_never_removed_and_its_pid_is_named(
    tmp_path: Path, report: Callable[..., None]
) -> None:
    path = tmp_path / "s.sock"
    with dial.listen(f"unix:{path}") as live:
        before = _ident(path)
        for _ in range(REPEATS):
            with pytest.raises(sockwire.AddressInUse, match="live SOCK_STREAM") as info:
                dial.listen(f"unix:{path}")
            assert info.value.pid == os.getpid()
            assert f"pid {os.getpid()}" in str(info.value)
            assert _ident(path) == before
        with dial.connect(f"unix:{path}"):
            conn, _ = live.accept()
            conn.close()
    report("R17", live_never_unlinked=REPEATS)


def test_live_datagram_socket_is_never_removed(
    tmp_path: Path, report: Callable[..., None]
) -> None:
    path = tmp_path / "d.sock"
    with dial.bind(f"unix+dgram:{path}"):
        before = _ident(path)
        for _ in range(REPEATS):
            with pytest.raises(sockwire.AddressInUse, match="live SOCK_DGRAM"):
                dial.bind(f"unix+dgram:{path}")
            assert _ident(path) == before
    report("R17", live_never_unlinked=REPEATS)


def test_live_socket_of_another_type_is_never_removed(
    tmp_path: Path, report: Callable[..., None]
) -> None:
    path = tmp_path / "s.sock"
    with dial.listen(f"unix+seqpacket:{path}"):
        before = _ident(path)
        for _ in range(REPEATS):
            with pytest.raises(sockwire.AddressInUse, match="live SOCK_SEQPACKET"):
                dial.listen(f"unix:{path}")
            assert _ident(path) == before
    report("R17", live_never_unlinked=REPEATS)


def test_full_backlog_means_live_not_stale(tmp_path: Path, report: Callable[..., None]) -> None:
    """EAGAIN: a live listener with a full backlog, never stale."""
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as live, socket.socket(socket.AF_UNIX) as filler:
        live.bind(str(path))
        live.listen(0)  # room for one pending connection
        filler.setblocking(False)
        filler.connect(str(path))
        before = _ident(path)
        for _ in range(REPEATS):
            with pytest.raises(sockwire.AddressInUse, match="backlog is full"):
                dial.listen(f"unix:{path}")
            assert _ident(path) == before
    report("R17", live_never_unlinked=1)


def test_server_between_bind_and_listen_survives_the_second_probe(tmp_path: Path) -> None:
    """One refused probe is not enough: the server may listen() during the pause.

    A trace hook makes the other server call listen() right after our first
    probe is refused: deterministic, no timing.
    """
    path = tmp_path / "s.sock"
    for _ in range(REPEATS):
        with socket.socket(socket.AF_UNIX) as other:
            other.bind(str(path))
            before = _ident(path)

            def listen_now(event: Event, other: socket.socket = other) -> None:
                if event.call == "connect" and event.errno == "ECONNREFUSED":
                    other.listen(1)

            trace.add_hook(listen_now)
            try:
                with pytest.raises(sockwire.AddressInUse) as info:
                    dial.listen(f"unix:{path}")
            finally:
                trace.remove_hook(listen_now)
            assert info.value.pid == os.getpid()
            assert _ident(path) == before
        os.unlink(path)


def test_server_that_never_listens_is_seen_by_the_kernel(tmp_path: Path) -> None:
    """Bound but not listening: every connect is refused, yet sock_diag shows the
    socket holding the file, so it is live (the probes alone would call it stale)."""
    path = tmp_path / "s.sock"
    for _ in range(REPEATS):
        with socket.socket(socket.AF_UNIX) as other:
            other.bind(str(path))
            before = _ident(path)
            with pytest.raises(sockwire.AddressInUse, match="not listening") as info:
                dial.listen(f"unix:{path}")
            assert info.value.pid == os.getpid()
            assert _ident(path) == before
        os.unlink(path)


def test_abstract_name_in_use_names_the_holder() -> None:
    name = f"@sockwire-test-{os.getpid()}-busy"
    with dial.listen(f"unix:{name}"):
        for _ in range(REPEATS):
            with pytest.raises(sockwire.AddressInUse) as info:
                dial.listen(f"unix:{name}")
            assert info.value.pid == os.getpid()


# ---- not a socket: refused, never followed, never removed --------------------------


def test_regular_file_directory_fifo_are_refused_untouched(
    tmp_path: Path, report: Callable[..., None]
) -> None:
    regular = tmp_path / "file"
    regular.write_text("precious")
    directory = tmp_path / "dir"
    directory.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, kind in ((regular, "regular file"), (directory, "directory"), (fifo, "FIFO")):
        before = _ident(path)
        for _ in range(REPEATS):
            with pytest.raises(sockwire.AddressInUse, match=f"already exists and is a {kind}"):
                dial.listen(f"unix:{path}")
            assert _ident(path) == before
    assert regular.read_text() == "precious"
    report("R17", file_dir_fifo_symlink_refused=3 * REPEATS)


def test_symlink_is_refused_and_never_followed(
    tmp_path: Path, report: Callable[..., None]
) -> None:
    target = tmp_path / "target.sock"
    _stale(target)  # following the link would find a stale socket to remove
    link = tmp_path / "link.sock"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.sock"
    dangling.symlink_to(tmp_path / "nowhere.sock")
    for path in (link, dangling):
        before, target_before = _ident(path), _ident(target)
        for _ in range(REPEATS):
            with pytest.raises(sockwire.AddressInUse, match="symbolic link"):
                dial.listen(f"unix:{path}")
            assert _ident(path) == before
            assert _ident(target) == target_before
    assert not os.path.lexists(tmp_path / "nowhere.sock")
    report("R17", file_dir_fifo_symlink_refused=2 * REPEATS)


# ---- the parent directory ---------------------------------------------------------


def test_world_writable_directory_without_sticky_bit_needs_opt_in(
    tmp_path: Path, report: Callable[..., None]
) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    for _ in range(REPEATS):
        with pytest.raises(sockwire.PermissionDenied, match="unsafe_dir=1"):
            dial.listen(f"unix:{open_dir}/s.sock")
        assert not os.path.lexists(open_dir / "s.sock")
        with dial.listen(f"unix:{open_dir}/s.sock?unsafe_dir=1"):
            assert stat.S_ISSOCK(os.lstat(open_dir / "s.sock").st_mode)
        with dial.listen(f"unix:{sticky}/s.sock"):
            assert stat.S_ISSOCK(os.lstat(sticky / "s.sock").st_mode)
        assert not os.listdir(open_dir) and not os.listdir(sticky)
    report("R17", unsafe_dirs_refused=1)


def test_path_over_the_limit_points_to_abstract_names(tmp_path: Path) -> None:
    long_path = "/tmp/" + "x" * 110
    with pytest.raises(sockwire.AddressError, match="unix:@name"):
        dial.listen(f"unix:{long_path}")
    with sockwire.Socket() as sock, pytest.raises(sockwire.AddressError, match="107 bytes"):
        unix.bind_path(sock, long_path)


# ---- removal on close: only our inode, only in our process --------------------------


def test_close_leaves_a_replaced_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    moved = tmp_path / "moved.sock"
    for _ in range(REPEATS):
        ours = dial.listen(f"unix:{path}")
        os.rename(path, moved)  # someone moved ours away and put their own there
        with socket.socket(socket.AF_UNIX) as theirs:
            theirs.bind(str(path))
            before = _ident(path)
            ours.close()
            assert _ident(path) == before
        assert os.path.lexists(moved)
        os.unlink(path)
        os.unlink(moved)


def test_forked_child_closing_its_copy_removes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    for _ in range(REPEATS):
        with dial.listen(f"unix:{path}") as listener:
            pid = os.fork()
            if pid == 0:  # the child: close its inherited copy, then leave
                code = 1
                try:
                    listener.close()
                    code = 0 if os.path.lexists(path) else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert not os.path.lexists(path)


def test_detached_socket_keeps_its_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    listener = dial.listen(f"unix:{path}")
    fd = listener.detach()
    os.close(fd)
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    with dial.listen(f"unix:{path}"):  # and it is stale now: replaced
        pass
    assert not os.path.lexists(path)


# ---- mode, owner and group in force before anyone can connect -----------------------


def _connect_as_nobody(path: str, kind: int = socket.SOCK_STREAM) -> str:
    """connect() from a forked child running as uid/gid 65534: 'ok' or the errno name."""
    pid = os.fork()
    if pid == 0:
        code = 100
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            with socket.socket(socket.AF_UNIX, kind) as sock:
                try:
                    sock.connect(path)
                    code = 0
                except OSError as exc:
                    code = exc.errno or 101
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return "ok" if code == 0 else errno.errorcode.get(code, str(code))


@pytest.mark.parametrize(
    ("options", "final_mode", "final_uid", "final_gid", "after"),
    [
        ("mode=0600", 0o600, 0, 0, "EACCES"),
        ("mode=0666", 0o666, 0, 0, "ok"),  # umask 022 would give 0644: widened after bind
        ("mode=0600&owner=65534", 0o600, NOBODY, 0, "ok"),
        ("mode=0660&group=65534", 0o660, 0, NOBODY, "ok"),
        ("owner=nobody", None, NOBODY, 0, "ok"),
    ],
)
def test_no_connect_before_mode_owner_group_are_set(
    shared_dir: Path,
    options: str,
    final_mode: int | None,
    final_uid: int,
    final_gid: int,
    after: str,
    report: Callable[..., None],
) -> None:
    """Right after bind(2) returns (a trace hook: the earliest moment the file
    exists) uid 65534 cannot connect; once listen() returns, the final mode,
    owner and group are in force. Every intermediate state is stricter."""
    need_root()
    path = str(shared_dir / "s.sock")
    old_umask = os.umask(0o022)
    try:
        for _ in range(REPEATS):
            at_bind: list[tuple[int, int, int, str]] = []

            def hook(event: Event, at_bind: list[tuple[int, int, int, str]] = at_bind) -> None:
                if event.call == "bind" and event.errno is None and path in event.args[1]:
                    st = os.lstat(path)
                    at_bind.append(
                        (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, _connect_as_nobody(path))
                    )

            trace.add_hook(hook)
            try:
                listener = dial.listen(f"unix:{path}?{options}")
            finally:
                trace.remove_hook(hook)
            with listener:
                assert len(at_bind) == 1
                mode_then, uid_then, _, verdict_then = at_bind[0]
                assert verdict_then == "EACCES"
                assert uid_then == 0
                st = os.lstat(path)
                if final_mode is not None:
                    assert stat.S_IMODE(st.st_mode) == final_mode
                    assert mode_then & ~final_mode == 0, "never wider than the final mode"
                assert (st.st_uid, st.st_gid) == (final_uid, final_gid)
                assert _connect_as_nobody(path) == after
    finally:
        os.umask(old_umask)
    report("R17", mode_final_before_connect=REPEATS)


def test_unknown_owner_is_an_address_error(tmp_path: Path) -> None:
    with pytest.raises(sockwire.AddressError, match="unknown user"):
        dial.listen(f"unix:{tmp_path}/s.sock?owner=no-such-user-here")
    assert not os.path.lexists(tmp_path / "s.sock")


def test_a_socket_we_may_not_probe_is_left_alone(shared_dir: Path) -> None:
    """uid 65534 cannot connect to root's 0600 socket, but the kernel's list
    (sock_diag, open to every user) shows it live: AddressInUse naming uid 0,
    and the file stays (a sticky 1777 directory, as /tmp)."""
    need_root()
    shared_dir.chmod(0o1777)
    path = shared_dir / "root.sock"
    with dial.listen(f"unix:{path}?mode=0600"):
        before = _ident(path)
        for _ in range(REPEATS):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.setgroups([])
                    os.setresgid(NOBODY, NOBODY, NOBODY)
                    os.setresuid(NOBODY, NOBODY, NOBODY)
                    try:
                        dial.listen(f"unix:{path}").close()
                    except sockwire.AddressInUse as exc:
                        text = str(exc)
                        code = 0 if "live SOCK_STREAM socket (listening)" in text else 2
                        code = code if "(uid 0)" in text else 3
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert _ident(path) == before
