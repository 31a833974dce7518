"""The practice list as an Excel workbook, and reading one back for ``casefind review import``.

For practices that work in Excel rather than CSV: the first sheet holds the instructions
(practice_file.instructions), the second ("List") the list, with the same columns and
titles as the practice's CSV. The Decision column is a drop-down of the allowed values
(data validation: Excel refuses anything else), Decided on is formatted as a date, dates
are real dates, the header row is frozen and columns are sized to their content.

Workbooks are written with XlsxWriter (a run writes one per practice, so its speed is the
run's) and read back with openpyxl. Every text cell is written as a string, never as a
formula, and one that starts "=", "+", "-" or "@" also gets Excel's quote prefix (as typing
' before it does), so it stays text when a user edits the cell.
"""
from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

from casefind.lists.practice_file import (
    DECISION_VALUES,
    Cells,
    ListAbout,
    import_name,
    instructions,
    title_of,
)
from casefind.outputs import write_atomic

LIST_SHEET = "List"
INSTRUCTIONS_SHEET = "Instructions"
DATE_FORMAT = "DD/MM/YYYY"  # as Excel (UK) shows a date; the stored value is a date either way
MAX_WIDTH = 60


def write_practice_xlsx(path: Path, cells: Cells, about: ListAbout, practice: str) -> Path:
    """One practice's list as a workbook beside its CSV, written whole or not at all."""
    lines = [line.removeprefix("# ") for line in instructions(about, practice, len(cells.rows))]
    sheet = ListSheet([title_of(n) for n in cells.names], cells.names, cells.rows)
    return write_atomic(path, lambda tmp: _write_workbook(tmp, lines, sheet))


# --- the named workbook: the run's workbook with the practice's patients by name ---------

IG_WARNING = "Contains patient identifiable data - handle under your practice's IG policy"
NAMED_TITLES = ("NHS number", "Name", "Date of birth", "Age today")  # the rule's own Age is as of the list


def named_workbook(source: Path, people: dict[str, tuple], practice: str) -> tuple[bytes, int]:
    """(the workbook's bytes, its rows): the run's own workbook for ``practice`` (``source``,
    pseudonymised) with NHS number, name, date of birth and age after the pseudonym, from
    ``people`` (pseudonym → those four values, from ``casefind.reidentify`` only), and the
    IG warning above the list, at the top of the instructions and in the printed page
    header. The Decision drop-down is as in the run's; ``review import`` reads it back by
    the pseudonym and ignores the added columns."""
    lines, header, rows = _run_workbook(source)
    at = header.index("Patient ID (pseudonymised)") + 1
    titles = header[:at] + list(NAMED_TITLES) + header[at:]
    named_rows = [r[:at] + list(people.get(str(r[at - 1]), ("", "", None, None))) + r[at:] for r in rows]
    sheet = ListSheet(titles, [import_name(t) or t for t in titles], named_rows, warning=IG_WARNING)
    buf = io.BytesIO()
    _write_workbook(buf, [f"{IG_WARNING}. Practice {practice}."] + lines, sheet)
    return buf.getvalue(), len(named_rows)


@dataclass(frozen=True)
class ListSheet:
    """What the list sheet shows: the titles, the machine names that say how a column is
    shaped (``decision`` gets the drop-down, ``decided_on`` and ``Date of birth`` a date
    format), the rows as typed values, and a warning line above the header (and in the
    printed page header) when the workbook names patients."""
    titles: list[str]
    names: list[str]
    rows: list[list]
    warning: str | None = None


