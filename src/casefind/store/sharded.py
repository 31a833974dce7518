"""A sharded store seen through one interface (docs/scale-out.md, build order step 2).

Commands that merge exactly (``casefind run``, ``dataset``, ``kpi``) take either kind of
store: ``open_any`` gives a ``Store`` or a ``ShardedStore``. A ``ShardedStore`` opens its
shards one at a time (``shards()``), so that memory is bounded by a shard, not by the
population; each shard is an ordinary ``Store`` that reads the sharded store's one review log
(kept at its root) filtered to its own patients.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.store.coverage import Coverage
from casefind.store.reader import Store
from casefind.store.shards import ShardManifest, is_sharded, read_manifest
from casefind.store.writer import CURRENT, StoreError


class ShardedStore:
    """``root/shards.json`` and the shards it names. ``snapshot_id`` is the sharded one (a
    hash of the shards' ids); ``coverage`` spans every shard's data, as one store's would."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.shard_manifest: ShardManifest = read_manifest(self.root)

    @property
    def snapshot_id(self) -> str:
        return self.shard_manifest.snapshot_id

    @property
    def n_shards(self) -> int:
        return self.shard_manifest.n_shards

    @property
    def n_patients(self) -> int:
        return self.shard_manifest.patients

    def shard_path(self, i: int) -> Path:
        return self.root / self.shard_manifest.shards[i].folder

    def open_shard(self, i: int) -> Store:
        """Shard ``i`` as an ordinary store, checked to be the snapshot the manifest names."""
        store = Store.open(self.shard_path(i), decisions_root=self.root)
        if store.snapshot_id != self.shard_manifest.shards[i].snapshot_id:
            raise StoreError(f"sharded store {self.root}: shard {i:03d} holds snapshot {store.snapshot_id}, "
                             f"shards.json names {self.shard_manifest.shards[i].snapshot_id}",
                             "re-run `casefind ingest SOURCE --store STORE --shards N`")
        return store

    def shards(self) -> Iterator[tuple[int, Store]]:
        """Each shard in order, opened as it is reached (the caller drops it before the next)."""
        for i in range(self.n_shards):
            yield i, self.open_shard(i)

    def map(self, task: Callable[[Store, int], object], what: str,
            say: Callable[[str], None] = lambda s: None) -> list:
        """``task(shard, i)`` for every shard, in shard order, by the mapper in force
        (``mapped_by``): this machine a shard at a time, or Spark's executors. Each shard is
        checked to hold shard 000's practices, so a practice index means the same practice in
        every result."""
        done = current_mapper().map(self, _WithPractices(task), what, say)
        first = done[0][0] if done else None
        for i, (practices, _) in enumerate(done):
            if not practices.equals(first):
                raise StoreError(f"sharded store {self.root}: shard {i:03d}'s practices differ from shard 000's",
                                 "re-run `casefind ingest SOURCE --store STORE --shards N`")
        return [result for _, result in done]

    def shard_manifests(self) -> list[dict]:
        """Each shard's own store manifest, read without opening the shard's tables."""
        out = []
        for i in range(self.n_shards):
            path = self.shard_path(i) / CURRENT / "manifest.json"
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError) as e:
                raise StoreError(f"sharded store {self.root}: cannot read shard {i:03d}'s manifest ({e})",
                                 "re-run `casefind ingest SOURCE --store STORE --shards N`") from e
        return out

    @cached_property
    def coverage(self) -> Coverage:
        """From the earliest first date to the latest last date over the shards: the span one
        store of the same patients would have."""
        spans = [Coverage.of(m) for m in self.shard_manifests()]
        firsts = [c.first for c in spans if c.first is not None]
        lasts = [c.last for c in spans if c.last is not None]
        return Coverage(min(firsts) if firsts else None, max(lasts) if lasts else None)

    @cached_property
    def review_log(self) -> dict:
        """The review log's batches, rows and digest (the same for every shard: there is one log)."""
        return dict(self.open_shard(0).manifest["reviews"])


