"""Clinicians' review of a list: read the decisions filled in on a list file and record them.

A list written by ``casefind run`` has empty ``decision``, ``decided_on``, ``reviewer`` and
``note`` columns. The practice fills them in (accepted, declined, already known; blank while
undecided) and ``casefind review import`` records, for every row, that the patient was
listed (dated the list's as_of) and, where a decision is given, the decision (dated
``decided_on``, else the date given on the command line, else today).

Every row is checked against the run it names, from the registry of lists runs wrote
(``store/listings.py``): the run exists, the row's rule and as_of are the run's, and the run
listed that patient for that practice. One decision per patient, rule and day. The whole
file is checked first; if any row is wrong nothing is recorded and every problem is
reported with its row number, so a clinician's decision is never half-imported.

A list file comes back from a spreadsheet: UTF-8 (with or without a BOM), Windows-1252 or
UTF-16 text, separated by commas, semicolons or tabs, dates as YYYY-MM-DD or as Excel (UK)
writes them (DD/MM/YYYY, perhaps with a 00:00 time), cells as ``outputs.write_csv`` made
them spreadsheet-safe (undone with ``outputs.restore``) and blank rows at the end.
"""
from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from casefind.contract.schema import REVIEW_DECISIONS
from casefind.errors import DataError, UsageError
from casefind.lists.practice_file import import_name
from casefind.outputs import restore
from casefind.store import decisions, listings
from casefind.store.sharded import open_any

DECISIONS = tuple(d for d in REVIEW_DECISIONS if d != "listed")
_ALIASES = {"accept": "accepted", "accepted": "accepted", "yes": "accepted",
            "decline": "declined", "declined": "declined", "no": "declined",
            "already_known": "already_known", "known": "already_known", "already_on_caseload": "already_known"}
_REQUIRED = ("run_id", "rule", "as_of", "practice", "patient_id")
_TEXT = _REQUIRED + ("decision", "decided_on", "reviewer", "note")
MAX_LISTED_ERRORS = 20
DELIMITERS = (",", ";", "\t")  # the first that finds the most list columns in the header wins
_DATE = re.compile(r"(?:(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})|(?P<uk_d>\d{1,2})/(?P<uk_m>\d{1,2})/(?P<uk_y>\d{4}))"
                   r"(?:[ T]00:00(?::00)?)?")
DATE_FORMATS = "YYYY-MM-DD (or DD/MM/YYYY as Excel saves it)"


class ReviewImportError(DataError):
    """The file cannot be recorded; ``problems`` lists each one, nothing was recorded."""

    def __init__(self, path: Path, problems: list[str]):
        self.path, self.problems = path, problems
        first = problems[:MAX_LISTED_ERRORS]
        more = len(problems) - len(first)
        super().__init__(f"{path}: nothing recorded, {len(problems)} problem(s):\n  "
                         + "\n  ".join(first) + (f"\n  ... and {more} more" if more else ""),
                         "fix the rows named and import the file again; rows already recorded are not doubled")


class _Refused(Exception):
    """One row's problem, raised by a check and reported with the row's number."""


@dataclass
class ImportSummary:
    path: Path
    rows: int
    listed_added: int
    decisions_added: dict[str, int] = field(default_factory=dict)
    undecided: int = 0
    already_recorded: int = 0
    batch: str | None = None
    encoding: str = ""  # how the file was read: "UTF-8", "Windows-1252", ... or "Parquet"


@dataclass
class ListFile:
    """A list file read back: one dict of text cells per row (None where blank), the row's
    number in the file (the header is row 1; blank rows are skipped but keep their numbers),
    and how the file was encoded."""

    path: Path
    rows: list[dict[str, str | None]]
    row_numbers: list[int]
    encoding: str


def shown(text: str) -> str:
    """A cell as a message shows it: quoted, on one line, at most 40 characters."""
    flat = " ".join(str(text).split())
    return f"'{flat[:40]}...'" if len(flat) > 40 else f"'{flat}'"


