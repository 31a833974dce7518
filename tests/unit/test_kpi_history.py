"""The KPI history's schema grows without losing rows: older histories gain the new columns
in the writer's transaction and read back with nulls; the run log records the disclosure
policy; exports never carry the unrounded figures."""
from __future__ import annotations

import csv
import datetime as dt
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from casefind.kpis import history
from casefind.kpis.compute import RESULT_SCHEMA
from casefind.kpis.disclosure import EXACT_COLUMNS

# the results table and run log as casefind wrote them before basis, exact_* and disclosure
OLD_RESULTS = ("run_id VARCHAR, kpi_set VARCHAR, kpi VARCHAR, title VARCHAR, domain VARCHAR, kind VARCHAR, "
               "unit_label VARCHAR, multiplier DOUBLE, direction VARCHAR, target DOUBLE, period VARCHAR, "
               "period_start DATE, period_end DATE, level VARCHAR, unit_code VARCHAR, unit_name VARCHAR, "
               "parent_code VARCHAR, breakdown VARCHAR, breakdown_value VARCHAR, numerator DOUBLE, "
               "denominator DOUBLE, value DOUBLE, lower DOUBLE, upper DOUBLE, standardised BOOLEAN, suppressed BOOLEAN")
OLD_RUNS = ("log_id VARCHAR, run_id VARCHAR, kpi_set VARCHAR, kpi_file VARCHAR, kpi_sha256 VARCHAR, "
            "store_snapshot VARCHAR, review_log VARCHAR, periods VARCHAR, engine VARCHAR, casefind_version VARCHAR, "
            "started TIMESTAMPTZ, finished TIMESTAMPTZ, status VARCHAR, rows BIGINT, message VARCHAR")


def _results(period: str, numerator: float, exact: float | None = None, extra: dict | None = None) -> pa.Table:
    row = {f.name: None for f in RESULT_SCHEMA}
    row.update(run_id="r1", kpi_set="k", kpi="admissions", title="Admissions", domain="cost", kind="rate",
               unit_label="per 1,000", multiplier=1000.0, direction="lower_is_better", period=period,
               period_start=dt.date(2026, 10, 1), period_end=dt.date(2026, 10, 31), level="practice",
               unit_code="A", unit_name="A", parent_code="L", breakdown="", breakdown_value="",
               numerator=numerator, denominator=1000.0, value=numerator, lower=None, upper=None,
               standardised=False, suppressed=False)
    fields = list(RESULT_SCHEMA)
    if exact is not None:
        row.update({c: exact for c in EXACT_COLUMNS})
        fields += [pa.field(c, pa.float64()) for c in EXACT_COLUMNS if c not in RESULT_SCHEMA.names]
    for name, (kind, value) in (extra or {}).items():
        row[name] = value
        fields.append(pa.field(name, kind))
    schema = pa.schema(fields)
    return pa.table({f.name: pa.array([row[f.name]], f.type) for f in schema}, schema=schema)


def _run(period: str, disclosure: dict | None = None) -> dict:
    return {"run_id": "r1", "kpi_set": "k", "kpi_file": "k.yml", "kpi_sha256": "0" * 64, "store_snapshot": "s",
            "periods": [period], "engine": "native", "casefind_version": "test",
            "started": dt.datetime.now(dt.UTC), "disclosure": disclosure}


def _old_history(path):
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE kpi_results ({OLD_RESULTS})")
    con.execute(f"CREATE TABLE kpi_runs ({OLD_RUNS})")
    con.execute("INSERT INTO kpi_results (run_id, kpi_set, kpi, kind, multiplier, period, period_end, level, "
                "unit_code, breakdown, breakdown_value, numerator, denominator, value, standardised, suppressed) "
                "VALUES ('r0', 'k', 'admissions', 'rate', 1000, '2026-09', DATE '2026-09-30', 'practice', 'A', "
                "'', '', 45, 1000, 45, false, false)")
    con.execute("INSERT INTO kpi_runs (log_id, run_id, kpi_set, periods, started, status, rows) VALUES "
                "('old', 'r0', 'k', '[\"2026-09\"]', now(), 'ok', 1)")
    con.close()


