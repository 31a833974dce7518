"""Write a store snapshot beside the live one, then swap it in atomically.

Layout of a store directory::

    STORE/
      current -> snapshots/<snapshot_id>     (a symlink; replaced atomically with os.replace)
      snapshots/<snapshot_id>/
        manifest.json                        row counts, encodings, quarantine counts, hashes
        <table>.arrow                        one Arrow IPC file (one record batch) per table
        offsets.arrow                        per event table: int64 offsets, length patients+1
        dict/<name>.arrow                    dictionaries (codes per code system, text columns, and
                                             ``spell``: the source spell ids, entry n of spell number n)
        quarantine/<table>.parquet           rows that broke the contract, with the reason

Beside the snapshots, a store holds what accumulates across them and is never touched by an
ingest: ``decisions/`` (the review log), ``kpi/`` (the KPI history) and ``lists/`` (the
registry of review lists).

A build happens in ``STORE/.build-*``; nothing a reader can see changes until the symlink
is replaced, so a failed or interrupted build leaves the previous snapshot in place. A commit
is two steps, ``seal`` (the snapshot gets its id and its place in ``snapshots/``) then
``publish`` (``current`` is re-pointed), so a second store can be committed between them.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from casefind.errors import BusyError, CasefindError

FORMAT = "casefind-store"
FORMAT_VERSION = 2  # 2: contract v2 (spell numbers, procedures, derived CIP columns)
CURRENT = "current"
SNAPSHOTS = "snapshots"
LOCK = ".lock"
# What else a store folder may hold: kept across snapshots, never touched by an ingest.
BESIDE_SNAPSHOTS = frozenset({"decisions", ".decisions.lock", "kpi", "lists", "audit"})
_TRANSIENT = (".build-", ".current-", ".retired-")  # left by an interrupted build


class StoreError(CasefindError):
    """A store that cannot be opened or written, with a message for the analyst."""


class StoreBusy(StoreError, BusyError):
    """Another process is writing the store (or its review log); nothing changed."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def check_store_path(root: Path) -> None:
    """Refuse to build over a directory that is not a casefind store."""
    if root.exists():
        if not root.is_dir():
            raise StoreError(f"{root} exists and is not a directory")
        entries = {p.name for p in root.iterdir()} - {CURRENT, SNAPSHOTS, LOCK} - BESIDE_SNAPSHOTS
        entries = {e for e in entries if not e.startswith(_TRANSIENT)}
        if entries:
            raise StoreError(
                f"{root} is not empty and is not a casefind store (found {sorted(entries)[:3]}); "
                "choose a new --store path or an existing store")


def lock_store(root: Path):
    """Take the store's writer lock (one writer at a time; readers never need it); returns
    the open lock file, for ``unlock_store``."""
    fh = open(root / LOCK, "w")  # noqa: SIM115 -- held open: the lock lasts until unlock_store closes it
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise StoreBusy(f"another ingest is writing to {root}; wait for it to finish") from None
    return fh


def unlock_store(fh) -> None:
    if not fh.closed:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


class SnapshotBuilder:
    """Collects the files of one snapshot in a build directory; ``commit`` swaps it in
    (``seal`` then ``publish``, when something must happen between the two)."""

    def __init__(self, root: Path, mode: int = 0o755):
        self.root = Path(root)
        check_store_path(self.root)
        self.created_root = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, mode)
        self._lock = lock_store(self.root)
        remove_stale_builds(self.root)
        self.mode = mode
        self.dir = self.root / f".build-{uuid.uuid4().hex[:12]}"
        self.dir.mkdir()
        os.chmod(self.dir, mode)
        self.files: list[str] = []
        self.sealed: str | None = None

    def write_arrow(self, relpath: str, table: pa.Table) -> None:
        path = self.dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table.combine_chunks())  # one record batch: contiguous, mmap-able
        self.files.append(relpath)

    def write_parquet(self, relpath: str, table: pa.Table) -> None:
        path = self.dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        self.files.append(relpath)

    def commit(self, manifest: dict) -> str:
        """Seal and publish: returns the snapshot id (a content hash: same data in, same id out)."""
        snapshot_id = self.seal(manifest)
        self.publish()
        return snapshot_id

    def seal(self, manifest: dict, snapshot_id: str | None = None) -> str:
        """Hash the files, write the manifest and move the build to ``snapshots/<id>``;
        ``current`` is not touched. The id is the content hash unless ``snapshot_id`` names
        it (a snapshot belonging to another store's snapshot), which then replaces any
        snapshot of that name."""
        hashes = {f: _sha256(self.dir / f) for f in sorted(self.files)}
        named = snapshot_id is not None
        if not named:
            snapshot_id = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "snapshot_id": snapshot_id, **manifest, "files": hashes}
        tmp = self.dir / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False))
        os.replace(tmp, self.dir / "manifest.json")

        snapshots = self.root / SNAPSHOTS
        snapshots.mkdir(exist_ok=True)
        target = snapshots / snapshot_id
        if target.exists() and not named:  # identical content already stored: keep its files,
            os.replace(self.dir / "manifest.json", target / "manifest.json")  # take this manifest
            shutil.rmtree(self.dir)
        else:
            if target.exists():  # moved aside first: a directory cannot be renamed onto another
                aside = self.root / f".retired-{uuid.uuid4().hex[:12]}"
                os.replace(target, aside)
                shutil.rmtree(aside, ignore_errors=True)
            os.replace(self.dir, target)
        self.sealed = snapshot_id
        return snapshot_id

    def publish(self) -> None:
        """Make the sealed snapshot current (the atomic step), remove the others, and
        release the store."""
        if self.sealed is None:
            raise RuntimeError("publish() before seal()")
        point_current(self.root, self.sealed)
        self._release()

    def _release(self) -> None:
        unlock_store(self._lock)

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self._release()
        if self.created_root and {p.name for p in self.root.iterdir()} <= {LOCK}:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False


def point_current(root: Path, snapshot_id: str | None) -> None:
    """Re-point ``current`` at ``snapshots/<snapshot_id>`` in one atomic step (or remove it,
    for None), then remove every other snapshot; readers holding old maps keep them (POSIX
    unlink)."""
    snapshots = root / SNAPSHOTS
    if snapshot_id is None:
        (root / CURRENT).unlink(missing_ok=True)
    else:
        link_tmp = root / f".current-{uuid.uuid4().hex[:8]}"
        os.symlink(Path(SNAPSHOTS) / snapshot_id, link_tmp)
        os.replace(link_tmp, root / CURRENT)
    if snapshots.is_dir():
        for old in snapshots.iterdir():
            if old.name != snapshot_id:
                shutil.rmtree(old, ignore_errors=True)


def remove_stale_builds(root: Path) -> None:
    """Builds left by a killed process are never read; clear them before a new one."""
    if root.is_dir():
        for p in [*root.glob(".build-*"), *root.glob(".retired-*")]:
            shutil.rmtree(p, ignore_errors=True)
        for p in root.glob(".current-*"):
            p.unlink(missing_ok=True)