def normalise_decision(text: str | None) -> str | None:
    """'Accept', 'declined', 'Already known' → the recorded value; blank → None (undecided);
    anything else raises ValueError."""
    if text is None or not text.strip():
        return None
    key = text.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in _ALIASES:
        raise ValueError(f"decision {shown(text)} is not one of {', '.join(DECISIONS)} (or blank while undecided)")
    return _ALIASES[key]


def parse_date(text: str) -> dt.date:
    """YYYY-MM-DD exactly, or DD/MM/YYYY as Excel (UK) saves a date, either perhaps with the
    00:00 time Excel adds; ValueError for anything else (no prefix of a date is a date)."""
    m = _DATE.fullmatch(text.strip())
    if not m:
        raise ValueError(text)
    if m["y"]:
        return dt.date(int(m["y"]), int(m["m"]), int(m["d"]))
    return dt.date(int(m["uk_y"]), int(m["uk_m"]), int(m["uk_d"]))


# --- reading a list file ------------------------------------------------------------------

def _decode(data: bytes, path: Path) -> tuple[str, str]:
    """The file's text and the encoding it was read as: UTF-8 (BOM or not), UTF-16 with a
    BOM (Excel's "Unicode text"), else Windows-1252 (Excel's plain "CSV" on Windows)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        tries = [("utf-16", "UTF-16")]
    elif data.startswith(b"\xef\xbb\xbf"):
        tries = [("utf-8-sig", "UTF-8 (with BOM)")]
    else:
        tries = [("utf-8", "UTF-8"), ("cp1252", "Windows-1252")]
    for codec, name in tries:
        try:
            return data.decode(codec), name
        except UnicodeDecodeError:
            continue
    raise ReviewImportError(path, ["the file is not UTF-8 or Windows-1252 text: save it from the spreadsheet "
                                   "as 'CSV UTF-8 (comma delimited)'"])


def _cell(text: str) -> str | None:
    """A CSV cell as text: spreadsheet-safety undone, surrounding space trimmed, blank → None."""
    return restore(text.strip()).strip() or None


HEADER_SEARCH_ROWS = 50  # the header is within the first rows (an instruction block above it)


def _column_name(cell: str) -> str | None:
    """The list column a header cell names: the machine name (list.csv) or the plain title
    a practice's file shows ("Decided on"), else None."""
    text = cell.strip()
    return text if text in _TEXT else import_name(text)


def _header_at(records: list[list[str]]) -> tuple[int, int]:
    """(index of the header row, how many list columns it names): the first of the first
    rows that names the most; rows above it (a practice file's instructions) are skipped."""
    best = (0, -1)
    for i, record in enumerate(records[:HEADER_SEARCH_ROWS]):
        found = len({_column_name(c) for c in record} & set(_REQUIRED))
        if found > best[1]:
            best = (i, found)
    return best


def _parse(text: str, delimiter: str, path: Path) -> list[list[str]]:
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as e:
        raise ReviewImportError(path, [f"not a CSV file casefind can read: {e}"]) from None


def _csv_rows(text: str, path: Path) -> tuple[list[str | None], list[tuple[int, list[str]]]]:
    """(the header as column names, [(row number, cells)] below it). The separator is the
    one whose header row names the most list columns; row numbers count from the file's
    first line, so they match what a spreadsheet shows."""
    head = "\n".join(text.splitlines()[:HEADER_SEARCH_ROWS])
    delimiter = max(DELIMITERS, key=lambda d: _header_at(_parse(head, d, path))[1])
    records = _parse(text, delimiter, path)
    if not records:
        raise ReviewImportError(path, ["the file is empty"])
    at, _ = _header_at(records)
    return _named_header(path, records[at]), list(enumerate(records[at + 1:], start=at + 2))


def _named_header(path: Path, cells: list) -> list[str | None]:
    header = [_column_name(str(h)) if h is not None else None for h in cells]
    twice = sorted({h for h in header if h is not None and header.count(h) > 1})
    if twice:
        raise ReviewImportError(path, [f"column {', '.join(twice)} appears more than once in the header"])
    return header


