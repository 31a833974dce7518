"""casefind report end to end with the Making Data Count options: a fixed baseline, a re-base,
Spiegelhalter's overdispersion option and --export of the pack's SPC data; mistakes in the
options are usage errors (exit 2), never tracebacks."""
from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from casefind.reports.pack_export import EXPORT_SCHEMA
from casefind_testdata import cli, synthetic_store

TRIPLE_AIM = Path(__file__).parents[2] / "rules" / "kpis" / "triple_aim.yml"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    store = synthetic_store(root, 1500, 11)
    r = cli("kpi", TRIPLE_AIM, "--store", store, "--from", "2026-06", "--to", "2026-10", "--history", root / "h.duckdb")
    assert r.exit_code == 0, r.output
    return root, store


def test_report_with_baseline_rebase_and_export(project):
    root, store = project
    r = cli("report", "--store", store, "--history", root / "h.duckdb", "--period", "2026-10",
            "--out", root / "pack.html", "--baseline", "3", "--rebase", "emergency_admissions_month=2026-08",
            "--overdispersion", "--export", root / "pack.csv", "--json")
    assert r.exit_code == 0, r.output
    html = (root / "pack.html").read_text(encoding="utf-8")
    assert "Re-based at 2026-08" in html and "then held" in html and "Disclosure control" in html
    exported = pacsv.read_csv(root / "pack.csv")
    assert exported.column_names == EXPORT_SCHEMA.names and exported.num_rows > 0
    assert '"exported"' in r.output and not any(c.startswith("exact") for c in exported.column_names)
    assert set(exported.column("chart").to_pylist()) <= {"xmr", "run"}


@pytest.mark.parametrize("args, message", [
    (("--rebase", "no_such_kpi=2026-08"), "no KPI 'no_such_kpi'"),
    (("--rebase", "emergency_admissions_month"), "write KPI=YYYY-MM"),
    (("--rebase", "emergency_admissions_month=2026-13"), "--rebase"),
    (("--baseline", "1"), "--baseline"),
    (("--export", "pack.xlsx"), "write .csv or .parquet"),
])
def test_bad_options_are_usage_errors(project, args, message):
    root, store = project
    r = cli("report", "--store", store, "--history", root / "h.duckdb", "--period", "2026-10",
            "--out", root / "bad.html", *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_the_disclosure_policy_comes_from_the_run_log():
    import pyarrow as pa

    from casefind.cli import _disclosure_of

    runs = pa.table({"run_id": ["a", "b", "c"], "disclosure": ['{"round_to": 5}', None, '{"round_to": 10}']})
    assert _disclosure_of(runs, ["a", "b"]) == ['{"round_to": 5}']
    assert _disclosure_of(runs.drop(["disclosure"]), ["a"]) == []  # a run log from before the column
