"""``casefind ingest --shards N``: split a source by the patient's shard, ingest each part with
today's pipeline, and swap the new shards in by replacing one manifest (docs/scale-out.md).

A build happens in ``STORE/.building-<generation>/`` (each shard's identities in
``IDENTITIES/shards-<generation>/shard-XXX``); it becomes ``STORE/shards-<generation>/`` and
is put in force by replacing ``STORE/shards.json``. Until then readers see the previous
shards, whose folders (and identities) are removed only after the swap.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from casefind.contract import TABLES
from casefind.errors import CasefindError, UsageError
from casefind.ingest import shared_spells
from casefind.ingest.normalise import patient_id_text
from casefind.ingest.pipeline import IngestSummary, Progress, StrictModeError, TableSummary, no_patients, run_ingest
from casefind.ingest.sources import RESTRICTED, Parts, Source
from casefind.ingest.stream import LazySource, open_source, part_stream
from casefind.store.identities import check_apart, default_root
from casefind.store.sharded import current_mapper
from casefind.store.shards import GENERATION_PREFIX, HASH, MANIFEST, ShardEntry, ShardManifest, read_manifest, shard_of
from casefind.store.writer import BESIDE_SNAPSHOTS, CURRENT, LOCK, StoreError, lock_store, unlock_store

BUILDING_PREFIX = ".building-"
SPLIT = "sources"  # inside the build folder, mode 0700 (a source may hold identities); removed as used
ROUTES = "routes"  # inside SPLIT: per table, each delivery row's shard


@dataclass
class ShardedIngestSummary(IngestSummary):
    """The shards' summaries added up (shared tables such as practices counted once), plus
    each shard's own line."""
    shards: list[dict] = field(default_factory=list)


MAX_SHARDS = 1024  # 60 million patients in shards of 60,000 or more; each shard is a folder of files


def ingest_store(source: str | Path, store: str | Path, *, shards: int | None = None,
                 identities_store: str | Path | None = None, strict: bool = False,
                 progress: Progress | None = None) -> IngestSummary:
    """What ``casefind ingest`` runs: one store (no ``--shards``, or 1), else a sharded one."""
    if shards is not None and not 1 <= shards <= MAX_SHARDS:
        raise UsageError(f"must be from 1 to {MAX_SHARDS} (got {shards})", "give --shards N with N >= 2 (shards "
                         "of about a million patients each), or leave it out for a single store", option="--shards")
    if shards in (None, 1):
        if getattr(current_mapper(), "requires_sharded", False):
            raise UsageError(f"{current_mapper().name} builds a sharded store's shards, not a single store",
                             "give --shards N (N >= 2), or run `casefind ingest` without `casefind spark`",
                             option="--shards")
        return run_ingest(source, store, identities_store=identities_store, strict=strict, progress=progress)
    return run_sharded_ingest(source, store, shards, identities_store=identities_store, strict=strict,
                              progress=progress)


def summary_json(summary: IngestSummary) -> dict:
    """``ingest --json``: today's summary, plus ``shards`` for a sharded store."""
    from casefind import summaries

    out = summaries.ingest(summary)
    if isinstance(summary, ShardedIngestSummary):
        out["shards"] = summary.shards
    return out


def split_source(src: LazySource, n: int, out: Path, mapper=None, say: Progress = lambda stage: None) -> list[Path]:
    """Write the source as ``n`` source folders, ``out/shard-XXX/``, a table at a time and a
    batch at a time (ingest/stream.py): each table with a ``patient_id`` split by
    ``shard_of`` (rows kept in source order), every other table (practices) copied whole.
    Memory holds one batch, not the source. A table given as a folder of Parquet parts is
    split a part per task by ``mapper`` (Spark's executors read a lake's parts where they
    lie; this machine, one after another): each shard gets the table as parts in the same
    order. Each table's schema is recorded in ``src.meta.tables`` (empty tables), for the
    summary."""
    folders = [out / f"shard-{i:03d}" for i in range(n)]
    for f in folders:
        f.mkdir(parents=True)
    (out / ROUTES).mkdir()
    for name, opener in src.openers.items():
        where = [_home(folder, name) for folder in folders]
        for w in where:
            w.mkdir(exist_ok=True)
        if name in src.parts:
            parts = src.parts[name]()
            schema, counts = parts.schema, _split_parts(parts, n, out, mapper or current_mapper(), say)
        else:
            stream = opener()
            schema = stream.schema
            counts = _split_table(stream, n, [w / f"{name}.parquet" for w in where], out / ROUTES / f"{name}.u16")
        src.meta.tables[name] = schema.empty_table()
        if name == "patients" and "patient_id" in schema.names:
            _check_every_shard_has_patients(counts, n)
    return folders