def _read_csv(path: Path) -> ListFile:
    text, encoding = _decode(path.read_bytes(), path)
    header, records = _csv_rows(text, path)
    return _list_file(path, header, records, encoding, _cell)


def _read_xlsx(path: Path) -> ListFile:
    """A practice's workbook (lists/xlsx.py): its List sheet, cells as text (dates as
    YYYY-MM-DD). Cells are text as written, so there is no spreadsheet-safety to undo."""
    from casefind.lists.xlsx import read_workbook

    try:
        header, records = read_workbook(path)
    except ValueError as e:
        raise ReviewImportError(path, [str(e)]) from None
    return _list_file(path, _named_header(path, header), records, "Excel workbook",
                      lambda v: (v.strip() or None) if isinstance(v, str) else v)


def _list_file(path: Path, header: list[str | None], records: list[tuple[int, list]], encoding: str,
               cell) -> ListFile:
    """The rows below the header as ListFile rows (blank rows skipped, keeping their numbers)."""
    wanted = {name: i for i, name in enumerate(header) if name in _TEXT}
    _require_columns(path, wanted)
    rows, numbers, problems = [], [], []
    for n, record in records:
        if not any(c is not None and str(c).strip() for c in record):
            continue  # a blank row, as spreadsheets leave at the end
        if any(c is not None and str(c).strip() for c in record[len(header):]):
            problems.append(f"row {n}: {len(record)} cells, but the header has {len(header)} columns")
            continue
        rows.append({name: cell(record[i]) if i < len(record) and record[i] is not None else None
                     for name, i in wanted.items()})
        numbers.append(n)
    if problems:
        raise ReviewImportError(path, problems)
    return ListFile(path, rows, numbers, encoding)


def _read_parquet(path: Path) -> ListFile:
    """Rows numbered as in the list's CSV (the first is row 2), which has the same order.
    Cells are as written: Parquet lists are not made spreadsheet-safe, so nothing to undo."""
    try:
        t = pq.read_table(path)
    except (OSError, pa.ArrowInvalid):
        raise ReviewImportError(path, ["not a Parquet file casefind can read"]) from None
    _require_columns(path, t.column_names)
    cols = {c: _text_column(t, c) for c in _TEXT if c in t.column_names}
    rows = [{c: cols[c][i] for c in cols} for i in range(t.num_rows)]
    kept = [(n, r) for n, r in enumerate(rows, start=2) if any(v is not None for v in r.values())]
    return ListFile(path, [r for _, r in kept], [n for n, _ in kept], "Parquet")


def _text_column(t: pa.Table, column: str) -> list[str | None]:
    values = pc.cast(t.column(column), pa.string()).to_pylist()
    return [v.strip() if isinstance(v, str) and v.strip() else None for v in values]


def _require_columns(path: Path, columns) -> None:
    missing = [c for c in _REQUIRED if c not in columns]
    if missing:
        raise ReviewImportError(path, [f"missing column(s) {', '.join(missing)}: import a list written by "
                                       "`casefind run` (list.csv, practices/<code>.csv or .xlsx, or the run folder)"])


def read_list(path: Path) -> ListFile:
    """A list file (CSV, a practice's .xlsx, or Parquet) or a run folder (its list.parquet), cells as text."""
    path = Path(path)
    if path.is_dir():
        path = path / "list.parquet"
    if not path.exists():
        raise ReviewImportError(path, ["no such file"])
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return _read_csv(path)
    if path.suffix.lower() == ".xlsx":
        return _read_xlsx(path)
    raise ReviewImportError(path, ["not a list file: give the list's .csv, .xlsx or .parquet, or its run folder"])


# --- checking each row against the run it came from ---------------------------------------

class _Runs:
    """The registered runs a file names, each read once."""

    def __init__(self, store_root: Path):
        self.store_root, self._seen = store_root, {}

    def get(self, run_id: str) -> listings.Listing:
        if run_id not in self._seen:
            self._seen[run_id] = listings.get(self.store_root, run_id)
        if self._seen[run_id] is None:
            raise _Refused(f"run {shown(run_id)} is not a list this store's runs wrote")
        return self._seen[run_id]


