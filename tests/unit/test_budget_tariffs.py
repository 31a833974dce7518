"""Tariff setting (the percentile trim within each category, merging small categories, uplift),
risk share and outcome adjustments, each against figures worked by hand."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from casefind.budgets import share, tariffs
from casefind.budgets.define import Band, Outcome, RiskShare, load_budget
from casefind.kpis import history as kpi_history
from casefind.kpis.compute import RESULT_SCHEMA


def spec(tmp_path, categories: str, tariffs_section: str = ""):
    path = tmp_path / "budgets" / "t.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("budget: t\ncohort: {when: \"age >= 18\"}\ncategories:\n" + categories + tariffs_section)
    return load_budget(path)


TWO = "  high: {when: \"age >= 65\"}\n  low: {}\n"


@pytest.mark.parametrize("method, mean, trimmed", [
    # 99 people at £100 and one at £1,000,000: numpy's linear 99th percentile is
    # 100 + 0.01 x (1,000,000 - 100) = £10,099. Capped there, the mean is
    # (99 x 100 + 10,099) / 100 = £199.99; removed, it is £100.
    ("cap", 199.99, 1),
    ("remove", 100.0, 1),
])
def test_one_extreme_patient_is_trimmed_within_their_category_only(tmp_path, method, mean, trimmed):
    s = spec(tmp_path, TWO, f"tariffs: {{trim: {{above_percentile: 99, method: {method}}}, uplift: 0.1}}\n")
    category = np.array([0] * 100 + [1] * 50)
    cost = np.array([100.0] * 99 + [1_000_000.0] + [50.0] * 50)
    t = tariffs.compute(s, category, cost)
    assert t.people.tolist() == [100, 50]
    assert t.baseline_mean[0] == pytest.approx((99 * 100 + 1_000_000) / 100)
    assert t.trimmed.tolist() == [trimmed, 0]
    assert t.trimmed_mean.tolist() == pytest.approx([mean, 50.0])
    assert t.thresholds["high"] == pytest.approx(10_099.0)
    assert t.tariff.tolist() == pytest.approx([mean * 1.1, 55.0])  # uplifted by 10%
    assert t.source == ["computed", "computed"] and t.merged_into == [None, None]


def test_a_category_under_the_minimum_size_is_priced_with_the_one_it_names(tmp_path):
    cats = ("  tiny: {when: \"age >= 90\", merge_into: mid}\n  mid: {when: \"age >= 65\", merge_into: low}\n"
            "  low: {}\n")
    s = spec(tmp_path, cats, "tariffs: {min_category_size: 3, trim: {above_percentile: 100}}\n")
    category = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    cost = np.array([10.0, 20.0, 30.0, 30.0, 30.0, 1.0, 2.0, 3.0])
    t = tariffs.compute(s, category, cost)
    assert t.merged_into == ["mid", None, None]  # mid has 3 people: it is big enough and not merged
    assert t.tariff.tolist() == pytest.approx([24.0, 24.0, 2.0])  # (10 + 20 + 3 x 30) / 5
    assert t.baseline_mean.tolist() == pytest.approx([15.0, 30.0, 2.0])  # each category's own mean


def test_a_computed_tariff_with_nobody_is_an_error_with_a_hint(tmp_path):
    s = spec(tmp_path, TWO)
    with pytest.raises(tariffs.TariffError) as e:
        tariffs.compute(s, np.array([1, 1]), np.array([5.0, 6.0]))
    assert "high" in e.value.message and "merge_into" in e.value.hint


def test_manual_tariffs_are_used_as_written(tmp_path):
    s = spec(tmp_path, "  high: {when: \"age >= 65\", tariff: 260}\n  low: {tariff: 70}\n", "tariffs: {uplift: 0.5}\n")
    t = tariffs.compute(s, np.array([0, 1]), np.array([1000.0, 1.0]))
    assert t.tariff.tolist() == [260.0, 70.0] and t.uplift.tolist() == [0.0, 0.0] and t.source == ["manual"] * 2


BANDS = RiskShare((Band(0.02, 1.0), Band(None, 0.5)))


@pytest.mark.parametrize("variance, provider", [
    # a 5% underspend of £1,000: the first 2% (£20) all the provider's, the other £30 shared 50/50
    (50.0, 20.0 + 15.0),
    (-50.0, -35.0),          # an overspend shares the same way
    (10.0, 10.0),            # within the first band
    (0.0, 0.0),
])
def test_risk_share_by_bands(variance, provider):
    out = share.risk_share(BANDS, 1000.0, variance)
    assert out["provider_share"] == pytest.approx(provider)
    assert out["commissioner_share"] == pytest.approx(variance - provider)
    assert out["working"][0].startswith("variance")


def test_risk_share_cap_and_carry_forward():
    rs = RiskShare((Band(0.02, 1.0), Band(None, 0.5)), cap=0.03, carry_forward=0.5)
    out = share.risk_share(rs, 1000.0, 50.0)
    assert out["provider_share"] == pytest.approx(30.0) and out["carried_forward"] == pytest.approx(15.0)
    assert any("capped" in w for w in out["working"]) and "carried" in share.describe(rs)


def _history(path, value: float, target: float | None = 90.0):
    row = {f.name: None for f in RESULT_SCHEMA}
    row.update(run_id="r", kpi_set="triple_aim", kpi="emergency_admissions", title="EA", domain="population_health",
               kind="rate", unit_label="per 1,000", multiplier=1000.0, direction="lower_is_better", target=target,
               period="2027-03", period_start=dt.date(2027, 3, 1), period_end=dt.date(2027, 3, 31), level="system",
               unit_code="S1", unit_name="Sys", parent_code=None, breakdown="", breakdown_value="", numerator=1.0,
               denominator=1.0, value=value, standardised=False, suppressed=False)
    kpi_history.write(path, pa.Table.from_pylist([row], schema=RESULT_SCHEMA), {
        "run_id": "r", "kpi_set": "triple_aim", "kpi_file": "x", "kpi_sha256": "x", "store_snapshot": "s",
        "periods": ["2027-03"], "engine": "native", "casefind_version": "0", "started": dt.datetime.now(dt.UTC)})


OUTCOME = Outcome("fewer", "emergency_admissions", "triple_aim", "EA", None, None, None, 0.01, 0.02)


@pytest.mark.parametrize("value, met, adjustment", [(85.0, True, 10.0), (95.0, False, -20.0)])
def test_outcome_adjustment_against_the_kpi_target(tmp_path, value, met, adjustment):
    path = tmp_path / "history.duckdb"
    _history(path, value)
    [o] = share.outcomes((OUTCOME,), path, "2027-03", 1000.0)
    assert (o["met"], o["adjustment"], o["target"], o["actual"]) == (met, pytest.approx(adjustment), 90.0, value)
    assert ("met" if met else "missed") in o["working"]


def test_an_outcome_missing_from_the_history_adjusts_nothing(tmp_path):
    path = tmp_path / "history.duckdb"
    [o] = share.outcomes((OUTCOME,), path, "2027-03", 1000.0)
    assert o["met"] is None and o["adjustment"] == 0 and "could not be read" in o["working"]
    _history(path, 85.0)
    [o] = share.outcomes((OUTCOME,), path, "2026-12", 1000.0)
    assert o["met"] is None and "not in the KPI history" in o["working"]
    _history(path, 85.0, target=None)
    [o] = share.outcomes((OUTCOME,), path, "2027-03", 1000.0)
    assert o["met"] is None and "no target" in o["working"]