def _home(folder: Path, table: str) -> Path:
    """Where a shard's source folder holds ``table`` (identities in its restricted/)."""
    return folder / RESTRICTED if TABLES[table].restricted else folder


def _split_parts(parts: Parts, n: int, out: Path, mapper, say: Progress) -> list[int]:
    """A table's parts split by the mapper, a task per part; the rows each shard received."""
    task = SplitPart(replace(parts, folder=parts.folder.absolute(), paths=tuple(p.absolute() for p in parts.paths)),
                     n, out.resolve())
    done = mapper.map_each(list(range(len(parts.paths))), task, f"splitting {parts.table}", say, unit="part")
    return [sum(c[i] for c in done) for i in range(n)]


@dataclass(frozen=True)
class SplitPart:
    """Part k of a table given as Parquet parts, split into each shard's part k of the table
    (``out/shard-XXX/[restricted/]TABLE/k.parquet``) and its rows' shards
    (``out/routes/TABLE/k.u16``): a picklable task, so that Spark's executors split a
    lake's parts where they lie, a batch at a time. A retried task writes the same files."""

    parts: Parts
    n: int
    out: Path

    def __call__(self, k: int, say: Progress) -> list[int]:
        if not self.out.is_dir():
            raise StoreError(f"{self.out} is not visible where part {k + 1} of {self.parts.table} is being split",
                             "the store must be on storage every Spark executor sees at the same path")
        name = self.parts.table
        tables = [_home(self.out / f"shard-{i:03d}", name) / name for i in range(self.n)]
        for t in tables:
            t.mkdir(exist_ok=True)
        routes = self.out / ROUTES / name / f"{k:06d}.u16"
        routes.parent.mkdir(exist_ok=True)
        routes.unlink(missing_ok=True)  # appended a batch at a time
        return _split_table(part_stream(self.parts, k), self.n, [t / f"{k:06d}.parquet" for t in tables], routes)


def _split_table(stream, n: int, paths: list[Path], routes: Path) -> list[int]:
    """One table's batches into ``n`` Parquet files; the rows each received. ``routes``
    gets each split row's shard (uint16, in the delivery's order), so that a shard's row
    can be named by its row in the delivery (``PartRows``)."""
    writers = [pq.ParquetWriter(p, stream.schema) for p in paths]
    counts = [0] * n
    try:
        for batch in stream.batches:
            if "patient_id" in batch.column_names:
                shard = shard_of(_id_text(batch.column("patient_id")), n)
                with routes.open("ab") as f:  # appended a batch at a time: memory holds one batch's
                    f.write(shard.astype(np.uint16).tobytes())
                parts = [batch.filter(pa.array(shard == i)) for i in range(n)]
            else:
                parts = [batch] * n
            for i, (writer, part) in enumerate(zip(writers, parts, strict=True)):
                writer.write_table(part.cast(stream.schema) if part.schema != stream.schema else part)
                counts[i] += part.num_rows
    finally:
        for w in writers:
            w.close()
    return counts