def _file_practice(path: Path, practice: str | None, listing: listings.Listing) -> str | None:
    """Whose file this is: the practice given, else the practice a file named
    practices/<code>.csv (or .xlsx) is for (when <code> is one of the run's practices), else None."""
    if practice is not None:
        return practice
    return path.stem if path.suffix.lower() in (".csv", ".xlsx") and path.stem in listing.practices else None


def _check_listed(r: dict, listing: listings.Listing, file_practice: str | None) -> dt.date:
    """The row is the run's: same rule and as_of, a patient the run listed for that practice
    (and, in one practice's file, that practice's patient). Returns the list's as_of."""
    if r["rule"] != listing.rule:
        raise _Refused(f"rule {shown(r['rule'])} is not the rule of run {listing.run_id} ({listing.rule})")
    as_of = _date_cell(r, "as_of")
    if as_of != listing.as_of:
        raise _Refused(f"as_of {as_of} is not the as_of of run {listing.run_id} ({listing.as_of})")
    pid, practice = r["patient_id"], r["practice"]
    listed_for = listing.practice_of.get(pid)
    if listed_for is None:
        raise _Refused(f"patient {shown(pid)} was not on the list of run {listing.run_id}")
    if listed_for != practice:
        raise _Refused(f"patient {shown(pid)} was listed for practice {listed_for}, not {shown(practice)}")
    if file_practice is not None and practice != file_practice:
        raise _Refused(f"patient {shown(pid)} is practice {practice}'s, "
                       f"but this is practice {file_practice}'s file")
    return as_of


def _date_cell(r: dict, column: str) -> dt.date | None:
    if r[column] is None:
        return None
    try:
        return parse_date(r[column])
    except ValueError:
        raise _Refused(f"{column} {shown(r[column])} is not a date: write {DATE_FORMATS}") from None


def _check_when(when: dt.date, as_of: dt.date, today: dt.date) -> None:
    if when < as_of:
        raise _Refused(f"decided_on {when} is before the list's as_of {as_of}")
    if when > today:
        raise _Refused(f"decided_on {when} is in the future")


def _second_decision(pid: str, existing: str, when: dt.date, decision: str) -> str:
    return (f"patient {shown(pid)} already has the decision {existing} for {when}; "
            f"a second, different decision that day ({decision}) is refused")


class _OnePerDay:
    """One decision per patient, rule and day: against the log, and between rows of the file."""

    def __init__(self, log: pa.Table):
        self._recorded = decisions.decided_by_day(log)
        self._in_file: dict[tuple, tuple[str, int]] = {}

    def check(self, pid: str, rule: str, when: dt.date, decision: str, row: int) -> None:
        key = (pid, rule, when)
        recorded = self._recorded.get(key, set())
        if recorded and decision not in recorded:
            raise _Refused(_second_decision(pid, sorted(recorded)[0], when, decision))
        earlier = self._in_file.setdefault(key, (decision, row))
        if earlier[0] != decision:
            raise _Refused(f"patient {shown(pid)} is {decision} on {when} here but {earlier[0]} in row {earlier[1]}")


