"""Provider and service levels (kpis/levels.py) and annualised monthly values (per_year).

The issue: "KPIs can be computed per provider and per commissioned service as well as per
practice, locality and system"; "Provider-level KPIs roll up exactly like practices". Each
provider's events over the system's population: the providers' numerators, with the
activity that has no provider_code, add up to the system's exactly."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from casefind.engines.base import ENGINES, REFERENCE
from casefind.kpis import compute, disclosure
from casefind.kpis.levels import NO_PROVIDER, restrict
from casefind.kpis.periods import parse
from casefind.rules import ir
from casefind.store import Store
from casefind_testdata import synthetic_store

KPIS = """\
kpis: split
features:
  hospital: sum(activity.cost, setting in ("ae", "outpatient", "gp"), within=period)
measures:
  admissions:
    title: Emergency admissions (the month, annualised)
    domain: population_health
    kind: rate
    per: 1000
    per_year: true
    population: registered and alive
    value: count(activity, setting == "emergency_admission", within=period)
    levels: [provider, service]
  hospital_cost:
    title: Hospital and GP cost per head
    domain: cost
    kind: per_head
    population: registered and alive
    value: hospital + count(activity, setting == "ae", within=period)
    levels: [provider, service]
  contacts:
    title: Contacts
    domain: process
    kind: total
    population: registered and alive
    value: count(activity, within=period)
    levels: [provider]
"""
PERIODS = ["2026-02", "2026-10"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("levels")
    store = Store.open(synthetic_store(root, 1500, 4))
    (root / "split.yml").write_text(KPIS)
    ksets = compute.compile_for(root / "split.yml", [parse(p) for p in PERIODS])
    return {eng: compute.compute(store, ksets, compute.evaluate(store, ksets, eng), "t").to_pylist()
            for eng in sorted(ENGINES)}


def _rows(rows, **kw):
    return [r for r in rows if all(r[k] == v for k, v in kw.items())]


@pytest.mark.parametrize("kpi", ["admissions", "hospital_cost", "contacts"])
@pytest.mark.parametrize("period", PERIODS)
def test_providers_and_services_add_up_to_the_system_exactly(results, kpi, period):
    rows = results[REFERENCE]
    (system,) = _rows(rows, kpi=kpi, period=period, level="system")
    levels = ["provider", "service"] if kpi != "contacts" else ["provider"]
    for level in levels:
        units = _rows(rows, kpi=kpi, period=period, level=level)
        assert len(units) >= 2 and {u["parent_code"] for u in units} == {system["unit_code"]}
        assert sum(u["numerator"] for u in units) == system["numerator"]  # counts: exactly
        assert {u["denominator"] for u in units} == {system["denominator"]}  # the system's population
        assert all(u["numerator"] >= 0 for u in units)
    assert not _rows(rows, kpi=kpi, level="service") or kpi != "contacts"


def test_services_split_a_provider_by_setting_and_add_up_to_it(results):
    rows = _rows(results[REFERENCE], kpi="hospital_cost", period="2026-10")
    providers = {r["unit_code"]: r["numerator"] for r in rows if r["level"] == "provider"}
    services = [r for r in rows if r["level"] == "service" and r["unit_code"] != NO_PROVIDER]
    assert {s["unit_code"].split("/")[1] for s in services} == {"ae", "outpatient", "gp"}
    for code, total in providers.items():
        if code != NO_PROVIDER:
            mine = [s["numerator"] for s in services if s["unit_code"].startswith(code + "/")]
            assert sum(mine) == pytest.approx(total, rel=1e-12)
    # GP contacts carry no provider_code (the contract's hospital feeds do): the remainder
    (rest,) = [r for r in rows if r["level"] == "provider" and r["unit_code"] == NO_PROVIDER]
    assert rest["numerator"] > 0


def test_a_single_setting_measure_has_one_service_per_provider(results):
    rows = _rows(results[REFERENCE], kpi="admissions", period="2026-10")
    providers = sorted(r["unit_code"] for r in rows if r["level"] == "provider" and r["unit_code"] != NO_PROVIDER)
    services = sorted(r["unit_code"] for r in rows if r["level"] == "service" and r["unit_code"] != NO_PROVIDER)
    assert services == [f"{p}/emergency_admission" for p in providers]
    (rest,) = [r for r in rows if r["level"] == "provider" and r["unit_code"] == NO_PROVIDER]
    assert rest["numerator"] == 0  # every admission has a provider in the synthetic data


@pytest.mark.parametrize("engine", sorted(set(ENGINES) - {REFERENCE}))
def test_every_engine_agrees_on_provider_and_service_rows(results, engine):
    def key(r):
        return (r["kpi"], r["period"], r["level"], r["unit_code"])

    a = {key(r): r for r in results[engine] if r["level"] in ("provider", "service")}
    b = {key(r): r for r in results[REFERENCE] if r["level"] in ("provider", "service")}
    assert a.keys() == b.keys() and len(a) > 10
    for k, r in a.items():
        for c in ("numerator", "denominator", "value", "lower", "upper"):
            x, y = r[c], b[k][c]
            assert (x is None and y is None) or x == pytest.approx(y, rel=1e-9), (k, c)


@pytest.mark.parametrize("period, days", [("2026-02", 28), ("2026-10", 31)])
def test_a_monthly_rate_is_annualised_by_the_days_of_its_month(results, period, days):
    """per_year: the month's admissions x 365 / the days in the month, per 1,000."""
    (system,) = _rows(results[REFERENCE], kpi="admissions", period=period, level="system")
    assert system["value"] == pytest.approx(system["numerator"] / system["denominator"] * 1000 * 365 / days)
    assert system["multiplier"] == pytest.approx(1000 * 365 / days)
    assert system["basis"] == "month" and system["integrity"] == '{"assessed": false, "note": "not assessed"}'


