"""casefind evaluate on a hand-written population whose answer is worked out below, and its
errors and exit codes."""
from __future__ import annotations

import datetime as dt
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from casefind.cli import main
from casefind.cli_evaluate import command
from casefind_testdata import GOOD, N, cli, write_source

if "evaluate" not in main.commands:  # until cli.py registers it
    main.add_command(command)

EA = "emergency_admission"
PEOPLE = {
    "patients": [
        ("t1", "1950-01-01", "F", "Z00001", "2000-01-01", N, N, "3", N, N),
        ("t2", "1960-01-01", "M", "Z00001", "2000-01-01", N, N, "3", N, N),
        ("c1", "1951-01-01", "F", "Z00002", "2000-01-01", N, N, "3", N, N),
        ("c2", "1940-01-01", "F", "Z00001", "2000-01-01", N, N, "3", N, N),
        ("c3", "1961-06-01", "M", "Z00002", "2000-01-01", N, N, "3", N, N),
        ("c4", "1990-01-01", "M", "Z00001", "2000-01-01", N, N, "3", N, N),
    ],
    # t1's index month ends 2025-03-31: before (2024-09-30, 2025-03-31], after to 2025-09-30;
    # t2's ends 2025-04-30: before (2024-10-31, 2025-04-30], after to 2025-10-31
    "activity": [
        ("t1", "2024-10-15", "2024-10-17", EA, "3000", N, N, "home"),   # before
        ("t1", "2025-03-20", "2025-03-22", EA, "3000", N, N, "home"),   # before: in the index month
        ("t1", "2025-05-01", "2025-05-04", EA, "3000", N, N, "home"),   # after
        ("t1", "2025-10-05", "2025-10-06", EA, "3000", N, N, "home"),   # after the window
        ("c1", "2025-06-01", "2025-06-02", EA, "3000", N, N, "home"),   # after (t1's control)
        ("c2", "2025-01-01", "2025-01-09", EA, "3000", N, N, "home"),
        ("t2", "2025-02-01", "2025-02-02", EA, "3000", N, N, "home"),   # before
        ("c3", "2024-11-15", "2024-11-16", EA, "3000", N, N, "home"),   # before (t2's control)
        ("c3", "2025-07-01", "2025-07-03", EA, "3000", N, N, "home"),   # after
        ("c4", "2024-01-01", N, "gp", "42", N, N, N),                    # the data's first day
        ("c4", "2025-11-30", N, "gp", "42", N, N, N),                    # and its last
    ],
    "registers": [("t1", "case_management", "2025-03-10", N), ("t2", "case_management", "2025-04-20", N)],
}
# set differences: t1 (1 - 2) - (1 - 0) = -2; t2 (0 - 1) - (1 - 1) = -1
WANT = -1.5
HALF = stats.t.ppf(0.975, 1) * (2 ** 0.5 / 2) / 2 ** 0.5

SPEC = """\
evaluation: tiny
features:
  emergency_before: count(activity, setting == "emergency_admission", within=window)
group:
  {group}
  from: "2025-03-01"
  to: "2025-04-30"
window: 6
match:
  exact: [sex]
  method: nearest
  features: [age]
  caliper: null
outcomes:
  emergency: count(activity, setting == "emergency_admission", within=window)
  bed_days: sum(activity, setting == "emergency_admission", value=days_between(start_date, end_date), within=window)
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tables = {"practices": GOOD["practices"], **PEOPLE}
    r = cli("ingest", write_source(root / "src", tables), "--store", root / "store")
    assert r.exit_code == 0, r.output
    (root / "rules" / "evaluations").mkdir(parents=True)
    return root


def _spec(root, group="register: case_management", name="tiny.yml", text=SPEC):
    p = root / "rules" / "evaluations" / name
    p.write_text(text.format(group=group))
    return p


def _check_result(folder):
    eff = {r["outcome"]: r for r in pq.read_table(folder / "effects.parquet").to_pylist()}
    e = eff["emergency"]
    assert e["estimate"] == pytest.approx(WANT) and e["sets"] == 2
    assert (e["lower"], e["upper"]) == (pytest.approx(WANT - HALF), pytest.approx(WANT + HALF))
    assert (e["treated_before"], e["treated_after"], e["control_before"], e["control_after"]) == (1.5, 0.5, 0.5, 1.0)
    # bed days: t1 2+2 before, 3 after; t2 1 before; c1 1 after; c3 1 before, 2 after
    assert eff["bed_days"]["estimate"] == pytest.approx(((3 - 4) - (1 - 0) + (0 - 1) - (2 - 1)) / 2)
    m = pq.read_table(folder / "matches.parquet")
    pairs = set(zip(m.column("treated_patient_id").to_pylist(), m.column("control_patient_id").to_pylist()))
    assert pairs == {("t1", "c1"), ("t2", "c3")}
    assert m.column("index_month").to_pylist() == [dt.date(2025, 3, 31), dt.date(2025, 4, 30)]
    assert m.column("treated_before_emergency").to_pylist() == [2.0, 1.0]
    return eff


def test_evaluate_gives_the_worked_answer(tiny):
    out = tiny / "out"
    r = cli("evaluate", _spec(tiny), "--store", tiny / "store", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert set(s) == {"command", "evaluation", "run_id", "folder", "counts", "effects", "balance", "warnings",
                      "timings_s"}
    assert s["counts"]["matched"] == 2 and s["counts"]["treated_in_range"] == 2 and s["counts"]["unmatched"] == 0
    folder = out / "evaluate-tiny"
    _check_result(folder)
    bal = pq.read_table(folder / "balance.parquet").to_pylist()
    assert [(b["feature"], b["stage"]) for b in bal] == [("age", "before"), ("age", "after")]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"effects.parquet", "balance.parquet", "matches.parquet", "report.html"}
    assert manifest["matching"]["method"] == "nearest" and manifest["window_months"] == 6
    html = (folder / "report.html").read_text()
    assert "<script" not in html and not re.search(r"""(src|href)=["']?https?:""", html)
    assert "Balance" in html and "−1.500" in html and "<svg" in html
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nothing left half-written