@dataclass
class _Checked:
    """The log rows a file gives, with the file row each came from."""

    rows: list[dict] = field(default_factory=list)
    origins: list[int] = field(default_factory=list)
    undecided: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class _RowChecker:
    """Checks one list row at a time against its run, the log and the rows before it."""

    path: Path
    runs: _Runs
    one_per_day: _OnePerDay
    practice: str | None
    reviewer: str | None
    decided_on: dt.date | None
    today: dt.date

    def log_rows(self, r: dict, n: int) -> list[dict]:
        """The log rows list row ``n`` gives (listed, and the decision if any); _Refused if wrong."""
        try:
            decision = normalise_decision(r["decision"])
        except ValueError as e:
            raise _Refused(str(e)) from None
        empty = [c for c in _REQUIRED if r[c] is None]
        if empty:
            raise _Refused(f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty")
        listing = self.runs.get(r["run_id"])
        as_of = _check_listed(r, listing, _file_practice(self.path, self.practice, listing))
        when = _date_cell(r, "decided_on") or self.decided_on or self.today
        base = {"patient_id": r["patient_id"], "rule": listing.rule, "practice": r["practice"],
                "run_id": listing.run_id}
        listed = {**base, "decision": "listed", "date": as_of, "reviewer": None, "note": None}
        if decision is None:
            return [listed]
        _check_when(when, as_of, self.today)
        self.one_per_day.check(r["patient_id"], listing.rule, when, decision, n)
        return [listed, {**base, "decision": decision, "date": when, "reviewer": r["reviewer"] or self.reviewer,
                         "note": r["note"]}]


def decision_rows(lf: ListFile, store_root: str | Path, *, reviewer: str | None, decided_on: dt.date | None,
                  today: dt.date, practice: str | None = None) -> _Checked:
    """The log rows a reviewed list gives (listed + decisions) and how many rows are
    undecided; ReviewImportError with every problem if any row is wrong."""
    in_force = decisions.in_force(decisions.read_log(store_root))
    checker = _RowChecker(lf.path, _Runs(Path(store_root)), _OnePerDay(in_force), practice, reviewer, decided_on,
                          today)
    out = _Checked()
    for n, r in zip(lf.row_numbers, lf.rows):
        try:
            given = checker.log_rows(r, n)
        except _Refused as e:
            out.problems.append(f"row {n}: {e}")
            continue
        out.undecided += len(given) == 1
        out.rows.extend(given)
        out.origins.extend([n] * len(given))
    if out.problems:
        raise ReviewImportError(lf.path, out.problems)
    return out


def _append(lf: ListFile, store_root: str | Path, checked: _Checked):
    """Record the rows under the log's lock; a different decision recorded meanwhile for the
    same patient and day (another import won the race) refuses the whole file."""
    table = pa.Table.from_pylist(checked.rows, schema=decisions.INPUT_SCHEMA)
    try:
        return decisions.append(store_root, table, one_per_day=True)
    except decisions.DecisionConflict as e:
        rows = checked.rows
        raise ReviewImportError(lf.path, [
            f"row {checked.origins[i]}: " + _second_decision(rows[i]["patient_id"], existing, rows[i]["date"],
                                                              rows[i]["decision"])
            for i, existing in e.conflicts]) from None


def import_reviews(path: str | Path, store_root: str | Path, *, reviewer: str | None = None,
                   decided_on: dt.date | None = None, today: dt.date | None = None,
                   practice: str | None = None) -> ImportSummary:
    """Check every row of a reviewed list, then record them all (or, if any is wrong, none).
    ``practice``: whose file it is; rows for another practice's patients are refused."""
    open_any(store_root)  # a clear error for a wrong --store, before any row is read
    lf = read_list(Path(path))
    checked = decision_rows(lf, store_root, reviewer=reviewer, decided_on=decided_on,
                            today=today or dt.date.today(), practice=practice)
    batch, added, duplicates = _append(lf, store_root, checked)
    summary = ImportSummary(lf.path, len(lf.rows), 0, {}, checked.undecided, duplicates, batch, lf.encoding)
    for d in added.column("decision").to_pylist():  # re-imported rows are not among them
        if d == "listed":
            summary.listed_added += 1
        else:
            summary.decisions_added[d] = summary.decisions_added.get(d, 0) + 1
    return summary


def review_status(store_root: str | Path, rule: str | None = None) -> pa.Table:
    """Per rule and practice: patients listed, reviewed, and the latest decision's counts."""
    open_any(store_root)  # a clear error for a wrong --store
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


def _registered_rule(store_root: str | Path, rule: str) -> None:
    """UsageError unless some registered run listed patients for ``rule`` (with a did-you-mean)."""
    known = listings.rules(store_root)
    if rule in known:
        return
    close = difflib.get_close_matches(rule, sorted(known), n=1)
    if close:
        hint = f"did you mean '{close[0]}'?"
    elif known:
        hint = f"rules with lists: {', '.join(sorted(known))}"
    else:
        hint = "no list has been run on this store yet: `casefind run RULE` first"
    raise UsageError(f"no list run on this store has listed patients for rule {shown(rule)}; {hint}",
                     "decisions are recorded for patients a `casefind run` of the rule has listed", option="--rule")


def _listing_in_force(store_root: str | Path, rule: str, patient_id: str, when: dt.date) -> listings.Listing:
    """The latest of ``rule``'s runs, as of ``when`` or before, that listed the patient."""
    listed = [r for r in listings.runs(store_root, rule) if patient_id in r.practice_of]
    if not listed:
        raise UsageError(f"patient {shown(patient_id)} was never listed by rule {rule}", option="--patient")
    in_force = [r for r in listed if r.as_of <= when]
    if not in_force:
        raise UsageError(f"patient {shown(patient_id)} was first listed by rule {rule} as of {listed[0].as_of}; "
                         f"a decision on {when} would be before it", option="--on")
    return in_force[-1]


def record_decision(store_root: str | Path, *, rule: str, patient_id: str, decision: str,
                    on: dt.date | None = None, reviewer: str | None = None, note: str | None = None,
                    today: dt.date | None = None) -> bool:
    """Record one decision made outside a list file, for a patient a run of ``rule`` listed
    (the practice is the one it was listed for). True if new, False if already recorded;
    DecisionConflict if another decision is recorded for that patient, rule and day."""
    open_any(store_root)  # a store, sharded or not: a sharded one's log is at its root
    today = today or dt.date.today()
    try:
        value = normalise_decision(decision)
    except ValueError as e:
        raise UsageError(str(e), option="--decision") from None
    if value is None:
        raise UsageError("give a decision: " + ", ".join(DECISIONS), option="--decision")
    when = on or today
    if when > today:
        raise UsageError(f"the decision date {when} is in the future", option="--on")
    _registered_rule(store_root, rule)
    listing = _listing_in_force(store_root, rule, patient_id, when)
    row = pa.Table.from_pylist([{"patient_id": patient_id, "rule": rule, "decision": value, "date": when,
                                 "practice": listing.practice_of[patient_id], "run_id": None,
                                 "reviewer": reviewer, "note": note}], schema=decisions.INPUT_SCHEMA)
    batch, _, _ = decisions.append(store_root, row, one_per_day=True)
    return batch is not None


def withdraw_decision(store_root: str | Path, *, rule: str, patient_id: str, reviewer: str | None = None,
                      on: dt.date | None = None, note: str | None = None) -> bool:
    """Withdraw the patient's decision on ``rule``'s list: a ``withdrawn`` row is appended to
    the review log (who, when, why), so the history is kept, and from then on rules'
    ``reviewed()`` and ``review show`` no longer see any decision recorded before it for the
    patient and rule (store/decisions.py, ``in_force``). True if a decision was withdrawn,
    False if none was in force (nothing recorded). UsageError for a rule no run listed, a
    patient it never listed, or a date in the future."""
    open_any(store_root)  # a store, sharded or not: a sharded one's log is at its root
    today = dt.date.today()
    when = on or today
    if when > today:
        raise UsageError(f"the withdrawal date {when} is in the future", option="--on")
    _registered_rule(store_root, rule)
    listing = _listing_in_force(store_root, rule, patient_id, when)
    row = pa.Table.from_pylist([{"patient_id": patient_id, "rule": rule, "decision": decisions.WITHDRAWN,
                                 "date": when, "practice": listing.practice_of[patient_id], "run_id": None,
                                 "reviewer": reviewer, "note": note}], schema=decisions.INPUT_SCHEMA)
    batch, _, _ = decisions.append(store_root, row, one_per_day=True)
    return batch is not None
