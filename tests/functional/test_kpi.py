"""casefind kpi and casefind report end to end: both engines agree on every KPI, re-runs
are idempotent, the history survives a crash mid-write and refuses a second writer."""
from __future__ import annotations

from pathlib import Path

import pytest

from casefind.engines.base import ENGINES, REFERENCE
from casefind.kpis import history
from casefind.kpis.periods import parse, span
from casefind.kpis.run import run_kpis
from casefind_testdata import cli, synthetic_store

ROOT = Path(__file__).parents[2]
TRIPLE_AIM = ROOT / "rules" / "kpis" / "triple_aim.yml"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("kpi"), 3000, 8)


def _key(row):
    return (row["kpi"], row["period"], row["level"], row["unit_code"], row["breakdown"],
            row["breakdown_value"], row["standardised"])


@pytest.mark.parametrize("engine", sorted(set(ENGINES) - {REFERENCE}))
def test_every_engine_agrees_with_the_reference_on_every_kpi(store, tmp_path, engine):
    periods = span("2026-09", "2026-10")
    a = run_kpis(TRIPLE_AIM, store, periods, history_path=tmp_path / "n.duckdb", engine=engine).results
    b = run_kpis(TRIPLE_AIM, store, periods, history_path=tmp_path / "d.duckdb", engine=REFERENCE).results
    rows_a = {_key(r): r for r in a.to_pylist()}
    rows_b = {_key(r): r for r in b.to_pylist()}
    assert rows_a.keys() == rows_b.keys()
    for k, r in rows_a.items():
        for c in ("numerator", "denominator", "value", "lower", "upper", "suppressed"):
            x, y = r[c], rows_b[k][c]
            assert (x is None and y is None) or x == pytest.approx(y, rel=1e-9, abs=1e-12), (k, c, x, y)
    assert len({r["kpi"] for r in a.to_pylist()}) == 30  # rules/kpis/triple_aim.yml's measures


def test_counts_roll_up_exactly_before_disclosure_control(store):
    from casefind.kpis import compute
    from casefind.store import Store

    st = Store.open(store)
    ksets = compute.compile_for(TRIPLE_AIM, [parse("2026-10")])
    res = compute.compute(st, ksets, compute.evaluate(st, ksets), "test")
    rows = [r for r in res.to_pylist() if not r["standardised"] and r["kind"] != "median"]
    by_key = {}
    for r in rows:
        by_key.setdefault((r["kpi"], r["breakdown"], r["breakdown_value"], r["level"]), []).append(r)
    checked = 0
    for (kpi, b, bv, level), parents in by_key.items():
        child = {"locality": "practice", "system": "locality"}.get(level)
        if child is None:
            continue
        for parent in parents:
            kids = [r for r in by_key.get((kpi, b, bv, child), []) if r["parent_code"] == parent["unit_code"]]
            for c in ("numerator", "denominator"):
                assert sum(k[c] or 0 for k in kids) == pytest.approx(parent[c] or 0, rel=1e-12), (kpi, b, bv, c)
            checked += 1
    assert checked > 100
    # providers and services (the activity's provider_code; "(no provider)" the remainder)
    # over the system's population add up to the system exactly, as practices do
    split = {r["kpi"] for r in rows if r["level"] == "provider"}
    assert split >= {"emergency_admissions_month", "elective_admissions_month", "outpatient_attendances_month"}
    for kpi in split:
        (system,) = by_key[(kpi, "", "", "system")]
        for level in ("provider", "service"):
            units = [r for r in rows if r["kpi"] == kpi and r["level"] == level]
            assert sum(u["numerator"] for u in units) == system["numerator"], (kpi, level)
            assert {u["denominator"] for u in units} == {system["denominator"]}


def test_rerun_is_idempotent_and_the_run_log_keeps_both(store, tmp_path):
    h = tmp_path / "h.duckdb"
    p = [parse("2026-10")]
    run_kpis(TRIPLE_AIM, store, p, history_path=h)
    first = history.read(h)
    run_kpis(TRIPLE_AIM, store, p, history_path=h)
    assert history.read(h).equals(first)
    log = history.runs(h).to_pylist()
    assert [r["status"] for r in log] == ["ok", "ok"] and log[0]["run_id"] == log[1]["run_id"]


def test_a_crash_mid_write_leaves_the_history_intact(store, tmp_path):
    h = tmp_path / "h.duckdb"
    run_kpis(TRIPLE_AIM, store, [parse("2026-10")], history_path=h)
    before = history.read(h)

    def crash():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_kpis(TRIPLE_AIM, store, [parse("2026-10")], history_path=h, before_commit=crash)
    assert history.read(h).equals(before)
    assert [r["status"] for r in history.runs(h).to_pylist()] == ["ok", "failed"]


def test_a_second_writer_is_refused_with_exit_code_5(store, tmp_path):
    h = tmp_path / "h.duckdb"
    with history.writer_lock(h):
        r = cli("kpi", TRIPLE_AIM, "--store", store, "--period", "2026-10", "--history", h)
    assert r.exit_code == 5 and "being written by casefind kpi (pid" in " ".join(r.output.split())
    assert not h.exists()


def test_monthly_command_export_and_pack(store, tmp_path):
    h = tmp_path / "h.duckdb"
    r = cli("kpi", TRIPLE_AIM, "--store", store, "--from", "2026-08", "--to", "2026-10", "--history", h)
    assert r.exit_code == 0, r.output
    r = cli("kpi", "--store", store, "--history", h, "--export", tmp_path / "k.csv", "--period", "2026-10")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "k.csv").read_text()
    assert "emergency_admissions" in text and "2026-09" not in text
    r = cli("report", "--store", store, "--history", h, "--period", "2026-10", "--out", tmp_path / "pack.html")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "pack.html").read_text()
    assert "Emergency admissions per 1,000 people" in html and "<svg" in html and "https://" not in html
    r = cli("report", "--store", store, "--history", h, "--period", "2027-01")
    assert r.exit_code == 1 and "no triple_aim results for 2027-01" in r.output


def test_kpi_file_errors_are_located(tmp_path, store):
    bad = tmp_path / "bad.yml"
    bad.write_text("kpis: x\nmeasures:\n  m:\n    title: t\n    domain: health\n    kind: rate\n"
                   "    population: registered\n    value: count(activity)\n")
    r = cli("kpi", bad, "--store", store, "--period", "2026-10", "--history", tmp_path / "h.duckdb")
    assert r.exit_code == 4 and "bad.yml:5:13" in r.output and "population_health" in r.output
    bad.write_text("kpis: x\nmeasures:\n  m:\n    title: t\n    domain: cost\n    kind: proportion\n"
                   "    population: registered\n    value: count(activity, within=period)\n")
    r = cli("kpi", bad, "--store", store, "--period", "2026-10", "--history", tmp_path / "h.duckdb")
    assert r.exit_code == 4 and "a proportion's value is true/false" in r.output
    bad.write_text("kpis: x\ndisclosure: {supress_below: 5}\nmeasures:\n  m:\n    title: t\n    domain: cost\n"
                   "    kind: total\n    population: registered\n    value: count(activity, within=period)\n")
    r = cli("kpi", bad, "--store", store, "--period", "2026-10", "--history", tmp_path / "h.duckdb")
    assert r.exit_code == 4 and "bad.yml:2:" in r.output and "suppress_below" in r.output
