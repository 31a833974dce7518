"""The practice list as an .xlsx (lists/xlsx.py): instructions first, the list with a
Decision drop-down, real dates, a frozen header, text never a formula; and the round trip:
a workbook filled in as Excel would (openpyxl, dates as dates) imports like the CSV."""
from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from openpyxl import load_workbook

from casefind.lists.practice_file import DECISION_VALUES, Cells, ListAbout
from casefind.lists.review import ReviewImportError, import_reviews
from casefind.lists.xlsx import LIST_SHEET, write_practice_xlsx
from casefind.store import decisions
from casefind_testdata import cli, synthetic_store

RULES = Path(__file__).parents[2] / "rules"
TODAY = dt.date(2026, 12, 1)
ABOUT = ListAbout("frail", "Frailty", "1.1.0", dt.date(2026, 10, 31), "0123456789ab")
HOSTILE = ['=HYPERLINK("http://evil","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"]


def _table(reasons: list[str]) -> pa.Table:
    n = len(reasons)
    return pa.table({"run_id": ["0123456789ab"] * n, "rule": ["frail"] * n,
                     "as_of": pa.array([dt.date(2026, 10, 31)] * n, pa.date32()), "practice": ["Z1"] * n,
                     "locality": ["L1"] * n, "patient_id": [f"p{i}" for i in range(n)], "rank": list(range(1, n + 1)),
                     "efi": [0.4444444444444444] * n, "reasons": reasons,
                     **{c: pa.nulls(n, pa.string()) for c in ("decision", "decided_on", "reviewer", "note")}})


def test_the_workbook_has_instructions_a_drop_down_dates_and_a_frozen_header(tmp_path):
    path = write_practice_xlsx(tmp_path / "Z1.xlsx", Cells.of(_table(["a", "b"]), {"efi": 2}), ABOUT, "Z1")
    wb = load_workbook(path)
    assert wb.sheetnames == ["Instructions", LIST_SHEET]
    guide = " ".join(str(c.value) for c in wb["Instructions"]["A"])
    assert all(v in guide for v in DECISION_VALUES) and "2 patients listed for practice Z1" in guide
    sheet = wb[LIST_SHEET]
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["Decision", "Decided on", "Reviewer", "Note"] and "Locality" not in header
    assert sheet.freeze_panes == "A2"
    (dv,) = sheet.data_validations.dataValidation
    assert dv.type == "list" and dv.formula1 == '"' + ",".join(DECISION_VALUES) + '"'
    assert "A2" in dv.sqref and "A3" in dv.sqref
    as_of = sheet.cell(2, header.index("List as of") + 1).value
    assert isinstance(as_of, dt.datetime) and as_of.date() == dt.date(2026, 10, 31)
    assert sheet.cell(2, header.index("eFI") + 1).value == 0.44
    assert sheet.column_dimensions["G"].width >= 10


def test_a_formula_in_a_value_is_stored_as_text(tmp_path):
    path = write_practice_xlsx(tmp_path / "Z1.xlsx", Cells.of(_table(HOSTILE), {}), ABOUT, "Z1")
    with zipfile.ZipFile(path) as z:
        sheets = [z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/")]
    assert not any("<f>" in s or "<f " in s for s in sheets)  # no formula anywhere
    sheet = load_workbook(path)[LIST_SHEET]
    column = [c.value for c in sheet[1]].index("Why listed") + 1
    cells = [sheet.cell(i, column) for i in range(2, 2 + len(HOSTILE))]
    assert [c.value for c in cells] == HOSTILE
    assert all(c.data_type == "s" and c.quotePrefix for c in cells)


def test_a_date_excel_cannot_hold_is_written_as_text_and_odd_text_survives(tmp_path):
    """Excel's dates start in 1900 (with a leap day that never was): an earlier date is
    written as its ISO text rather than read back as another day."""
    t = _table(["a\x01b", "c"]).append_column("born", pa.array([dt.date(1850, 1, 1), dt.date(1900, 3, 1)]))
    sheet = load_workbook(write_practice_xlsx(tmp_path / "Z1.xlsx", Cells.of(t, {}), ABOUT, "Z1"))[LIST_SHEET]
    header = [c.value for c in sheet[1]]
    born = header.index("Born") + 1
    assert sheet.cell(2, born).value == "1850-01-01" and sheet.cell(2, born).data_type == "s"
    assert sheet.cell(3, born).value == dt.datetime(1900, 3, 1)
    assert sheet.cell(2, header.index("Why listed") + 1).value.startswith("a")  # a control character: no failure


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    root = tmp_path_factory.mktemp("xlsx")
    store = synthetic_store(root, 4000, 21)
    assert cli("run", RULES / "frail.yml", "--store", store, "--out", root / "lists").exit_code == 0
    folder = root / "lists" / "frail-2026-10-31" / "practices"
    return store, next(p for p in sorted(folder.glob("*.xlsx")) if load_workbook(p)[LIST_SHEET].max_row > 4)


@pytest.fixture
def store(listed, tmp_path):
    shutil.copytree(listed[0], tmp_path / "store", symlinks=True)
    return tmp_path / "store"


def _fill(src: Path, dst: Path, values: dict[int, tuple]) -> list[str]:
    """Fill in rows as Excel would: a value chosen from the drop-down, a date typed as a date."""
    wb = load_workbook(src)
    sheet = wb[LIST_SHEET]
    header = [c.value for c in sheet[1]]
    for row, (decision, when, reviewer) in values.items():
        sheet.cell(row, 1).value = decision
        sheet.cell(row, 2).value = when
        sheet.cell(row, 3).value = reviewer
    wb.save(dst)
    pid = header.index("Patient ID (pseudonymised)") + 1
    return [sheet.cell(r, pid).value for r in sorted(values)]


def test_a_filled_in_workbook_imports(listed, store, tmp_path):
    _, workbook = listed
    filled = tmp_path / workbook.name
    pids = _fill(workbook, filled, {2: ("declined", dt.datetime(2026, 11, 3), "Dr A"),
                                    3: ("accepted", dt.datetime(2026, 11, 4), None), 4: ("already_known", None, None)})
    summary = import_reviews(filled, store, today=TODAY, decided_on=dt.date(2026, 11, 9), reviewer="Dr B")
    assert summary.encoding == "Excel workbook"
    assert summary.decisions_added == {"declined": 1, "accepted": 1, "already_known": 1}
    got = {(r["patient_id"], r["decision"], r["date"], r["reviewer"]) for r in decisions.read_log(store).to_pylist()
           if r["decision"] != "listed"}
    assert got == {(pids[0], "declined", dt.date(2026, 11, 3), "Dr A"),
                   (pids[1], "accepted", dt.date(2026, 11, 4), "Dr B"),
                   (pids[2], "already_known", dt.date(2026, 11, 9), "Dr B")}
    again = import_reviews(filled, store, today=TODAY, decided_on=dt.date(2026, 11, 9))
    assert again.batch is None  # nothing doubled


def test_a_workbook_with_bad_rows_records_nothing(listed, store, tmp_path):
    _, workbook = listed
    filled = tmp_path / workbook.name
    _fill(workbook, filled, {2: ("maybe", None, None), 3: ("declined", dt.datetime(2026, 1, 1), None)})
    with pytest.raises(ReviewImportError) as e:
        import_reviews(filled, store, today=TODAY)
    text = str(e.value)
    assert "row 2: decision 'maybe'" in text and "row 3: decided_on 2026-01-01 is before" in text
    assert "None" not in text and decisions.batches(store) == []


def test_a_file_that_is_not_a_workbook_is_refused(store, tmp_path):
    bad = tmp_path / "Z1.xlsx"
    bad.write_text("not a zip")
    with pytest.raises(ReviewImportError, match="not an Excel workbook"):
        import_reviews(bad, store, today=TODAY)
