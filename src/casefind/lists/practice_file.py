"""The list file a practice gets: what a GP reads and fills in, not what an analyst queries.

``casefind run`` writes ``list.parquet``/``list.csv`` with machine column names for
analysts, and for each practice of the store ``practices/<CODE>.csv`` (and ``.xlsx``, see
xlsx.py) shaped for a GP:

- the four columns the GP fills in come first (Decision, Decided on, Reviewer, Note), then
  the patient's rank, pseudonymised id, the reasons and evidence, the rule's output columns,
  and last the columns ``casefind review import`` checks each row against (Run, Rule, List
  as of, Practice);
- plain column titles (TITLES; ``review import`` reads them and the machine names alike);
- an instruction block above the header: lines starting ``#``, each one cell, naming the
  allowed decisions. Excel shows them as the first rows; ``review import`` skips every row
  above the header row (the first row holding the list's key columns), so they may be
  edited, padded with empty cells or deleted without harm. A separate README would be
  lost when the CSV is emailed on its own, so the instructions travel inside the file;
- numbers as published (``output: round:``; whole numbers without ".0"), true/false as
  yes/no, dates as YYYY-MM-DD (Excel (UK) shows and saves them as DD/MM/YYYY, which
  ``review import`` reads too);
- UTF-8 with a byte order mark, so Excel shows "£" as "£";
- a practice nobody is listed for still gets its file, saying so.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from casefind.outputs import safe_cell, write_atomic

DECISION_VALUES = ("accepted", "declined", "already_known")
DECISION_MEANINGS = {"accepted": "take on (refer, review, bring to the MDT)",
                     "declined": "not appropriate now",
                     "already_known": "already known to the team or on a caseload"}
FILL_IN = ("decision", "decided_on", "reviewer", "note")
KEYS = ("run_id", "rule", "as_of", "practice")  # last: what review import checks each row against
TITLES = {"decision": "Decision", "decided_on": "Decided on", "reviewer": "Reviewer", "note": "Note",
          "rank": "Rank", "patient_id": "Patient ID (pseudonymised)", "segment": "Segment",
          "reasons": "Why listed", "run_id": "Run", "rule": "Rule", "as_of": "List as of", "practice": "Practice"}
_LEFT_OUT = ("locality",)  # the practice's own locality: nothing to decide on
_WORDS = {"efi": "eFI", "ae": "A&E", "ltc": "LTC", "hfrs": "HFRS", "imd": "IMD", "bmi": "BMI", "nhs": "NHS"}


@dataclass(frozen=True)
class ListAbout:
    """What the instruction block says about the list."""

    rule: str
    title: str
    version: str
    as_of: dt.date
    run_id: str


def title_of(column: str) -> str:
    """A column's plain title: TITLES, else 'Meets: ...' / 'Evidence: ...' for a criterion's
    columns, else the feature name in words ("emergency_12m" → "Emergency, 12 months")."""
    if column in TITLES:
        return TITLES[column]
    kind, _, name = column.partition(":")
    if name and kind in ("include", "evidence"):
        return f"{'Meets' if kind == 'include' else 'Evidence'}: {_words(name)}"
    words = _words(column)
    return words if column.split("_")[0] in _WORDS else words[:1].upper() + words[1:]


def _words(name: str) -> str:
    out = []
    for word in name.split("_"):
        m = re.fullmatch(r"(\d+)([mdy])", word)
        if m:
            out.append(f"{'' if not out else ','} {m[1]} {dict(m='months', d='days', y='years')[m[2]]}".strip())
        else:
            out.append(_WORDS.get(word, word))
    return " ".join(out).replace(" ,", ",")


def columns(table: pa.Table) -> list[str]:
    """The machine names of the practice file's columns, in the order the GP sees them."""
    names = [c for c in table.column_names if c not in _LEFT_OUT and not c.startswith("exclude:")]
    front = [c for c in FILL_IN + ("rank", "patient_id", "reasons") if c in names]
    back = [c for c in KEYS if c in names]
    return front + [c for c in names if c not in front and c not in back] + back


def import_name(title: str) -> str | None:
    """The machine name a header cell stands for (its title or the name itself), else None."""
    text = " ".join(title.split())
    by_title = {t.casefold(): name for name, t in TITLES.items()}
    return text if text in TITLES else by_title.get(text.casefold())


@dataclass(frozen=True)
class Cells:
    """A list's cells as its practice files show them (column names in file order, rows of
    Python values): made once for the whole list, sliced per practice, shared by the CSV
    and the workbook."""
    names: list[str]
    rows: list[list]

    @classmethod
    def of(cls, table: pa.Table, places: dict[str, int]) -> Cells:
        """Numbers rounded as published, whole numbers without a fraction, true/false as
        yes/no; dates stay dates."""
        names = columns(table)
        cols = [[_value(v, places.get(c)) for v in table.column(c).to_pylist()] for c in names]
        return cls(names, [list(r) for r in zip(*cols)] if cols else [])

    def slice(self, start: int, stop: int) -> Cells:
        return Cells(self.names, self.rows[start:stop])


def _value(v, places: int | None):
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if places is not None:
            v = round(v, places)
        return int(v) if v.is_integer() and abs(v) < 2 ** 53 else v
    return v


def instructions(about: ListAbout, practice: str, listed: int) -> list[str]:
    """The lines above the header: what the list is, what to do, the allowed values."""
    who = (f"{listed} patient{'' if listed == 1 else 's'} listed for practice {practice}" if listed else
           f"Nobody from practice {practice} is on this list: there is nothing to review.")
    lines = [f"{about.title} (rule {about.rule} {about.version}), as of {about.as_of:%d/%m/%Y}: {who}",
             "What to do: review each patient and fill in the first four columns; leave Decision blank while "
             "undecided. Do not change the other columns: each row is checked against the list that was sent.",
             "Decision, one of: " + "; ".join(f"{v} = {DECISION_MEANINGS[v]}" for v in DECISION_VALUES) + ".",
             "Decided on: the day you decided, as DD/MM/YYYY or YYYY-MM-DD (blank: the day the file is imported). "
             "Reviewer: your name. Note: optional, a few words for the team.",
             "Save as CSV (or CSV UTF-8) and return the file; it is read with `casefind review import`. "
             f"Run {about.run_id}."]
    return [f"# {line}" for line in lines]


def csv_text(header: list[str], rows: list[list], preamble: list[str]) -> str:
    """The file's text: the instruction lines (one cell each), the header, the rows; every
    text cell spreadsheet-safe, dates as YYYY-MM-DD."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    for line in preamble:
        w.writerow([safe_cell(line)])
    w.writerow(header)
    for row in rows:
        w.writerow([_csv_cell(v) for v in row])
    return buf.getvalue()


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.date):
        return v.isoformat()
    return safe_cell(v) if isinstance(v, str) else str(v)


def write_practice_csv(path: Path, cells: Cells, about: ListAbout, practice: str) -> Path:
    """One practice's list as a GP's CSV (UTF-8 with BOM), written whole or not at all."""
    text = csv_text([title_of(c) for c in cells.names], cells.rows, instructions(about, practice, len(cells.rows)))
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8")))
