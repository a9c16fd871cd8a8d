"""A connect that never blocks the pump's loop: relay's way to its TARGET.

Why: ``relay`` serves every client from one poll(2) loop (see :mod:`.pump`).
A blocking connect inside it froze every other client for as long as the
connect took: an established client's echo waited 9.7 s while another
client's connect hung on a TARGET with a full backlog, and was then reset
as idle. A :class:`Dialer` is one more handler of that loop: it starts a
non-blocking connect, waits for it with poll like any other descriptor,
and gives up at its own deadline, so no client ever waits on another's
connect.

Platform knowledge (Linux, net/ipv4/tcp_ipv4.c and net/unix/af_unix.c):

* TCP: a non-blocking connect() fails with EINPROGRESS; the socket turns
  writable (POLLOUT, with POLLERR on failure) when the handshake ends, and
  SO_ERROR holds the outcome (0, ECONNREFUSED, ETIMEDOUT, ...). A listener
  whose accept queue is full drops the SYN, so the connect stays pending
  and SYN retransmits go on: only our deadline ends it.
* AF_UNIX stream/seqpacket: connect() never returns EINPROGRESS. It
  succeeds at once, or, when the listener's backlog is full, fails with
  EAGAIN on a non-blocking socket (a blocking one sleeps on the listener's
  queue, which a non-blocking caller cannot wait on: poll has no event for
  "room in someone else's backlog"). So EAGAIN is retried on a timer,
  :data:`RETRY_FIRST` doubling up to :data:`RETRY_MAX` seconds, until the
  deadline: bounded in count and time, never a busy loop.
* A host name is resolved once, before the first client (getaddrinfo
  blocks); each address is tried in turn, as ``dial.connect`` does.
"""

from __future__ import annotations

import errno as _errno
import os
import select
import socket
import time
from collections.abc import Callable

from .. import dial, unix
from ..address import Endpoint
from ..errors import ConnectError, SockwireError, TimeoutError, WouldBlock, translate
from ..sock import Address, Socket
from .observe import say

__all__ = ["RETRY_FIRST", "RETRY_MAX", "Dialer", "addresses"]

#: seconds before the first retry of a UNIX connect refused with EAGAIN (backlog full)
RETRY_FIRST = 0.01
#: the longest wait between two such retries
RETRY_MAX = 0.25

_OUT = select.POLLOUT
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


def addresses(ep: Endpoint) -> list[tuple[int, Address]]:
    """(family, sockaddr) to try for ``ep`` (``?family=`` applied), names resolved now (blocks)."""
    try:
        return list(ep.addresses())
    except OSError as exc:
        raise translate(exc, "resolve", ep.display()) from exc


