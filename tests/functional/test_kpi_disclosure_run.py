"""Disclosure control end to end: a real triple-aim run publishes nothing the attacker
(tests/kpi_attacker.py) can turn back into an exact count, the history keeps the unrounded
figures apart, and the run log says which policy was applied and whether it is weaker
than NHS Digital's HES/ECDS rule."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from casefind.kpis import history
from casefind.kpis.disclosure import EXACT_COLUMNS
from casefind.kpis.periods import parse
from casefind.kpis.run import run_kpis
from casefind_testdata import synthetic_store
from kpi_attacker import Attacker, table_sums, table_vars

ROOT = Path(__file__).parents[2]
TRIPLE_AIM = ROOT / "rules" / "kpis" / "triple_aim.yml"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("kpi-disclosure"), 3000, 8)


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    h = tmp_path_factory.mktemp("kpi-disclosure-history") / "h.duckdb"
    return run_kpis(TRIPLE_AIM, store, [parse("2026-10")], history_path=h)


def test_no_published_row_gives_an_exact_count_back(run):
    rows = run.results.to_pylist()
    per_row = [r for r in rows if not r["suppressed"] and not r["standardised"] and r["value"]
               and r["numerator"] is not None and r["denominator"] is not None and r["kind"] != "total"]
    assert len(per_row) > 100
    for r in per_row:  # numerator / value is the published denominator, never the exact one
        assert r["numerator"] * r["multiplier"] / r["value"] == pytest.approx(r["denominator"], rel=1e-9), r["kpi"]
    att = Attacker(rows, _policy(run), table_vars)
    table_sums(att)
    att.run()
    truth = {table_vars(r, f): r[f"exact_{f}"] for r in rows for f in ("numerator", "denominator")
             if table_vars(r, f) is not None and r[f"exact_{f}"] is not None}
    assert att.leaks(truth) == []
    assert [v for v in att.recovered(truth) if truth[v] != 0] == []  # only zeros, published as 0


def _policy(run):
    from casefind.kpis.disclosure import DisclosurePolicy

    record = json.loads(history.runs(run.history).to_pylist()[-1]["disclosure"])
    return DisclosurePolicy(**{k: tuple(v) if k == "apply_to_levels" else v for k, v in record.items()
                               if k in ("suppress_below", "round_to", "apply_to_levels", "suppress_zero",
                                        "derive_from_rounded")})


def test_the_history_keeps_the_exact_figures_and_the_policy(run):
    rows = history.read(run.history).to_pylist()
    assert all(c in rows[0] for c in EXACT_COLUMNS)
    rounded = [r for r in rows if not r["suppressed"] and r["exact_denominator"] != r["denominator"]]
    assert rounded and all(r["denominator"] % 5 == 0 for r in rounded)
    record = json.loads(history.runs(run.history).to_pylist()[-1]["disclosure"])
    assert record["suppress_below"] == 8 and record["round_to"] == 5 and record["weaker_than_default"] == []
    assert record["source"] == "the default" and "HES and ECDS" in record["rule"]
    assert "system" in record["apply_to_levels"]
    assert not any("weaker" in w for w in run.warnings)


def test_a_weaker_policy_is_said_not_silent(store, tmp_path):
    result = run_kpis(TRIPLE_AIM, store, [parse("2026-10")], history_path=tmp_path / "h.duckdb",
                      disclosure_overrides={"suppress_below": 5})
    assert any("weaker than NHS Digital's HES/ECDS rule" in w and "counts from 5 to 7 are published" in w
               for w in result.warnings)
    log = history.runs(tmp_path / "h.duckdb").to_pylist()[-1]
    assert "weaker than" in log["message"] and json.loads(log["disclosure"])["source"].startswith("project settings")
    kpis = tmp_path / "k.yml"
    kpis.write_text("kpis: k\ndisclosure: {suppress_below: 5, apply_to_levels: [practice, locality]}\nmeasures:\n"
                    "  m: {title: t, domain: cost, kind: total, population: registered,"
                    " value: 'count(activity, within=period)'}\n")
    result = run_kpis(kpis, store, [parse("2026-10")], history_path=tmp_path / "k.duckdb")
    record = json.loads(history.runs(tmp_path / "k.duckdb").to_pylist()[-1]["disclosure"])
    assert record["source"] == "the KPI file's disclosure: (k.yml)"
    assert record["weaker_than_default"][1] == "the system, provider, service levels are not controlled"
    assert any("k.yml" in w and "weaker" in w for w in result.warnings)
