"""Write a store snapshot beside the live one, then swap it in atomically.

Layout of a store directory::

    STORE/
      current -> snapshots/<snapshot_id>     (a symlink; replaced atomically with os.replace)
      snapshots/<snapshot_id>/
        manifest.json                        row counts, encodings, quarantine counts, hashes
        <table>.arrow                        one Arrow IPC file (one record batch) per table
        offsets.arrow                        per event table: int64 offsets, length patients+1
        dict/<name>.arrow                    dictionaries (codes per code system, text columns)
        quarantine/<table>.parquet           rows that broke the contract, with the reason

A build happens in ``STORE/.build-*``; nothing a reader can see changes until the symlink
is replaced, so a failed or interrupted build leaves the previous snapshot in place.
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

FORMAT = "casefind-store"
FORMAT_VERSION = 1
CURRENT = "current"
SNAPSHOTS = "snapshots"
LOCK = ".lock"


class StoreError(Exception):
    """A store that cannot be opened or written, with a message for the analyst."""


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
        entries = {p.name for p in root.iterdir()} - {CURRENT, SNAPSHOTS, LOCK}
        entries = {e for e in entries if not e.startswith((".build-", ".current-"))}
        if entries:
            raise StoreError(
                f"{root} is not empty and is not a casefind store (found {sorted(entries)[:3]}); "
                "choose a new --store path or an existing store")


class SnapshotBuilder:
    """Collects the files of one snapshot in a build directory; ``commit`` swaps it in."""

    def __init__(self, root: Path, mode: int = 0o755):
        self.root = Path(root)
        check_store_path(self.root)
        self.created_root = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, mode)
        self._lock = open(self.root / LOCK, "w")
        try:  # one writer at a time; readers never need the lock
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreError(f"another ingest is writing to {self.root}; wait for it to finish") from None
        remove_stale_builds(self.root)
        self.mode = mode
        self.dir = self.root / f".build-{uuid.uuid4().hex[:12]}"
        self.dir.mkdir()
        os.chmod(self.dir, mode)
        self.files: list[str] = []

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
        """Hash the files, write the manifest, and make this snapshot current.
        Returns the snapshot id (a content hash: same data in, same id out)."""
        hashes = {f: _sha256(self.dir / f) for f in sorted(self.files)}
        content = json.dumps(hashes, sort_keys=True).encode()
        snapshot_id = hashlib.sha256(content).hexdigest()[:16]
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "snapshot_id": snapshot_id, **manifest, "files": hashes}
        tmp = self.dir / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False))
        os.replace(tmp, self.dir / "manifest.json")

        snapshots = self.root / SNAPSHOTS
        snapshots.mkdir(exist_ok=True)
        target = snapshots / snapshot_id
        if target.exists():  # identical content already stored: keep it, drop the build
            shutil.rmtree(self.dir)
        else:
            os.replace(self.dir, target)
        link_tmp = self.root / f".current-{uuid.uuid4().hex[:8]}"
        os.symlink(Path(SNAPSHOTS) / snapshot_id, link_tmp)
        os.replace(link_tmp, self.root / CURRENT)  # the atomic step
        for old in snapshots.iterdir():  # readers holding old maps keep them (POSIX unlink)
            if old.name != snapshot_id:
                shutil.rmtree(old, ignore_errors=True)
        self._release()
        return snapshot_id

    def _release(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

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


def remove_stale_builds(root: Path) -> None:
    """Builds left by a killed process are never read; clear them before a new one."""
    if root.is_dir():
        for p in root.glob(".build-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in root.glob(".current-*"):
            p.unlink(missing_ok=True)
