"""The restricted identities store: NHS numbers and names, held apart from the analysis store
and bound to one analysis snapshot.

Identities are keyed by the store's patient index, which changes from one snapshot to the
next, so identities are only meaningful beside the snapshot they were written with. Layout::

    STORE-identities/                        mode 0700
      current -> snapshots/<analysis_snapshot_id>
      snapshots/<analysis_snapshot_id>/
        manifest.json                        analysis_snapshot_id, counts, quarantine counts
        identities.arrow                     patient (store index), patient_id, nhs_number, ...
        quarantine/identities.parquet

An ingest commits both stores in this order, so that a kill at any point leaves the analysis
store's current snapshot with its own identities or with none, never with another's:

1. the analysis snapshot is sealed (its id is known; ``current`` unchanged);
2. the identities of that snapshot are written beside those of the current one (or, for an
   ingest without identities, any held under that id are removed);
3. the analysis store's ``current`` is swapped (the atomic step);
4. identities of every other snapshot are removed.

``open_identities`` reads the identities of the analysis store's current snapshot, and
refuses (``IdentitiesMismatch``) when there are none for it.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from casefind.contract import CONTRACT_VERSION
from casefind.store.writer import (
    CURRENT,
    SNAPSHOTS,
    SnapshotBuilder,
    StoreError,
    check_store_path,
    lock_store,
    point_current,
    unlock_store,
)

MODE = 0o700
FILE = "identities.arrow"
_HINT = "re-ingest with identities (SOURCE/restricted/identities.parquet)"  # after "...: "


class IdentitiesMismatch(StoreError):
    """The identities held do not belong to the analysis store's current snapshot (or there
    are none): using them would name the wrong patients."""


def default_root(store_root: str | Path) -> Path:
    store_root = Path(store_root).absolute()  # '.' or '' names the current folder
    return store_root.with_name(store_root.name + "-identities")


def check_apart(store_root: Path, identities_root: Path) -> None:
    """The identities store must not be the analysis store, nor inside or around it."""
    a, b = store_root.resolve(), identities_root.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise StoreError(f"the identities store {identities_root} must be apart from the store {store_root}",
                         "give --identities a folder beside the store, not inside it")


class IdentitiesCommit:
    """The identities' half of an ingest's commit (steps 2 and 4 above). Holds the
    identities store's lock from ``prepare`` to ``finish``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._builder: SnapshotBuilder | None = None
        self._lock = None

    def prepare(self, analysis_snapshot_id: str, table: pa.Table | None, *,
                quarantined: pa.Table | None = None, ingest: dict | None = None) -> None:
        """Write ``table`` as the identities of ``analysis_snapshot_id`` (None: the ingest
        has none, so remove any held under that id)."""
        if table is None:
            self._withdraw(analysis_snapshot_id)
            return
        self._builder = SnapshotBuilder(self.root, mode=MODE)
        self._builder.write_arrow(FILE, table)
        if quarantined is not None:
            self._builder.write_parquet("quarantine/identities.parquet", quarantined)
        self._builder.seal({"restricted": True, "contract_version": CONTRACT_VERSION,
                            "analysis_snapshot_id": analysis_snapshot_id,
                            "counts": {"identities": table.num_rows},
                            "tables": {"identities": {"file": FILE, "rows": table.num_rows}},
                            "dictionaries": {},
                            "ingest": {"identities": ingest or {}}},
                           snapshot_id=analysis_snapshot_id)

    def _withdraw(self, analysis_snapshot_id: str) -> None:
        if not _is_identities_store(self.root):
            return
        self._lock = lock_store(self.root)
        shutil.rmtree(self.root / SNAPSHOTS / analysis_snapshot_id, ignore_errors=True)

    def finish(self) -> None:
        """After the analysis store's swap: only the identities of its new snapshot remain
        (none, for an ingest without identities)."""
        if self._builder is not None:
            self._builder.publish()
        elif self._lock is not None:
            point_current(self.root, None)
            unlock_store(self._lock)
            self._lock = None

    def abort(self) -> None:
        if self._builder is not None:
            self._builder.abort()
        if self._lock is not None:
            unlock_store(self._lock)
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


def _is_identities_store(root: Path) -> bool:
    """A folder an earlier ingest wrote identities to (anything else is left alone)."""
    if not root.is_dir() or not ((root / CURRENT).is_symlink() or (root / SNAPSHOTS).is_dir()):
        return False
    try:
        check_store_path(root)
    except StoreError:
        return False
    return True


def _read_manifest(snapshot_dir: Path) -> dict | None:
    try:
        return json.loads((snapshot_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class IdentitiesState:
    """Where a store's identities are and whether they belong to its current snapshot."""

    root: Path | None          # the identities store (None: the snapshot was ingested without)
    snapshot_dir: Path | None  # the identities of the current snapshot, when they match
    problem: str | None = None  # why they cannot be used, when they cannot
    hint: str | None = None

    @property
    def matches(self) -> bool:
        return self.snapshot_dir is not None


def _root_of(store, held: dict, given: str | Path | None) -> Path:
    """The identities store: as given, else where the ingest wrote it, else (the two stores
    moved together) beside the store."""
    if given:
        return Path(given)
    recorded = Path(held["store"]) if held.get("store") else None
    return recorded if recorded is not None and recorded.exists() else default_root(store.root)


def identities_state(store, identities_root: str | Path | None = None) -> IdentitiesState:
    """Check, without reading them, the identities of an open ``Store``'s current snapshot."""
    held = store.manifest.get("identities", {})
    sid = store.snapshot_id
    if not held.get("stored_apart"):
        return IdentitiesState(None, None, f"the store is at snapshot {sid}, ingested without identities", _HINT)
    root = _root_of(store, held, identities_root)
    if root.exists() and not os.access(root, os.R_OK | os.X_OK):
        return IdentitiesState(root, None, f"identities in {root} are readable only by their owner",
                               "ask the owner of the identities store")
    snapshot_dir = root / SNAPSHOTS / sid
    manifest = _read_manifest(snapshot_dir)
    if manifest is not None and manifest.get("analysis_snapshot_id") == sid:
        return IdentitiesState(root, snapshot_dir)
    current = _read_manifest(root / CURRENT)
    belongs = (current or {}).get("analysis_snapshot_id")
    if belongs:
        problem = f"identities in {root} belong to snapshot {belongs}, the store is at {sid}"
    elif current is not None:
        problem = f"identities in {root} do not say which snapshot they belong to; the store is at {sid}"
    else:
        problem = f"no identities in {root} for snapshot {sid}"
    return IdentitiesState(root, None, problem, _HINT)


def open_identities(store_root: str | Path, identities_root: str | Path | None = None) -> pa.Table:
    """The identities of the store's current snapshot (``patient`` is the store's patient
    index). Raises ``IdentitiesMismatch`` when none are held for that snapshot."""
    from casefind.store.reader import Store

    store = Store.open(store_root)
    state = identities_state(store, identities_root)
    if not state.matches:
        raise IdentitiesMismatch(f"{state.problem}: {state.hint}", state.hint)
    path = state.snapshot_dir / FILE
    try:
        with pa.OSFile(str(path), "rb") as source:  # into memory: a new ingest may replace it
            return pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid) as e:
        raise StoreError(f"cannot read the identities at {path} ({e})",
                         "run it again; if it persists, re-ingest with identities") from e
