"""``--exec CMD`` / ``--system LINE``: a program per connection, the socket as its stdin/stdout.

What socat's ``EXEC:``/``SYSTEM:`` and nc's ``-e``/``-c`` do. The child gets
the connected socket itself as fds 0 and 1 (stderr stays ours), so bytes
never pass through sockwire; with ``--pty`` it gets a pseudo-terminal
instead, and the pump copies between the socket and the terminal's master.

Every child is watched by its pidfd (pidfd_open(2), Linux 5.3) in the
pump's one poll loop: an exit wakes the loop, the child is reaped at once
(no zombies, no SIGCHLD handler) and its status is a ``--trace`` note. When
the command ends (Ctrl-C, SIGTERM, a one-shot's last connection) a child
still running gets SIGTERM, then SIGKILL after :data:`GRACE` seconds, and
is reaped: nothing outlives the command.

Security: the child inherits no descriptor but its socket or terminal
(``close_fds``), so it cannot accept on the listener or read other clients.
It learns its peer from the environment: ``SOCKWIRE_PEER`` (the address as
``--trace`` shows it) and, on UNIX sockets, ``SOCKWIRE_PEER_PID``/``_UID``/``_GID``
from SO_PEERCRED (socat's ``SOCAT_PEERADDR``).
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess
from collections.abc import Callable
from typing import NamedTuple

from ..sock import Peer, Socket
from .observe import say

__all__ = ["GRACE", "Child", "ExecSpec", "exec_spec", "exit_code"]

#: seconds a child has between SIGTERM and SIGKILL when the command ends first
GRACE = 2.0


class ExecSpec(NamedTuple):
    """What to run for each connection."""

    argv: list[str]
    text: str  # as the user gave it, for traces
    pty: bool


def exec_spec(exec_cmd: str | None, system: str | None, pty: bool) -> ExecSpec | None:
    """The ``--exec``/``--system``/``--pty`` options, checked; None when neither is given."""
    from .exitcodes import UsageError

    if exec_cmd is None and system is None:
        if pty:
            raise UsageError("--pty", "--pty is for the program of --exec or --system")
        return None
    if system is not None:
        if not system.strip():
            raise UsageError("--system ''", "give a shell command line")
        return ExecSpec(["/bin/sh", "-c", system], system, pty)
    assert exec_cmd is not None
    try:
        argv = shlex.split(exec_cmd)
    except ValueError as exc:
        raise UsageError(f"--exec {exec_cmd!r}", f"cannot split it into words ({exc})") from None
    if not argv:
        raise UsageError("--exec ''", "give a program to run, e.g. --exec cat")
    return ExecSpec(argv, exec_cmd, pty)


def exit_code(returncode: int) -> int:
    """A child's status as a shell reports it: its code, or 128 + the signal that killed it."""
    return 128 - returncode if returncode < 0 else returncode


def _environment(peer: Peer | None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("SOCKWIRE_PEER", "SOCKWIRE_PEER_PID", "SOCKWIRE_PEER_UID", "SOCKWIRE_PEER_GID"):
        env.pop(name, None)  # never pass on a value from our own parent
    if peer is not None:
        env["SOCKWIRE_PEER"] = str(peer).split(" (", 1)[0]
        if peer.creds is not None:
            env["SOCKWIRE_PEER_PID"] = str(peer.creds.pid)
            env["SOCKWIRE_PEER_UID"] = str(peer.creds.uid)
            env["SOCKWIRE_PEER_GID"] = str(peer.creds.gid)
    return env


def _controlling_terminal() -> None:  # pragma: no cover  # runs in the child, before exec
    """In the child (a new session): fd 0, the terminal's slave, becomes its controlling tty."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Child:
    """One connection's program, as a handler of the pump's loop (its pidfd).

    ``sock`` is handed to the child and closed here; with ``pty`` the child
    gets a terminal and :attr:`master` is the end for the pump to copy to
    and from (the caller's to close). ``on_exit`` runs once, after the reap.
    """

    def __init__(
        self,
        spec: ExecSpec,
        sock: Socket,
        *,
        label: str,
        peer: Peer | None,
        on_exit: Callable[[Child], None] | None = None,
    ) -> None:
        self.spec = spec
        self.label = label
        self.on_exit = on_exit
        self.returncode: int | None = None
        self.master: int | None = None
        env = _environment(peer)
        slave: int | None = None
        try:
            if spec.pty:
                self.master, slave = os.openpty()
                os.set_blocking(self.master, False)
                os.set_inheritable(self.master, False)
                self.proc = subprocess.Popen(
                    spec.argv,
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_controlling_terminal,  # noqa: PLW1509  # only TIOCSCTTY
                )
            else:
                sock.setblocking(True)  # the child expects an ordinary blocking descriptor
                self.proc = subprocess.Popen(spec.argv, stdin=sock.fd, stdout=sock.fd, env=env)
        except OSError as exc:
            if self.master is not None:
                os.close(self.master)
                self.master = None
            from ..errors import translate

            raise translate(exc, "exec", spec.argv[0]) from exc
        finally:
            if slave is not None:
                os.close(slave)
        self.pid = self.proc.pid
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except OSError as exc:  # EMFILE: no descriptor to watch it with; do not leave it
            self.proc.kill()
            self.proc.wait()
            if self.master is not None:
                os.close(self.master)
            from ..errors import translate

            raise translate(exc, "pidfd_open", spec.argv[0]) from exc
        say("exec", f"pid={self.pid}", spec.text, f"for {label}", *(["(pty)"] if spec.pty else []))
        if not spec.pty:
            sock.close()  # the child has it now; our copy would keep the connection open

    # ---- the loop's Handler protocol

    def interest(self) -> list[tuple[int, int]]:
        return [] if self.returncode is not None else [(self.pidfd, select.POLLIN)]

    def ready(self, fd: int, revents: int) -> None:
        if fd == self.pidfd and self.returncode is None:
            self._reap(self.proc.wait())

    def _reap(self, returncode: int) -> None:
        self.returncode = returncode
        status = (
            f"killed by {signal.Signals(-returncode).name}"
            if returncode < 0
            else f"status {returncode}"
        )
        say("exit", f"pid={self.pid}", status, f"({self.label})")
        if self.on_exit is not None:
            self.on_exit(self)

    def deadline(self) -> float | None:
        return None

    def expire(self, now: float) -> None:
        pass

    @property
    def done(self) -> bool:
        return self.returncode is not None

    def close(self) -> None:
        """Reap the child; one still running gets SIGTERM, then SIGKILL after GRACE."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                returncode = self.proc.wait(GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                returncode = self.proc.wait()
            self._reap(returncode)
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