def test_disclosure_control_applies_to_provider_rows_as_to_practices(results):
    rows = [r for r in results[REFERENCE] if r["level"] in ("provider", "practice")]
    policy = disclosure.DisclosurePolicy()
    assert {"provider", "service"} <= set(policy.apply_to_levels)
    cols = {c: np.array([r[c] if r[c] is not None else np.nan for r in rows], float)
            for c in ("numerator", "denominator", "value", "lower", "upper")}
    out = disclosure.apply(**cols, level=np.array([r["level"] for r in rows], object), policy=policy)
    small = (cols["numerator"] >= 1) & (cols["numerator"] < policy.suppress_below)
    assert np.array_equal(out["suppressed"] & small, small)


def test_restrict_adds_the_provider_and_setting_to_every_part():
    ae = ir.Count("activity", ir.Eq(ir.Column("activity", "setting", ir.T.TEXT), ir.Const("ae", ir.T.TEXT)))
    every = ir.Count("activity")
    out = restrict(ir.Add(ae, every), "RXX", "ae")
    text = repr(out)
    assert text.count("'provider_code'") == 2 and text.count("Const(value='RXX'") == 2
    assert isinstance(out.right.where, ir.And) and isinstance(out.left.where.left, ir.Eq)


def test_the_shipped_monthly_measures_are_split_and_annualised():
    from casefind.kpis.define import load_kpis
    from casefind.project import shipped_rules

    ms = load_kpis(shipped_rules() / "kpis" / "triple_aim.yml").measures
    monthly = [m for m in ms.values() if m.per_year]
    assert {m.name for m in monthly} >= {"emergency_admissions_month", "elective_admissions_month",
                                         "outpatient_attendances_month", "excess_bed_days_month"}
    assert all(m.basis == "month" for m in monthly)
    split = {m.name for m in ms.values() if m.split.levels == ("provider", "service")}
    assert split == {"emergency_admissions_month", "ae_attendances_month", "elective_admissions_month",
                     "outpatient_attendances_month"}  # bed days are not split: kept cheap to compile
    assert ms["emergency_admissions"].basis == "rolling_12m" and not ms["emergency_admissions"].per_year
    assert textwrap.dedent(ms["weekend_discharges"].source).startswith("weekday(end_date) >= 6")


def test_pairs_seen_is_every_group_and_code_that_a_row_has():
    """casefind_native.aggregate.pairs_seen against numpy's count of each (group, code)
    pair over the rows (what Providers.of computed before), missing codes (-1) left out."""
    from casefind_native.aggregate import pairs_seen

    rng = np.random.default_rng(5)
    counts = rng.integers(0, 6, 400)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    group = rng.integers(0, 7, 400).astype(np.int64)
    codes = rng.integers(-1, 30, int(offsets[-1])).astype(np.int32)
    row_group = np.repeat(group, counts)
    has = codes >= 0
    want = np.bincount(row_group[has] * 30 + codes[has], minlength=7 * 30).reshape(7, 30) > 0
    got = pairs_seen(offsets, group, codes, 7, 30)
    assert np.array_equal(got, want) and 0 < want.sum() < want.size


def test_band_codes_are_the_last_band_holding_each_value():
    """casefind_native.aggregate.band_codes against the two comparisons per band it
    replaces (a KPI's age bands): whole ages, a fraction between bands, nan, out of range."""
    from casefind.kpis.compute import _AGE_LIMITS, AGE_BANDS
    from casefind_native.aggregate import band_codes

    age = np.array([0, 17, 17.5, 18, 64, 65, 84.0, 85, 200, 201, -1, np.nan, 40], np.float64)
    want = np.full(len(age), len(AGE_BANDS), np.int64)
    for i, (lo, hi, _) in enumerate(AGE_BANDS):
        want[(age >= lo) & (age <= hi)] = i
    assert band_codes(age, *_AGE_LIMITS, len(AGE_BANDS)).tolist() == want.tolist()
    assert want.tolist() == [0, 0, 5, 1, 1, 2, 3, 4, 4, 5, 5, 5, 1]
    overlapping = band_codes(np.array([5.0, 15.0]), np.array([0.0, 10.0]), np.array([20.0, 30.0]), 9)
    assert overlapping.tolist() == [0, 1]  # the later band, as assigning band by band gave
