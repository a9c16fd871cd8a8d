"""The security seam of :mod:`sockwire.secure`, awaitable: credentials, TLS, the HMAC handshake.

The steps, their order, the errors and what counts as *authenticated* are
:mod:`sockwire.secure`'s (read its docstring): peer credentials through
:func:`sockwire.secure.peer_creds_checked`, TLS contexts from
:mod:`sockwire.tls` (and its ``handshake_failed``/``handshake_done`` for the
outcome), the HMAC machines of :mod:`sockwire.auth`. What differs is only
the waiting: the TLS handshake runs on a non-blocking ``SSLSocket`` and the
HMAC bytes move when the loop says the socket is ready, so a slow or silent
client costs a parked coroutine, not a thread. ``timeout`` bounds all the
steps together; on any failure (cancellation included) the socket is closed.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import socket
import ssl
import time

from .. import auth, secure, tls, trace
from ..address import Endpoint
from ..errors import PermissionDenied, SockwireError, TimeoutError, translate
from ..sock import Socket
from .loops import wait_fd

__all__ = ["secure_client", "secure_server"]

log = logging.getLogger("sockwire")


class _Deadline:
    """One deadline for all the steps (in ``loop.time()``), and the error at its end."""

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout = timeout
        self.what = what
        self.at = asyncio.get_running_loop().time() + timeout

    def expired(self) -> TimeoutError:
        return TimeoutError(self.what, f"the security handshakes took over {self.timeout:g} s")


async def secure_client(
    sock: Socket, ep: Endpoint, *, timeout: float = 10.0
) -> tuple[Socket, bool]:
    """Client side: credentials, TLS (tls+tcp), HMAC (?authfile=); (socket, authenticated)."""
    deadline = _Deadline(timeout, f"secure {ep.display()}")
    try:
        proven = secure.peer_creds_checked(sock, ep, "server")
        key = secure.handshake_key(ep)
        secure.nodelay_for_handshakes(sock, ep)
        if ep.scheme == "tls+tcp":
            sock = await _wrap(sock, ep, deadline, server_side=False)
            proven = proven or tls.peer_authenticated(ep)
        if key is not None:
            machine = auth.ClientHandshake(key)
            await _drive(machine, sock, machine.start(), deadline, ep.display())
            proven = True
    except BaseException:
        sock.close()
        raise
    return sock, proven


async def secure_server(
    sock: Socket, ep: Endpoint, *, timeout: float = 10.0
) -> tuple[Socket, bool]:
    """Server side, on an accepted socket, before any application byte is read."""
    deadline = _Deadline(timeout, f"secure {ep.display()}")
    peer = secure.peer_text(sock, ep)
    try:
        proven = secure.peer_creds_checked(sock, ep, "client")
    except BaseException:
        sock.close()  # the refusal was logged by the peer filter, with pid/uid/gid
        raise
    try:
        key = secure.handshake_key(ep)
        secure.nodelay_for_handshakes(sock, ep)
        if ep.scheme == "tls+tcp":
            sock = await _wrap(sock, ep, deadline, server_side=True)
            proven = proven or tls.peer_authenticated(ep)
        if key is not None:
            await _drive(auth.ServerHandshake(key), sock, b"", deadline, peer)
            proven = True
    except PermissionDenied as exc:
        sock.close()
        log.warning("refused %s: %s", peer, exc)
        raise
    except BaseException:
        sock.close()
        raise
    return sock, proven


async def _wrap(sock: Socket, ep: Endpoint, deadline: _Deadline, *, server_side: bool) -> Socket:
    """The TLS handshake on a non-blocking SSLSocket; ``sock`` is consumed either way."""
    shake = tls.begin(sock, ep, server_side=server_side)
    wrapped, where, side, label = shake.tls, shake.where, shake.side, shake.label
    started = time.monotonic()
    try:
        wrapped.setblocking(False)
        await _handshake(wrapped, deadline.at)
    except OSError as exc:
        wrapped.close()
        raise tls.handshake_failed(exc, where, side, deadline.timeout) from exc
    except BaseException:
        wrapped.close()
        raise
    tls.handshake_done(side, wrapped, started)
    return Socket.adopt(wrapped, label=label)


async def _handshake(wrapped: ssl.SSLSocket, deadline: float) -> None:
    """do_handshake() until done; a bare TimeoutError (an OSError, as ssl raises) at the end."""
    while True:
        try:
            wrapped.do_handshake()
        except ssl.SSLWantReadError:
            writable = False
        except ssl.SSLWantWriteError:
            writable = True
        else:
            return
        if not await wait_fd(wrapped.fileno(), writable=writable, deadline=deadline):
            raise builtins.TimeoutError("timed out")


async def _ready(fd: int, writable: bool, deadline: _Deadline, where: str) -> None:
    if not await wait_fd(fd, writable=writable, deadline=deadline.at):
        raise TimeoutError(where, f"the peer did not finish it within {deadline.timeout:g} s")


async def _drive(
    machine: auth.ClientHandshake | auth.ServerHandshake,
    sock: Socket,
    first: bytes,
    deadline: _Deadline,
    label: str,
) -> None:
    """Move the HMAC machine's bytes (the blocking driver is ``auth._drive``)."""
    raw = sock.raw
    raw.setblocking(False)
    is_tls = isinstance(raw, ssl.SSLSocket)
    flags = 0 if is_tls else socket.MSG_NOSIGNAL  # ssl refuses flags
    where = f"{machine.role} auth handshake with {label}"
    out = first
    try:
        while True:
            view = memoryview(out)
            while view:
                try:
                    view = view[raw.send(view, flags) :]
                    continue
                except (BlockingIOError, ssl.SSLWantWriteError):
                    writable = True
                except ssl.SSLWantReadError:
                    writable = False
                if not await wait_fd(raw.fileno(), writable=writable, deadline=deadline.at):
                    raise TimeoutError(
                        where, f"the peer did not finish it in {deadline.timeout:g} s"
                    )
            if out:
                trace.note("auth", machine.role, f"sent {len(out)} bytes", result=machine.state)
            if machine.done:
                return
            while True:
                try:
                    data = raw.recv(machine.wanted())
                    break
                except (BlockingIOError, ssl.SSLWantReadError):
                    writable = False
                except ssl.SSLWantWriteError:
                    writable = True
                if not await wait_fd(raw.fileno(), writable=writable, deadline=deadline.at):
                    raise TimeoutError(
                        where, f"the peer did not finish it in {deadline.timeout:g} s"
                    )
            out = machine.receive(data)
    except SockwireError as exc:
        trace.note("auth", machine.role, "failed", result=type(exc).__name__)
        if machine.farewell:
            try:
                raw.send(machine.farewell, flags)  # best effort, never waiting
            except OSError:
                log.debug("could not send the auth farewell", exc_info=True)
        raise
    except OSError as exc:
        raise translate(exc, "auth handshake", label) from exc
