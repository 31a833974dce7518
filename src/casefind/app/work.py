"""A practice's work as the app shows it: the latest run of each rule, its rows, decisions
and positive predictive value, read from the store's registry of runs, the runs' list files
and the review log. Nothing here is identifiable: names come later, through bridge.py."""
from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from casefind.app.cache import LRU
from casefind.lists.review import DECISIONS
from casefind.outputs import UnsafePathError, safe_child
from casefind.store import decisions, listings

DECLINE_REASONS = ("not appropriate at present", "receiving this care elsewhere", "patient declined",
                   "record is wrong", "other (see note)")
LABELS = {"accepted": "Accepted", "declined": "Declined", "already_known": "Already known", "withdrawn": "Withdrawn"}


@dataclass
class Row:
    """One listed patient of one run (pseudonymised)."""

    run_id: str
    rule: str
    as_of: dt.date
    practice: str
    patient_id: str
    rank: int
    reasons: list[str] = field(default_factory=list)
    evidence: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # criterion → (date, what)
    shown: dict[str, object] = field(default_factory=dict)  # the rule's output columns
    excluded_by: list[str] = field(default_factory=list)
    decision: dict | None = None  # the latest decision in force, if any


@dataclass
class Decision:
    decision: str
    date: dt.date
    reviewer: str | None
    note: str | None
    recorded_at: dt.datetime | None
    rule: str
    in_force: bool = False


_SKIP = {"run_id", "rule", "as_of", "practice", "locality", "patient_id", "rank", "reasons", "decision",
         "decided_on", "reviewer", "note"}


def _evidence_items(text: str | None) -> list[tuple[str, str]]:
    items = []
    for part in (text or "").split("; "):
        part = part.strip()
        if part:
            date, _, what = part.partition(" ")
            items.append((date, what) if len(date) == 10 and date[4] == "-" else ("", part))
    return items