class PartRows:
    """Where shard ``shard``'s rows of each table sit in the delivery the split read: its
    k-th row is the delivery's row of the k-th 'this shard' in the table's routes. A table
    copied whole (practices) keeps its rows. Read only for tables with quarantined rows."""

    def __init__(self, split: Path, shard: int):
        self.routes, self.shard = split / ROUTES, shard

    @staticmethod
    def rows_in(split: Path):
        """``(shard, rows) -> delivery rows`` of activity."""
        return lambda i, rows: PartRows(split, i)("activity", rows)

    def __call__(self, table: str, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        files = route_files(self.routes, table)
        if not files or not len(rows):
            return rows
        mine, chunk, offset = [], 1 << 26, 0  # 128 MB of routes at a time
        for path in files:  # a table split from parts: each part's routes, in the parts' order
            size = path.stat().st_size // 2
            routes = np.memmap(path, np.uint16, mode="r") if size else np.empty(0, np.uint16)
            for start in range(0, size, chunk):
                mine.append(np.flatnonzero(routes[start:start + chunk] == self.shard) + start + offset)
            offset += size
        return np.concatenate(mine)[rows]


def route_files(routes: Path, table: str) -> list[Path]:
    """A table's routes: one file, or one per part where the table was split from parts."""
    one = routes / f"{table}.u16"
    if one.exists():
        return [one]
    return sorted((routes / table).glob("*.u16")) if (routes / table).is_dir() else []


def _id_text(col: pa.ChunkedArray) -> pa.Array:
    """The id as ingest compares it (trimmed text; 3.0 as '3'), so that what one store
    would take as one patient goes to one shard."""
    arr = col.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    try:
        return patient_id_text(arr).cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a type ingest refuses: it says so, in shard 0
        return pa.nulls(len(arr), pa.string())


def _check_every_shard_has_patients(counts: list[int], n: int) -> None:
    empty = [i for i, rows in enumerate(counts) if rows == 0]
    total = sum(counts)
    if empty and total:  # none at all: shard 0's ingest says so, as a single ingest would
        raise UsageError(f"{n} shards for {total:,} patient row(s) leaves shard {empty[0]} empty",
                         "give fewer shards (a shard should hold many patients)", option="--shards")


def run_sharded_ingest(source: str | Path, store: str | Path, n_shards: int, *,
                       identities_store: str | Path | None = None, strict: bool = False,
                       progress: Progress | None = None) -> ShardedIngestSummary:
    """Ingest ``source`` as ``n_shards`` stores; the previous sharded store stays in force,
    unchanged, until every shard is built. One shard is allowed here (the merges' tests use
    it: the sharded path with nothing to merge); ``casefind ingest --shards 1`` writes a single
    store instead."""
    if not 1 <= n_shards <= MAX_SHARDS:
        raise UsageError(f"a sharded store needs from 1 to {MAX_SHARDS} shards (got {n_shards})",
                         "leave --shards out for a single store", option="--shards")
    t0 = time.perf_counter()
    say = progress or (lambda stage: None)
    store = Path(store)
    ids_root = Path(identities_store) if identities_store else default_root(store)
    check_apart(store, ids_root)
    _check_sharded_path(store)
    created = (not store.exists(), not ids_root.exists())
    store.mkdir(parents=True, exist_ok=True)
    lock = lock_store(store)
    generation = f"{GENERATION_PREFIX}{uuid.uuid4().hex[:12]}"
    build = Path(store, f"{BUILDING_PREFIX}{generation.removeprefix(GENERATION_PREFIX)}")
    try:
        _remove_unreferenced(store, ids_root)
        say("finding the source's tables")
        src = open_source(source)
        build.mkdir()
        summary = _build(src, source, build, ids_root / generation, n_shards, strict, say)
        os.replace(build, store / generation)
        say("committing the shard manifest")
        manifest = _manifest(store, generation, summary, source)
        manifest.write(store)  # the swap
        summary.snapshot_id = manifest.snapshot_id
    except BaseException:
        _abandon(store, build, store / generation, ids_root / generation, created, lock)
        raise
    _remove_unreferenced(store, ids_root)
    unlock_store(lock)
    summary.store, summary.seconds = store, time.perf_counter() - t0
    return summary


def _build(src: LazySource, source: str | Path, build: Path, ids_gen: Path, n: int, strict: bool,
           say: Progress) -> ShardedIngestSummary:
    """Split, then ingest each shard into ``build/shard-XXX`` by the mapper in force (this
    machine a shard at a time, or Spark's executors); their summaries added up."""
    say(f"splitting the source into {n} shards")
    split = build / SPLIT
    split.mkdir(mode=0o700)
    mapper = current_mapper()
    parts = split_source(src, n, split, mapper, say)
    src = src.meta
    if "identities" in src.tables:
        ids_gen.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        ids_gen.mkdir(mode=0o700)
    job = ShardIngest(build.resolve(), ids_gen.resolve(), split.resolve(), src, str(Path(source).resolve()), n,
                      strict, shared_spells.candidates(parts))
    done = mapper.map_each(list(range(n)), job, "ingesting", say)
    summaries, broke = [s for s, _, _ in done], {i + 1 for i, (_, refused, _) in enumerate(done) if refused}
    kept = {i: parts[i] for i, (_, _, holds) in enumerate(done) if holds}  # as the tasks say: shared storage
    if kept:
        say("checking spell ids that patients in different shards share")
        forced = shared_spells.duplicates(kept, job.shared, job.quarantined, PartRows.rows_in(split))
        if forced:
            again = mapper.map_each(sorted(forced), replace(job, forced=forced), "ingesting again", say)
            for i, (s, refused, _) in zip(sorted(forced), again, strict=True):
                summaries[i] = s
                if refused:  # --strict: the forced duplicates are quarantined rows too
                    broke.add(i + 1)
    shutil.rmtree(split)
    say("adding up the shards' counts")
    total = _add_up(summaries, src, ids_gen if job.identities else None)
    if not total.tables["patients"].stored:  # a shard may be empty, not the store
        raise no_patients(total.tables["patients"])
    if broke:
        e = StrictModeError(total)
        e.message = f"shard{'s' if len(broke) > 1 else ''} {', '.join(map(str, sorted(broke)))} of {n}: {e.message}"
        e.args = (e.message,)
        raise e
    return total


@dataclass(frozen=True)
class ShardIngest:
    """Ingesting shard i's part of the split into ``build/shard-XXX``: a picklable task, so
    that Spark can run it on an executor (``casefind spark ingest``). With ``forced`` (shard
    -> activity rows), shard i is ingested again with those rows forced to duplicate spells,
    where another shard holds an earlier row of their spell id. Returns the shard's summary,
    whether --strict refused it (every shard is still checked, so that the refusal counts
    the whole source's bad rows) and whether its part is kept (it holds a shared spell id).
    The build folder, and the identities store where the source has identities, must be on
    storage the executors share: a task that cannot see them says so rather than write them
    to an executor's own disk. A task removes its part, so Spark's speculative execution
    (``spark.speculation``, off by default) must stay off for an ingest."""

    build: Path
    ids_gen: Path
    split: Path
    src: Source
    source: str
    n: int
    strict: bool
    shared: pa.Array  # spell ids found in more than one part: a part holding one is kept
    forced: dict[int, np.ndarray] | None = None

    @property
    def identities(self) -> bool:
        """The source has identities: each shard's go to ids_gen/shard-XXX."""
        return "identities" in self.src.tables

    def __call__(self, i: int, say: Progress) -> tuple[IngestSummary, bool, bool]:
        part = self.split / f"shard-{i:03d}"
        try:
            self._check_shared(part)
            s = run_ingest(part, self.build / part.name, identities_store=self.ids_gen / part.name,
                           strict=self.strict, progress=lambda stage: say(f"shard {i + 1}/{self.n}: {stage}"),
                           source_rows=PartRows(self.split, i),
                           duplicate_spells=None if self.forced is None else self.forced[i], allow_no_patients=True)
        except StrictModeError as e:  # its quarantine kept, so that shared spells are compared as if built
            s, refused = e.summary, True
            pq.write_table(e.quarantine.get("activity", pa.table({})), self._refused(i))
        except CasefindError as e:
            e.message = f"shard {i + 1} of {self.n}: {e.message}"
            e.args = (e.message,)
            raise
        else:
            _restamp_source(self.build / part.name, self.src, self.source, i, self.n)
            refused = False
        holds = self.forced is not None or shared_spells.holds(part, self.shared)
        if not holds:
            shutil.rmtree(part)
        return s, refused, holds

    def _check_shared(self, part: Path) -> None:
        """The split's part and the identities' folder are the driver's: not seeing them here
        means this executor is on another machine without the shared storage."""
        for folder in (part, *((self.ids_gen,) if self.identities else ())):
            if not folder.is_dir():
                raise StoreError(f"{folder} is not visible where shard {part.name} is being built",
                                 "the store (and --identities) must be on storage every Spark executor "
                                 "sees at the same path")

    def quarantined(self, i: int) -> pa.Table:
        """Shard i's quarantined activity rows, as built (or as checked, where --strict refused it)."""
        from casefind.store.reader import Store

        refused = self._refused(i)
        if refused.exists():
            return pq.read_table(refused)
        return Store.open(self.build / f"shard-{i:03d}").quarantine("activity")

    def _refused(self, i: int) -> Path:
        return self.split / f"refused-{i:03d}-activity.parquet"


def _restamp_source(shard_store: Path, src: Source, source: str | Path, i: int, n: int) -> None:
    """The shard's manifest names the delivery it came from (not the split that fed it) and
    which shard it is; the manifest is not among the hashed files, so the id stands."""
    path = (shard_store / CURRENT).resolve() / "manifest.json"
    m = json.loads(path.read_text())
    m["source"] = {"path": str(Path(source).resolve()), "kind": src.kind, "tables": src.origins,
                   "ignored": src.ignored}
    m["shard"] = {"id": i, "n_shards": n, "hash": HASH}
    tmp = path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(m, indent=2))
    os.replace(tmp, path)


