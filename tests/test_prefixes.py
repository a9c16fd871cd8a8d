"""patterns/prefixes.py: the prefix index agrees with the obvious definition."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sockwire.patterns.prefixes import PrefixIndex

small = st.binary(max_size=6, min_size=0).map(lambda b: bytes(x % 3 + 97 for x in b))


@settings(max_examples=500)
@given(
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 4), small), max_size=60),
    topics=st.lists(small, min_size=1, max_size=10),
)
def test_match_is_every_key_holding_a_prefix(
    ops: list[tuple[bool, int, bytes]], topics: list[bytes]
) -> None:
    index: PrefixIndex[int] = PrefixIndex()
    held: dict[int, set[bytes]] = {}
    for add, key, prefix in ops:
        if add:
            index.add(key, prefix)
            held.setdefault(key, set()).add(prefix)
        else:
            index.discard(key, prefix)
            held.get(key, set()).discard(prefix)
    for topic in topics:
        expected = {k for k, ps in held.items() if any(topic.startswith(p) for p in ps)}
        assert index.match(topic) == expected
        assert index.matches_any(topic) == bool(expected)
    for key, prefixes in held.items():
        index.discard_all(key, prefixes)
    assert len(index) == 0 and index._lengths == [] and index._length_count == {}