def _names(path, table):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    finally:
        con.close()


def test_an_old_history_reads_with_nulls_in_the_new_columns(tmp_path):
    h = tmp_path / "h.duckdb"
    _old_history(h)
    table = history.read(h)
    assert table.schema == history.STORED_SCHEMA
    row = table.to_pylist()[0]
    assert row["numerator"] == 45 and all(row[c] is None for c in EXACT_COLUMNS)
    assert history.runs(h).to_pylist()[0]["disclosure"] is None


def test_writing_to_an_old_history_adds_the_columns_and_keeps_its_rows(tmp_path):
    h = tmp_path / "h.duckdb"
    _old_history(h)
    policy = {"suppress_below": 8, "round_to": 5, "source": "the default"}
    extra = {"cohorts": (pa.string(), "frail")} if "cohorts" not in RESULT_SCHEMA.names else {}
    extra["added_later"] = (pa.string(), "x")
    history.write(h, _results("2026-10", 50.0, exact=52.0, extra=extra), _run("2026-10", policy))
    assert set(EXACT_COLUMNS) | {"added_later"} <= set(_names(h, "kpi_results"))
    assert "disclosure" in _names(h, "kpi_runs")
    rows = {r["period"]: r for r in history.read(h).to_pylist()}
    assert rows["2026-09"]["numerator"] == 45 and rows["2026-09"]["exact_numerator"] is None
    assert rows["2026-10"]["numerator"] == 50 and rows["2026-10"]["exact_numerator"] == 52
    log = history.runs(h).to_pylist()
    assert [r["log_id"] for r in log] == ["old", log[1]["log_id"]] and log[0]["disclosure"] is None
    assert json.loads(log[1]["disclosure"]) == policy and log[1]["status"] == "ok"


def test_a_failed_write_adds_no_columns(tmp_path):
    h = tmp_path / "h.duckdb"
    _old_history(h)

    def crash():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        history.write(h, _results("2026-10", 50.0, exact=52.0), _run("2026-10"), before_commit=crash)
    assert not set(EXACT_COLUMNS) & set(_names(h, "kpi_results"))
    assert [r["numerator"] for r in history.read(h).to_pylist()] == [45]
    assert [r["status"] for r in history.runs(h).to_pylist()] == ["ok", "failed"]


def test_a_new_history_has_every_column_and_drop_is_logged(tmp_path):
    h = tmp_path / "h.duckdb"
    history.write(h, _results("2026-10", 50.0, exact=52.0), _run("2026-10"))
    assert _names(h, "kpi_results") == history.STORED_SCHEMA.names
    assert _names(h, "kpi_runs") == list(history.RUN_LOG_COLUMNS)
    assert history.drop_periods(h, "k", ["2026-10"]) == 1
    log = history.runs(h).to_pylist()
    assert log[-1]["status"] == "dropped" and log[-1]["rows"] == -1 and log[-1]["disclosure"] is None


def test_a_column_of_a_type_the_history_cannot_store_is_refused(tmp_path):
    t = _results("2026-10", 50.0, extra={"blob": (pa.binary(), b"x")})
    with pytest.raises(history.HistoryError, match="blob"):
        history.write(tmp_path / "h.duckdb", t, _run("2026-10"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_never_writes_the_exact_figures(tmp_path, suffix):
    h = tmp_path / "h.duckdb"
    history.write(h, _results("2026-10", 50.0, exact=52.0), _run("2026-10"))
    out = tmp_path / f"k{suffix}"
    assert history.export(h, out, "k", []) == 1
    if suffix == ".csv":
        rows = list(csv.DictReader(out.read_text(encoding="utf-8-sig").splitlines()))
        names, row = list(rows[0]), rows[0]
    else:
        names, row = pq.read_schema(out).names, pq.read_table(out).to_pylist()[0]
    assert "numerator" in names and not [n for n in names if n.startswith("exact_")]
    assert float(row["numerator"]) == 50 and "52" not in {str(v) for v in row.values()}
