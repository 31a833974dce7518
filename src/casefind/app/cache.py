"""A small bounded LRU for the app's per-process caches of immutable files (a run's list
table, its registry entry, a practice's registered patients). Keys always name the file
version (path, size, mtime) or the snapshot, so a new run or ingest is read afresh; callers
key per practice where the value is a practice's, so nothing is shared across practices."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """At most ``size`` values, the least recently used dropped first; thread-safe. A value
    is computed outside the lock (two threads may both compute it once; both are right)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value