class Work:
    """The store's runs and decisions. A run's registry entry, list table and output folder
    never change once written, so each is read once per process (bounded caches keyed by
    the file's version); the review log is re-listed on every call, so a new run or
    decision shows at once."""

    def __init__(self, store_root: str | Path, out_dirs: list[Path]):
        self.store_root = Path(store_root)
        self.out_dirs = [Path(d) for d in out_dirs]
        self._listings: LRU[listings.Listing] = LRU(64)
        self._folders: LRU[str | None] = LRU(256)
        self._tables: LRU[pa.Table] = LRU(8)
        self._practice_rows: LRU[list[dict]] = LRU(512)

    def _registered(self) -> list[listings.Listing]:
        """Every registered run, oldest as_of first (listings.runs' order), each read once."""
        folder = listings.lists_dir(self.store_root)
        paths = sorted(p for p in folder.glob("*.parquet") if listings.is_run_id(p.stem)) if folder.is_dir() else []
        found = [self._listing(p) for p in paths]
        return sorted((r for r in found if r is not None),
                      key=lambda r: (r.as_of.isoformat(), r.recorded_at or "", r.run_id))

    def _listing(self, path: Path) -> listings.Listing | None:
        try:
            key = _version(path)
        except FileNotFoundError:
            return None
        return self._listings.get(key, lambda: listings.get(self.store_root, path.stem))

    def latest_runs(self) -> list[listings.Listing]:
        """The latest registered run of each rule, by rule name."""
        latest: dict[str, listings.Listing] = {}
        for r in self._registered():
            latest[r.rule] = r  # oldest first
        return [latest[k] for k in sorted(latest)]

    def practices(self) -> list[str]:
        return sorted({p for r in self.latest_runs() for p in r.practices})

    def run(self, run_id: str) -> listings.Listing | None:
        if not listings.is_run_id(run_id):
            return None
        return self._listing(listings.lists_dir(self.store_root) / f"{run_id}.parquet")

    def list_file(self, listing: listings.Listing) -> Path | None:
        """The run's list.parquet, if one of the output folders still holds that run's."""
        folder = self.run_folder(listing)
        return folder / "list.parquet" if folder and (folder / "list.parquet").exists() else None

    def practice_workbook(self, listing: listings.Listing, practice: str) -> Path | None:
        """The run's practices/<CODE>.xlsx, when the run wrote one for ``practice``."""
        folder = self.run_folder(listing)
        if folder is None:
            return None
        try:
            path = safe_child(folder / "practices", practice, ".xlsx")
        except UnsafePathError:
            return None
        return path if path.exists() else None

    def run_folder(self, listing: listings.Listing) -> Path | None:
        """The run's output folder, if one of the output folders still holds that run's."""
        for out in self.out_dirs:
            try:
                folder = safe_child(out, f"{listing.rule}-{listing.as_of.isoformat()}")
            except UnsafePathError:
                return None
            manifest = folder / "manifest.json"
            try:
                key = _version(manifest)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if self._folders.get(key, functools.partial(_manifest_run_id, manifest)) == listing.run_id:
                return folder
        return None

    def rows(self, listing: listings.Listing, practice: str) -> list[Row]:
        """The run's rows for ``practice``, ranked, with reasons and evidence when the run's
        list file is still there (else rank and pseudonym only). Fresh Row objects each call
        (callers add decisions to them) from the practice's cached rows."""
        path = self.list_file(listing)
        if path is None:
            listed = listing.listed.filter(pc.equal(listing.listed.column("practice"), practice))
            rows = [Row(listing.run_id, listing.rule, listing.as_of, practice, r["patient_id"], r["rank"])
                    for r in listed.to_pylist()]
        else:
            key = (_version(path), practice)
            rows = [self._row(r) for r in self._practice_rows.get(key, lambda: self._read_rows(path, practice))]
        rows.sort(key=lambda r: r.rank)
        return rows

    def _read_rows(self, path: Path, practice: str) -> list[dict]:
        t = self._tables.get(_version(path), lambda: pq.read_table(path))
        return t.filter(pc.equal(t.column("practice"), practice)).to_pylist()

    @staticmethod
    def _row(r: dict) -> Row:
        row = Row(r["run_id"], r["rule"], r["as_of"], r["practice"], r["patient_id"], r["rank"],
                  [s for s in (r.get("reasons") or "").split(" | ") if s])
        for k, v in r.items():
            if k in _SKIP or k.startswith("include:"):
                continue
            if k.startswith("evidence:"):
                if v:
                    row.evidence[k.split(":", 1)[1].replace("_", " ")] = _evidence_items(v)
            elif k.startswith("exclude:"):
                if v:
                    row.excluded_by.append(k.split(":", 1)[1])
            else:
                row.shown[k.replace("_", " ")] = v
        return row

    def history(self, rule: str | None = None, patient_ids: set[str] | None = None) -> dict[tuple, list[Decision]]:
        """(rule, patient_id) → every decision and withdrawal, in the order recorded (the log's
        order, which withdrawals rely on); the one in force, as ``decisions.latest`` has it, is
        marked."""
        log = decisions.read_log(self.store_root)
        if patient_ids is not None:
            log = log.filter(pc.is_in(log.column("patient_id"), pa.array(sorted(patient_ids), pa.string())))
        if rule:
            log = log.filter(pc.equal(log.column("rule"), rule))
        in_force = {(r["rule"], r["patient_id"], r["batch"], r["decision"])
                    for r in decisions.latest(log).to_pylist()}
        out: dict[tuple, list[Decision]] = {}
        for r in log.to_pylist():
            if r["decision"] != "listed":
                out.setdefault((r["rule"], r["patient_id"]), []).append(
                    Decision(r["decision"], r["date"], r["reviewer"], r["note"], r["recorded_at"], r["rule"],
                             (r["rule"], r["patient_id"], r["batch"], r["decision"]) in in_force))
        return out

    def with_decisions(self, rows: list[Row]) -> list[Row]:
        if not rows:
            return rows
        hist = self.history(patient_ids={r.patient_id for r in rows})
        for r in rows:
            items = hist.get((r.rule, r.patient_id), [])
            r.decision = next(({"decision": d.decision, "label": LABELS.get(d.decision, d.decision), "date": d.date}
                               for d in items if d.in_force), None)
        return rows


def _version(path: Path) -> tuple:
    """A file's identity for the caches: a rewritten file (a new run in the same folder) is
    a new key."""
    st = path.stat()
    return str(path), st.st_ino, st.st_size, st.st_mtime_ns


def _manifest_run_id(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def ppv(rows: list[Row]) -> dict:
    """Accepted among reviewed (accepted, declined, already known) of these rows."""
    counts = {d: sum(1 for r in rows if r.decision and r.decision["decision"] == d) for d in DECISIONS}
    reviewed = sum(counts.values())
    return {"listed": len(rows), "reviewed": reviewed, **counts,
            "ppv": round(100 * counts["accepted"] / reviewed) if reviewed else None}
