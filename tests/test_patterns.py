"""Pattern conformance: req/rep, pub/sub, push/pull over every transport they support.

One suite, parametrized by transport: unix stream, unix seqpacket, tcp, and
for req/rep also unix datagrams and udp. Counts, not timings: every test
waits on the patterns' own state (``wait_for``) or on messages, never on a
clock, and asserts exact numbers where the protocol makes them exact.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Iterator

import pytest

from sockwire.errors import (
    ClosedError,
    ConnectionLost,
    InvalidOperation,
    MessageTooLarge,
    PermissionDenied,
    RemoteError,
    TimeoutError,
)
from sockwire.patterns import Liveness, Pub, Pull, Push, Rep, Req, Sub

WAIT = 10.0
LIVE = Liveness(interval=0.2, timeout=2.0)
STREAMS = ["unix", "seqpacket", "tcp"]
DATAGRAMS = ["unix-dgram", "udp"]


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="sw-pat-") as path:
        yield path


def _ep(kind: str, tmp: str) -> str:
    return {
        "unix": f"unix:{tmp}/p.sock",
        "seqpacket": f"unix+seqpacket:{tmp}/p.sock",
        "tcp": "tcp://127.0.0.1:0",
        "unix-dgram": f"unix+dgram:{tmp}/p.sock",
        "udp": "udp://127.0.0.1:0",
    }[kind]


# --------------------------------------------------------------------------
# Req/Rep
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STREAMS + DATAGRAMS)
def test_reqrep_round_trips_from_several_threads(kind: str, tmp: str) -> None:
    # UDP drops what overflows a receive buffer, even on loopback: stay well inside it
    sizes = {
        "udp": [0, 1, 100, 5000],
        "unix-dgram": [0, 1, 100, 60000],
        "seqpacket": [0, 1, 100, 70000],  # one packet each: the kernel's boundaries
    }.get(kind, [0, 1, 100, 70000, 1 << 20])
    with (
        Rep(_ep(kind, tmp), lambda body: body[::-1], liveness=LIVE) as rep,
        Req(rep.endpoint, liveness=LIVE, timeout=WAIT) as req,
    ):
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(25):
                    body = f"{n}:{i}:".encode() + b"x" * sizes[i % len(sizes)]
                    assert req.request(body) == body[::-1]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert req.stats.sent == req.stats.replied == 100
        assert rep.stats.requests == rep.stats.replies == 100


def test_a_request_over_one_packet_is_refused_and_the_req_stays_usable(tmp: str) -> None:
    """Plain seqpacket carries one packet per message; ?framing=sockwire carries any size."""
    big = b"x" * (1 << 20)
    with (
        Rep(_ep("seqpacket", tmp), lambda body: body[::-1], liveness=LIVE) as rep,
        Req(rep.endpoint, liveness=LIVE, timeout=WAIT) as req,
    ):
        with pytest.raises(MessageTooLarge, match="framing=sockwire"):
            req.request(big)
        assert req.request(b"abc") == b"cba"
    with (
        Rep(
            f"unix+seqpacket:{tmp}/q.sock?framing=sockwire", lambda b: b[::-1], liveness=LIVE
        ) as rep,
        Req(rep.endpoint, liveness=LIVE, timeout=WAIT) as req,
    ):
        assert req.request(big) == big[::-1]


@pytest.mark.parametrize("kind", STREAMS + DATAGRAMS)
def test_a_timed_out_request_leaves_the_link_usable_and_its_late_reply_is_counted(
    kind: str, tmp: str
) -> None:
    hold = threading.Event()
    holding = threading.Event()

    def handler(body: bytes) -> bytes:
        if body == b"slow":
            holding.set()
            hold.wait(WAIT)
        return body + b"!"

    with (
        Rep(_ep(kind, tmp), handler, liveness=LIVE) as rep,
        Req(rep.endpoint, liveness=LIVE, timeout=WAIT) as req,
    ):
        with pytest.raises(TimeoutError, match="late reply"):
            req.request(b"slow", timeout=0.1)
        assert holding.wait(WAIT)
        hold.set()  # the late reply now goes out; the next request's reply follows it
        assert req.request(b"next") == b"next!"
        if kind in STREAMS:  # one ordered link: the late reply arrived before "next!"
            assert req.stats.late == 1
        else:
            assert req.wait_for(lambda r: r.stats.late == 1, WAIT)
        assert req.stats.timed_out == 1
        assert req.stats.unexpected == 0
        assert req.connects == 1


@pytest.mark.parametrize("kind", [*STREAMS, "unix-dgram"])
def test_a_failing_handler_is_a_remote_error_and_the_link_stays(kind: str, tmp: str) -> None:
    def handler(body: bytes) -> bytes:
        if body == b"bad":
            raise ValueError("no such thing")
        return b"ok"

    with (
        Rep(_ep(kind, tmp), handler, liveness=LIVE) as rep,
        Req(rep.endpoint, liveness=LIVE, timeout=WAIT) as req,
    ):
        with pytest.raises(RemoteError, match="ValueError: no such thing"):
            req.request(b"bad")
        assert req.request(b"good") == b"ok"
    assert rep.stats.errors == 1
    assert req.stats.remote_errors == 1


def test_reqrep_with_the_json_codec(tmp: str) -> None:
    with (
        Rep(_ep("unix", tmp), lambda obj: {"sum": sum(obj)}, codec="json", liveness=LIVE) as rep,
        Req(rep.endpoint, codec="json", liveness=LIVE, timeout=WAIT) as req,
    ):
        assert req.request([1, 2, 3]) == {"sum": 6}


@pytest.mark.parametrize("kind", STREAMS)
def test_req_reconnects_when_the_rep_restarts(kind: str, tmp: str) -> None:
    rep = Rep(_ep(kind, tmp), lambda body: b"first", liveness=LIVE)
    endpoint = rep.endpoint  # the port bound, for tcp: the new Rep takes it again
    with Req(endpoint, liveness=LIVE, timeout=WAIT) as req:
        assert req.request(b"?") == b"first"
        rep.close()
        assert req.wait_for(lambda r: not r.connected, WAIT)
        with Rep(endpoint, lambda body: b"second", liveness=LIVE):
            assert req.request(b"?") == b"second"  # waits for the reconnect
        assert req.connects == 2


def test_a_datagram_req_follows_its_rep_to_a_new_socket_file(tmp: str) -> None:
    rep = Rep(_ep("unix-dgram", tmp), lambda body: b"first", liveness=LIVE)
    endpoint = rep.endpoint
    with Req(endpoint, liveness=LIVE, timeout=WAIT) as req:
        assert req.request(b"?") == b"first"
        rep.close()  # its socket file goes; the Req's socket points at a dead inode
        with Rep(endpoint, lambda body: b"second", liveness=LIVE):
            assert req.request(b"?") == b"second"  # refused, not delivered: sent again
        assert req.connects == 2
        assert req.stats.failed == 1, "the undelivered attempt, counted"


def test_a_request_pending_when_the_link_drops_fails_with_connection_lost(tmp: str) -> None:
    holding = threading.Event()
    release = threading.Event()

    def handler(body: bytes) -> bytes:
        holding.set()
        release.wait(WAIT)
        return body

    rep = Rep(_ep("unix", tmp), handler, liveness=LIVE, grace=0)
    try:
        with Req(rep.endpoint, liveness=LIVE, timeout=WAIT) as req:
            outcome: queue.Queue[BaseException | bytes] = queue.Queue()

            def ask() -> None:
                try:
                    outcome.put(req.request(b"x"))
                except BaseException as exc:
                    outcome.put(exc)

            asker = threading.Thread(target=ask)
            asker.start()
            assert holding.wait(WAIT)
            closer = threading.Thread(target=rep.close)  # grace 0: the link is cut
            closer.start()
            result = outcome.get(timeout=WAIT)
            release.set()
            closer.join()
            asker.join()
            assert isinstance(result, ConnectionLost)
            assert "may or may not have run" in str(result)
            assert req.stats.failed == 1
    finally:
        release.set()
        rep.close()


def test_req_started_before_its_rep_waits_for_it(tmp: str) -> None:
    with Req(_ep("unix", tmp), liveness=LIVE, timeout=WAIT) as req:
        assert not req.connected
        with Rep(_ep("unix", tmp), lambda body: b"late server", liveness=LIVE):
            assert req.request(b"hello") == b"late server"


def test_req_on_a_closed_node_and_bad_options(tmp: str) -> None:
    req = Req(_ep("unix", tmp), liveness=LIVE)
    req.close()
    with pytest.raises(ClosedError):
        req.request(b"x", timeout=1)
    with pytest.raises(PermissionDenied, match="pickle"):
        Rep(_ep("unix", tmp), lambda b: b, codec="pickle")
    with pytest.raises(InvalidOperation, match="connection"):
        Pub(_ep("udp", tmp))
    with pytest.raises(InvalidOperation):
        Liveness(interval=2, timeout=1)
    with pytest.raises(InvalidOperation, match="policy"):
        Pub(_ep("unix", tmp), policy="drop-random")
    assert not os.listdir(tmp)


def test_a_req_that_reaches_a_pub_is_refused_not_confused(tmp: str) -> None:
    with Pub(_ep("unix", tmp), liveness=LIVE) as pub:
        with Req(pub.endpoint, liveness=LIVE) as req:
            assert req.wait_for(lambda r: r._connect_error is not None, WAIT)
            with pytest.raises(TimeoutError, match="a REQ reached a PUB"):
                req.request(b"x", timeout=0.1)  # every link is refused at the greeting
        assert pub.stats.subscribers == 0


# --------------------------------------------------------------------------
# Pub/Sub
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STREAMS)
def test_pubsub_delivers_by_topic_prefix(kind: str, tmp: str) -> None:
    with (
        Pub(_ep(kind, tmp), liveness=LIVE) as pub,
        Sub(pub.endpoint, liveness=LIVE) as weather,
        Sub(pub.endpoint, liveness=LIVE) as everything,
    ):
        weather.subscribe("weather.")
        everything.subscribe("")
        assert pub.publish("weather.paris", b"18C") == 2
        assert pub.publish("sport.rugby", b"12-9") == 1
        assert pub.publish("weather.oslo", b"-3C") == 2
        assert weather.recv(timeout=WAIT) == ("weather.paris", b"18C")
        assert weather.recv(timeout=WAIT) == ("weather.oslo", b"-3C")
        got = [everything.recv(timeout=WAIT) for _ in range(3)]
        assert got == [
            ("weather.paris", b"18C"),
            ("sport.rugby", b"12-9"),
            ("weather.oslo", b"-3C"),
        ]
        weather.unsubscribe("weather.")
        assert pub.publish("weather.rome", b"25C") >= 1
        with pytest.raises(TimeoutError):
            weather.recv(timeout=0.2)
    assert pub.stats.published == 4
    assert pub.stats.dropped == 0


@pytest.mark.parametrize("kind", STREAMS)
def test_nothing_published_after_subscribe_returns_is_lost(kind: str, tmp: str) -> None:
    """A publisher counts up without pause; a subscriber joins mid-stream.

    Every number published after subscribe() returned must arrive, in order:
    the check is a counter, not a clock.
    """
    published = [0]  # numbers below this have been published
    stop = threading.Event()
    with Pub(_ep(kind, tmp), liveness=LIVE, policy="block", hwm=100) as pub:

        def publisher() -> None:
            n = 0
            while not stop.is_set():
                pub.publish("count", n.to_bytes(4, "big"))
                n += 1
                published[0] = n

        thread = threading.Thread(target=publisher)
        thread.start()
        try:
            assert pub.wait_for(lambda p: p.stats.published >= 200, WAIT), (
                "publishing into the void"
            )
            with Sub(pub.endpoint, liveness=LIVE) as sub:
                sub.subscribe("count")
                after = published[0]  # number `after` may be mid-publish; later ones follow
                got: list[int] = []
                while not got or got[-1] < after + 2000:
                    _, body = sub.recv(timeout=WAIT)
                    got.append(int.from_bytes(body, "big"))
                stop.set()
        finally:
            stop.set()
            thread.join()
    assert got == list(range(got[0], got[-1] + 1)), "in order, no gap"
    assert got[0] <= after + 1, "nothing published after subscribe() returned was lost"
    assert pub.stats.dropped == pub.stats.dropped_lost, "only what was queued when it left"


def _body_size(kind: str) -> int:
    """Big enough that 400 messages overflow every buffer on the way (TCP autotunes to MBs)."""
    return 65536 if kind == "tcp" else 4096


def _fill(pub: Pub, count: int, size: int) -> None:
    body = b"x" * size
    for n in range(count):
        pub.publish("t", n.to_bytes(4, "big") + body)


def _numbers(sub: Sub, count: int) -> list[int]:
    return [int.from_bytes(sub.recv(timeout=WAIT)[1][:4], "big") for _ in range(count)]


@pytest.mark.parametrize("kind", STREAMS)
@pytest.mark.parametrize("policy", ["drop-newest", "drop-oldest"])
def test_drop_policies_count_every_drop_on_both_ends(policy: str, kind: str, tmp: str) -> None:
    total = 400  # 1.6 MB: far beyond the socket buffers, the queue and the Sub's window
    hwm = 4
    with (
        Pub(_ep(kind, tmp), liveness=LIVE, policy=policy, hwm=hwm) as pub,
        Sub(pub.endpoint, liveness=LIVE, hwm=1) as sub,
    ):
        sub.subscribe("t")
        _fill(pub, total, _body_size(kind))  # the Sub reads nothing meanwhile
        stats = pub.stats
        dropped = stats.dropped_newest if policy == "drop-newest" else stats.dropped_oldest
        assert dropped > 0
        assert stats.dropped == dropped
        got = _numbers(sub, total - dropped)  # exactly what was not dropped arrives
        assert got == sorted(set(got)), "in order"
        if policy == "drop-oldest":
            assert got[-hwm:] == list(range(total - hwm, total)), "the newest survive"
        pub.publish("t", b"\xff\xff\xff\xffend")  # reveals a trailing gap to the Sub
        assert _numbers(sub, 1) == [0xFFFFFFFF]
        assert sub.stats.missed == dropped, "the Sub counted the same drops by sequence"
        per_sub = list(pub.subscriber_stats().values())
        assert per_sub[0].dropped == dropped


@pytest.mark.parametrize("kind", STREAMS)
def test_block_policy_holds_the_publisher_and_loses_nothing(kind: str, tmp: str) -> None:
    total = 400
    with (
        Pub(_ep(kind, tmp), liveness=LIVE, policy="block", hwm=4) as pub,
        Sub(pub.endpoint, liveness=LIVE, hwm=1) as sub,
    ):
        sub.subscribe("t")
        publisher = threading.Thread(target=_fill, args=(pub, total, _body_size(kind)))
        publisher.start()
        try:
            assert pub.wait_for(lambda p: p.stats.blocked >= 1, WAIT), "the publisher waits"
            got = _numbers(sub, total)
        finally:
            publisher.join()
        assert got == list(range(total))
        assert pub.stats.dropped == 0
        assert sub.stats.missed == 0
        # with a timeout, the copy that cannot be queued in time is dropped and counted
        gave_up = False
        for _ in range(400):
            if pub.publish("t", b"x" * _body_size(kind), timeout=0.05) == 0:
                gave_up = True
                break
        assert gave_up, "the buffers filled up and a publish gave up"
        assert pub.stats.dropped_timeout == 1


@pytest.mark.parametrize("kind", STREAMS)
def test_disconnect_policy_cuts_a_slow_subscriber_which_reconnects(kind: str, tmp: str) -> None:
    with (
        Pub(_ep(kind, tmp), liveness=LIVE, policy="disconnect", hwm=4) as pub,
        Sub(pub.endpoint, liveness=LIVE, hwm=1) as sub,
    ):
        sub.subscribe("t")
        _fill(pub, 400, _body_size(kind))
        assert pub.stats.disconnects == 1
        assert pub.stats.dropped_disconnect >= 5  # its queue (4) and the message over it
        got: queue.Queue[int] = queue.Queue()

        def reader() -> None:
            for _, body in sub:
                got.put(int.from_bytes(body[:4], "big"))
                if body[4:] == b"after":
                    return

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            # the Sub drains the cut link, sees its end, reconnects and subscribes again
            assert pub.wait_for(
                lambda p: any(b"t" in s.prefixes for s in p.core.subs.values()), WAIT
            )
            assert pub.publish("t", b"\0\0\0\x07after") == 1
        finally:
            thread.join(WAIT)
        numbers = [got.get_nowait() for _ in range(got.qsize())]
        assert numbers[-1] == 7
        assert numbers[:-1] == sorted(numbers[:-1])
        assert pub.stats.disconnects == 1
        assert sub.connects == 2


@pytest.mark.parametrize("kind", STREAMS)
def test_sub_resubscribes_when_the_pub_restarts(kind: str, tmp: str) -> None:
    pub = Pub(_ep(kind, tmp), liveness=LIVE)
    endpoint = pub.endpoint
    with Sub(endpoint, liveness=LIVE) as sub:
        sub.subscribe("news")
        pub.publish("news", b"one")
        assert sub.recv(timeout=WAIT) == ("news", b"one")
        pub.close()
        assert sub.wait_for(lambda s: b"news" not in s.core.in_force, WAIT)
        with Pub(endpoint, liveness=LIVE) as again:
            sub.subscribe("news", timeout=WAIT)  # in force again on the new link
            assert again.publish("news", b"two") == 1
            assert sub.recv(timeout=WAIT) == ("news", b"two")
        assert sub.connects == 2


def test_pubsub_with_the_json_codec(tmp: str) -> None:
    with (
        Pub(_ep("tcp", tmp), codec="json", liveness=LIVE) as pub,
        Sub(pub.endpoint, codec="json", liveness=LIVE) as sub,
    ):
        sub.subscribe()
        pub.publish("t", {"a": [1, 2]})
        assert sub.recv(timeout=WAIT) == ("t", {"a": [1, 2]})


# --------------------------------------------------------------------------
# Push/Pull
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STREAMS)
def test_push_spreads_work_round_robin(kind: str, tmp: str) -> None:
    with Push(_ep(kind, tmp), liveness=LIVE) as push:
        pulls = [Pull(push.endpoint, liveness=LIVE, hwm=200) for _ in range(3)]
        try:
            assert push.wait_for(lambda p: p.ready_pullers == 3, WAIT)
            for n in range(300):
                push.send(n.to_bytes(2, "big"), timeout=WAIT)
            counts = sorted(push.puller_stats().values())
            got = [
                [int.from_bytes(p.recv(timeout=WAIT), "big") for _ in range(100)] for p in pulls
            ]
        finally:
            for pull in pulls:
                pull.close()
    assert counts == [100, 100, 100], "strict round robin while everyone has credit"
    assert sorted(n for items in got for n in items) == list(range(300))
    assert all(items == sorted(items) for items in got), "each puller in send order"
    assert push.stats.sent == 300
    assert push.stats.blocked == 0


@pytest.mark.parametrize("kind", STREAMS)
def test_a_slow_puller_blocks_the_pusher_after_its_window(kind: str, tmp: str) -> None:
    window = 5
    with (
        Push(_ep(kind, tmp), liveness=LIVE) as push,
        Pull(push.endpoint, liveness=LIVE, hwm=window) as pull,
    ):
        assert push.wait_for(lambda p: p.ready_pullers == 1, WAIT)
        for n in range(window):
            push.send(bytes([n]), timeout=WAIT)
        with pytest.raises(TimeoutError):
            push.send(b"one too many", timeout=0.2)  # no queue grows anywhere
        assert push.stats.sent == window
        assert push.stats.blocked == 1
        assert pull.recv(timeout=WAIT) == b"\0"  # credit goes back...
        push.send(b"\x05", timeout=WAIT)  # ...and the pusher moves on
        assert [pull.recv(timeout=WAIT) for _ in range(window)] == [
            bytes([n]) for n in range(1, 6)
        ]


def test_a_slow_puller_holds_only_its_window_the_rest_goes_elsewhere(tmp: str) -> None:
    with (
        Push(_ep("unix", tmp), liveness=LIVE) as push,
        Pull(push.endpoint, liveness=LIVE, hwm=2) as slow,
        Pull(push.endpoint, liveness=LIVE, hwm=100) as fast,
    ):
        assert push.wait_for(lambda p: p.ready_pullers == 2, WAIT)
        for n in range(20):
            push.send(bytes([n]), timeout=WAIT)
        assert sorted(push.puller_stats().values()) == [2, 18]
        assert len([fast.recv(timeout=WAIT) for _ in range(18)]) == 18
        assert len([slow.recv(timeout=WAIT) for _ in range(2)]) == 2


@pytest.mark.parametrize("kind", STREAMS)
def test_pull_reconnects_when_the_push_restarts(kind: str, tmp: str) -> None:
    push = Push(_ep(kind, tmp), liveness=LIVE)
    endpoint = push.endpoint
    with Pull(endpoint, liveness=LIVE, hwm=10) as pull:
        assert push.wait_for(lambda p: p.ready_pullers == 1, WAIT)
        push.send(b"before", timeout=WAIT)
        assert pull.recv(timeout=WAIT) == b"before"
        push.close()
        with Push(endpoint, liveness=LIVE) as again:
            assert again.wait_for(lambda p: p.ready_pullers == 1, WAIT)
            again.send(b"after", timeout=WAIT)
            assert pull.recv(timeout=WAIT) == b"after"
        assert pull.connects == 2


def test_push_pull_with_the_msgpack_codec(tmp: str) -> None:
    pytest.importorskip("msgpack")
    with (
        Push(_ep("seqpacket", tmp), codec="msgpack", liveness=LIVE) as push,
        Pull(push.endpoint, codec="msgpack", liveness=LIVE) as pull,
    ):
        assert push.wait_for(lambda p: p.ready_pullers == 1, WAIT)
        push.send({"job": 1, "data": b"\x00\x01"}, timeout=WAIT)
        assert pull.recv(timeout=WAIT) == {"job": 1, "data": b"\x00\x01"}
