"""Clinicians' review of a list: read the decisions filled in on a list file and record them.

A list written by ``casefind run`` has empty ``decision``, ``decided_on``, ``reviewer`` and
``note`` columns. The practice fills them in (accepted, declined, already known; blank while
undecided) and ``casefind review import`` records, for every row, that the patient was
listed (dated the list's as_of) and, where a decision is given, the decision (dated
``decided_on``, else the date given on the command line, else today).

The whole file is checked first; if any row is wrong nothing is recorded and every problem
is reported with its row number, so a clinician's decision is never half-imported.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from casefind.contract.schema import REVIEW_DECISIONS
from casefind.store import Store, decisions

DECISIONS = tuple(d for d in REVIEW_DECISIONS if d != "listed")
_ALIASES = {"accept": "accepted", "accepted": "accepted", "yes": "accepted",
            "decline": "declined", "declined": "declined", "no": "declined",
            "already_known": "already_known", "known": "already_known", "already_on_caseload": "already_known"}
_REQUIRED = ("run_id", "rule", "as_of", "practice", "patient_id")
_TEXT = _REQUIRED + ("decision", "decided_on", "reviewer", "note")
MAX_LISTED_ERRORS = 20


class ReviewImportError(Exception):
    """The file cannot be recorded; ``problems`` lists each one, nothing was recorded."""

    def __init__(self, path: Path, problems: list[str]):
        self.path, self.problems = path, problems
        shown = problems[:MAX_LISTED_ERRORS]
        more = len(problems) - len(shown)
        super().__init__(f"{path}: nothing recorded, {len(problems)} problem(s):\n  "
                         + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else ""))


@dataclass
class ImportSummary:
    path: Path
    rows: int
    listed_added: int
    decisions_added: dict[str, int] = field(default_factory=dict)
    undecided: int = 0
    already_recorded: int = 0
    batch: str | None = None


def normalise_decision(text: str | None) -> str | None:
    """'Accept', 'declined', 'Already known' → the recorded value; blank → None (undecided);
    anything else raises ValueError."""
    if text is None or not text.strip():
        return None
    key = text.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in _ALIASES:
        raise ValueError(f"decision {text!r} is not one of {', '.join(DECISIONS)} (or blank while undecided)")
    return _ALIASES[key]


def read_list(path: Path) -> pa.Table:
    """A list file (CSV or Parquet) or a run folder (its list.parquet), columns as text."""
    if path.is_dir():
        path = path / "list.parquet"
    if not path.exists():
        raise ReviewImportError(path, ["no such file"])
    if path.suffix == ".parquet":
        t = pq.read_table(path)
    elif path.suffix == ".csv":
        t = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in _TEXT}, strings_can_be_null=True))
    else:
        raise ReviewImportError(path, ["not a list file: give the list's .csv or .parquet, or its run folder"])
    missing = [c for c in _REQUIRED if c not in t.column_names]
    if missing:
        raise ReviewImportError(path, [f"missing column(s) {', '.join(missing)}: import a list written by "
                                       "`casefind run` (list.csv, practices/<code>.csv or the run folder)"])
    return t


def _text(t: pa.Table, column: str) -> list[str | None]:
    if column not in t.column_names:
        return [None] * t.num_rows
    values = pc.cast(t.column(column), pa.string()).to_pylist()
    return [v.strip() if isinstance(v, str) and v.strip() else None for v in values]


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text[:10]) if text else None


def decision_rows(t: pa.Table, path: Path, known_patients: set[str], *, reviewer: str | None,
                  decided_on: dt.date | None, today: dt.date) -> tuple[pa.Table, int]:
    """The log rows a reviewed list gives (listed + decisions), and how many rows are undecided;
    ReviewImportError with every problem if any row is wrong."""
    cols = {c: _text(t, c) for c in _TEXT}
    problems, out = [], []
    undecided = 0
    for i in range(t.num_rows):
        where = f"row {i + 2}"  # the header is row 1 of the file
        r = {c: cols[c][i] for c in _TEXT}
        try:
            decision = normalise_decision(r["decision"])
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        for c in _REQUIRED:
            if r[c] is None:
                problems.append(f"{where}: {c} is empty")
        if any(r[c] is None for c in _REQUIRED):
            continue
        if r["patient_id"] not in known_patients:
            problems.append(f"{where}: patient {r['patient_id']} is not in the store's current snapshot")
            continue
        try:
            as_of = _date(r["as_of"])
            when = _date(r["decided_on"]) or decided_on or today
        except ValueError:
            problems.append(f"{where}: as_of {r['as_of']!r} or decided_on {r['decided_on']!r} is not a date (YYYY-MM-DD)")
            continue
        base = {"patient_id": r["patient_id"], "rule": r["rule"], "practice": r["practice"], "run_id": r["run_id"]}
        out.append({**base, "decision": "listed", "date": as_of, "reviewer": None, "note": None})
        if decision is None:
            undecided += 1
            continue
        if when < as_of:
            problems.append(f"{where}: decided_on {when} is before the list's as_of {as_of}")
            continue
        if when > today:
            problems.append(f"{where}: decided_on {when} is in the future")
            continue
        out.append({**base, "decision": decision, "date": when, "reviewer": r["reviewer"] or reviewer,
                    "note": r["note"]})
    if problems:
        raise ReviewImportError(path, problems)
    return pa.Table.from_pylist(out, schema=decisions.INPUT_SCHEMA), undecided


def import_reviews(path: str | Path, store_root: str | Path, *, reviewer: str | None = None,
                   decided_on: dt.date | None = None, today: dt.date | None = None) -> ImportSummary:
    path = Path(path)
    store = Store.open(store_root)
    t = read_list(path)
    ids = set(store.table("patients").arrow.column("patient_id").cast(pa.string()).to_pylist())
    rows, undecided = decision_rows(t, path, ids, reviewer=reviewer, decided_on=decided_on,
                                    today=today or dt.date.today())
    batch, added, duplicates = decisions.append(store_root, rows)
    summary = ImportSummary(path, t.num_rows, 0, {}, undecided, duplicates, batch)
    for d in added.column("decision").to_pylist():  # re-imported rows are not among them
        if d == "listed":
            summary.listed_added += 1
        else:
            summary.decisions_added[d] = summary.decisions_added.get(d, 0) + 1
    return summary


def review_status(store_root: str | Path, rule: str | None = None) -> pa.Table:
    """Per rule and practice: patients listed, reviewed, and the latest decision's counts."""
    log = decisions.read_log(store_root)
    if rule is not None:
        log = log.filter(pc.equal(log.column("rule"), rule))
    listed = log.filter(pc.equal(log.column("decision"), "listed"))
    counts: dict[tuple[str, str], dict[str, set | int]] = {}
    for r, p, pid in zip(*(listed.column(c).to_pylist() for c in ("rule", "practice", "patient_id"))):
        counts.setdefault((r, p or ""), {"listed": set()})["listed"].add(pid)
    for r, p, d in zip(*(decisions.latest(log).column(c).to_pylist() for c in ("rule", "practice", "decision"))):
        c = counts.setdefault((r, p or ""), {"listed": set()})
        c[d] = c.get(d, 0) + 1
    rows = []
    for (r, p), c in sorted(counts.items()):
        decided = {d: c.get(d, 0) for d in DECISIONS}
        rows.append({"rule": r, "practice": p, "listed": len(c["listed"]), "reviewed": sum(decided.values()),
                     **decided})
    schema = pa.schema([("rule", pa.string()), ("practice", pa.string()), ("listed", pa.int64()),
                        ("reviewed", pa.int64())] + [(d, pa.int64()) for d in DECISIONS])
    return pa.Table.from_pylist(rows, schema=schema)


def record_decision(store_root: str | Path, *, rule: str, patient_id: str, decision: str,
                    on: dt.date | None = None, reviewer: str | None = None, note: str | None = None,
                    today: dt.date | None = None) -> bool:
    """Record one decision made outside a list file. True if new, False if already recorded."""
    store = Store.open(store_root)
    today = today or dt.date.today()
    value = normalise_decision(decision)
    if value is None:
        raise ValueError("give a decision: " + ", ".join(DECISIONS))
    when = on or today
    if when > today:
        raise ValueError(f"the decision date {when} is in the future")
    patients = store.table("patients")
    ids = patients.arrow.column("patient_id").cast(pa.string())
    i = pc.index(ids, patient_id).as_py()
    if i < 0:
        raise ValueError(f"patient {patient_id} is not in the store's current snapshot")
    practice = store.table("practices").arrow.column("practice_code")[int(patients["practice"][i])].as_py()
    row = pa.Table.from_pylist([{"patient_id": patient_id, "rule": rule, "decision": value, "date": when,
                                 "practice": practice, "run_id": None, "reviewer": reviewer, "note": note}],
                               schema=decisions.INPUT_SCHEMA)
    batch, _, _ = decisions.append(store_root, row)
    return batch is not None