def _write_workbook(target, lines: list[str], sheet: ListSheet) -> None:
    """Instructions first, then the list (XlsxWriter: about five times faster than openpyxl
    for a run's 100+ practice workbooks; openpyxl still reads them back)."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(target, {"in_memory": True, "nan_inf_to_errors": True})  # cells by write_string etc.
    try:
        fmt = _Formats(wb)
        guide = wb.add_worksheet(INSTRUCTIONS_SHEET)
        guide.set_column(0, 0, 120)
        for i, line in enumerate(lines):
            _text(guide, i, 0, line, fmt, wrap=True, warn=sheet.warning is not None and i == 0)
        listing = wb.add_worksheet(LIST_SHEET)
        _list_sheet(listing, sheet, fmt)
        if sheet.warning:
            for ws in (guide, listing):
                ws.set_header("&C" + sheet.warning.replace("&", "&&"))
    finally:
        wb.close()


def _list_sheet(ws, sheet: ListSheet, fmt: _Formats) -> None:
    """Frozen header, widths to content, the Decision drop-down and a date format for
    Decided on (and Date of birth)."""
    top = 0
    if sheet.warning:
        _text(ws, 0, 0, sheet.warning, fmt, warn=True)
        top = 1
    ws.freeze_panes(top + 1, 0)
    for j, title in enumerate(sheet.titles):
        _text(ws, top, j, title, fmt, bold=True)
    dated = {j for j, n in enumerate(sheet.names) if n in DATED}
    for i, row in enumerate(sheet.rows, start=top + 1):
        for j, value in enumerate(row):
            _put(ws, i, j, value, fmt, dated=j in dated)
    first, last = top + 1, max(len(sheet.rows) + top, top + 1)
    for j, name in enumerate(sheet.names):
        longest = max([len(sheet.titles[j])] + [len(_shown(r[j])) for r in sheet.rows[:200]])
        ws.set_column(j, j, min(max(longest + 2, 10), MAX_WIDTH))
        if name == "decision":
            ws.data_validation(first, j, last, j, {
                "validate": "list", "source": list(DECISION_VALUES), "ignore_blank": True, "error_type": "stop",
                "error_title": "Decision",
                "error_message": "Choose " + ", ".join(DECISION_VALUES) + ", or leave it blank"})
        if j in dated:
            for i in range(len(sheet.rows) + top + 1, last + 1):
                ws.write_blank(i, j, None, fmt.get(date=True))


DATED = ("decided_on", "Date of birth")


class _Formats:
    """One XlsxWriter format per combination used (a workbook holds each style once)."""

    def __init__(self, wb):
        self.wb, self.made = wb, {}

    def get(self, *, bold=False, wrap=False, warn=False, quote=False, date=False):
        key = (bold, wrap, warn, quote, date)
        if key not in self.made:
            props = {"bold": bold or warn, "text_wrap": wrap, "quote_prefix": quote}
            if wrap:
                props["valign"] = "top"
            if warn:
                props["font_color"] = "#C00000"
            if date:
                props["num_format"] = DATE_FORMAT
            self.made[key] = self.wb.add_format({k: v for k, v in props.items() if v})
        return self.made[key]


def _text(ws, i: int, j: int, value: str, fmt: _Formats, **style) -> None:
    """A text cell that is text whatever it starts with (never a formula)."""
    quote = value[:1] in ("=", "+", "-", "@")
    if quote or style:
        ws.write_string(i, j, value, fmt.get(quote=quote, **style))
    else:
        ws.write_string(i, j, value)


def _put(ws, i: int, j: int, value, fmt: _Formats, *, dated: bool) -> None:
    if value is None or value == "":  # an empty text is a blank cell, as Excel keeps it
        if dated:
            ws.write_blank(i, j, None, fmt.get(date=True))
    elif isinstance(value, str):
        _text(ws, i, j, value, fmt)
    elif isinstance(value, dt.date) and (value.year, value.month) < (1900, 3):
        _text(ws, i, j, value.isoformat(), fmt)  # before Excel's calendar (and its 1900 leap day): as text
    elif isinstance(value, dt.date):
        ws.write_datetime(i, j, value, fmt.get(date=True))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ws.write_number(i, j, value)
    else:
        _text(ws, i, j, str(value), fmt)


def _run_workbook(source: Path) -> tuple[list[str], list[str], list[list]]:
    """(instruction lines, list titles, list rows as typed values) of a run's workbook."""
    from openpyxl import load_workbook

    wb = load_workbook(source, read_only=True, data_only=True)
    try:
        lines = [str(r[0]) for r in wb[INSTRUCTIONS_SHEET].iter_rows(values_only=True) if r and r[0] is not None]
        values = [list(r) for r in wb[LIST_SHEET].iter_rows(values_only=True)]
    finally:
        wb.close()
    header = ["" if v is None else str(v) for v in values[0]]
    rows = [[_typed(v) for v in r] for r in values[1:] if any(v is not None for v in r)]
    return lines, header, rows


def _typed(value):
    """A value read back from a workbook as the run wrote it: a date stays a date."""
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date()
    return value


def _shown(value) -> str:
    return value.strftime("%d/%m/%Y") if isinstance(value, dt.date) else "" if value is None else str(value)


# --- reading a workbook back --------------------------------------------------------------

def read_workbook(path: Path) -> tuple[list[str | None], list[tuple[int, list[str | None]]]]:
    """(the list sheet's header as machine names, [(row number, text cells)]) from a
    workbook: the "List" sheet, else the first sheet that has the list's key columns; rows
    above the header are skipped. Dates become YYYY-MM-DD, whole numbers lose their ".0".
    ValueError if the file is not a workbook or no sheet holds a list."""
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many kinds for a file that is not a workbook
        raise ValueError(f"not an Excel workbook casefind can read ({type(e).__name__})") from None
    try:
        sheets = sorted(wb.worksheets, key=lambda s: s.title != LIST_SHEET)
        for sheet in sheets:
            rows = [(i, [_as_text(v) for v in r]) for i, r in enumerate(sheet.iter_rows(values_only=True), start=1)]
            for k, (_, cells) in enumerate(rows):
                header = [import_name(c) if c else None for c in cells]
                if {"run_id", "patient_id"} <= set(header):
                    return header, rows[k + 1:]
    finally:
        wb.close()
    raise ValueError(f"no sheet has the list's columns (a '{LIST_SHEET}' sheet written by `casefind run`)")


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None
