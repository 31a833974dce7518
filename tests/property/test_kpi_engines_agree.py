"""Random small populations: every kind of KPI, over several periods, gives the same rows
from every registered engine as from the reference engine (before and after disclosure control),
the provider and service rows of measures split by provider included."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from test_engines_agree import populations

from casefind.engines.base import ENGINES, REFERENCE
from casefind.ingest import run_ingest
from casefind.kpis import compute, disclosure
from casefind.kpis.levels import provider_codes
from casefind.kpis.periods import span
from casefind.store import Store
from casefind_testdata import write_source

KPIS = """kpis: prop
features:
  resident: registered and alive
measures:
  admitted:
    {title: Admitted, domain: population_health, kind: proportion, population: resident,
     value: 'exists(activity, setting == "emergency_admission", within=period)'}
  ae_rate:
    {title: A&E, domain: population_health, kind: rate, per: 1000, population: resident,
     value: 'count(activity, setting == "ae", within=months(12))', standardise: esp2013,
     breakdowns: [age_band, sex]}
  mean_cost:
    {title: Mean cost, domain: cost, kind: mean, population: 'age >= 18',
     value: 'mean(activity.cost, within=months(6))', basis: point}
  cost_per_head:
    {title: Cost, domain: cost, kind: per_head, population: resident, value: 'sum(activity.cost, within=period)'}
  median_cost:
    {title: Median cost, domain: cost, kind: median, population: resident, value: 'max(activity.cost)'}
  contacts:
    {title: Contacts, domain: process, kind: total, population: 'true', value: 'count(activity, within=period)'}
  ae_by_provider:
    {title: A&E by provider, domain: population_health, kind: rate, per: 1000, population: resident,
     value: 'count(activity, setting == "ae", within=period)', levels: [provider, service]}
  cost_by_service:
    title: Cost by service
    domain: cost
    kind: per_head
    population: resident
    levels: [provider, service]
    value: 'sum(activity.cost, setting in ("ae", "outpatient"), within=period)
      + count(activity, setting == "gp", within=period)'
"""


def _rows(t):
    return {(r["kpi"], r["period"], r["level"], r["unit_code"], r["breakdown"], r["breakdown_value"],
             r["standardised"]): r for r in t.to_pylist()}


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(populations())
def test_every_kpi_kind_agrees_between_engines(tmp_path_factory, pop):
    tmp = tmp_path_factory.mktemp("kpiprop")
    run_ingest(write_source(tmp / "src", pop), tmp / "store")
    (tmp / "k.yml").write_text(KPIS)
    store = Store.open(tmp / "store")
    ksets = compute.compile_for(tmp / "k.yml", span("2025-01", "2025-03"))
    b = compute.compute(store, ksets, compute.evaluate(store, ksets, REFERENCE), "r")
    if provider_codes(store):  # the split measures' rows are there to compare
        assert {"provider", "service"} <= set(b.column("level").to_pylist())
    policy = disclosure.DisclosurePolicy(suppress_below=3, round_to=5)
    others = [compute.compute(store, ksets, compute.evaluate(store, ksets, name), "r")
              for name in ENGINES if name != REFERENCE]
    pairs = [p for a in others
             for p in ((a, b), (disclosure.apply_table(a, policy), disclosure.apply_table(b, policy)))]
    for x, y in pairs:
        rx, ry = _rows(x), _rows(y)
        assert rx.keys() == ry.keys()
        for k, r in rx.items():
            for c in ("numerator", "denominator", "value", "lower", "upper", "suppressed"):
                assert (r[c] is None and ry[k][c] is None) or r[c] == pytest.approx(ry[k][c], rel=1e-9, abs=1e-12), \
                    (k, c, r[c], ry[k][c])


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(populations())
def test_split_measures_kept_sparse_agree_with_the_reference(tmp_path_factory, monkeypatch, pop):
    """The same KPIs evaluated in chunks, as ``casefind kpi`` does, with every value group of
    counts kept sparse (GROUP_MIN lowered from 4 and SPARSE_MIN from 16 to 2, so that the
    two or three providers of these populations make one): the provider and service rows,
    summed from the scan's records (sparse_block_sums_into), are the reference engine's."""
    from casefind.engines import native_codegen, reducers

    monkeypatch.setattr(native_codegen, "GROUP_MIN", 2)
    monkeypatch.setattr(reducers, "SPARSE_MIN", 2)
    summed = []
    real = compute.sparse_block_sums_into
    monkeypatch.setattr(compute, "sparse_block_sums_into", lambda *a: summed.append(1) or real(*a))
    tmp = tmp_path_factory.mktemp("kpisparse")
    run_ingest(write_source(tmp / "src", pop), tmp / "store")
    (tmp / "k.yml").write_text(KPIS)
    store = Store.open(tmp / "store")
    ksets = compute.compile_for(tmp / "k.yml", span("2025-01", "2025-03"))
    want = _rows(compute.compute(store, ksets, compute.evaluate(store, ksets, REFERENCE), "r"))
    got = _rows(compute.compute(store, ksets, compute.evaluate_chunks(store, ksets, size=7), "r"))
    assert got.keys() == want.keys()
    for k, r in got.items():
        for c in ("numerator", "denominator", "value", "lower", "upper"):
            assert (r[c] is None and want[k][c] is None) or r[c] == pytest.approx(want[k][c], rel=1e-9, abs=1e-12), \
                (k, c, r[c], want[k][c])
    assert summed or len(provider_codes(store)) < 2  # the records were summed where there were providers
