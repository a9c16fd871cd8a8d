"""``aio.Socket``: :class:`sockwire.Socket` with awaitable system calls, for every family x type.

Each awaitable call is the blocking Socket's own method on a non-blocking
descriptor: it runs at once, and when the kernel says EAGAIN
(:class:`~sockwire.errors.WouldBlock`) it waits for readiness and runs
again. So the names, the arguments, the tracing, the truncation reports and
the errors are :class:`sockwire.Socket`'s; only the waiting is asyncio's.
A call that made progress before EAGAIN is never repeated (``sendall`` goes
on from where it was).

asyncio's own ``loop.sock_*`` functions cover stream and datagram sockets;
this covers SEQPACKET too, and ``sendmsg``/``recvmsg`` with descriptors and
credentials (:mod:`sockwire.aio.unix` builds fd passing and peer checks on it).

Several tasks may wait on one Socket at once (a reader and a writer, or two
readers): every waiter of a direction is woken when it becomes ready and
tries again. ``close()`` wakes them all with ClosedError.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from .. import sock as _sock
from ..errors import ClosedError, SockwireError, WouldBlock, translate
from ..sock import Address, Creds, FdLike, Message, Peer
from .loops import wait_fd

__all__ = ["Socket"]

T = TypeVar("T")


class Socket:
    """A socket of any family and type whose I/O calls are awaitable.

    Make one like :class:`sockwire.Socket` (``aio.Socket(AF_UNIX,
    SOCK_SEQPACKET)``), or wrap an existing one with :meth:`wrap`. The
    blocking Socket is :attr:`sock` (for options and calls that never wait).
    """

    __slots__ = ("_readers", "_writers", "sock")

    def __init__(
        self,
        family: int = socket.AF_UNIX,
        type: int = socket.SOCK_STREAM,  # the syscall's own name
        proto: int = 0,
        *,
        label: str | None = None,
    ) -> None:
        self._adopt(_sock.Socket(family, type, proto, label=label))

    def _adopt(self, sock: _sock.Socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._readers: list[asyncio.Future[None]] = []
        self._writers: list[asyncio.Future[None]] = []

    @classmethod
    def wrap(cls, sock: _sock.Socket | socket.socket, *, label: str | None = None) -> Socket:
        """Take over ``sock`` (a sockwire Socket, UnixSocket included, or a ``socket.socket``)."""
        if isinstance(sock, socket.socket):
            sock = _sock.Socket.adopt(sock, label=label)
        self = cls.__new__(cls)
        self._adopt(sock)
        return self

    # ---- what it is

    @property
    def fd(self) -> int:
        return self.sock.fd

    def fileno(self) -> int:
        return self.sock.fd

    @property
    def family(self) -> int:
        return self.sock.family

    @property
    def type(self) -> int:
        return self.sock.type

    @property
    def closed(self) -> bool:
        return self.sock.closed

    @property
    def label(self) -> str | None:
        return self.sock.label

    def __repr__(self) -> str:
        return "<aio." + repr(self.sock)[1:]

    async def __aenter__(self) -> Socket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- calls that never wait

    def bind(self, address: Address) -> None:
        self.sock.bind(address)

    def listen(self, backlog: int = 128) -> None:
        self.sock.listen(backlog)

    def getsockname(self) -> Address:
        return self.sock.getsockname()

    def getpeername(self) -> Address:
        return self.sock.getpeername()

    def peercred(self) -> Creds | None:
        return self.sock.peercred()

    def peer(self) -> Peer:
        return self.sock.peer()

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self.sock.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        return self.sock.getsockopt(level, option, buflen)

    def shutdown(self, how: int = socket.SHUT_WR) -> None:
        self.sock.shutdown(how)

    def packet_limit(self) -> int | None:
        return self.sock.packet_limit()

    def tell_empty_from_eof(self) -> bool:
        return self.sock.tell_empty_from_eof()

    def close(self) -> None:
        """close(2); tasks waiting on this Socket raise ClosedError. Idempotent."""
        if self.sock.closed:
            return
        self._forget(self._readers, writable=False)
        self._forget(self._writers, writable=True)
        self.sock.close()

    def detach(self) -> int:
        self._forget(self._readers, writable=False)
        self._forget(self._writers, writable=True)
        return self.sock.detach()

    def _forget(self, waiters: list[asyncio.Future[None]], *, writable: bool) -> None:
        if not waiters:
            return
        loop = waiters[0].get_loop()
        if writable:
            loop.remove_writer(self.sock.fd)
        else:
            loop.remove_reader(self.sock.fd)
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        waiters.clear()

    # ---- waiting

    async def _ready(self, *, writable: bool) -> None:
        """Until the kernel says the socket is readable (writable), or it is closed."""
        if self.sock.closed:
            raise ClosedError("wait on a closed socket", "it was closed earlier; a caller bug")
        loop = asyncio.get_running_loop()
        waiters = self._writers if writable else self._readers
        fut: asyncio.Future[None] = loop.create_future()
        if not waiters:
            if writable:
                loop.add_writer(self.sock.fd, self._wake, waiters, True)
            else:
                loop.add_reader(self.sock.fd, self._wake, waiters, False)
        waiters.append(fut)
        try:
            await fut
        finally:
            if fut in waiters:  # cancelled: the others still wait
                waiters.remove(fut)
                if not waiters and not self.sock.closed:
                    if writable:
                        loop.remove_writer(self.sock.fd)
                    else:
                        loop.remove_reader(self.sock.fd)

    def _wake(self, waiters: list[asyncio.Future[None]], writable: bool) -> None:
        loop = asyncio.get_running_loop()
        if writable:
            loop.remove_writer(self.sock.fd)
        else:
            loop.remove_reader(self.sock.fd)
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        waiters.clear()

    async def _call(self, writable: bool, call: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``call(*args)`` until it does not say EAGAIN (it had no effect then)."""
        while True:
            try:
                return call(*args, **kw)
            except WouldBlock:
                await self._ready(writable=writable)

    # ---- connections

    async def accept(self) -> tuple[Socket, Peer]:
        """accept(2): a new (non-blocking) Socket and its peer; a UNIX listener's
        ``peer_filter`` applies (refused peers are closed unread)."""
        conn, peer = await self._call(False, self.sock.accept)
        return Socket.wrap(conn), peer

    async def connect(self, address: Address, *, timeout: float | None = None) -> None:
        """connect(2) without blocking the loop: EINPROGRESS, writability, SO_ERROR.

        A UNIX listener whose backlog is full (EAGAIN) is tried again after
        a short pause (1 ms, doubling up to 50 ms) until ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        await connect_socket(self.sock, address, deadline, str(address))

    # ---- the send family

    async def send(self, data: bytes, flags: int = 0) -> int:
        return await self._call(True, self.sock.send, data, flags)

    async def sendall(self, data: bytes, flags: int = 0) -> None:
        """send(2) until everything is sent, awaiting room between the calls."""
        view = memoryview(data)
        while view:
            sent = await self._call(True, self.sock.send, view, flags)
            view = view[sent:]

    async def write(self, data: bytes) -> int:
        return await self._call(True, self.sock.write, data)

    async def sendto(self, data: bytes, address: Address, flags: int = 0) -> int:
        return await self._call(True, self.sock.sendto, data, address, flags)

    async def sendmsg(
        self,
        buffers: Sequence[bytes | bytearray | memoryview] | bytes,
        *,
        fds: Iterable[FdLike] = (),
        creds: Creds | None = None,
        flags: int = 0,
        address: Address | None = None,
        ancdata: Iterable[tuple[int, int, bytes]] = (),
    ) -> int:
        """sendmsg(2) with fds and credentials, as :meth:`sockwire.Socket.sendmsg`."""
        fd_list = list(fds)
        extra = list(ancdata)
        return await self._call(
            True,
            self.sock.sendmsg,
            buffers,
            fds=fd_list,
            creds=creds,
            flags=flags,
            address=address,
            ancdata=extra,
        )

    # ---- the recv family

    async def recv(self, size: int, flags: int = 0) -> bytes:
        return await self._call(False, self.sock.recv, size, flags)

    async def read(self, size: int) -> bytes:
        return await self._call(False, self.sock.read, size)

    async def recv_into(
        self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0
    ) -> int:
        return await self._call(False, self.sock.recv_into, buffer, nbytes, flags)

    async def recvfrom(self, size: int, flags: int = 0) -> tuple[bytes, Address | None]:
        return await self._call(False, self.sock.recvfrom, size, flags)

    async def recvmsg(
        self,
        bufsize: int = 65536,
        *,
        maxfds: int = 0,
        creds: bool = False,
        flags: int = 0,
        ancillary: int = 0,
        buffer: bytearray | None = None,
    ) -> Message:
        """recvmsg(2): data, fds, credentials, flags, as :meth:`sockwire.Socket.recvmsg`."""
        return await self._call(
            False,
            self.sock.recvmsg,
            bufsize,
            maxfds=maxfds,
            creds=creds,
            flags=flags,
            ancillary=ancillary,
            buffer=buffer,
        )


#: The first and the longest pause between connects to a full UNIX backlog.
BACKLOG_PAUSES = (0.001, 0.05)


async def connect_socket(
    sock: _sock.Socket, address: object, deadline: float | None, target: str
) -> None:
    """connect(2) on the non-blocking ``sock`` by ``deadline`` (``loop.time()``).

    EINPROGRESS: wait for writability, then SO_ERROR is the verdict. EAGAIN
    on a UNIX socket (the listener's backlog is full: it is alive, only
    busy): connect again after a pause, growing to 50 ms. The deadline
    passing is :class:`~sockwire.errors.TimeoutError`, as a blocking
    connect's timeout is.
    """
    loop = asyncio.get_running_loop()
    pause, longest = BACKLOG_PAUSES
    while True:
        try:
            sock.connect(address)  # type: ignore[arg-type]
        except SockwireError as exc:
            if exc.errno == errno.EINPROGRESS:
                break
            if exc.errno != errno.EAGAIN or sock.family != socket.AF_UNIX:
                raise
        else:
            return
        if deadline is not None and loop.time() + pause > deadline:
            raise _timed_out(sock, target)
        await asyncio.sleep(pause)  # bounded backoff, not synchronisation
        pause = min(longest, pause * 2)
    if not await wait_fd(sock.fd, writable=True, deadline=deadline):
        raise _timed_out(sock, target)
    code = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    if code:
        error = OSError(code, os.strerror(code))
        raise translate(
            error, "connect", target, family=sock.family, sock_type=sock.type
        ) from error


def _timed_out(sock: _sock.Socket, target: str) -> SockwireError:
    return translate(
        TimeoutError("timed out"), "connect", target, family=sock.family, sock_type=sock.type
    )
