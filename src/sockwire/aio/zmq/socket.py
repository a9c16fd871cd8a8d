"""``sockwire.aio.zmq.Socket``: a ZeroMQ socket whose ``send``/``recv`` are awaitable.

The same :class:`~sockwire.zmq.core.SocketCore` as :class:`sockwire.zmq.Socket`
decides everything (routing, REQ/REP states, high-water marks, heartbeats,
subscriptions); the same endpoint options and key files configure it
(:func:`sockwire.zmq.options.socket_core`,
:func:`sockwire.zmq.security.mechanism_factory`). The transports live in
:class:`~.driver.Driver`, in the loop's callbacks, so a socket is served
whether or not a task is waiting on it.

Cancellation (``task.cancel()``, ``asyncio.timeout``) at any ``await`` loses,
splits or duplicates no message, because every call takes its effect
in one step after its last ``await``::

    call        awaits                              effect, in one step after the wait
    ----------  ----------------------------------  ------------------------------------
    recv        a message (Driver.readable)         core.recv() takes one whole message
    send        a peer with room (Driver.changed)   core.send() queues the whole message
    flush       every peer's output written         (nothing)
    wait_peers  handshakes                          (nothing)
    close       queued output leaving (linger)      everything closed (also when cancelled)

A cancelled ``recv`` leaves its message queued for the next one; a cancelled
``send`` queued nothing. A REQ whose ``recv`` is cancelled still awaits that
reply (the next ``recv`` gets it); ``recv(timeout=)`` instead gives up as the
blocking socket does: it drops that connection so a late reply can never
match the next request.

Bounds are the core's: ``sndhwm`` messages (or 16 MiB) per peer before
PUSH/DEALER/REQ/PAIR ``send`` awaits and PUB/XPUB/ROUTER drop and count;
``rcvhwm`` messages per peer before its reading pauses.

A socket belongs to the event loop it was made on (make it inside a
coroutine); unlike the blocking socket it needs no ``flush()`` for its
messages to leave: they go out once per loop iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from ...errors import ClosedError, InvalidOperation, TimeoutError
from ...zmq.core import SocketView
from ...zmq.endpoint import ZmqEndpoint, parse
from ...zmq.options import socket_core
from .driver import Driver

__all__ = ["Socket", "poll"]

Message = list[bytes]


def _timed_out(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(False)


class Socket(SocketView):
    """A ZeroMQ socket speaking ZMTP 3.1, awaitable.

    ``Socket("PUSH", "zmq+tcp://127.0.0.1:5555")`` connects;
    ``Socket("PULL", "zmq+tcp://127.0.0.1:5555?bind=1")`` binds; the type may
    come from the endpoint (``?type=PULL``). The arguments are
    :class:`sockwire.zmq.Socket`'s. ``await send(b"x")`` sends one frame,
    ``await send([b"a", b"b"])`` a multipart message; ``await recv()``
    returns a list of frames. Use ``async with``, or ``await close()``.
    """

    def __init__(
        self,
        socket_type: str | None = None,
        endpoint: str | ZmqEndpoint | None = None,
        *,
        bind: bool | None = None,
        identity: bytes | None = None,
        subscribe: Sequence[bytes] = (),
        heartbeat: float | None = None,
        handshake_timeout: float | None = None,
        sndhwm: int | None = None,
        rcvhwm: int | None = None,
        max_size: int | None = None,
        linger: float = 2.0,
        reconnect: tuple[float, float] = (0.1, 2.0),
        trace: Callable[[str], None] | None = None,
    ) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise InvalidOperation(
                "aio.zmq.Socket made outside a running event loop",
                "make it inside a coroutine (sockwire.aio.run(main())), or use sockwire.zmq",
            ) from None
        self._trace = trace
        self._core, ep = socket_core(
            socket_type,
            endpoint,
            identity=identity,
            heartbeat=heartbeat,
            handshake_timeout=handshake_timeout,
            sndhwm=sndhwm,
            rcvhwm=rcvhwm,
            max_size=max_size,
            log=self._log if trace else None,
        )
        self._driver = Driver(self._core, loop, reconnect=reconnect, note=self._note)
        self.linger = linger
        self._one_frame_fast = self._core.type in ("PUSH", "DEALER", "PAIR")
        self.endpoints: list[str] = []
        try:
            for topic in (*subscribe, *(ep.subscriptions if ep else ())):
                self._core.subscribe(topic)
            if ep is not None:
                if bind if bind is not None else ep.bind:
                    self.bind(ep)
                else:
                    self.connect(ep)
        except BaseException:
            self.abort()
            raise

    # ---- what it is

    @property
    def closed(self) -> bool:
        return self._driver.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.peers} peer(s)"
        return f"<aio.zmq.Socket {self.type} {' '.join(self.endpoints)} {state}>"

    # ---- set-up (nothing here waits)

    def bind(self, endpoint: str | ZmqEndpoint) -> str:
        """Listen on ``endpoint``; returns it with the port a bind to port 0 got."""
        self._check_open()
        ep = self._driver.bind(parse(endpoint))
        self.endpoints.append(ep.display())
        self._note(f"bind {ep.display()}")
        return ep.display()

    def connect(self, endpoint: str | ZmqEndpoint) -> None:
        """Connect to ``endpoint`` in the background, and again whenever it is lost."""
        self._check_open()
        ep = parse(endpoint)
        self._driver.connect(ep)
        self.endpoints.append(ep.display())

    def subscribe(self, topic: bytes | str = b"") -> None:
        """SUB/XSUB: receive messages whose first frame starts with ``topic``."""
        self._check_open()
        self._core.subscribe(topic.encode() if isinstance(topic, str) else topic)
        self._driver.flush_soon()

    def unsubscribe(self, topic: bytes | str) -> None:
        self._check_open()
        self._core.unsubscribe(topic.encode() if isinstance(topic, str) else topic)
        self._driver.flush_soon()

    # ---- messages

    async def send(
        self, msg: bytes | bytearray | memoryview | Sequence[bytes], timeout: float | None = None
    ) -> None:
        """Send one message (bytes: one frame; a list: the frames of a multipart message).

        Awaits while no peer can take it (PUSH, DEALER, REQ, PAIR with every
        peer at its high-water mark or none connected); ``timeout`` bounds that
        wait (TimeoutError: nothing was queued). PUB, XPUB and ROUTER never
        wait: they drop for a full peer and count it (:attr:`dropped`).
        """
        driver = self._driver
        if driver.closed:
            self._check_open()
        core = self._core
        frames: list[bytes]
        if type(msg) is bytes and self._one_frame_fast:
            peer = core.send_one(msg)
            if peer is not None:
                driver.sent(peer)
                return
            frames = [msg]
        elif isinstance(msg, bytes | bytearray | memoryview):
            frames = [bytes(msg)]
        else:
            frames = [f if type(f) is bytes else bytes(f) for f in msg]
        if not core.send(frames):
            await self._send_waiting(frames, timeout)
        peer = core.last_peer
        if peer is not None:
            driver.sent(peer)
        else:
            driver.sent_all()

    async def _send_waiting(self, frames: list[bytes], timeout: float | None) -> None:
        driver = self._driver
        core = self._core
        deadline = None if timeout is None else driver.loop.time() + timeout
        while True:
            woken = await self._wait(driver.changed, deadline)
            self._check_open()
            if core.send(frames):  # the only step that queues: after the last await
                return
            if not woken:
                raise TimeoutError(
                    f"{core.type} send", f"no peer could take the message within {timeout:g} s"
                )

    send_multipart = send

    async def recv(self, timeout: float | None = None) -> Message:
        """The next message, as its list of frames; awaits up to ``timeout`` (TimeoutError).

        A REQ whose reply does not come in time drops that connection (it
        reconnects), so a late reply can never be taken for the next one;
        one whose peer went away raises ConnectionLost (send again).
        """
        driver = self._driver
        if driver.closed:
            self._check_open()
        core = self._core
        msg = core.recv()
        if msg is not None:
            if driver.paused:
                driver.resume()
            return msg
        deadline = None if timeout is None else driver.loop.time() + timeout
        while True:
            woken = await self._wait(driver.readable, deadline)
            self._check_open()
            msg = core.recv()  # the only step that takes: after the last await
            if msg is not None:
                if driver.paused:
                    driver.resume()
                return msg
            if not woken:
                core.abandon()
                driver.reap()
                raise TimeoutError(f"{core.type} recv", f"no message within {timeout:g} s")

    recv_multipart = recv

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        """Messages until the socket is closed."""
        while True:
            try:
                msg = await self.recv()
            except ClosedError:
                return
            yield msg

    async def poll(self, timeout: float | None = 0.0) -> bool:
        """True when :meth:`recv` would return at once, awaiting up to ``timeout`` for it."""
        self._check_open()
        return bool(await poll([self], timeout))

    async def flush(self, timeout: float | None = None) -> bool:
        """Await until every connected peer's queued output is written (False on timeout)."""
        self._check_open()
        driver = self._driver
        driver.flush()
        deadline = None if timeout is None else driver.loop.time() + timeout
        while self._unwritten():
            if not await self._wait(driver.changed, deadline):
                return not self._unwritten()
            self._check_open()
        return True

    def _unwritten(self) -> bool:
        return any(p.out and not p.closing for p in self._core.peers)

    async def wait_peers(self, count: int = 1, timeout: float = 10.0) -> None:
        """Await until ``count`` peers completed their handshake (else TimeoutError)."""
        self._check_open()
        driver = self._driver
        deadline = driver.loop.time() + timeout
        while self.peers < count:
            if not await self._wait(driver.changed, deadline) and self.peers < count:
                raise TimeoutError(
                    f"{self.type} waiting for {count} peer(s)",
                    f"{self.peers} within {timeout:g} s",
                )
            self._check_open()

    # ---- closing

    async def close(self, linger: float | None = None) -> None:
        """Close every transport; queued output gets up to ``linger`` seconds to leave.

        Cancelled while it lingers, it still closes everything.
        """
        driver = self._driver
        if driver.closed:
            return
        wait = self.linger if linger is None else linger
        try:
            if wait > 0:
                driver.flush()
                deadline = driver.loop.time() + wait
                core = self._core
                while any(p.out and p.ready and not p.closing for p in core.peers):
                    if not await self._wait(driver.changed, deadline) or driver.closed:
                        break
        finally:
            tasks = driver.abort()
        if tasks:
            await asyncio.wait(tasks)  # cancelled connects close their sockets

    aclose = close

    def abort(self) -> None:
        """Close at once: queued output is dropped; waiting tasks raise ClosedError."""
        self._driver.abort()

    async def __aenter__(self) -> Socket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- waiting

    def _check_open(self) -> None:
        if self._driver.closed:
            raise ClosedError(f"ZeroMQ {self._core.type} socket is closed", "open a new one")

    async def _wait(self, waiters: list[asyncio.Future[Any]], deadline: float | None) -> bool:
        """Await one wake-up on ``waiters``: True, or False when ``deadline`` passed first."""
        loop = self._driver.loop
        if asyncio.get_running_loop() is not loop:
            raise InvalidOperation(
                f"ZeroMQ {self._core.type} socket used from another event loop",
                "a socket stays on the loop it was made on",
            )
        fut: asyncio.Future[bool] = loop.create_future()
        waiters.append(fut)
        timer = None if deadline is None else loop.call_at(deadline, _timed_out, fut)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            if fut in waiters:  # cancelled or timed out: the others still wait
                waiters.remove(fut)

    # ---- tracing

    def _log(self, label: str, direction: str, text: str) -> None:
        if self._trace is not None:
            self._trace(f"zmtp {label} {direction} {text}")

    def _note(self, text: str) -> None:
        if self._trace is not None:
            self._trace(f"zmq {self._core.type} {text}")


async def poll(sockets: Sequence[Socket], timeout: float | None = None) -> list[Socket]:
    """The sockets that have a message ready, awaiting up to ``timeout`` seconds for one."""

    def ready() -> list[Socket]:
        return [s for s in sockets if not s.closed and s._core.can_recv()]

    found = ready()
    if found or not sockets:
        return found
    loop = sockets[0]._driver.loop
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        fut: asyncio.Future[bool] = loop.create_future()
        lists = [s._driver.readable for s in sockets if not s.closed]
        if not lists:
            return []
        for waiters in lists:
            waiters.append(fut)
        timer = None if deadline is None else loop.call_at(deadline, _timed_out, fut)
        try:
            woken = await fut
        finally:
            if timer is not None:
                timer.cancel()
            for waiters in lists:
                if fut in waiters:
                    waiters.remove(fut)
        found = ready()
        if found or not woken:
            return found
