"""Topic-prefix matching whose cost does not grow with the number of prefixes (sans-IO).

A publisher that tested every topic against every prefix of every
subscriber let subscribers slow it down at will: 63 subscribers holding
1,024 prefixes each took publishing from 329,000 to 55 messages a second.
:class:`PrefixIndex` maps each subscribed prefix to the keys (subscriber
links) that hold it, and remembers which prefix *lengths* occur. A topic
is matched by looking up its own prefixes of those lengths only: at most
``MAX_PREFIX + 1`` dict lookups (prefixes are at most 1,024 bytes), however
many prefixes and subscribers there are; in practice a handful, one per
distinct length in use. Memory is one entry per (prefix, key), which the
publisher bounds per link (``MAX_SUBSCRIPTIONS``).
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["PrefixIndex"]

K = TypeVar("K", bound=Hashable)


class PrefixIndex(Generic[K]):
    """prefix -> keys that subscribed it; ``match(topic)`` -> keys with a prefix of ``topic``."""

    __slots__ = ("_by_prefix", "_length_count", "_lengths")

    def __init__(self) -> None:
        self._by_prefix: dict[bytes, set[K]] = {}
        self._length_count: dict[int, int] = {}  # length -> how many distinct prefixes
        self._lengths: list[int] = []  # the lengths in use, sorted

    def __len__(self) -> int:
        """How many distinct prefixes are held (by any key)."""
        return len(self._by_prefix)

    def add(self, key: K, prefix: bytes) -> None:
        keys = self._by_prefix.get(prefix)
        if keys is None:
            self._by_prefix[prefix] = {key}
            size = len(prefix)
            count = self._length_count.get(size, 0)
            if not count:
                bisect.insort(self._lengths, size)
            self._length_count[size] = count + 1
        else:
            keys.add(key)

    def discard(self, key: K, prefix: bytes) -> None:
        keys = self._by_prefix.get(prefix)
        if keys is None or key not in keys:
            return
        keys.discard(key)
        if keys:
            return
        del self._by_prefix[prefix]
        size = len(prefix)
        count = self._length_count[size] - 1
        if count:
            self._length_count[size] = count
        else:
            del self._length_count[size]
            del self._lengths[bisect.bisect_left(self._lengths, size)]

    def discard_all(self, key: K, prefixes: Iterable[bytes]) -> None:
        """Forget ``key``'s ``prefixes`` (a link that ended)."""
        for prefix in prefixes:
            self.discard(key, prefix)

    def match(self, topic: bytes) -> set[K]:
        """Every key holding a prefix of ``topic`` (the empty prefix matches all)."""
        found: set[K] = set()
        by_prefix = self._by_prefix
        limit = len(topic)
        for size in self._lengths:
            if size > limit:
                break
            keys = by_prefix.get(topic[:size])
            if keys:
                found |= keys
        return found

    def matches_any(self, topic: bytes) -> bool:
        """True when some prefix of ``topic`` is held at all (stops at the first)."""
        by_prefix = self._by_prefix
        limit = len(topic)
        for size in self._lengths:
            if size > limit:
                return False
            if topic[:size] in by_prefix:
                return True
        return False
