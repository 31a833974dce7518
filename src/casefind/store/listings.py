"""The registry of the lists runs wrote: which patients each run listed, for which practice.

A decision is only meaningful for a patient a list put in front of a practice, so ``review
import`` and ``review record`` check every decision against the run it names. The registry
lives beside the store, in ``STORE/lists/`` (kept across re-ingests, like the review log):
one immutable Parquet file per run, ``<run_id>.parquet``, holding (practice, patient_id,
rank), with the run's rule, as_of and snapshot in the file's metadata. Each file is written
under a temporary name and renamed, so a reader never sees half a listing.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from casefind.errors import DataError
from casefind.outputs import is_safe_name, tmp_path_for

LISTS_DIR = "lists"
SCHEMA = pa.schema([("practice", pa.string()), ("patient_id", pa.string()), ("rank", pa.int64())])
_META_KEY = b"casefind.listing"
_RUN_ID = re.compile(r"[0-9a-f]{12}")


class ListingError(DataError):
    """A listing that cannot be registered (or a registry file that cannot be read)."""


@dataclass(frozen=True)
class Listing:
    """One run's list: who was listed, for which practice, by which rule and as of when."""

    run_id: str
    rule: str
    as_of: dt.date
    snapshot_id: str
    listed: pa.Table
    recorded_at: str | None = None  # when the run registered it (ISO, UTC)
    rule_sha256: str | None = None  # the rule file's hash (runs registered before 2026-12 lack it)

    @cached_property
    def practice_of(self) -> dict[str, str]:
        """patient_id → the practice the patient was listed for."""
        return dict(zip(self.listed.column("patient_id").to_pylist(), self.listed.column("practice").to_pylist()))

    @cached_property
    def practices(self) -> frozenset[str]:
        """The practices the run listed patients for."""
        return frozenset(self.practice_of.values())


def lists_dir(store_root: str | Path) -> Path:
    return Path(store_root) / LISTS_DIR


def is_run_id(text: str) -> bool:
    return isinstance(text, str) and bool(_RUN_ID.fullmatch(text))


def _path(store_root: str | Path, run_id: str) -> Path:
    return lists_dir(store_root) / f"{run_id}.parquet"


def _checked_listed(listed: pa.Table) -> pa.Table:
    if listed.num_rows == 0:
        return SCHEMA.empty_table()  # a run that listed no-one
    missing = [f.name for f in SCHEMA if f.name not in listed.column_names]
    if missing:
        raise ListingError(f"a listing needs the columns {', '.join(SCHEMA.names)}; missing {', '.join(missing)}")
    table = listed.select(SCHEMA.names)
    try:
        table = table.cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ListingError("a listing's columns must be practice and patient_id (text) and rank (integer): "
                           f"{e}") from None
    if table.column("practice").null_count or table.column("patient_id").null_count:
        raise ListingError("every listed row needs a practice and a patient_id")
    if pc.count_distinct(table.column("patient_id")).as_py() != table.num_rows:
        raise ListingError("a patient is listed twice; a run lists each patient once")
    return table


def record(store_root, *, run_id: str, rule: str, as_of: dt.date, snapshot_id: str, listed: pa.Table,
           rule_sha256: str | None = None) -> Path:
    """Register the list run ``run_id`` wrote; returns the registry file. A run is registered
    once: a second listing under the same id is refused, so what decisions are checked
    against never changes."""
    if not is_run_id(run_id):
        raise ListingError(f"run id '{run_id}' is not 12 lowercase hexadecimal characters")
    if not isinstance(rule, str) or not is_safe_name(rule):
        raise ListingError(f"rule name '{rule}' is not a plain name (letters, digits, _ - .)")
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        raise ListingError(f"the listing's as_of must be a date, not '{as_of}'")
    if not ((Path(store_root) / "current").exists() or (Path(store_root) / "shards.json").exists()):
        raise ListingError(f"no store at {store_root}; lists are registered beside a store")
    path = _path(store_root, run_id)
    if path.exists():
        raise ListingError(f"run {run_id} is already registered")
    meta = {"run_id": run_id, "rule": rule, "as_of": as_of.isoformat(), "snapshot_id": str(snapshot_id),
            "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), "rule_sha256": rule_sha256}
    table = _checked_listed(listed).replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    path.parent.mkdir(exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _meta(path: Path) -> dict:
    try:
        raw = (pq.read_schema(path).metadata or {}).get(_META_KEY)
        meta = json.loads(raw) if raw else None
    except (OSError, pa.ArrowInvalid, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("run_id") != path.stem:
        raise ListingError(f"{path} is not a listing casefind wrote",
                           f"move it out of {path.parent}; that folder holds only casefind's registry of list runs")
    return meta


def _order(meta: dict) -> tuple:
    return meta["as_of"], meta.get("recorded_at", ""), meta["run_id"]


def _load(path: Path, meta: dict) -> Listing:
    listed = pq.read_table(path).replace_schema_metadata(None)
    return Listing(meta["run_id"], meta["rule"], dt.date.fromisoformat(meta["as_of"]), meta["snapshot_id"], listed,
                   meta.get("recorded_at"), meta.get("rule_sha256"))


def _files(store_root: str | Path) -> list[Path]:
    folder = lists_dir(store_root)
    return sorted(p for p in folder.glob("*.parquet") if is_run_id(p.stem)) if folder.is_dir() else []


def get(store_root, run_id: str) -> Listing | None:
    """The run's listing, or None when no registered run has that id."""
    if not is_run_id(run_id):
        return None
    path = _path(store_root, run_id)
    return _load(path, _meta(path)) if path.exists() else None


def runs(store_root, rule: str | None = None) -> list[Listing]:
    """Every registered run (or only ``rule``'s), oldest as_of first (then oldest registered)."""
    metas = [(p, _meta(p)) for p in _files(store_root)]
    chosen = sorted(((p, m) for p, m in metas if rule is None or m["rule"] == rule), key=lambda pm: _order(pm[1]))
    return [_load(p, m) for p, m in chosen]


def rules(store_root) -> set[str]:
    """The rules some registered run listed patients for (read from file metadata only)."""
    return {_meta(p)["rule"] for p in _files(store_root)}
