"""The review log: clinicians' decisions on case-finding lists, kept beside the store.

Decisions are not data that ingest loads; they accumulate across snapshots, so they live in
``STORE/decisions/``, outside any snapshot. Each import is one immutable Parquet batch,
written under a temporary name and renamed, so a crash never leaves half a batch and a reader
never sees one. Appends take the store's decisions lock; a row already in the log (same
patient, rule, decision and list run) is not added twice, so re-importing a file is safe.
Reviews add one rule (``one_per_day``): one decision per patient, rule and day, so the same
decision again is a no-op whichever run it names, and a different one that day is refused.

A decision is withdrawn by appending a ``withdrawn`` row for the patient and rule: nothing
is deleted, so the history stays, but every decision recorded before it for that patient
and rule is no longer in force (``in_force``): rules' ``reviewed()`` and ``review show``
no longer see it, and a new decision may be recorded, even the same day. The log's order
is the order rows were recorded: batch names sort in the order the batches were written.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from casefind.errors import DataError
from casefind.filelock import flock_waiting
from casefind.store.writer import StoreBusy, StoreError

DECISIONS_DIR = "decisions"
LOCK = ".decisions.lock"

SCHEMA = pa.schema([
    ("patient_id", pa.string()), ("rule", pa.string()), ("decision", pa.string()),
    ("date", pa.date32()), ("practice", pa.string()), ("run_id", pa.string()),
    ("reviewer", pa.string()), ("note", pa.string()),
    ("recorded_at", pa.timestamp("s", tz="UTC")), ("batch", pa.string()),
])
# A decision on a list's row is recorded once per list run, whatever date a re-import gives
# it; a decision made outside a list (no run id) is one per date.
KEY = ("patient_id", "rule", "decision", "run_id")
WITHDRAWN = "withdrawn"  # a log row that withdraws the patient's earlier decisions for the rule
# What a caller gives to append(); the batch adds when and in which batch it was recorded.
INPUT_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in ("recorded_at", "batch")])


def log_dir(store_root: str | Path) -> Path:
    return Path(store_root) / DECISIONS_DIR


def batches(store_root: str | Path) -> list[Path]:
    folder = log_dir(store_root)
    return sorted(folder.glob("batch-*.parquet"), key=lambda p: p.name) if folder.is_dir() else []


def read_log(store_root: str | Path, files: list[Path] | None = None) -> pa.Table:
    """Every recorded row, oldest batch first (empty, with the schema, when there are none).
    ``files``: the batches, when the caller has listed them already."""
    files = batches(store_root) if files is None else files
    if not files:
        return pa.Table.from_batches([], schema=SCHEMA)  # empty_table() would import pandas
    return _LOGS.concat(files)


class _Logs:
    """The log as last read, per folder: a reader that finds the same batches plus newer
    ones adds only the newer (batches are only ever added, in name order)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last: dict[str, tuple[tuple, pa.Table]] = {}

    def concat(self, files: list[Path]) -> pa.Table:
        folder = os.path.abspath(files[0].parent)
        keys = tuple(f.name for f in files)  # a batch is never rewritten: its unique name is its version
        with self._lock:
            seen, table = self._last.get(folder, ((), None))
        if table is not None and keys[:len(seen)] == seen:
            table = pa.concat_tables([table] + [_batch(f) for f in files[len(seen):]]) if len(keys) > len(seen) \
                else table
        else:
            table = pa.concat_tables([_batch(f) for f in files])
        with self._lock:
            if len(self._last) >= 16 and folder not in self._last:
                self._last.clear()
            self._last[folder] = (keys, table)
        return table


def _key(path: Path) -> tuple:
    st = path.stat()
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


# Batches are immutable once written (unique names, written to a temporary name and renamed),
# so a process that reads the log often (the review app: every page) reads each batch once.
_BATCHES: dict[tuple, pa.Table] = {}
_BATCHES_MAX = 50_000
_LOGS = _Logs()


def _batch(path: Path) -> pa.Table:
    key = _key(path)
    table = _BATCHES.get(key)
    if table is None:
        if len(_BATCHES) >= _BATCHES_MAX:
            _BATCHES.clear()
        table = _BATCHES[key] = pq.read_table(path, schema=SCHEMA)
    return table


