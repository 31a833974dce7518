"""The practice list as an Excel workbook, and reading one back for ``casefind review import``.

For practices that work in Excel rather than CSV: the first sheet holds the instructions
(practice_file.instructions), the second ("List") the list, with the same columns and
titles as the practice's CSV. The Decision column is a drop-down of the allowed values
(data validation: Excel refuses anything else), Decided on is formatted as a date, dates
are real dates, the header row is frozen and columns are sized to their content.

Every text cell is written as text, never as a formula: openpyxl would store a value
starting "=" as a formula, so each text cell is typed as a string and given Excel's quote
prefix (as typing ' before it does), which also keeps "+", "-" and "@" values text when a
user edits the cell.
"""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pyarrow as pa

from casefind.lists.practice_file import (
    DECISION_VALUES,
    ListAbout,
    cell_values,
    import_name,
    instructions,
    title_of,
)
from casefind.outputs import write_atomic

LIST_SHEET = "List"
INSTRUCTIONS_SHEET = "Instructions"
DATE_FORMAT = "DD/MM/YYYY"  # as Excel (UK) shows a date; the stored value is a date either way
MAX_WIDTH = 60
VALIDATED_ROWS = 1000  # Decision drop-down rows beyond the list's last: room for none, the list is fixed


def write_practice_xlsx(path: Path, table: pa.Table, about: ListAbout, practice: str,
                        places: dict[str, int]) -> Path:
    """One practice's list as a workbook beside its CSV, written whole or not at all."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment

    wb = Workbook()
    guide = wb.active
    guide.title = INSTRUCTIONS_SHEET
    for i, line in enumerate(instructions(about, practice, table.num_rows), start=1):
        _text(guide.cell(i, 1), line.removeprefix("# "))
        guide.cell(i, 1).alignment = Alignment(wrap_text=True, vertical="top")
    guide.column_dimensions["A"].width = 120
    sheet = wb.create_sheet(LIST_SHEET)
    names, rows = cell_values(table, places)
    for j, name in enumerate(names, start=1):
        _text(sheet.cell(1, j), title_of(name))
    for i, row in enumerate(rows, start=2):
        for j, value in enumerate(row, start=1):
            _put(sheet.cell(i, j), value)
    _shape(sheet, names, rows)
    return write_atomic(path, lambda tmp: wb.save(tmp))


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
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    lines, header, rows = _run_workbook(source)
    at = header.index("Patient ID (pseudonymised)") + 1
    wb = Workbook()
    guide = wb.active
    guide.title = INSTRUCTIONS_SHEET
    for i, line in enumerate([f"{IG_WARNING}. Practice {practice}."] + lines, start=1):
        _text(guide.cell(i, 1), line)
        guide.cell(i, 1).alignment = Alignment(wrap_text=True, vertical="top")
    guide.cell(1, 1).font = Font(bold=True, color="C00000")
    guide.column_dimensions["A"].width = 120
    sheet = wb.create_sheet(LIST_SHEET)
    _text(sheet.cell(1, 1), IG_WARNING)
    sheet.cell(1, 1).font = Font(bold=True, color="C00000")
    titles = header[:at] + list(NAMED_TITLES) + header[at:]
    for j, title in enumerate(titles, start=1):
        _text(sheet.cell(2, j), title)
    named_rows = [r[:at] + list(people.get(str(r[at - 1]), ("", "", None, None))) + r[at:] for r in rows]
    for i, row in enumerate(named_rows, start=3):
        for j, value in enumerate(row, start=1):
            _put(sheet.cell(i, j), value)
    for sh in (guide, sheet):
        sh.oddHeader.center.text = IG_WARNING
        sh.evenHeader.center.text = IG_WARNING
    _shape(sheet, [import_name(t) or t for t in titles], named_rows, header_row=2)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue(), len(named_rows)


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


def _text(cell, value: str) -> None:
    """A text cell that is text whatever it starts with (never a formula)."""
    cell.value = value
    cell.data_type = "s"
    if value[:1] in ("=", "+", "-", "@"):
        cell.quotePrefix = True


def _put(cell, value) -> None:
    if value is None:
        return
    if isinstance(value, str):
        _text(cell, value)
    elif isinstance(value, dt.date):
        cell.value = value
        cell.number_format = DATE_FORMAT
    else:
        cell.value = value


def _shape(sheet, names: list[str], rows: list[list], header_row: int = 1) -> None:
    """Frozen header, widths to content, the Decision drop-down and a date format for
    Decided on (and Date of birth)."""
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    sheet.freeze_panes = f"A{header_row + 1}"
    for cell in sheet[header_row]:
        cell.font = Font(bold=True)
    first, last = header_row + 1, max(len(rows) + header_row, header_row + 1)
    for j, name in enumerate(names, start=1):
        letter = get_column_letter(j)
        longest = max([len(str(sheet.cell(header_row, j).value))] + [len(_shown(r[j - 1])) for r in rows[:200]])
        sheet.column_dimensions[letter].width = min(max(longest + 2, 10), MAX_WIDTH)
        if name == "decision":
            dv = DataValidation(type="list", formula1='"' + ",".join(DECISION_VALUES) + '"', allow_blank=True,
                                showErrorMessage=True, errorTitle="Decision",
                                error="Choose " + ", ".join(DECISION_VALUES) + ", or leave it blank")
            sheet.add_data_validation(dv)
            dv.add(f"{letter}{first}:{letter}{last}")
        if name in ("decided_on", "Date of birth"):
            for i in range(first, last + 1):
                sheet.cell(i, j).number_format = DATE_FORMAT


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
