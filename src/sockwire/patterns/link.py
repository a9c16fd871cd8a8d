"""One pattern connection's greeting and liveness (HELLO, heartbeats, death), sans-IO.

Every pattern link, whichever pattern, starts and stays alive the same way::

    state     event                                  next      output
    --------  -------------------------------------  --------  ----------------------------------
    GREETING  opened                                 GREETING  HELLO(role, interval) to send,
                                                               before any other message
    GREETING  HELLO of the role we talk to           READY     the Hello (the pattern may use
                                                               the link now)
    GREETING  HELLO of another role                  CLOSED    ProtocolError ("a SUB reached a
                                                               PUSH")
    GREETING  any other message                      CLOSED    ProtocolError (HELLO comes first)
    READY     HEARTBEAT                              READY     nothing: it only proves life
    READY     HELLO                                  CLOSED    ProtocolError
    READY     any other message                      READY     the message, for the pattern
    any       a message arrives                      (same)    heard = now
    open      tick, nothing sent for ``interval``    (same)    HEARTBEAT to send
    open      tick, nothing heard for the timeout    CLOSED    dead (the driver closes the link)
    any       EOF, reset, protocol error, close()    CLOSED    (the driver tells the pattern)

The timeout is ``max(our timeout, 3 x the interval the peer announced)``: a
peer is never declared dead for keeping the promise it made; one that
announced 0 (no heartbeats) is never declared dead by silence. A datagram
link has no connection to greet or keep alive: it is READY from the start,
without heartbeats.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadFrame, InvalidOperation
from . import wire
from .wire import Hello, Msg, Role

__all__ = ["LinkCore", "LinkState", "Liveness"]


@dataclass(frozen=True)
class Liveness:
    """Heartbeats every ``interval`` s when idle; a peer silent for ``timeout`` s is dead."""

    interval: float = 1.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.interval < self.timeout:
            raise InvalidOperation(
                f"{self!r}", "need 0 < interval < timeout (3 intervals or more is usual)"
            )


class LinkState:
    GREETING = "GREETING"
    READY = "READY"
    CLOSED = "CLOSED"


class LinkCore:
    """The table above for one link; the driver feeds it payloads and clock readings."""

    def __init__(
        self, role: Role, liveness: Liveness | None, now: float, *, greet: bool = True
    ) -> None:
        self.role = role
        self.liveness = liveness if greet else None
        self.state = LinkState.GREETING if greet else LinkState.READY
        self.peer_interval: float | None = None
        self.heard = now
        self.said = now
        self.dead_after = self.liveness.timeout if self.liveness is not None else None

    def hello(self) -> bytes:
        """The first message to send on a new link."""
        interval = self.liveness.interval if self.liveness is not None else 0.0
        return Hello(self.role, round(interval * 1000)).encode()

    def receive(self, payload: bytes, now: float) -> Msg | None:
        """One payload from the peer -> the message for the pattern (None: heartbeat)."""
        self.heard = now
        msg = wire.parse(payload)
        if self.state is LinkState.GREETING:
            if not isinstance(msg, Hello):
                raise self._fail(
                    BadFrame(
                        f"a {type(msg).__name__.upper()} before HELLO",
                        f"a {self.role.peer.name} greets first; is the peer a sockwire pattern?",
                    )
                )
            if msg.role is not self.role.peer:
                raise self._fail(
                    BadFrame(
                        f"a {self.role.name} reached a {msg.role.name}",
                        f"a {self.role.name} talks to a {self.role.peer.name}; check the endpoint",
                    )
                )
            self.state = LinkState.READY
            if msg.interval_ms and self.dead_after is not None:
                self.dead_after = max(self.dead_after, 3 * msg.interval_ms / 1000)
            elif not msg.interval_ms:
                self.dead_after = None  # it promised no heartbeats: silence proves nothing
            self.peer_interval = msg.interval_ms / 1000
            return msg
        if isinstance(msg, Hello):
            raise self._fail(BadFrame("a second HELLO", "HELLO is only the first message"))
        if isinstance(msg, wire.Heartbeat):
            return None
        return msg

    def _fail(self, error: BadFrame) -> BadFrame:
        self.state = LinkState.CLOSED
        return error

    def sent(self, now: float) -> None:
        """The driver wrote something to the peer (a heartbeat is then not needed yet)."""
        self.said = now

    def next_heartbeat(self) -> float | None:
        """When a heartbeat is due if nothing else is sent first (None: never)."""
        if self.liveness is None or self.state is LinkState.CLOSED:
            return None
        return self.said + self.liveness.interval

    def heartbeat(self, now: float) -> bytes | None:
        """HEARTBEAT if one is due at ``now`` (and count it as sent), else None."""
        due = self.next_heartbeat()
        if due is None or now < due:
            return None
        self.said = now
        return wire.HEARTBEAT_BYTES

    def deadline(self) -> float | None:
        """When the peer, silent until then, is dead (None: never by silence)."""
        if self.dead_after is None or self.state is LinkState.CLOSED:
            return None
        return self.heard + self.dead_after

    def expired(self, now: float) -> bool:
        """True (and CLOSED) when the peer has been silent past its deadline."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return False
        self.state = LinkState.CLOSED
        return True

    def close(self) -> None:
        self.state = LinkState.CLOSED
