"""ZeroMQ socket semantics, pure: which peer gets what, what to send, deadlines from a ``now``.

No socket, thread, select or clock here: a driver (blocking.py; an asyncio
driver later) owns the transports and time, and tells the core what
happened (:meth:`SocketCore.attach`, :meth:`~SocketCore.received`,
:meth:`~SocketCore.detach`, :meth:`~SocketCore.tick`); the core keeps one
:class:`Peer` (a :class:`~sockwire.zmtp.Connection`, an inbox, the bytes to
write) per transport and answers :meth:`~SocketCore.send` /
:meth:`~SocketCore.recv` with libzmq's rules (RFC 28 REQ/REP/DEALER/ROUTER,
29 PUB/SUB/XPUB/XSUB, 30 PUSH/PULL, 31 PAIR)::

    type    send goes to                           recv comes from
    ------  -------------------------------------  ---------------------------------------
    REQ     round robin; b"" delimiter prepended   only the peer asked; delimiter removed
    REP     the peer of the last request + its     fair queue; the envelope (frames up to
            envelope                               b"") is kept for the reply
    DEALER  round robin                            fair queue
    ROUTER  the peer named by the first frame      fair queue; the peer's routing id
            (unknown or full: dropped)             prepended
    PUB     every peer with a matching             (nothing)
            subscription (full: dropped, counted)
    XPUB    as PUB                                 subscriptions as b"\\x01topic"/b"\\x00topic"
                                                   (first subscribe, last cancel)
    SUB     (nothing; subscribe() instead)         fair queue, filtered by our subscriptions
    XSUB    b"\\x01.."/b"\\x00.." = (un)subscribe;   fair queue
            else every peer
    PUSH    round robin                            (nothing)
    PULL    (nothing)                              fair queue
    PAIR    the one peer                           the one peer (others are refused)

REQ state (``SocketCore.req_state``)::

    state   call                     next    effect
    ------  -----------------------  ------  --------------------------------------------
    IDLE    send(msg)                WAIT    to one peer, remembered
    IDLE    recv()                   IDLE    InvalidOperation (send a request first)
    WAIT    send(msg)                WAIT    InvalidOperation (receive the reply first)
    WAIT    reply from that peer     REPLIED queued for recv()
    REPLIED recv()                   IDLE    the reply
    WAIT    reply from another peer  WAIT    dropped (a late reply to an abandoned request)
    WAIT    abandon() (recv timeout) IDLE    that peer's connection is dropped: a late
                                             reply can never match the next request
    WAIT    that peer detached       IDLE    the next recv() raises ConnectionLost once
                                             (send the request again)

A driver's whole contract (blocking.py is one; an asyncio one is new files):

- per transport: ``peer = core.attach(handle, now, mechanism=..., label=...)``;
  write ``peer.out`` (a bytearray) whenever it is non-empty and report
  ``core.wrote(peer, n)``; read only while ``peer.wants_input`` and hand
  the bytes (``b""`` at EOF) to ``core.received(peer, data, now)``; when
  ``peer.closing`` is set, write what ``peer.out`` holds if it can (an ERROR
  command), close the transport and call ``core.detach(peer)``;
- time: call ``core.tick(now)`` at ``core.next_deadline()``;
- the application: ``send``/``send_one`` return False/None when it must
  wait for a peer (wait for a write to complete or a peer to arrive, then
  try again), ``recv`` returns None when it must wait for input;
  ``abandon()`` after a REQ's receive timeout;
- listeners, connect retries (:class:`Backoff`) and which mechanism a new
  transport gets (``sockwire.zmq.security.mechanism_factory``) are the
  driver's, from ``sockwire.zmq.endpoint.parse``.

A peer's whole messages that no ``recv`` took yet outlive it: after
``detach`` they are still handed out, in order (libzmq delivers what its pipe
holds too). An asyncio driver reads ahead of ``recv``, so a peer's last
messages and its EOF often arrive in one callback.

Bounds: a peer's inbox holds ``rcvhwm`` messages, then the driver stops
reading it (plus what one read decoded); its output holds ``sndhwm`` messages
(counted since it was last drained) or ``max_out`` bytes, then it is *full*:
PUSH/DEALER/REQ/PAIR wait for it, PUB/XPUB/ROUTER drop for it and count
(:attr:`SocketCore.dropped`). Subscriptions per peer are bounded
(:data:`MAX_TOPICS`); a match costs one lookup per prefix length of the topic
the publisher actually uses, not one per subscription.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .. import zmtp
from ..errors import ConnectionLost, InvalidOperation, PermissionDenied, ProtocolError

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "MAX_TOPICS",
    "Backoff",
    "Peer",
    "SocketCore",
    "SocketView",
]

#: A peer that has not finished its handshake by then is closed (libzmq: 30 s).
HANDSHAKE_TIMEOUT = 30.0
#: Subscriptions one peer may hold (a hostile subscriber cannot grow them without end).
MAX_TOPICS = 10_000
#: Bytes queued for one peer before it counts as full, whatever sndhwm says.
MAX_OUT = 16 * 1024 * 1024

_SENDERS = {"REQ", "REP", "DEALER", "ROUTER", "PUB", "XPUB", "XSUB", "PUSH", "PAIR"}
_RECEIVERS = {"REQ", "REP", "DEALER", "ROUTER", "XPUB", "SUB", "XSUB", "PULL", "PAIR"}
_ROUND_ROBIN = {"PUSH", "DEALER", "REQ"}
_PUBLISHERS = {"PUB", "XPUB"}
_SUBSCRIBERS = {"SUB", "XSUB"}


@dataclass
class Backoff:
    """Reconnect delays: ``first``, doubling up to ``most`` (libzmq's RECONNECT_IVL/_MAX)."""

    first: float = 0.1
    most: float = 2.0
    current: float = 0.0

    def next(self) -> float:
        self.current = self.first if not self.current else min(self.current * 2, self.most)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


class _Topics:
    """A peer's subscriptions: counted (RFC 29: not idempotent), matched by prefix."""

    __slots__ = ("counts", "lengths")

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self.lengths: dict[int, int] = {}  # prefix length -> how many topics have it

    def add(self, topic: bytes) -> bool:
        """Count one more; True when it is new."""
        n = self.counts.get(topic, 0)
        if not n and len(self.counts) >= MAX_TOPICS:
            raise ProtocolError(
                f"a subscriber holds {MAX_TOPICS} topics", "one peer's subscriptions are bounded"
            )
        self.counts[topic] = n + 1
        if not n:
            self.lengths[len(topic)] = self.lengths.get(len(topic), 0) + 1
        return not n

    def remove(self, topic: bytes) -> bool:
        """Count one less; True when the last one went."""
        n = self.counts.get(topic, 0)
        if not n:
            return False
        if n > 1:
            self.counts[topic] = n - 1
            return False
        del self.counts[topic]
        left = self.lengths[len(topic)] - 1
        if left:
            self.lengths[len(topic)] = left
        else:
            del self.lengths[len(topic)]
        return True

    def match(self, data: bytes) -> bool:
        counts = self.counts
        if not counts:
            return False
        if b"" in counts:
            return True
        size = len(data)
        return any(n <= size and data[:n] in counts for n in self.lengths)


@dataclass(eq=False)
class Peer:
    """One transport connection as the core sees it; ``handle`` is the driver's."""

    conn: zmtp.Connection
    handle: object
    started: float
    label: str = ""
    routing_id: bytes = b""
    ready: bool = False
    queued: int = 0  # messages appended since ``out`` was last empty
    inbox: deque[list[bytes]] = field(default_factory=deque)
    topics: _Topics = field(default_factory=_Topics)
    last_in: float = 0.0
    ping_sent: float | None = None
    peer_ttl: float = 0.0
    next_ping: float | None = None
    closing: str | None = None  # why the core wants it closed (the driver closes it)
    failed: bool = False  # closing for a protocol or authentication failure

    @property
    def out(self) -> bytearray:
        """The bytes for the driver to write: the connection's own queue."""
        return self.conn.outgoing

    @property
    def wants_input(self) -> bool:
        """False while its inbox is at the high-water mark (the driver stops reading)."""
        return self.closing is None and len(self.inbox) < self._rcvhwm

    _rcvhwm: int = 1000


class SocketCore:
    """One ZeroMQ socket's routing state over any number of peers (see the table above)."""

    def __init__(
        self,
        socket_type: str,
        *,
        identity: bytes = b"",
        sndhwm: int = 1000,
        rcvhwm: int = 1000,
        max_size: int = zmtp.DEFAULT_MAX_SIZE,
        heartbeat: float | None = None,
        heartbeat_timeout: float | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        log: Callable[[str, str, str], None] | None = None,
    ) -> None:
        socket_type = socket_type.upper()
        if socket_type not in zmtp.SOCKET_TYPES:
            raise InvalidOperation(
                f"ZeroMQ socket type {socket_type!r}", "one of " + ", ".join(zmtp.SOCKET_TYPES)
            )
        if sndhwm < 1 or rcvhwm < 1:
            raise InvalidOperation("a high-water mark below 1", "sndhwm and rcvhwm are >= 1")
        self.type = socket_type
        self.identity = identity
        self.sndhwm = sndhwm
        self.rcvhwm = rcvhwm
        self.max_size = max_size
        self.heartbeat = heartbeat
        self.heartbeat_timeout = heartbeat_timeout or heartbeat
        self.handshake_timeout = handshake_timeout
        self.log = log
        self.peers: list[Peer] = []
        self.dropped = 0  # messages a PUB/XPUB/ROUTER dropped for a full or unknown peer
        self._rr = 0
        self._fair: deque[Peer] = deque()  # peers with something in their inbox
        self._by_id: dict[bytes, Peer] = {}
        self._next_id = 0x6B8B4567  # libzmq starts generated routing ids at a random number
        self._subscriptions: list[bytes] = []  # SUB/XSUB: ours, in order (sent to new peers)
        self._own_topics = _Topics()  # SUB: ours, to filter what arrives
        self._xpub_seen = _Topics()  # XPUB: union over peers, to report first/last only
        self._xpub_inbox: deque[list[bytes]] = deque()
        # types whose arriving messages all go to the inbox unchanged
        self._plain_inbox = socket_type in ("PULL", "DEALER", "PAIR", "ROUTER", "XSUB", "REP")
        # types whose recv() hands out inbox messages as they are
        self._plain_recv = socket_type in ("PULL", "DEALER", "PAIR", "SUB", "XSUB")
        self.req_state = "IDLE"
        self.last_peer: Peer | None = None  # where send() put the last message, if one peer
        self._req_peer: Peer | None = None
        self._req_lost: str | None = None  # why the awaited reply can never come
        self._rep_reply: tuple[Peer, list[bytes]] | None = None

    # ------------------------------------------------------------------
    # transports (called by the driver)

    def attach(
        self,
        handle: object,
        now: float,
        *,
        mechanism: zmtp.Mechanism | None = None,
        label: str = "",
    ) -> Peer:
        """A new transport connection: its Connection queues our greeting."""
        peer_log = None
        if self.log is not None:
            log = self.log
            peer_log = lambda d, t: log(label, d, t)  # noqa: E731
        conn = zmtp.Connection(
            self.type,
            mechanism or zmtp.Null(),
            identity=self.identity,
            max_size=self.max_size,
            log=peer_log,
        )
        peer = Peer(conn, handle, now, label=label, last_in=now)
        peer._rcvhwm = self.rcvhwm
        self.peers.append(peer)
        return peer

    def received(self, peer: Peer, data: bytes, now: float) -> None:
        """Bytes (or b"" for EOF) from ``peer``; protocol errors mark it for closing.

        After a ProtocolError or PermissionDenied ``peer.closing`` says why and
        ``peer.out`` may hold an ERROR command to write before closing.
        """
        peer.last_in = now
        peer.ping_sent = None
        try:
            events = peer.conn.feed(data)
        except (ProtocolError, PermissionDenied) as exc:
            peer.closing = str(exc)
            peer.failed = True
            return
        message = list
        if self._plain_inbox:  # PULL, DEALER, PAIR...: every message goes to the inbox
            inbox = peer.inbox
            was_empty = not inbox
            if len(events) == sum(1 for e in events if type(e) is message):
                inbox.extend(events)  # type: ignore[arg-type]
                if was_empty and inbox:
                    self._fair.append(peer)
                return
        for event in events:
            if type(event) is message:
                self._deliver(peer, event)
            elif isinstance(event, zmtp.Ready):
                self._ready(peer, event, now)
            elif isinstance(event, zmtp.Subscribe):
                self._on_subscribe(peer, event.topic, True)
            elif isinstance(event, zmtp.Cancel):
                self._on_subscribe(peer, event.topic, False)
            elif isinstance(event, zmtp.Ping):
                peer.peer_ttl = event.ttl
            elif isinstance(event, zmtp.Closed):
                peer.closing = peer.closing or "the peer closed the connection"
            if peer.closing:
                break

    def detach(self, peer: Peer) -> None:
        """The transport is gone (closed by either side): forget the peer."""
        if peer not in self.peers:
            return
        self.peers.remove(peer)
        if peer.routing_id and self._by_id.get(peer.routing_id) is peer:
            del self._by_id[peer.routing_id]
        if peer in self._fair and not peer.inbox:
            self._fair.remove(peer)  # with messages it stays: they are still handed out
        if self.type == "XPUB":
            for topic, count in list(peer.topics.counts.items()):
                for _ in range(count):
                    if self._xpub_seen.remove(topic):
                        self._push_xpub(b"\x00" + topic)
        if self._req_peer is peer:
            # the request can never be answered: let the caller send again (libzmq's
            # ZMQ_REQ_RELAXED behaviour; strict REQ would wait forever)
            self._req_peer = None
            self.req_state = "IDLE"
            self._req_lost = peer.closing or "the connection closed"
        # a REP whose requester went away still owes a reply: send() drops it

    def wrote(self, peer: Peer, count: int) -> None:
        """The driver wrote ``count`` bytes of ``peer.out``."""
        out = peer.conn.outgoing
        del out[:count]
        if not out:
            peer.queued = 0

    # ------------------------------------------------------------------
    # time

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`tick` has something to do."""
        soonest: float | None = None
        for peer in self.peers:
            for when in self._deadlines(peer):
                if soonest is None or when < soonest:
                    soonest = when
        return soonest

    def _deadlines(self, peer: Peer) -> Iterable[float]:
        if not peer.ready:
            yield peer.started + self.handshake_timeout
            return
        if peer.next_ping is not None:
            yield peer.next_ping
        if peer.ping_sent is not None and self.heartbeat_timeout:
            yield peer.ping_sent + self.heartbeat_timeout
        if peer.peer_ttl:
            yield peer.last_in + peer.peer_ttl

    def tick(self, now: float) -> None:
        """Heartbeats and handshake deadlines; peers to drop get ``closing`` set."""
        for peer in self.peers:
            if peer.closing:
                continue
            if not peer.ready:
                if now >= peer.started + self.handshake_timeout:
                    peer.closing = f"no ZMTP handshake within {self.handshake_timeout:g} s"
                continue
            if peer.peer_ttl and now >= peer.last_in + peer.peer_ttl:
                peer.closing = f"no traffic within the peer's heartbeat TTL {peer.peer_ttl:g} s"
                continue
            if (
                peer.ping_sent is not None
                and self.heartbeat_timeout
                and now >= peer.ping_sent + self.heartbeat_timeout
            ):
                peer.closing = f"no reply to a heartbeat within {self.heartbeat_timeout:g} s"
                continue
            if peer.next_ping is not None and now >= peer.next_ping and self.heartbeat:
                ttl = (self.heartbeat_timeout or self.heartbeat) * 2
                peer.conn.ping(ttl)
                if peer.ping_sent is None:
                    peer.ping_sent = now
                peer.next_ping = now + self.heartbeat

    # ------------------------------------------------------------------
    # the application's side

    def can_send(self) -> bool:
        """True when :meth:`send` would place the message now (for the blocking types)."""
        if self.type in _PUBLISHERS or self.type in ("ROUTER", "XSUB", "REP"):
            return True
        if self.type == "REQ" and self.req_state != "IDLE":
            return True  # send() raises the state error at once
        return self._pick(advance=False) is not None

    def send(self, frames: Sequence[bytes]) -> bool:
        """Route one message. False: no peer can take it now (wait and retry)."""
        kind = self.type
        if kind not in _SENDERS:
            raise InvalidOperation(f"send on a ZeroMQ {kind} socket", _NO_SEND[kind])
        if not frames:
            raise InvalidOperation("send an empty message", "a message has 1 frame or more")
        if kind in _ROUND_ROBIN or kind == "PAIR":
            if kind == "REQ":
                if self.req_state != "IDLE":
                    raise InvalidOperation(
                        "REQ send before the reply arrived",
                        "a REQ alternates send and recv; recv the reply (or time out) first",
                    )
                frames = [b"", *frames]
            peer = self._pick(advance=True)
            if peer is None:
                return False
            self._put(peer, frames)
            self.last_peer = peer
            if kind == "REQ":
                self.req_state = "WAIT"
                self._req_peer = peer
                self._req_lost = None
            return True
        self.last_peer = None
        if kind in _PUBLISHERS:
            topic = frames[0]
            for peer in self.peers:
                if peer.ready and peer.topics.match(topic):
                    if self._full(peer):
                        self.dropped += 1
                    else:
                        self._put(peer, frames)
            return True
        if kind == "ROUTER":
            if len(frames) < 2:
                raise InvalidOperation(
                    "ROUTER send without a routing id",
                    "the first frame names the peer (as recv() returned it), then the message",
                )
            target = self._by_id.get(bytes(frames[0]))
            if target is None or self._full(target):
                self.dropped += 1  # libzmq drops silently unless ROUTER_MANDATORY
                return True
            self._put(target, list(frames[1:]))
            return True
        if kind == "REP":
            if self._rep_reply is None:
                raise InvalidOperation(
                    "REP send without a request", "a REP answers: recv a request first"
                )
            peer, envelope = self._rep_reply
            self._rep_reply = None
            if peer in self.peers and peer.ready:
                self._put(peer, [*envelope, *frames])
            return True
        # XSUB: subscriptions and upstream messages
        first = bytes(frames[0])
        if len(frames) == 1 and first[:1] in (b"\x01", b"\x00"):
            self._subscription(first[1:], first[:1] == b"\x01")
            return True
        for peer in self.peers:
            if peer.ready and not self._full(peer):
                self._put(peer, frames)
        return True

    def send_one(self, frame: bytes) -> Peer | None:
        """:meth:`send` of a one-frame message for PUSH, DEALER and PAIR (the hot path).

        Returns the peer it went to, or None when no peer can take it now.
        """
        peers = self.peers
        if len(peers) == 1:
            peer = peers[0]
            if (
                peer.ready
                and peer.closing is None
                and peer.queued < self.sndhwm
                and len(peer.conn.outgoing) < MAX_OUT
            ):
                peer.conn.send_frame(frame)
                peer.queued += 1
                self.last_peer = peer
                return peer
            return None
        return self.last_peer if self.send([frame]) else None

    def recv(self) -> list[bytes] | None:
        """The next message for the application, or None when nothing is queued."""
        if self._plain_recv:
            fair = self._fair
            while fair:
                peer = fair[0]
                inbox = peer.inbox
                if inbox:
                    msg = inbox.popleft()
                    if not inbox:
                        fair.popleft()
                    elif len(fair) > 1:
                        fair.rotate(-1)  # fair queueing: the next peer's turn
                    return msg
                fair.popleft()
            return None
        kind = self.type
        if kind not in _RECEIVERS:
            raise InvalidOperation(f"recv on a ZeroMQ {kind} socket", _NO_RECV[kind])
        if kind == "REQ" and self.req_state == "IDLE":
            lost, self._req_lost = self._req_lost, None
            if lost is not None:
                raise ConnectionLost(
                    f"REQ reply lost: {lost}",
                    "the peer went away before it replied; send the request again",
                )
            raise InvalidOperation("REQ recv before a request", "send a request first")
        if kind == "REP" and self._rep_reply is not None:
            raise InvalidOperation("REP recv before the reply", "send the reply first")
        if kind == "XPUB" and self._xpub_inbox:
            return self._xpub_inbox.popleft()
        fair = self._fair
        while fair:
            peer = fair.popleft()
            if not peer.inbox:
                continue
            frames = peer.inbox.popleft()
            if peer.inbox:
                fair.append(peer)
            if kind == "REP":
                split = _envelope_end(frames)
                if split is None:
                    continue  # no delimiter: not a request (libzmq drops it)
                self._rep_reply = (peer, frames[:split])
                return frames[split:]
            if kind == "ROUTER":
                return [peer.routing_id, *frames]
            if kind == "REQ":
                self.req_state = "IDLE"
            return frames
        return None

    def can_recv(self) -> bool:
        return bool(self._fair) or bool(self._xpub_inbox)

    def abandon(self) -> None:
        """The REQ caller gave up waiting: drop the connection the reply would come on."""
        if self.req_state == "WAIT":
            self._req_lost = None
            if self._req_peer is not None:
                self._req_peer.closing = "request abandoned (recv timed out)"
            self._req_peer = None
            self.req_state = "IDLE"

    def subscribe(self, topic: bytes) -> None:
        """SUB/XSUB: ask every peer, now and later, for messages starting with ``topic``."""
        if self.type not in _SUBSCRIBERS:
            raise InvalidOperation(
                f"subscribe on a ZeroMQ {self.type} socket", "only SUB and XSUB subscribe"
            )
        self._subscription(topic, True)

    def unsubscribe(self, topic: bytes) -> None:
        if self.type not in _SUBSCRIBERS:
            raise InvalidOperation(
                f"unsubscribe on a ZeroMQ {self.type} socket", "only SUB and XSUB subscribe"
            )
        self._subscription(topic, False)

    # ------------------------------------------------------------------
    # internals

    def _subscription(self, topic: bytes, on: bool) -> None:
        if on:
            try:
                self._own_topics.add(topic)
            except ProtocolError:
                raise InvalidOperation(
                    f"subscription number {MAX_TOPICS + 1}",
                    f"a socket holds at most {MAX_TOPICS} topics; subscribe to a shorter prefix",
                ) from None
            self._subscriptions.append(topic)
        else:
            if topic not in self._subscriptions:
                return
            self._subscriptions.remove(topic)
            self._own_topics.remove(topic)
        for peer in self.peers:
            if peer.ready and not peer.closing:
                if on:
                    peer.conn.subscribe(topic)
                else:
                    peer.conn.cancel(topic)

    def _ready(self, peer: Peer, event: zmtp.Ready, now: float) -> None:
        peer.ready = True
        if self.heartbeat:
            peer.next_ping = now + self.heartbeat
        if self.type == "ROUTER":
            rid = event.identity
            if not rid or rid in self._by_id:
                rid = b"\x00" + struct.pack("!I", self._next_id & 0xFFFFFFFF)
                self._next_id += 1
            peer.routing_id = rid
            self._by_id[rid] = peer
        if self.type == "PAIR" and any(p.ready and p is not peer for p in self.peers):
            peer.closing = "a PAIR socket talks to one peer; this one came second"
            return
        for topic in self._subscriptions:
            peer.conn.subscribe(topic)

    def _deliver(self, peer: Peer, frames: list[bytes]) -> None:
        kind = self.type
        if kind == "PUB":
            return  # a PUB ignores what subscribers send besides subscriptions
        if kind == "REQ":
            if peer is not self._req_peer or self.req_state != "WAIT":
                return  # a reply nobody waits for
            if not frames or frames[0] != b"":
                return  # libzmq drops a reply without the empty delimiter
            frames = frames[1:]
            self.req_state = "REPLIED"
            self._req_peer = None
        elif kind == "SUB" and not self._own_topics.match(frames[0]):
            return
        was_empty = not peer.inbox
        peer.inbox.append(frames)
        if was_empty:
            self._fair.append(peer)

    def _on_subscribe(self, peer: Peer, topic: bytes, on: bool) -> None:
        if on:
            try:
                peer.topics.add(topic)
            except ProtocolError as exc:
                peer.closing = str(exc)
                return
        elif topic in peer.topics.counts:
            peer.topics.remove(topic)
        else:
            return
        if self.type == "XPUB":
            changed_all = self._xpub_seen.add(topic) if on else self._xpub_seen.remove(topic)
            if changed_all:
                self._push_xpub((b"\x01" if on else b"\x00") + topic)

    def _push_xpub(self, message: bytes) -> None:
        if len(self._xpub_inbox) < self.rcvhwm:
            self._xpub_inbox.append([message])
        else:
            self.dropped += 1

    def _full(self, peer: Peer) -> bool:
        return peer.queued >= self.sndhwm or len(peer.out) >= MAX_OUT

    def _pick(self, *, advance: bool) -> Peer | None:
        peers = self.peers
        count = len(peers)
        for step in range(count):
            index = (self._rr + step) % count
            peer = peers[index]
            if peer.ready and not peer.closing and not self._full(peer):
                if advance:
                    self._rr = index + 1
                return peer
        return None

    def _put(self, peer: Peer, frames: Sequence[bytes]) -> None:
        peer.conn.send(frames)
        peer.queued += 1


def _envelope_end(frames: list[bytes]) -> int | None:
    """Index after the empty delimiter frame of a request, or None."""
    for index, frame in enumerate(frames):
        if not frame:
            return index + 1
    return None


_NO_SEND = {
    "SUB": "a SUB only receives; use subscribe(topic), or XSUB to send upstream",
    "PULL": "a PULL only receives; use PUSH to send",
}
_NO_RECV = {
    "PUB": "a PUB only sends; use XPUB to see subscriptions",
    "PUSH": "a PUSH only sends; use PULL to receive",
}


class SocketView:
    """What a ZeroMQ socket is, read from its core: the same properties on both drivers."""

    _core: SocketCore

    @property
    def type(self) -> str:
        return self._core.type

    @property
    def dropped(self) -> int:
        """Messages dropped for full or unknown peers (PUB, XPUB, ROUTER), as libzmq would."""
        return self._core.dropped

    @property
    def peers(self) -> int:
        """Peers that completed the handshake."""
        return sum(1 for peer in self._core.peers if peer.ready)
