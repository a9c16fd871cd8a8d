"""tls.RecordWatch: record boundaries and plaintext handshake types, under any split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sockwire.tls import RecordWatch

messages = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=300)), min_size=1, max_size=4
)
records = st.lists(
    st.one_of(
        st.tuples(st.just(22), messages),  # handshake records, their messages
        st.tuples(st.sampled_from([20, 21, 23]), st.binary(max_size=300)),
    ),
    max_size=6,
)


def _encode(kind: int, body: object) -> bytes:
    if kind == 22:
        assert isinstance(body, list)
        payload = b"".join(bytes([t]) + len(m).to_bytes(3, "big") + m for t, m in body)
    else:
        assert isinstance(body, bytes)
        payload = body
    return bytes([kind, 3, 3]) + len(payload).to_bytes(2, "big") + payload


@given(records, st.lists(st.integers(1, 50), max_size=30), st.integers(0, 4))
def test_boundaries_and_types_under_any_split(
    recs: list[tuple[int, object]], cuts: list[int], short: int
) -> None:
    stream = b"".join(_encode(k, b) for k, b in recs)
    watch = RecordWatch()
    i = 0
    for cut in cuts:
        watch.feed(stream[i : i + cut])
        i += cut
    watch.feed(stream[i:])
    assert watch.at_boundary and watch.records == len(recs)
    seen: set[int] = set()
    for kind, body in recs:
        if kind in (20, 23):
            break
        if kind == 22:
            assert isinstance(body, list)
            seen.update(t for t, _ in body)
    assert watch.handshake_types == seen
    assert watch.cert_requested == (13 in seen)
    if stream and short:
        cut_watch = RecordWatch()
        cut_watch.feed(stream[: max(0, len(stream) - short)])
        last = _encode(*recs[-1])
        assert not cut_watch.at_boundary or short >= len(last)
