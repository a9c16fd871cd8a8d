"""sockwire.zmq.core with an in-memory seam and a fake clock: routing, states, deadlines."""

from __future__ import annotations

import pytest

from sockwire import zmtp
from sockwire.errors import ConnectionLost, InvalidOperation
from sockwire.zmq.core import MAX_TOPICS, Backoff, Peer, SocketCore


class Wire:
    """Two cores joined by memory: what one writes, the other reads."""

    def __init__(self, a: SocketCore, b: SocketCore, now: float = 0.0) -> None:
        self.a, self.b = a, b
        self.pa = a.attach("to-b", now, label="b")
        self.pb = b.attach("to-a", now, label="a")

    def pump(self, now: float = 0.0, rounds: int = 10) -> None:
        for _ in range(rounds):
            moved = False
            for src, src_core, dst, dst_core in (
                (self.pa, self.a, self.pb, self.b),
                (self.pb, self.b, self.pa, self.a),
            ):
                if src.out and src in src_core.peers and dst in dst_core.peers:
                    data = bytes(src.out)
                    src_core.wrote(src, len(data))
                    dst_core.received(dst, data, now)
                    moved = True
            if not moved:
                return


def _join(a: SocketCore, b: SocketCore) -> Wire:
    wire = Wire(a, b)
    wire.pump()
    assert wire.pa.ready and wire.pb.ready
    return wire


def test_req_rep_envelope_and_states() -> None:
    req, rep = SocketCore("REQ"), SocketCore("REP")
    wire = _join(req, rep)
    with pytest.raises(InvalidOperation, match="send a request first"):
        req.recv()
    with pytest.raises(InvalidOperation, match="recv a request first"):
        rep.send([b"x"])
    assert req.send([b"ping"])
    with pytest.raises(InvalidOperation, match="before the reply"):
        req.send([b"again"])
    wire.pump()
    assert rep.recv() == [b"ping"]
    with pytest.raises(InvalidOperation, match="send the reply first"):
        rep.recv()
    rep.send([b"pong"])
    wire.pump()
    assert req.recv() == [b"pong"]
    assert req.req_state == "IDLE"


def test_req_abandon_drops_the_connection() -> None:
    req, rep = SocketCore("REQ"), SocketCore("REP")
    wire = _join(req, rep)
    req.send([b"q"])
    req.abandon()
    assert req.req_state == "IDLE"
    assert wire.pa.closing is not None


def test_router_ids_from_identity_and_generated() -> None:
    router = SocketCore("ROUTER")
    named = SocketCore("DEALER", identity=b"w1")
    anon = SocketCore("DEALER")
    w1, w2 = _join(named, router), _join(anon, router)
    named.send([b"a"])
    anon.send([b"b"])
    w1.pump()
    w2.pump()
    got = {tuple(router.recv() or []) for _ in range(2)}
    ids = {frames[0] for frames in got}
    assert b"w1" in ids
    generated = (ids - {b"w1"}).pop()
    assert len(generated) == 5 and generated[0] == 0
    assert router.send([generated, b"to anon"])
    assert router.send([b"nobody", b"dropped"])
    assert router.dropped == 1
    w2.pump()
    assert anon.recv() == [b"to anon"]


def test_pub_filters_on_the_publisher_side() -> None:
    pub, sub = SocketCore("PUB"), SocketCore("SUB")
    wire = _join(pub, sub)
    sub.subscribe(b"wea")
    wire.pump()
    assert pub.send([b"weather", b"sun"])
    assert pub.send([b"news", b"x"])
    assert wire.pa.queued == 1  # the unmatched message never left the publisher
    wire.pump()
    assert sub.recv() == [b"weather", b"sun"]
    assert sub.recv() is None


def test_sub_filters_what_an_unfiltering_peer_sends() -> None:
    xpub, sub = SocketCore("XPUB"), SocketCore("SUB")
    wire = _join(xpub, sub)
    sub.subscribe(b"a")
    wire.pump()
    wire.pa.topics.add(b"")  # a peer that sends everything
    xpub.send([b"b"])
    xpub.send([b"a1"])
    wire.pump()
    assert sub.recv() == [b"a1"]
    assert sub.recv() is None


def test_xpub_reports_first_subscribe_and_last_cancel() -> None:
    xpub = SocketCore("XPUB")
    s1, s2 = SocketCore("SUB"), SocketCore("XSUB")
    w1, w2 = _join(xpub, s1), _join(xpub, s2)
    s1.subscribe(b"t")
    s2.send([b"\x01t"])
    w1.pump()
    w2.pump()
    assert xpub.recv() == [b"\x01t"]
    assert xpub.recv() is None
    s1.unsubscribe(b"t")
    w1.pump()
    assert xpub.recv() is None
    xpub.detach(w2.pa)  # the last subscriber goes: its topics are cancelled
    assert xpub.recv() == [b"\x00t"]


def test_subscriptions_per_peer_are_bounded() -> None:
    pub, sub = SocketCore("PUB"), SocketCore("SUB")
    wire = _join(pub, sub)
    for i in range(MAX_TOPICS + 1):  # a hostile subscriber, below the API
        wire.pb.conn.subscribe(b"%d" % i)
    wire.pump(rounds=20)
    assert wire.pa.closing is not None and "bounded" in wire.pa.closing


