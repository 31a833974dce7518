"""Open a store without reading it: every table is a memory map, columns are numpy views.

Opening a store reads only its manifest; a table's file is mapped on first use and its
columns become zero-copy numpy arrays, so a 1M-patient store opens in milliseconds and a
kernel touches only the pages it scans.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from casefind.contract.schema import REVIEW_DECISIONS
from casefind.store import decisions
from casefind.store.shards import refuse_sharded
from casefind.store.writer import CURRENT, FORMAT, FORMAT_VERSION, StoreError


def _map_arrow(path: Path) -> pa.Table:
    source = pa.memory_map(str(path), "r")
    return pa.ipc.open_file(source).read_all()


def _column_numpy(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    if col.num_chunks == 0:
        return np.empty(0, dtype=col.type.to_pandas_dtype())
    chunk = col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
    try:
        return chunk.to_numpy(zero_copy_only=True)
    except pa.ArrowInvalid:
        return chunk.to_numpy(zero_copy_only=False)


def _most_days_after(later: np.ndarray, sort: np.ndarray, null: int, sort_null: int) -> int | None:
    """max(later - sort) over rows where ``later`` is not null (0 when none is); None when
    one of them has no sort date."""
    from casefind_native.aggregate import most_days_after  # numba: only where a kernel asks

    most, bounded = most_days_after(later, sort, null, sort_null)
    return int(most) if bounded else None


@dataclass(frozen=True)
class StoredTable:
    """One table of a store: numpy column views plus, for event tables, per-patient offsets
    (rows of patient ``p`` are ``offsets[p]:offsets[p + 1]``)."""

    name: str
    arrow: pa.Table
    offsets: np.ndarray | None
    encodings: dict
    _numpy: dict = field(default_factory=dict, init=False, compare=False, repr=False)  # each column's, once

    def __getitem__(self, column: str) -> np.ndarray:
        """The column as numpy: a view of the mapped file, made once (a bool column, which
        Arrow packs in bits, is unpacked once rather than at every kernel call)."""
        if column not in self._numpy:
            values = _column_numpy(self.arrow, column)
            values.flags.writeable = False  # shared by every reader: a copy may not be changed either
            self._numpy[column] = values
        return self._numpy[column]

    @property
    def num_rows(self) -> int:
        return self.arrow.num_rows

    @property
    def columns(self) -> list[str]:
        return self.arrow.column_names


class Store:
    """A read-only view of one snapshot of a population store, plus the review log beside it.

    The review log (``store/decisions.py``) is not part of the snapshot: it is read when the
    store is opened and served as the event table ``reviews``, encoded like the others, so
    both engines read clinicians' decisions as they read any table. The manifest gains a
    ``reviews`` entry (batches, rows, digest) that run manifests record."""

    def __init__(self, root: Path, snapshot_dir: Path, manifest: dict, decisions_root: Path | None = None):
        self.root = root
        self.dir = snapshot_dir
        self._tables: dict[str, StoredTable] = {}
        self._dicts: dict[str, np.ndarray] = {}
        self._lags: dict[tuple[str, str], int | None] = {}
        batches = decisions.batches(decisions_root or root)
        full_log = decisions.read_log(decisions_root or root, batches)
        self._review_log = decisions.in_force(full_log)  # withdrawn decisions are not seen by rules
        rules = np.asarray(sorted(set(self._review_log.column("rule").to_pylist())), dtype=object)
        self._dicts["text.reviews.rule"] = rules
        self.manifest = {
            **manifest,
            "tables": {**manifest["tables"], "reviews": {
                "file": None, "rows": None, "sort_date": "date",
                "encodings": {"date": {"kind": "date", "null": int(np.iinfo(np.int32).min)},
                              "rule": {"kind": "text", "dictionary": "text.reviews.rule", "null": -1},
                              "decision": {"kind": "enum", "values": list(REVIEW_DECISIONS), "null": -1}}}},
            "dictionaries": {**manifest["dictionaries"], "text.reviews.rule": {"file": None, "size": len(rules)}},
            "reviews": {"batches": len(batches), "rows": full_log.num_rows,
                        "digest": decisions.digest(batches)},
        }

    @classmethod
    def open(cls, root: str | Path, decisions_root: str | Path | None = None) -> Store:
        """``decisions_root``: where the review log lives when not beside the snapshots (a
        shard reads its sharded store's one log, filtered to its own patients on read)."""
        root = Path(root)
        refuse_sharded(root)
        link = root / CURRENT
        if not link.exists():
            if not root.exists():
                raise StoreError(f"no store at {root}; create one with `casefind ingest SOURCE --store {root}`")
            raise StoreError(f"{root} is not a casefind store (no '{CURRENT}' snapshot); "
                             f"create one with `casefind ingest SOURCE --store {root}`")
        snapshot_dir = link.resolve()
        try:
            manifest = json.loads((snapshot_dir / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"store {root}: cannot read its manifest ({e})") from e
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"store {root} has format {manifest.get('format')} "
                             f"v{manifest.get('format_version')}; this casefind reads "
                             f"{FORMAT} v{FORMAT_VERSION}: re-run `casefind ingest`")
        return cls(root, snapshot_dir, manifest, None if decisions_root is None else Path(decisions_root))

    @property
    def snapshot_id(self) -> str:
        return self.manifest["snapshot_id"]

    @property
    def n_patients(self) -> int:
        return self.manifest["counts"]["patients"]

    @cached_property
    def _offsets(self) -> pa.Table:
        path = self.dir / "offsets.arrow"
        return _map_arrow(path) if path.exists() else pa.table({})

    def table(self, name: str) -> StoredTable:
        if name == "reviews" and name not in self._tables:
            self._tables[name] = self._reviews()
        if name not in self._tables:
            meta = self.manifest["tables"].get(name)
            if meta is None:
                raise StoreError(f"store has no table {name!r}; it has {', '.join(self.manifest['tables'])}")
            arrow = _map_arrow(self.dir / meta["file"])
            offsets = (_column_numpy(self._offsets, name)
                       if name in self._offsets.column_names else None)
            self._tables[name] = StoredTable(name, arrow, offsets, meta.get("encodings", {}))
        return self._tables[name]

    def _reviews(self) -> StoredTable:
        """The review log as an event table of this snapshot's patients (rows for patients
        not in it, e.g. after they left, are counted in the manifest and left out)."""
        log = self._review_log
        if log.num_rows == 0:  # nothing recorded yet (most stores): no lookup of every patient id
            self.manifest["reviews"]["rows_for_other_patients"] = 0
            self.manifest["tables"]["reviews"]["rows"] = 0
            empty = pa.table({"patient": pa.array([], pa.int32()), "date": pa.array([], pa.int32()),
                              "rule": pa.array([], pa.int32()), "decision": pa.array([], pa.int8())})
            return StoredTable("reviews", empty, np.zeros(self.n_patients + 1, np.int64),
                               self.manifest["tables"]["reviews"]["encodings"])
        ids = self.table("patients").arrow.column("patient_id").cast(pa.string())
        pidx = pc.index_in(log.column("patient_id"), value_set=ids).fill_null(-1).to_numpy(zero_copy_only=False)
        known = pidx >= 0
        self.manifest["reviews"]["rows_for_other_patients"] = int((~known).sum())
        log = log.filter(pa.array(known))
        pidx = pidx[known].astype(np.int32)
        day = pc.cast(log.column("date"), pa.int32()).to_numpy(zero_copy_only=False).astype(np.int32)
        order = np.lexsort((day, pidx))
        rule = np.searchsorted(self._dicts["text.reviews.rule"],
                               np.asarray(log.column("rule").to_pylist(), dtype=object))
        decision = pc.index_in(log.column("decision"), value_set=pa.array(REVIEW_DECISIONS)).fill_null(-1)
        arrow = pa.table({"patient": pidx[order], "date": day[order],
                          "rule": rule.astype(np.int32)[order],
                          "decision": decision.to_numpy(zero_copy_only=False).astype(np.int8)[order]})
        offsets = np.searchsorted(pidx[order], np.arange(self.n_patients + 1)).astype(np.int64)
        self.manifest["tables"]["reviews"]["rows"] = arrow.num_rows
        return StoredTable("reviews", arrow, offsets, self.manifest["tables"]["reviews"]["encodings"])

    def days_after(self, table: str, column: str) -> int | None:
        """The most days any row's date ``column`` falls after the row's sort date (the date
        the table is sorted by), over this snapshot's rows where ``column`` is recorded: 0
        when none is. None when such a row has no sort date (then nothing bounds it). The
        native engine reads it to skip rows a filter such as "end_date > as_of - 30 days"
        cannot pass (engines/native_codegen.py, _Windows.implied)."""
        key = (table, column)
        if key not in self._lags:
            t, sort = self.table(table), self.manifest["tables"][table]["sort_date"]
            self._lags[key] = _most_days_after(t[column], t[sort], int(t.encodings[column]["null"]),
                                               int(t.encodings[sort]["null"]))
        return self._lags[key]

    def dictionary(self, name: str) -> np.ndarray:
        """Values of a dictionary (e.g. ``code.icd10``, ``text.activity.provider_code``);
        an encoded column holds indices into it, -1 for null. ``spell`` is the one dictionary
        of spell numbers (every table's ``spell_id``): entry n is the source id of spell n,
        entry 0 (no spell) is None."""
        if name not in self._dicts:
            if name not in self.manifest["dictionaries"]:
                raise StoreError(f"store has no dictionary {name!r}")
            t = _map_arrow(self.dir / self.manifest["dictionaries"][name]["file"])
            self._dicts[name] = np.asarray(t.column("value").to_pylist(), dtype=object)
        return self._dicts[name]

    def spell_ids(self, numbers) -> np.ndarray:
        """The source spell ids of spell numbers (None for 0, no spell)."""
        names = self.dictionary("spell") if "spell" in self.manifest["dictionaries"] else np.array([None], object)
        return names[np.asarray(numbers, dtype=np.int64)]

    def quarantine(self, table: str) -> pa.Table:
        path = self.dir / "quarantine" / f"{table}.parquet"
        if not path.exists():
            return pa.table({})
        return pq.read_table(path)
