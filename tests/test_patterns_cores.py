"""The patterns' sans-IO cores, without sockets: wire format, liveness, each table.

A fake clock (plain floats) drives the liveness core; the pub/sub and
push/pull cores are exercised with random operation sequences (hypothesis)
and their invariants checked after every step: the counts a publisher keeps
equal the gaps its subscriber sees, a puller never owes more than its window.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockwire.errors import BadFrame, InvalidOperation, ProtocolError
from sockwire.patterns import wire
from sockwire.patterns.link import LinkCore, LinkState, Liveness
from sockwire.patterns.pubsub import Policy, PubCore, SubCore
from sockwire.patterns.pushpull import MAX_CREDIT, PullCore, PushCore
from sockwire.patterns.reqrep import RepCore, ReqCore
from sockwire.patterns.wire import U32, Role

# ---- wire

u32 = st.integers(0, U32)
blob = st.binary(max_size=64)
prefix = st.binary(max_size=wire.MAX_PREFIX)
messages = st.one_of(
    st.builds(wire.Hello, st.sampled_from(list(Role)), u32),
    st.just(wire.Heartbeat()),
    st.builds(wire.Request, u32, blob),
    st.builds(wire.Reply, u32, blob),
    st.builds(wire.Error, u32, st.text(max_size=40)),
    st.builds(wire.Subscribe, u32, prefix),
    st.builds(wire.Unsubscribe, u32, prefix),
    st.builds(wire.Ready, u32),
    st.builds(wire.Publish, u32, st.binary(max_size=300), blob),
    st.builds(wire.Item, blob),
    st.builds(wire.Credit, u32),
)


@settings(max_examples=2000)
@given(messages)
def test_every_message_parses_back_to_itself(msg: wire.Msg) -> None:
    assert wire.parse(msg.encode()) == msg


@settings(max_examples=2000)
@given(st.binary(max_size=40))
def test_any_bytes_parse_to_a_message_or_bad_frame(data: bytes) -> None:
    try:
        msg = wire.parse(data)
    except BadFrame:
        return
    assert wire.parse(msg.encode()) == msg


def test_wire_examples_match_the_protocol_page() -> None:
    assert wire.Hello(Role.REQ, 1000).encode() == bytes.fromhex("10 01 000003e8")
    assert wire.Heartbeat().encode() == b"\x11"
    assert wire.Request(7, b"hi").encode() == bytes.fromhex("12 00000007 6869")
    assert wire.Reply(7, b"HI").encode() == bytes.fromhex("13 00000007 4849")
    assert wire.Publish(0, b"t.a", b"x").encode() == bytes.fromhex("18 00000000 0003 742e61 78")
    assert wire.Subscribe(1, b"weather.").encode() == bytes.fromhex(
        "15 00000001 7765617468 65722e"
    )
    assert wire.Item(b"job").encode() == bytes.fromhex("19 6a6f62")
    assert wire.Credit(10).encode() == bytes.fromhex("1a 0000000a")
    with pytest.raises(BadFrame, match="version 2"):
        wire.parse(b"\x21")
    with pytest.raises(BadFrame):
        wire.parse(b"\x1f\0\0\0\0")
    with pytest.raises(BadFrame):
        wire.parse(wire.Subscribe(1, b"x" * (wire.MAX_PREFIX + 1)).encode())


# ---- liveness, with a fake clock


def test_heartbeats_fall_due_and_silence_kills() -> None:
    core = LinkCore(Role.REQ, Liveness(interval=1, timeout=5), now=100.0)
    assert wire.parse(core.hello()) == wire.Hello(Role.REQ, 1000)
    assert core.heartbeat(100.5) is None
    assert core.next_heartbeat() == 101.0
    assert core.heartbeat(101.0) == b"\x11"
    core.sent(101.7)
    assert core.next_heartbeat() == 102.7
    assert core.receive(wire.Hello(Role.REP, 1000).encode(), 102.0) == wire.Hello(Role.REP, 1000)
    assert core.state is LinkState.READY
    assert core.deadline() == 107.0
    assert core.receive(b"\x11", 106.0) is None  # a heartbeat only proves life
    assert not core.expired(110.9)
    assert core.expired(111.0)
    assert core.state is LinkState.CLOSED
    assert core.next_heartbeat() is None


def test_the_peers_promise_stretches_our_timeout_and_zero_means_never() -> None:
    slow_peer = LinkCore(Role.SUB, Liveness(interval=0.1, timeout=0.5), now=0.0)
    slow_peer.receive(wire.Hello(Role.PUB, 2000).encode(), 0.0)
    assert slow_peer.deadline() == 6.0, "3 x the 2 s it promised"
    silent = LinkCore(Role.SUB, Liveness(interval=0.1, timeout=0.5), now=0.0)
    silent.receive(wire.Hello(Role.PUB, 0).encode(), 0.0)
    assert silent.deadline() is None
    assert not silent.expired(1e9)


def test_the_greeting_is_checked() -> None:
    core = LinkCore(Role.SUB, None, now=0.0)
    with pytest.raises(BadFrame, match="SUB reached a PULL"):
        core.receive(wire.Hello(Role.PULL, 0).encode(), 0.0)
    core = LinkCore(Role.SUB, None, now=0.0)
    with pytest.raises(BadFrame, match="before HELLO"):
        core.receive(wire.Item(b"x").encode(), 0.0)
    core = LinkCore(Role.SUB, None, now=0.0)
    core.receive(wire.Hello(Role.PUB, 0).encode(), 0.0)
    with pytest.raises(BadFrame, match="second HELLO"):
        core.receive(wire.Hello(Role.PUB, 0).encode(), 0.0)
    datagram = LinkCore(Role.REQ, Liveness(), now=0.0, greet=False)
    assert datagram.state is LinkState.READY
    assert datagram.deadline() is None
    assert datagram.next_heartbeat() is None
    with pytest.raises(InvalidOperation):
        Liveness(interval=1, timeout=1)


# ---- req/rep


def test_req_core_sorts_replies_into_reply_late_and_unexpected() -> None:
    core = ReqCore(max_pending=2)
    first, payload = core.request(b"a")
    assert wire.parse(payload) == wire.Request(first, b"a")
    second, _ = core.request(b"b")
    assert core.full()
    with pytest.raises(ProtocolError):
        core.request(b"c")
    assert core.expire(first)
    assert core.receive(wire.Reply(first, b"late")) == "late"
    assert core.receive(wire.Error(second, "boom")) == "error"
    assert core.receive(wire.Reply(second, b"again")) == "late"
    assert core.receive(wire.Reply(second + 1000, b"?")) == "unexpected"
    assert core.stats.timed_out == 1
    assert core.stats.late == 2
    assert core.stats.unexpected == 1
    assert core.stats.remote_errors == 1


def test_req_core_ids_wrap_and_stay_comparable() -> None:
    core = ReqCore()
    core.next_id = U32
    last, _ = core.request(b"x")
    wrapped, _ = core.request(b"y")
    assert (last, wrapped) == (U32, 0)
    core.expire(last)
    assert core.receive(wire.Reply(last, b"")) == "late", "issued just before the wrap"
    assert core.receive(wire.Reply(5, b"")) == "unexpected"
    assert core.link_lost() == [wrapped]
    assert core.stats.failed == 1


def test_rep_core_refuses_duplicate_and_too_many_requests() -> None:
    core = RepCore(max_outstanding=2)
    core.begin(1, 10)
    with pytest.raises(BadFrame, match="twice"):
        core.begin(1, 10)
    core.begin(1, 11)
    with pytest.raises(BadFrame, match="more than 2"):
        core.begin(1, 12)
    assert wire.parse(core.reply(1, 10, b"ok")) == wire.Reply(10, b"ok")
    assert wire.parse(core.error(1, 11, "E: x")) == wire.Error(11, "E: x")
    core.begin(1, 12)
    core.forget(1)


# ---- pub/sub: the publisher's counts are the subscriber's gaps


ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.sampled_from(["a.x", "a.y", "b.x"])),
        st.tuples(st.just("write"), st.integers(0, 5)),
    ),
    max_size=200,
)


@settings(max_examples=300)
@given(
    ops,
    st.sampled_from([Policy.DROP_NEWEST, Policy.DROP_OLDEST, Policy.BLOCK]),
    st.integers(1, 6),
)
def test_pub_drops_are_exactly_the_gaps_the_sub_counts(
    steps: list[tuple[str, object]], policy: Policy, hwm: int
) -> None:
    pub = PubCore(hwm, policy)
    sub = SubCore()
    pub.add(1)
    assert sub.subscribe(b"a.") is None  # not connected: it goes out with the link
    (subscribe,) = sub.on_link()
    pub.subscribe(1, wire.parse(subscribe))  # type: ignore[arg-type]
    delivered: list[int] = []
    counter = 0

    def write(count: int) -> None:
        for frame in pub.take(1, count):
            msg = wire.parse(frame)
            if isinstance(msg, wire.Ready):
                sub.ready(msg.token)
            elif isinstance(msg, wire.Publish) and sub.publish(msg):
                delivered.append(int(msg.body))

    for op, arg in steps:
        if op == "publish":
            for key in pub.matching(str(arg).encode()):
                if pub.offer(key, str(arg).encode(), str(counter).encode()) == "full":
                    pub.give_up(key)
            counter += 1
        else:
            write(int(str(arg)))
        assert len(pub.subs[1].queue) <= hwm
    write(10**6)
    # one more message reveals a trailing gap, as in the socket tests
    pub.offer(1, b"a.end", b"-1")
    write(10**6)
    per_sub = pub.subs[1].stats
    assert sub.stats.missed == per_sub.dropped
    assert delivered[:-1] == sorted(delivered[:-1])
    assert pub.stats.dropped == per_sub.dropped


def test_pub_core_disconnect_policy_and_subscription_bound() -> None:
    pub = PubCore(2, Policy.DISCONNECT)
    pub.add(1)
    pub.subscribe(1, wire.Subscribe(1, b""))
    assert [pub.offer(1, b"t", b"x") for _ in range(3)] == ["queued", "queued", "cut"]
    assert pub.stats.dropped_disconnect == 3
    assert pub.stats.disconnects == 1
    assert pub.matching(b"t") == [], "a cut subscriber gets nothing more"
    pub.remove(1)
    assert pub.stats.dropped_lost == 0, "counted once, as disconnect"
    pub.add(2)
    for n in range(1024):
        pub.subscribe(2, wire.Subscribe(n, str(n).encode()))
    with pytest.raises(BadFrame, match="1024 subscriptions"):
        pub.subscribe(2, wire.Subscribe(9999, b"one more"))
    with pytest.raises(InvalidOperation):
        PubCore(0, Policy.BLOCK)


def test_sub_core_resubscribes_on_every_link() -> None:
    sub = SubCore()
    assert sub.subscribe(b"a") is None  # not connected: goes out with the link
    (first,) = sub.on_link()
    token = wire.parse(first).token  # type: ignore[union-attr]
    sub.ready(token)
    assert sub.in_force == {b"a"}
    sub.link_lost()
    assert sub.in_force == set()
    (again,) = sub.on_link()
    assert wire.parse(again).token != token  # type: ignore[union-attr]
    sub.ready(token)  # a READY for the old link's token changes nothing
    assert sub.in_force == set()
    assert sub.unsubscribe(b"a") is not None
    assert sub.unsubscribe(b"a") is None


# ---- push/pull


def test_push_core_round_robin_skips_pullers_without_credit() -> None:
    push = PushCore()
    for key in (1, 2, 3):
        push.add(key)
    assert push.pick() is None
    push.grant(1, 2)
    push.grant(2, 1)
    push.grant(3, 2)
    assert [push.pick() for _ in range(6)] == [1, 2, 3, 1, 3, None]
    with pytest.raises(BadFrame):
        push.grant(1, MAX_CREDIT + 1)
    push.remove(2)
    push.grant(3, 1)
    assert push.pick() == 3


@settings(max_examples=500)
@given(
    st.integers(1, 20),
    st.lists(st.sampled_from(["item", "take", "lost", "link"]), max_size=200),
)
def test_pull_core_never_owes_more_than_its_window(window: int, steps: list[str]) -> None:
    pull = PullCore(window)
    granted = sum(wire.parse(c).count for c in pull.on_link())  # type: ignore[union-attr]
    for step in steps:
        if step == "item" and pull.outstanding > 0:
            pull.item()
            granted -= 1
        elif step == "item":
            with pytest.raises(BadFrame):
                pull.item()
            pull.link_lost()
            granted = sum(wire.parse(c).count for c in pull.on_link())  # type: ignore[union-attr]
        elif step == "take" and pull.queued:
            credit = pull.took()
            if credit is not None:
                granted += wire.parse(credit).count  # type: ignore[union-attr]
        elif step == "lost":
            pull.link_lost()
            granted = 0
        elif step == "link" and not pull.connected:
            granted = sum(wire.parse(c).count for c in pull.on_link())  # type: ignore[union-attr]
        assert 0 <= granted == pull.outstanding or not pull.connected
        assert pull.outstanding + pull.queued <= window