def test_push_round_robin_and_pull_fair_queue() -> None:
    push = SocketCore("PUSH")
    pulls = [SocketCore("PULL") for _ in range(3)]
    wires = [_join(push, p) for p in pulls]
    for i in range(9):
        assert push.send([b"%d" % i])
    for w in wires:
        w.pump()
    assert [pull.recv() for pull in pulls] == [[b"0"], [b"1"], [b"2"]]
    pull = SocketCore("PULL")
    pushes = [SocketCore("PUSH") for _ in range(2)]
    ws = [_join(p, pull) for p in pushes]
    for i in range(3):
        pushes[0].send([b"a%d" % i])
        pushes[1].send([b"b%d" % i])
    for w in ws:
        w.pump()
    got = [pull.recv() for _ in range(6)]
    assert got == [[b"a0"], [b"b0"], [b"a1"], [b"b1"], [b"a2"], [b"b2"]]


def test_hwm_makes_push_wait_and_pub_drop() -> None:
    push, pull = SocketCore("PUSH", sndhwm=2), SocketCore("PULL")
    _join(push, pull)
    assert push.send([b"1"]) and push.send([b"2"])
    assert not push.can_send()
    assert not push.send([b"3"])
    pub, sub = SocketCore("PUB", sndhwm=1), SocketCore("SUB")
    wire = _join(pub, sub)
    sub.subscribe(b"")
    wire.pump()
    pub.send([b"x"])
    pub.send([b"y"])
    assert pub.dropped == 1


def test_pair_refuses_a_second_peer() -> None:
    pair = SocketCore("PAIR")
    _join(pair, SocketCore("PAIR"))
    second = Wire(pair, SocketCore("PAIR"))
    second.pump()
    assert second.pa.closing is not None and "one peer" in second.pa.closing


def test_handshake_deadline_and_heartbeats_with_a_fake_clock() -> None:
    core = SocketCore("PULL", handshake_timeout=5.0)
    stuck: Peer = core.attach("silent", 100.0)
    assert core.next_deadline() == 105.0
    core.tick(104.9)
    assert stuck.closing is None
    core.tick(105.0)
    assert stuck.closing is not None and "handshake" in stuck.closing

    a = SocketCore("DEALER", heartbeat=1.0)
    b = SocketCore("ROUTER")
    wire = Wire(a, b, now=0.0)
    wire.pump(now=0.0)
    assert a.next_deadline() == 1.0
    a.tick(1.0)  # PING goes out
    assert b"PING" in wire.pa.out
    wire.pump(now=1.0)  # ... and the PONG comes back: alive
    a.tick(2.5)
    assert wire.pa.closing is None
    a.tick(3.0)  # another PING, and then silence
    a.tick(4.0)
    assert wire.pa.closing is not None and "heartbeat" in wire.pa.closing


def test_peer_ttl_from_ping() -> None:
    a, b = SocketCore("DEALER"), SocketCore("ROUTER")
    wire = _join(a, b)
    wire.pb.conn.ping(ttl=2.0)
    wire.pump(now=10.0)
    assert wire.pa.peer_ttl == 2.0
    a.tick(11.9)
    assert wire.pa.closing is None
    a.tick(12.0)
    assert wire.pa.closing is not None and "TTL" in wire.pa.closing


def test_backoff_doubles_to_its_limit_and_resets() -> None:
    b = Backoff(0.1, 1.0)
    assert [b.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next() == 0.1


def test_wrong_calls_for_the_type() -> None:
    with pytest.raises(InvalidOperation, match="PULL only receives"):
        SocketCore("PULL").send([b"x"])
    with pytest.raises(InvalidOperation, match="PUB only sends"):
        SocketCore("PUB").recv()
    with pytest.raises(InvalidOperation, match="only SUB and XSUB"):
        SocketCore("PUB").subscribe(b"x")
    with pytest.raises(InvalidOperation):
        SocketCore("STREAM")
    with pytest.raises(InvalidOperation):
        SocketCore("ROUTER").send([b"only-id"])
    assert zmtp.SOCKET_TYPES  # every type constructs
    for kind in zmtp.SOCKET_TYPES:
        SocketCore(kind)


def test_messages_of_a_departed_peer_are_still_handed_out() -> None:
    """A driver that reads ahead sees a peer's last messages and its EOF at once."""
    push, pull = SocketCore("PUSH"), SocketCore("PULL")
    wire = _join(push, pull)
    for i in range(3):
        push.send([b"%d" % i])
    wire.pump()
    pull.received(wire.pb, b"", 1.0)  # EOF right behind them
    assert wire.pb.closing is not None
    pull.detach(wire.pb)
    assert [pull.recv() for _ in range(4)] == [[b"0"], [b"1"], [b"2"], None]
    req, rep = SocketCore("REQ"), SocketCore("REP")
    wire = _join(req, rep)
    req.send([b"q"])
    wire.pump()
    assert rep.recv() == [b"q"]
    rep.send([b"a"])
    wire.pump()
    req.detach(wire.pa)  # the REP answered and went away
    assert req.recv() == [b"a"]
    assert req.req_state == "IDLE"


def test_req_whose_peer_went_away_says_so_once() -> None:
    req, rep = SocketCore("REQ"), SocketCore("REP")
    wire = _join(req, rep)
    req.send([b"q"])
    req.detach(wire.pa)
    with pytest.raises(ConnectionLost, match="send the request again"):
        req.recv()
    with pytest.raises(InvalidOperation, match="send a request first"):
        req.recv()  # once: then the plain state error
    wire = _join(req, SocketCore("REP"))
    req.send([b"q"])  # a new request clears it
    req.abandon()
    req.detach(wire.pa)
    with pytest.raises(InvalidOperation):
        req.recv()  # abandoned on purpose: nothing was lost
