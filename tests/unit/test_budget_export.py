"""The BI export: flat tables with fixed columns, CSV with a BOM, ISO dates and neutralised
cells, and the record-level tagged activity kept apart and marked."""
from __future__ import annotations

import csv
import io
import json

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from budget_statement_data import PSEUDONYMS, budget_folder
from casefind.budgets.export import KEYS, TABLES, export_for_bi
from casefind.budgets.statement_folder import BudgetFolderError
from casefind.errors import UsageError

AGGREGATE = ("monthly", "tariffs", "movement", "shadow", "simulation", "outcomes", "summary")


@pytest.fixture
def folder(tmp_path):
    return budget_folder(tmp_path / "run")


def _csv(path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), path  # UTF-8 BOM, for Excel
    return list(csv.DictReader(io.StringIO(raw[3:].decode("utf-8"))))


def test_parquet_tables_have_the_stated_columns_and_types(folder, tmp_path):
    manifest = export_for_bi(folder, tmp_path / "bi")
    assert [t["table"] for t in manifest["tables"]] == [*AGGREGATE, "tagged_activity"]
    for name in AGGREGATE:
        t = pq.read_table(tmp_path / "bi" / f"{name}.parquet")
        assert t.schema.names == [n for n, _ in KEYS + TABLES[name]], name
        assert t.schema.types == [ty for _, ty in KEYS + TABLES[name]], name
        assert set(t.column("budget_year").to_pylist()) == {"2026-27"}
        assert t.schema.metadata[b"casefind.record_level"] == b"no"
    monthly = pq.read_table(tmp_path / "bi" / "monthly.parquet")
    assert monthly.num_rows == pq.read_table(folder / "monthly.parquet").num_rows
    movement = pq.read_table(tmp_path / "bi" / "movement.parquet").to_pylist()
    assert movement[0]["month_start"].isoformat() == "2026-04-01"
    summary = pq.read_table(tmp_path / "bi" / "summary.parquet").to_pylist()[0]
    assert summary["people_start"] == 300 and summary["provider_share"] == -2345.25
    assert summary["as_of"].isoformat() == "2026-10-31"


def test_record_level_data_is_apart_and_marked(folder, tmp_path):
    manifest = export_for_bi(folder, tmp_path / "bi")
    entry = manifest["tables"][-1]
    assert entry["file"] == "record_level/tagged_activity.parquet"
    assert entry["record_level"] == "pseudonymised"
    t = pq.read_table(tmp_path / "bi" / entry["file"])
    assert t.schema.metadata[b"casefind.record_level"] == b"pseudonymised"
    assert set(t.column("patient_id").to_pylist()) <= set(PSEUDONYMS)
    assert json.loads((tmp_path / "bi" / "export.json").read_text()) == manifest
    for name in AGGREGATE:  # no pseudonym in an aggregate table
        text = str(pq.read_table(tmp_path / "bi" / f"{name}.parquet").to_pylist())
        assert not any(p in text for p in PSEUDONYMS), name


def test_records_can_be_left_out(folder, tmp_path):
    manifest = export_for_bi(folder, tmp_path / "bi", "csv", records=False)
    assert "tagged_activity" not in [t["table"] for t in manifest["tables"]]
    assert not (tmp_path / "bi" / "record_level").exists()


def test_csv_round_trip_bom_iso_dates_and_neutralised_cells(folder, tmp_path):
    export_for_bi(folder, tmp_path / "bi", "csv")
    monthly = _csv(tmp_path / "bi" / "monthly.csv")
    assert list(monthly[0]) == [n for n, _ in KEYS + TABLES["monthly"]]
    assert monthly[0]["month_start"] == "2026-04-01"
    assert monthly[0]["complete"] == "true"
    negative = [r for r in monthly if r["variance"].startswith("-")]
    assert negative, "the fixture has overspent months"  # a plain negative number is not neutralised
    assert all(not r["variance"].startswith("'") for r in monthly)
    tariffs = {r["category"]: r for r in _csv(tmp_path / "bi" / "tariffs.csv")}
    assert tariffs["3_mental"]["label"] == "'=HYPERLINK(\"x\") mental health"  # a formula, neutralised
    assert tariffs["0_none"]["merged_into"] == ""
    tagged = _csv(tmp_path / "bi" / "record_level" / "tagged_activity.csv")
    assert tagged[1]["provider_code"] == "'=cmd|' /C calc'!A0"
    assert tagged[0]["start_date"] == "2026-05-02"
    localities = {r["unit_code"]: r["unit_name"] for r in monthly if r["level"] == "locality"}
    assert localities["L2"].startswith("<script>")  # HTML is no risk in a CSV: kept as it is


def test_simulation_is_left_out_when_not_run(tmp_path):
    manifest = export_for_bi(budget_folder(tmp_path / "run", simulation=False), tmp_path / "bi", "csv")
    assert "simulation" not in [t["table"] for t in manifest["tables"]]


def test_bad_format_and_bad_target(folder, tmp_path):
    with pytest.raises(UsageError, match="--format"):
        export_for_bi(folder, tmp_path / "bi", "xlsx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        export_for_bi(folder, tmp_path / "file")


def test_a_bad_date_in_the_statement_is_a_clear_error(tmp_path):
    folder = budget_folder(tmp_path / "run", as_of="last Tuesday")
    with pytest.raises(BudgetFolderError, match="not a date"):
        export_for_bi(folder, tmp_path / "bi")


def test_export_rewrites_files_in_place(folder, tmp_path):
    export_for_bi(folder, tmp_path / "bi", "csv")
    export_for_bi(folder, tmp_path / "bi", "csv")
    leftovers = [p.name for p in (tmp_path / "bi").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert pacsv.read_csv(tmp_path / "bi" / "shadow.csv").num_rows == 6


def test_lists_become_lines_and_missing_dates_stay_empty(tmp_path):
    outcomes = [{"kpi": "k", "title": "T", "target": 1, "actual": 2, "met": True, "adjustment": 10,
                 "working": ["line one", "line two"]}]
    folder = budget_folder(tmp_path / "run", outcomes=outcomes, year_start=None, simulation=False)
    export_for_bi(folder, tmp_path / "bi")
    row = pq.read_table(tmp_path / "bi" / "outcomes.parquet").to_pylist()[0]
    assert row["working"] == "line one\nline two" and row["met"] is True and row["adjustment"] == 10.0
    assert pq.read_table(tmp_path / "bi" / "summary.parquet").to_pylist()[0]["year_start"] is None