def digest(files: list[Path]) -> str:
    """Identifies the log's content for run manifests: batch names are unique and immutable."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
    return h.hexdigest()[:16]


LOCK_WAIT_S = 30.0  # how long an append waits for this process's other threads (the app)
PROCESS_WAIT_S = 5.0  # how long it then waits for another process (an import) before StoreBusy
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(root: Path) -> threading.Lock:
    """This process's lock for one store's log: threads queue on it in turn, and only the
    one holding it competes for the file lock with other processes."""
    key = str(root.resolve())
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


@contextmanager
def _locked(store_root: Path):
    """The review log's writer lock, for threads and processes alike: waits its turn (an
    append takes milliseconds), then gives up with StoreBusy rather than hang."""
    store_root.mkdir(parents=True, exist_ok=True)
    mine = _thread_lock(store_root)
    if not mine.acquire(timeout=LOCK_WAIT_S):
        raise StoreBusy(f"review decisions in {store_root} were queued behind others for {LOCK_WAIT_S:.0f} s; "
                        "nothing was recorded", "try again in a moment")
    try:
        with open(store_root / LOCK, "w") as fh:
            flock_waiting(fh, PROCESS_WAIT_S, lambda: StoreBusy(
                f"another process is recording review decisions in {store_root} (waited {PROCESS_WAIT_S:.0f} s); "
                "nothing was recorded; try again when it has finished"))
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        mine.release()


class DecisionConflict(DataError):
    """A second, different decision for one patient, rule and day; nothing was recorded.
    ``conflicts``: (index into the rows given, the decision already recorded that day)."""

    def __init__(self, rows: pa.Table, conflicts: list[tuple[int, str]]):
        self.conflicts = conflicts
        i, existing = conflicts[0]
        r = rows.slice(i, 1).to_pylist()[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        super().__init__(f"patient {r['patient_id']} already has the decision {existing} for rule {r['rule']} "
                         f"on {r['date']}, so {r['decision']} that day is refused{more}; nothing was recorded",
                         "one decision per patient, rule and day: record a changed decision on the day it was made")


def _memo(fn):
    """The answers for the last two tables kept while the same table objects are asked again
    (append asks several times of one log and of its new rows). Thread-safe: the pairs are
    replaced whole."""
    held: list[tuple] = [()]

    def memoised(t: pa.Table):
        pairs = held[0]
        for table, value in pairs:
            if table is t:
                return value
        value = fn(t)
        held[0] = ((t, value),) + pairs[:1]
        return value
    return memoised


@_memo
def _keys(t: pa.Table) -> list[tuple]:
    cols = [t.column(k).to_pylist() for k in KEY]
    dates = t.column("date").to_pylist()
    return [k + ((d,) if k[-1] is None else ()) for k, d in zip(zip(*cols), dates)]


@_memo
def _day_keys(t: pa.Table) -> list[tuple | None]:
    """(patient, rule, decision, day) for each decision row; None for 'listed' and
    'withdrawn' rows."""
    cols = [t.column(k).to_pylist() for k in ("patient_id", "rule", "decision", "date")]
    return [k if k[2] not in ("listed", WITHDRAWN) else None for k in zip(*cols)]


def in_force(log: pa.Table) -> pa.Table:
    """The log without its withdrawals and the decisions they withdrew: a 'withdrawn' row
    cancels every decision (not a listing) recorded before it for the same patient and rule.
    The log as it is when nothing was ever withdrawn."""
    decision = log.column("decision")
    if log.num_rows == 0 or not pc.any(pc.equal(decision, WITHDRAWN)).as_py():
        return log
    last = _IN_FORCE.get("last")
    if last is not None and last[0] is log:  # the same table object as last time (read_log's cache)
        return last[1]
    kept = _in_force(log, decision)
    _IN_FORCE["last"] = (log, kept)
    return kept


_IN_FORCE: dict[str, tuple[pa.Table, pa.Table]] = {}


def _in_force(log: pa.Table, decision: pa.ChunkedArray) -> pa.Table:
    pairs = list(zip(log.column("patient_id").to_pylist(), log.column("rule").to_pylist()))
    withdrawn: set[tuple] = set()
    keep = [False] * log.num_rows
    values = decision.to_pylist()
    for i in range(log.num_rows - 1, -1, -1):  # latest first: a withdrawal reaches back
        d = values[i]
        if d == WITHDRAWN:
            withdrawn.add(pairs[i])
        else:
            keep[i] = d == "listed" or pairs[i] not in withdrawn
    return log.filter(pa.array(keep))


def decided_by_day(log: pa.Table) -> dict[tuple, set[str]]:
    """(patient, rule, day) → the decisions recorded that day (one, unless recorded before
    the one-per-day rule)."""
    out: dict[tuple, set[str]] = {}
    for k in _day_keys(log):
        if k is not None:
            out.setdefault((k[0], k[1], k[3]), set()).add(k[2])
    return out


def day_conflicts(log: pa.Table, rows: pa.Table) -> list[tuple[int, str]]:
    """(index, the decision already there) for each decision in ``rows`` that differs from
    one the log, or an earlier row, has for the same patient, rule and day."""
    decided, out = decided_by_day(log), []
    for i, k in enumerate(_day_keys(rows)):
        if k is None:
            continue
        day = decided.setdefault((k[0], k[1], k[3]), set())
        if day and k[2] not in day:
            out.append((i, sorted(day)[0]))
        day.add(k[2])
    return out


def append(store_root: str | Path, rows: pa.Table, *, one_per_day: bool = False) -> tuple[str | None, pa.Table, int]:
    """Add ``rows`` (INPUT_SCHEMA) as one batch. ``one_per_day``: refuse (DecisionConflict,
    nothing recorded) a decision that differs from the one recorded for that patient, rule
    and day, and treat the same decision that day as already recorded, whatever run it names.

    Returns (batch name or None when nothing was new, the rows added, rows already recorded)."""
    root = Path(store_root)
    if not ((root / "current").exists() or (root / "shards.json").exists()):  # one store, or a sharded one
        raise StoreError(f"no store at {root}; decisions are recorded beside a store")
    with _locked(root):
        files = batches(root)
        log = in_force(read_log(root, files))
        if one_per_day and (conflicts := day_conflicts(log, rows)):
            raise DecisionConflict(rows, conflicts)
        keep = _new_rows(log, rows, one_per_day)
        duplicates = rows.num_rows - len(keep)
        if not keep:
            return None, SCHEMA.empty_table(), duplicates
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        name = _batch_name(files, now)
        new = rows.take(pa.array(keep, pa.int64()))
        new = new.append_column("recorded_at", pa.array([now] * new.num_rows, SCHEMA.field("recorded_at").type))
        new = new.append_column("batch", pa.array([name] * new.num_rows, pa.string()))
        new = new.select(SCHEMA.names).cast(SCHEMA)
        folder = log_dir(root)
        folder.mkdir(exist_ok=True)
        _write_durably(new, folder, name)
        return name, new, duplicates


def _write_durably(table: pa.Table, folder: Path, name: str) -> None:
    """The batch on disk before append returns: written to a temporary name, fsynced,
    renamed, and the folder fsynced so the rename survives a power cut too."""
    tmp = folder / f".{name}.tmp"
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / f"{name}.parquet")
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_rows(log: pa.Table, rows: pa.Table, one_per_day: bool) -> list[int]:
    """The indices of ``rows`` not already in force in ``log`` (nor earlier in ``rows``); a
    withdrawal is new only when it withdraws a decision in force."""
    seen, seen_days = set(_keys(log)), set(_day_keys(log)) if one_per_day else set()
    decided = {(k[0], k[1]) for k in _day_keys(log) if k is not None}
    keep = []
    for i, (key, day) in enumerate(zip(_keys(rows), _day_keys(rows))):
        pair = key[:2]
        if key[2] == WITHDRAWN:
            if pair in decided:
                keep.append(i)
                decided.discard(pair)
                seen = {k for k in seen if k[:2] != pair or k[2] == "listed"}
                seen_days = {k for k in seen_days if k is None or k[:2] != pair}
            continue
        day = day if one_per_day else None
        if key in seen or (day is not None and day in seen_days):
            continue
        seen.add(key)
        seen_days.add(day)
        if key[2] != "listed":
            decided.add(pair)
        keep.append(i)
    return keep


def _batch_name(files: list[Path], now: dt.datetime) -> str:
    """A new batch's name, sorting after every earlier batch's (the log's order is the order
    of recording, which withdrawals rely on), even within one second or after a clock step."""
    name = f"batch-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().int % 0x80000000:08x}"
    last = files[-1].stem if files else ""
    if name > last:
        return name
    return f"{last[:-8]}{int(last[-8:], 16) + 1:08x}"


def latest(log: pa.Table) -> pa.Table:
    """The latest decision in force per (rule, patient), ignoring 'listed' rows."""
    log = in_force(log)
    decided = log.filter(pc.not_equal(log.column("decision"), "listed"))
    if decided.num_rows == 0:
        return decided
    order = pc.sort_indices(decided, [("rule", "ascending"), ("patient_id", "ascending"),
                                      ("date", "descending"), ("recorded_at", "descending")])
    decided = decided.take(order)
    rule, pid = decided.column("rule").to_pylist(), decided.column("patient_id").to_pylist()
    first = [i for i in range(len(rule)) if i == 0 or (rule[i], pid[i]) != (rule[i - 1], pid[i - 1])]
    return decided.take(pa.array(first, pa.int64()))