def _add_up(summaries: list[IngestSummary], src: Source, ids_gen: Path | None) -> ShardedIngestSummary:
    """One summary: tables with patient rows added up; copied tables (practices) counted once."""
    first = summaries[0]
    total = ShardedIngestSummary(first.store, ids_gen, None, ignored=list(src.ignored),
                                 missing_columns=first.missing_columns, extras=first.extras,
                                 identifier_columns=first.identifier_columns,
                                 dropped_columns=first.dropped_columns)
    for name in first.tables:
        if name in src.tables and "patient_id" not in src.tables[name].column_names:
            total.tables[name] = first.tables[name]
            continue
        quarantined: dict[str, int] = {}
        for s in summaries:
            for reason, k in s.tables[name].quarantined.items():
                quarantined[reason] = quarantined.get(reason, 0) + k
        total.tables[name] = TableSummary(sum(s.tables[name].read for s in summaries),
                                          sum(s.tables[name].stored for s in summaries), quarantined)
    total.shards = [{"id": i, "snapshot_id": s.snapshot_id, "patients": s.tables["patients"].stored,
                     "quarantined": s.quarantined_total} for i, s in enumerate(summaries)]
    return total


def _manifest(store: Path, generation: str, summary: ShardedIngestSummary, source: str | Path) -> ShardManifest:
    entries = []
    for line in summary.shards:
        folder = f"{generation}/shard-{line['id']:03d}"
        m = json.loads(((store / folder / CURRENT).resolve() / "manifest.json").read_text())
        entries.append(ShardEntry(line["id"], folder, m["snapshot_id"], m["counts"]["patients"],
                                  {name: t["rows"] for name, t in m["tables"].items()}))
        line["folder"] = folder
    return ShardManifest.of(entries, str(Path(source).resolve()),
                            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def _check_sharded_path(root: Path) -> None:
    """Build only into a new folder, an empty one, or a sharded store (never over a single store)."""
    if not root.exists():
        return
    if not root.is_dir():
        raise StoreError(f"{root} exists and is not a directory")
    if (root / CURRENT).is_symlink() or (root / CURRENT).exists():
        raise StoreError(f"{root} is a single store; a sharded store is built in a new folder",
                         "choose a new --store path for --shards (re-sharding is a full re-ingest)")
    allowed = {MANIFEST, LOCK} | BESIDE_SNAPSHOTS
    odd = sorted(p.name for p in root.iterdir() if p.name not in allowed
                 and not p.name.startswith((GENERATION_PREFIX, BUILDING_PREFIX, f".{MANIFEST}.")))
    if odd:
        raise StoreError(f"{root} is not empty and is not a casefind store (found {odd[:3]}); "
                         "choose a new --store path or an existing sharded store")


def _in_force(store: Path) -> set[str]:
    return read_manifest(store).generations if (store / MANIFEST).is_file() else set()


def _remove_unreferenced(store: Path, ids_root: Path) -> None:
    """Generations the manifest does not name (older ones, or left by a killed build) go, in
    the store and among the identities."""
    keep = _in_force(store)
    for p in store.iterdir():
        if p.name.startswith(BUILDING_PREFIX) or (p.name.startswith(GENERATION_PREFIX) and p.name not in keep):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(f".{MANIFEST}."):
            p.unlink(missing_ok=True)
    if ids_root.is_dir():
        for p in ids_root.iterdir():
            if p.name.startswith(GENERATION_PREFIX) and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)


def _abandon(store: Path, build: Path, built: Path, ids_gen: Path, created: tuple[bool, bool], lock) -> None:
    """A failed build leaves nothing behind (folders it created included); the manifest in
    force was never touched."""
    for p in (build, built, ids_gen):
        shutil.rmtree(p, ignore_errors=True)
    unlock_store(lock)
    if created[0] and {p.name for p in store.iterdir()} <= {LOCK}:
        shutil.rmtree(store, ignore_errors=True)
    if created[1] and ids_gen.parent.is_dir() and not any(ids_gen.parent.iterdir()):
        ids_gen.parent.rmdir()
