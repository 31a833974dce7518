"""The app's caches: a bounded LRU, and Work's caches keyed by the file's version, so a new
run written over an old one's folder is read afresh and one practice's rows are never
another's."""
from __future__ import annotations

from casefind.app.cache import LRU


def test_lru_keeps_the_most_recently_used():
    made: list[str] = []
    cache: LRU[str] = LRU(2)

    def make(key):
        return lambda: made.append(key) or key.upper()

    assert [cache.get(k, make(k)) for k in ("a", "b", "a", "c", "a", "b")] == ["A", "B", "A", "C", "A", "B"]
    assert made == ["a", "b", "c", "b"]  # "b" was the least recently used when "c" came