def test_accepted_from_a_list_gives_the_same(tiny):
    from casefind.store import decisions

    rows = pa.Table.from_pylist([
        {"patient_id": p, "rule": "frail", "decision": "accepted", "date": d, "practice": "Z00001",
         "run_id": None, "reviewer": "dr", "note": None}
        for p, d in (("t1", dt.date(2025, 3, 10)), ("t2", dt.date(2025, 4, 20)))], schema=decisions.INPUT_SCHEMA)
    decisions.append(tiny / "store", rows)
    r = cli("evaluate", _spec(tiny, "accepted: frail", "listed.yml"), "--store", tiny / "store",
            "--out", tiny / "out2")
    assert r.exit_code == 0, r.output
    assert "2 of 2 treated people matched" in r.output and "emergency" in r.output
    _check_result(tiny / "out2" / "evaluate-tiny")
    again = cli("evaluate", tiny / "rules" / "evaluations" / "listed.yml", "--store", tiny / "store",
                "--out", tiny / "out2", "--json")  # replaces the folder whole
    assert again.exit_code == 0, again.output
    manifest = json.loads((tiny / "out2" / "evaluate-tiny" / "manifest.json").read_text())
    assert manifest["run_id"] == json.loads(again.stdout)["run_id"]
    assert [p.name for p in (tiny / "out2").iterdir()] == ["evaluate-tiny"]


def test_a_date_expression_by_name(tiny, monkeypatch):
    monkeypatch.chdir(tiny)
    _spec(tiny, 'date: first(registers.start_date, register == "case_management")', "bydate.yml")
    r = cli("evaluate", tiny / "rules" / "evaluations" / "bydate.yml", "--store", tiny / "store", "--out",
            tiny / "out3", "--json", "--engine", "duckdb")
    assert r.exit_code == 0, r.output
    _check_result(tiny / "out3" / "evaluate-tiny")


def test_a_missing_exact_value_is_a_stratum_of_its_own(tiny):
    # older: t1, c1, c2; missing: t2, c3, c4 - the same pairs as matching on sex
    text = SPEC.replace("exact: [sex]", """exact: ['case(age >= 70, "older")']""")
    r = cli("evaluate", _spec(tiny, "register: case_management", "strata.yml", text), "--store", tiny / "store",
            "--out", tiny / "strata", "--json")
    assert r.exit_code == 0, r.output
    _check_result(tiny / "strata" / "evaluate-tiny")


@pytest.mark.parametrize("group, text, code, words", [
    ("register: virtual_ward", SPEC, 2, "nobody joined"),
    ("register: case_management", SPEC.replace("window: 6", "window: 24"), 2, "outside|partly covered"),
    ("register: case_management", SPEC.replace("window: 6", "window: 6\nsurprise: 1"), 4, "unknown key"),
    ("register: case_management", SPEC.replace("caliper: null", "caliper: 0.000001"), 2,
     "no treated person found a control"),
])
def test_errors_and_exit_codes(tiny, group, text, code, words):
    r = cli("evaluate", _spec(tiny, group, "bad.yml", text), "--store", tiny / "store", "--out", tiny / "bad")
    assert r.exit_code == code, r.output
    assert re.search(words, r.output), r.output


def test_bad_param_is_a_usage_error(tiny):
    r = cli("evaluate", _spec(tiny), "--store", tiny / "store", "--param", "novalue")
    assert r.exit_code == 2 and "NAME=VALUE" in r.output


def test_partial_coverage_can_be_allowed(tiny):
    text = SPEC.replace("window: 6", "window: 8")
    r = cli("evaluate", _spec(tiny, "register: case_management", "partial.yml", text), "--store", tiny / "store",
            "--out", tiny / "partial", "--allow-partial", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["warnings"]


def test_shipped_example_runs_on_a_synthetic_store(tmp_path):
    from casefind_testdata import synthetic_store

    store = synthetic_store(tmp_path, 3000, 5)
    r = cli("evaluate", "case_management", "--store", store, "--out", tmp_path / "out", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert {e["outcome"] for e in s["effects"]} == {"emergency_admissions", "bed_days", "cost", "deaths"}
    assert s["counts"]["matched"] > 0
