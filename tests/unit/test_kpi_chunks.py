"""KPIs computed chunk by chunk (a few thousand patients at a time, as ``casefind kpi``
does) give exactly the rows of one pass over every patient: sums per group are added in
the same order, text breakdowns met in different chunks get the same labels, medians see
every member's value."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pytest

from casefind.kpis import compute
from casefind.kpis.periods import span
from casefind.store import Store
from casefind_testdata import synthetic_store

ROOT = Path(__file__).parents[2]
EXTRA = """
  median_cost:
    title: Median cost
    domain: cost
    kind: median
    population: resident
    value: max(activity.cost, within=months(12))
    breakdowns: [sex, segment]
  cost_by_sex:
    title: Cost per head
    domain: cost
    kind: per_head
    population: resident
    value: sum(activity.cost, within=period)
    breakdowns: [sex, imd_quintile, segment]
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kpichunks")
    store = Store.open(synthetic_store(tmp, 2500, 11))
    shutil.copytree(ROOT / "rules", tmp / "rules")  # the KPI file's codelists and segments come along
    kpi = tmp / "rules" / "kpis" / "triple_aim.yml"
    kpi.write_text(kpi.read_text() + EXTRA)
    return store, compute.compile_for(kpi, span("2026-08", "2026-10"))


@pytest.mark.parametrize("size", [1000, 777, 2500, 100_000, 40])  # 40: labels first met in other orders
def test_chunked_results_equal_one_pass(setup, size):
    store, ksets = setup
    whole = compute.compute(store, ksets, compute.evaluate(store, ksets), "r")
    pieces = list(compute.evaluate_chunks(store, ksets, size=size))
    assert len(pieces) == -(-store.n_patients // size)
    chunked = compute.compute(store, ksets, iter(pieces), "r")
    assert {"ratio", "median", "rate", "mean"} <= set(whole.column("kind").to_pylist())
    assert chunked.equals(whole)


def test_chunks_hold_the_patients_in_store_order(setup):
    store, ksets = setup
    pieces = list(compute.evaluate_chunks(store, ksets, size=1000))
    patients = [x for t in pieces for x in t.column("patient").to_pylist()]
    assert patients == list(range(store.n_patients))
    assert pieces[0].column_names == compute.evaluate(store, ksets).column_names


def test_chunks_shrink_as_columns_grow_so_memory_does_not():
    """A measure split by sixty providers is sixty columns a period: a chunk then holds
    fewer patients, never more than about CHUNK_BYTES of values, and at least 1,024."""
    assert compute.chunk_size(10) == compute.CHUNK_PATIENTS
    assert compute.chunk_size(4000) * 8 * 4000 <= compute.CHUNK_BYTES < (compute.chunk_size(4000) + 1) * 8 * 4000
    assert compute.chunk_size(10**9) == 1024 and compute.chunk_size(10**9, 40) == 40


def test_a_shards_sums_pickle_small_and_whole(setup):
    """A shard's sums go to the driver (on Spark, every shard's at once): they pickle
    without their rows of zeros, and a split measure's sums per provider only where a
    practice had that provider's activity, and come back the same to the bit."""
    import pickle

    from casefind.kpis.levels import provider_codes

    store, ksets = setup
    h = compute.Hierarchy.of(store)
    providers = provider_codes(store) + tuple(f"ZZ{i}" for i in range(40))  # a region's others: none here
    sums = compute._Sums(ksets, h.practice_of_patient, len(h.codes["practice"]), providers)
    for piece in compute.evaluate_chunks(store, ksets, size=1000, providers=providers):
        sums.add(piece)
    back = pickle.loads(pickle.dumps(sums))
    for key, acc in sums.acc.items():
        mine, theirs = (a.parts if hasattr(a, "grown") else np.concatenate(a.arrays()) for a in (back.acc[key], acc))
        assert mine.tobytes() == theirs.tobytes(), key
    assert sums.variants
    assert all(back.variants[k].parts.tobytes() == v.parts.tobytes() for k, v in sums.variants.items())
    dense = sum(v.parts.nbytes for v in sums.variants.values())
    assert len(pickle.dumps(sums.variants)) < dense / 4


@pytest.mark.parametrize("providers, settings, dense", [
    (6, [None], 6), (60, [None], 0), (6, ["ae", "outpatient", "gp", "community"], 24),
    (60, ["ae", "outpatient", "gp", "community"], 0), (20, ["ae", "gp"], 0)])
def test_dense_members_are_those_the_engine_holds_per_patient(tmp_path, providers, settings, dense):
    """A split measure's block is counted as the native engine lays it out: members in a
    value group of SPARSE_MIN counts or more are kept sparse (not a column per patient),
    the rest are columns. Six providers by four settings are groups of six (or of four):
    24 columns, which chunk sizing must count. Checked against the engine's own lowering."""
    from casefind.engines.native_codegen import lower
    from casefind.kpis import levels
    from casefind.plan import make_plan
    from casefind.rules import ir

    value = ir.Count("activity", window=ir.Range((12, 0)))
    members = tuple(levels.restrict(value, f"P{i:02d}", s) for i in range(providers) for s in settings)
    assert compute._dense_members(members) == dense
    st = Store.open(synthetic_store(tmp_path, 200, 3))
    plan = make_plan({f"m{i}": m for i, m in enumerate(members)}, dt.date(2026, 6, 30))
    prog = lower("activity", plan.scans["activity"], st)
    sparse = {k for r in prog.returns.values() for k in r.slots}
    assert len(prog.slots) - len(sparse) == dense
