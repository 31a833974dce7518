"""Sharded stores (issue 15, docs/scale-out.md): which shard a patient is in, and the shard
manifest that readers open first.

Layout::

    STORE/
      shards.json                      the manifest: the one file a reader opens first
      shards-<generation>/shard-000/   one ordinary store per shard (current -> snapshots/...)
      decisions/ kpi/ lists/ audit/    kept beside the shards, as beside a single store's snapshots

A new generation is built beside the one in force and swapped in by replacing
``shards.json`` (``casefind.ingest.sharded``); the folders of other generations are removed
only after that.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.store.writer import StoreError

MANIFEST = "shards.json"
FORMAT = "casefind-shards/1"
HASH = "sha256-8-mod"
GENERATION_PREFIX = "shards-"
# The same assignment in DuckDB SQL (for the streaming ingest of step 3), with $n_shards bound.
DUCKDB_SHARD_EXPR = "((('0x' || left(sha256(patient_id), 16))::UBIGINT) % $n_shards)::INTEGER"


class ShardedStoreError(StoreError):
    """Code that reads one store (``Store.open``) was given a sharded store. Every command
    opens its store with ``store.sharded.open_any``; this is for a script that does not."""

    def __init__(self, root: Path, n_shards: int):
        super().__init__(f"{root} is a sharded store ({n_shards} shards), opened as a single store",
                         "open it with casefind.store.sharded.open_any (as every casefind command does), or one "
                         "shard with ShardedStore(ROOT).open_shard(i)")


def _hash_one(patient_id: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(patient_id.encode("utf-8")).digest()[:8], "big") % n


def shard_of(patient_ids: pa.Array | pa.ChunkedArray | list[str], n: int) -> np.ndarray:
    """The shard (0..n-1) of each patient id: the first 8 bytes of SHA-256 of the UTF-8 id,
    big-endian, modulo ``n``. The same on every machine and in every process (never Python's
    randomised ``hash``). Each distinct id is hashed once; a null id goes to shard 0 (its rows
    are quarantined there, as in a single store)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    ids = pa.array(patient_ids, pa.string()) if isinstance(patient_ids, list) else patient_ids
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if not pa.types.is_string(ids.type):
        ids = pc.cast(ids, pa.string())
    encoded = pc.dictionary_encode(ids)
    per_value = np.fromiter((_hash_one(v, n) for v in encoded.dictionary.to_pylist()),
                            dtype=np.int32, count=len(encoded.dictionary))
    index = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
    out = per_value[index] if len(per_value) else np.zeros(len(ids), np.int32)
    if encoded.indices.null_count:
        out[encoded.indices.is_null().to_numpy(zero_copy_only=False)] = 0
    return out


def combined_snapshot_id(shard_snapshot_ids: list[str]) -> str:
    """The sharded store's snapshot id: SHA-256 over the shards' ids, in shard order, one a line."""
    return hashlib.sha256("\n".join(shard_snapshot_ids).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ShardEntry:
    """One shard: its folder (relative to the store), its own snapshot, what it holds."""
    id: int
    folder: str
    snapshot_id: str
    patients: int
    rows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardManifest:
    """``STORE/shards.json``. ``snapshot_id`` is derived from the shards', so two sharded
    stores with the same shards have the same id."""
    n_shards: int
    shards: tuple[ShardEntry, ...]
    snapshot_id: str
    source: str | None = None
    created: str | None = None
    format: str = FORMAT
    hash: str = HASH

    @classmethod
    def of(cls, shards: list[ShardEntry], source: str | None = None, created: str | None = None) -> ShardManifest:
        return cls(len(shards), tuple(shards), combined_snapshot_id([s.snapshot_id for s in shards]),
                   source, created)

    @property
    def patients(self) -> int:
        return sum(s.patients for s in self.shards)

    @property
    def generations(self) -> set[str]:
        """The top-level folders the shards live in (the ones a swap must keep)."""
        return {Path(s.folder).parts[0] for s in self.shards}

    def to_json(self) -> dict:
        d = asdict(self)
        return {"format": d.pop("format"), "n_shards": d.pop("n_shards"), "hash": d.pop("hash"),
                "snapshot_id": d.pop("snapshot_id"), **d, "shards": [asdict(s) for s in self.shards]}

    @classmethod
    def from_json(cls, d: dict) -> ShardManifest:
        shards = tuple(ShardEntry(int(s["id"]), str(s["folder"]), str(s["snapshot_id"]), int(s["patients"]),
                                  {k: int(v) for k, v in s.get("rows", {}).items()}) for s in d["shards"])
        return cls(int(d["n_shards"]), shards, str(d["snapshot_id"]), d.get("source"), d.get("created"),
                   d["format"], d["hash"])

    def write(self, root: Path) -> None:
        """Replace ``root/shards.json`` in one atomic step (the sharded store's swap)."""
        tmp = root / f".{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        os.replace(tmp, root / MANIFEST)


def is_sharded(root: str | Path) -> bool:
    return (Path(root) / MANIFEST).is_file()


def read_manifest(root: str | Path) -> ShardManifest:
    """The shard manifest of a sharded store, checked for its format and hash scheme."""
    path = Path(root) / MANIFEST
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"sharded store {root}: cannot read {MANIFEST} ({e})") from e
    if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("hash") != HASH:
        got = d.get("format") if isinstance(d, dict) else None
        raise StoreError(f"sharded store {root} has format {got}; this casefind reads {FORMAT} ({HASH})",
                         "re-run `casefind ingest SOURCE --store STORE --shards N`")
    try:
        manifest = ShardManifest.from_json(d)
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"sharded store {root}: {MANIFEST} is incomplete ({e})") from e
    if manifest.n_shards != len(manifest.shards):
        raise StoreError(f"sharded store {root}: {MANIFEST} names {len(manifest.shards)} shards, "
                         f"n_shards says {manifest.n_shards}")
    return manifest


def refuse_sharded(root: Path) -> None:
    """For commands that read one store: a clear refusal instead of 'not a casefind store'."""
    if is_sharded(root):
        raise ShardedStoreError(root, read_manifest(root).n_shards)


def info_json(root: str | Path) -> dict:
    """What ``casefind info --json`` shows of a sharded store, in place of one manifest."""
    m = read_manifest(root)
    return {"store": str(root), "sharded": True, "shards": m.to_json()}


def print_info(root: str | Path, out) -> None:
    """What ``casefind info`` shows of a sharded store: its snapshot, then patients and rows per shard."""
    from rich.table import Table

    m = read_manifest(root)
    out.print(f"[bold]Sharded store[/] {root}  snapshot [bold]{m.snapshot_id}[/]  {m.n_shards} shards "
              f"({m.hash})" + (f"  created {m.created}" if m.created else ""))
    if m.source:
        out.print(f"Source: {m.source}")
    out.print(f"[bold]{m.patients:,}[/] patients")
    tables = list(dict.fromkeys(name for s in m.shards for name in s.rows))
    t = Table(title="Shards", title_justify="left")
    for col in ("shard", "snapshot", "patients", *tables):
        t.add_column(col, justify="left" if col in ("shard", "snapshot") else "right")
    for s in m.shards:
        t.add_row(f"{s.id:03d}", s.snapshot_id, f"{s.patients:,}", *(f"{s.rows.get(n, 0):,}" for n in tables))
    out.print(t)
    out.print("Each shard is an ordinary store: "
              + ", ".join(f"{Path(root) / s.folder}" for s in m.shards[:1]) + (" ..." if m.n_shards > 1 else ""))