class Dialer:
    """One connect to ``ep`` in progress, as a handler of the pump's loop.

    Exactly one of ``on_connected(sock)`` (a connected, non-blocking
    Socket, now the callee's) or ``on_failed(error)`` is called, once.
    ``watch``: the client this connect is for; if it hangs up meanwhile
    the attempt is dropped (``on_failed`` with the client's error).
    """

    def __init__(
        self,
        ep: Endpoint,
        targets: list[tuple[int, Address]],
        *,
        timeout: float,
        on_connected: Callable[[Socket], None],
        on_failed: Callable[[SockwireError], None],
        watch: Socket | None = None,
    ) -> None:
        self.ep = ep
        self.targets = targets
        self.timeout = timeout
        self.on_connected = on_connected
        self.on_failed = on_failed
        self.watch = watch
        self.sock: Socket | None = None
        self.finished = False
        self.started = time.monotonic()
        self._deadline = self.started + timeout
        self._next = 0
        self._address: Address | None = None
        self._pending = False  # waiting for POLLOUT (TCP's EINPROGRESS)
        self._retry_at: float | None = None  # UNIX EAGAIN: when to call connect() again
        self._backoff = RETRY_FIRST
        self._last: SockwireError | None = None

    # ---- the connect itself

    def start(self) -> None:
        """The first attempt; it may finish (either way) before this returns."""
        self._attempt_next()

    def _attempt_next(self) -> None:
        while not self.finished:
            if self._next >= len(self.targets):
                assert self._last is not None
                last = self._last
                if self.ep.is_unix and self.ep.path is not None and not self.ep.is_abstract:
                    last = unix.explain_connect(last, self.ep.path)  # which type it really is
                self._fail(last)
                return
            family, address = self.targets[self._next]
            self._next += 1
            self._close_sock()
            try:
                sock = dial.client_socket(self.ep, family)  # options, ?bind=, ?sourceport=
            except SockwireError as exc:
                self._fail(exc)
                return
            sock.setblocking(False)
            self.sock = sock
            self._address = address
            self._backoff = RETRY_FIRST
            if self._connect():
                return
            # this address failed at once (refused, unreachable): the next one

    def _connect(self) -> bool:
        """connect(): True when it succeeded or is under way; False to try the next address."""
        assert self.sock is not None
        assert self._address is not None
        try:
            self.sock.connect(self._address)
        except WouldBlock as exc:
            if exc.errno == _errno.EINPROGRESS:
                self._pending = True
            else:  # EAGAIN: a UNIX listener's backlog is full; poll cannot wait for room
                self._retry_at = min(time.monotonic() + self._backoff, self._deadline)
                self._backoff = min(self._backoff * 2, RETRY_MAX)
            return True
        except ConnectError as exc:
            self._last = exc
            return False
        except SockwireError as exc:
            self._fail(exc)
            return True
        self._succeed()
        return True

    def _outcome(self) -> None:
        """POLLOUT after EINPROGRESS: SO_ERROR says how the handshake ended."""
        assert self.sock is not None
        self._pending = False
        code = int(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        if code == 0:
            self._succeed()
            return
        exc = translate(
            OSError(code, os.strerror(code)),
            "connect",
            self.ep.display(),
            family=self.sock.family,
            sock_type=self.sock.type,
        )
        if isinstance(exc, ConnectError):
            self._last = exc
            self._attempt_next()
        else:
            self._fail(exc)

    def _succeed(self) -> None:
        sock, self.sock = self.sock, None
        assert sock is not None
        self.finished = True
        say("connected", self.ep.display(), f"fd={sock.fd}")
        self.on_connected(sock)

    def _fail(self, exc: SockwireError) -> None:
        self._close_sock()
        self.finished = True
        self.on_failed(exc)

    def _close_sock(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._pending = False
        self._retry_at = None

    # ---- the loop's Handler protocol

    def interest(self) -> list[tuple[int, int]]:
        if self.finished:
            return []
        wants = []
        if self.watch is not None and not self.watch.closed:
            wants.append((self.watch.fd, 0))  # POLLHUP/POLLERR come unasked
        if self._pending and self.sock is not None:
            wants.append((self.sock.fd, _OUT))
        return wants

    def ready(self, fd: int, revents: int) -> None:
        if self.finished:
            return
        if self._pending and self.sock is not None and fd == self.sock.fd:
            self._outcome()
        elif self.watch is not None and fd == self.watch.fd and revents & _GONE:
            from ..errors import ConnectionLost

            self._fail(
                ConnectionLost(
                    f"connect {self.ep.display()}",
                    "the client went away while its connection to TARGET was being made",
                )
            )

    def deadline(self) -> float | None:
        if self.finished:
            return None
        return self._retry_at if self._retry_at is not None else self._deadline

    def expire(self, now: float) -> None:
        if self.finished:
            return
        if now >= self._deadline:
            self._fail(
                TimeoutError(
                    f"connect {self.ep.display()}",
                    f"no connection within {self.timeout:g} s (the target's backlog may be "
                    "full, or it does not answer); raise --timeout or ?timeout= on TARGET",
                    errno=_errno.ETIMEDOUT,
                )
            )
        elif self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._connect()

    @property
    def done(self) -> bool:
        return self.finished

    def close(self) -> None:
        """The loop is ending (or this attempt finished): nothing to hand over any more."""
        self._close_sock()
        self.finished = True