class OneShardAtATime:
    """The default mapper: this process, one shard open at a time."""

    name = "this machine"

    def map(self, store: ShardedStore, task, what: str, say) -> list:
        out = []
        for i, shard in store.shards():
            say(f"{what}, shard {i + 1} of {store.n_shards}")
            out.append(task(shard, i))
        return out

    def map_each(self, indices: list[int], task, what: str, say, unit: str = "shard") -> list:
        """``task(i, say)`` for each index, where no store is open yet (an ingest's shards, or
        the parts of a delivery's table: ``unit="part"``)."""
        return [task(i, say) for i in indices]


class _WithPractices:
    """A task that also returns its shard's practices table (for ``ShardedStore.map``'s check)."""

    def __init__(self, task):
        self.task = task

    def __call__(self, shard: Store, i: int):
        return shard.table("practices").arrow, self.task(shard, i)


_LOCAL = OneShardAtATime()
_MAPPER: contextvars.ContextVar = contextvars.ContextVar("casefind_shard_mapper", default=None)


@contextlib.contextmanager
def mapped_by(mapper):
    """Every ``ShardedStore.map`` inside the block runs on ``mapper`` (e.g. ``casefind.spark``'s);
    ``mapper.requires_sharded`` makes single stores refused in the block, not run locally."""
    token = _MAPPER.set(mapper)
    try:
        yield mapper
    finally:
        _MAPPER.reset(token)


def current_mapper():
    return _MAPPER.get() or _LOCAL


def open_any(root: str | Path) -> Store | ShardedStore:
    """The store at ``root``, sharded or not (sharded only, under a mapper that needs one)."""
    if is_sharded(root):
        return ShardedStore(root)
    refuse_unsharded(root)
    return Store.open(root)


def refuse_unsharded(root: str | Path) -> None:
    """Under a mapper that distributes shards (Spark), a single store is an error, not a
    silent run on this machine."""
    mapper = current_mapper()
    if getattr(mapper, "requires_sharded", False) and (Path(root) / CURRENT).exists():  # else: no store
        raise StoreError(f"{root} is a single store; {mapper.name} runs over a sharded store's shards",
                         "ingest it with `casefind ingest SOURCE --store STORE --shards N`, "
                         f"or {getattr(mapper, 'single_store_hint', 'run it on one machine')}")


def practice_codes(store: Store) -> pa.Array:
    return store.table("practices").arrow.column("practice_code").cast(pa.string())


def store_order(practice: np.ndarray, patient_id: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The permutation putting rows in one store's patient order: practice, then
    ``patient_id`` by its bytes (ingest's order, as Arrow sorts), stably."""
    keyed = pa.table({"practice": pa.array(np.asarray(practice, np.int64)),
                      "patient_id": patient_id.cast(pa.string())})
    order = pc.sort_indices(keyed, sort_keys=[("practice", "ascending"), ("patient_id", "ascending")])
    return order.to_numpy().astype(np.int64)


def in_store_order(pieces: list[tuple[pa.Table, np.ndarray]]) -> pa.Table:
    """Shards' rows (each piece with its rows' practice indices) as one table in the order a
    single store of the same patients has (``store_order``)."""
    if not pieces:
        raise ValueError("no pieces to merge")
    table = pa.concat_tables([t for t, _ in pieces])
    practice = np.concatenate([np.asarray(p, np.int64) for _, p in pieces])
    return table.take(pa.array(store_order(practice, table.column("patient_id"))))


def coverage_of(root: str | Path) -> Coverage:
    """The span of the data of the store at ``root``, sharded or not."""
    return coverage(open_any(root))


def coverage(store) -> Coverage:
    """The span of the data of an opened store, sharded or not (or a merged view of a sharded
    one's patients, which carries its store's ``coverage``)."""
    return Coverage.of(store.manifest) if isinstance(store, Store) else store.coverage
