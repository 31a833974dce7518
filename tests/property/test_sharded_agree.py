"""Random small populations and random rules: a sharded store (1, 2 and 7 shards; with up to
six patients, some shards hold nobody) and Spark's local mode give exactly the single
store's dataset and list, ranks within the population (percentile, top) included, and every
kind of KPI over three periods (test_kpi_engines_agree's file) before and after disclosure
control. The rules are test_engines_agree's, with an include criterion, a ranking and a
per-practice cap added, so that the lists' per-practice top-k merge has ties and caps to get
right."""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from test_engines_agree import populations, rule_text, rules, write_codelists
from test_kpi_engines_agree import KPIS

from casefind import spark as cfspark
from casefind.budgets.run import run_budget
from casefind.budgets.years import parse_year
from casefind.errors import CasefindError, UsageError
from casefind.ingest import run_ingest
from casefind.ingest.sharded import run_sharded_ingest
from casefind.kpis import compute, disclosure
from casefind.kpis.periods import span
from casefind.kpis.sharded import compute_sharded
from casefind.lists.dataset import dataset
from casefind.lists.run import run
from casefind.store import Store
from casefind.store.sharded import ShardedStore
from casefind_testdata import single_and_sharded, write_source

RULES = Path(__file__).resolve().parents[2] / "rules"
DATES = ("exists", "first(activity.start", "last(activity.start", "max(activity.start")


@pytest.fixture(scope="module")
def spark():
    session = cfspark.start_session("local[2]")
    yield session
    session.stop()


def list_rule(feats: dict[str, str], as_of: str, population: str | None, cap: int) -> str:
    """The generated features with criteria: include anyone with activity, ranked by a
    generated numeric feature (ties are common: counts), capped per practice."""
    numeric = [k for k, v in feats.items() if k.startswith("a") and not v.startswith(DATES)]
    body = rule_text(feats, as_of, population)
    when = "exists(activity)"  # most patients: caps and ties have work to do
    rank = f"[{numeric[0]} desc]" if numeric else "[pe desc]"
    return body + (f"criteria:\n  include:\n    picked:\n      when: {when}\n      reason: picked\n"
                   f"rank_by: {rank}\nlimit: {{per_practice: {cap}}}\n")


def _list(result):
    table = pq.read_table(result.out_dir / "list.parquet").drop_columns(["run_id"]).replace_schema_metadata(None)
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    return table, (manifest["counts"], manifest["excluded"])


def _renamed(pop: dict, prefix: str) -> dict:
    """One drawn population with its patient and spell ids prefixed, to join with others."""
    spell_at = {"activity": 8, "diagnoses": 5, "procedures": 4}
    out = {}
    for table, rows in pop.items():
        if table == "practices":
            out[table] = rows
            continue
        renamed = []
        for row in rows:
            row = list(row)
            row[0] = prefix + row[0]
            k = spell_at.get(table)
            if k is not None and row[k] is not None:
                row[k] = prefix + row[k]
            renamed.append(tuple(row))
        out[table] = renamed
    return out


@st.composite
def larger_populations(draw):
    """Six of test_engines_agree's populations as one (6 to 36 patients: 7 shards can
    all hold someone)."""
    parts = [_renamed(draw(populations()), f"g{j}") for j in range(6)]
    return {table: parts[0][table] if table == "practices" else [r for p in parts for r in p[table]]
            for table in parts[0]}


def _kpis(path, single, sharded) -> tuple:
    """The single store's KPIs and the sharded store's, before and after disclosure control."""
    ksets = compute.compile_for(path, span("2025-01", "2025-03"))
    one = Store.open(single)
    want = compute.compute(one, ksets, compute.evaluate_chunks(one, ksets), "r")
    got = compute_sharded(ShardedStore(sharded), ksets, "r")
    policy = disclosure.DisclosurePolicy(suppress_below=3, round_to=5)
    return (want, got), (disclosure.apply_table(want, policy), disclosure.apply_table(got, policy))


def _or_error(store, make):
    """``make()``, or the error (its class and message, the store's path left out) that a
    single and a sharded store must give alike."""
    try:
        return make()
    except CasefindError as e:
        return type(e), e.message.replace(str(store), "STORE")


def _outputs(rule, store, out):
    """The dataset and the list (with its counts), or the error."""
    return _or_error(store, lambda: (dataset(rule, store, allow_partial=True).replace_schema_metadata(None),
                                     _list(run(rule, store, out, allow_partial=True))))


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(larger_populations(), rules(), st.sampled_from([1, 2, 7]), st.integers(1, 3), st.booleans())
def test_shards_and_spark_give_the_single_stores_dataset_and_list(tmp_path_factory, spark, pop, rule, n, cap,
                                                                   on_spark):
    tmp = tmp_path_factory.mktemp("shardprop")
    feats, as_of, population = rule
    source = write_source(tmp / "src", pop)
    try:
        run_sharded_ingest(source, tmp / "sharded", n)
    except UsageError as e:  # ingest refuses to leave a shard empty
        assume("empty" not in str(e))
        raise
    run_ingest(source, tmp / "single")
    write_codelists(tmp)
    (tmp / "r.yml").write_text(list_rule(feats, as_of, population, cap))
    want = _outputs(tmp / "r.yml", tmp / "single", tmp / "one")
    (tmp / "k.yml").write_text(KPIS)
    with cfspark.on(spark) if on_spark else contextlib.nullcontext():
        got = _outputs(tmp / "r.yml", tmp / "sharded", tmp / "many")
        kpis = _kpis(tmp / "k.yml", tmp / "single", tmp / "sharded")
    for want_k, got_k in kpis:  # before disclosure control, then after
        assert got_k.num_rows > 0 and got_k.equals(want_k), (n, on_spark)
    if isinstance(want[0], type):
        event(f"the same error: {want[0].__name__}")
        assert got == want, (n, on_spark, feats)
        return
    event(f"{n} shard(s){' on Spark' if on_spark else ''}; {'someone' if want[1][0].num_rows else 'nobody'} listed")
    assert got[0].equals(want[0]), (n, on_spark, feats)
    assert got[1][0].equals(want[1][0]) and got[1][1] == want[1][1], (n, on_spark, feats)


@st.composite
def budget_texts(draw) -> str:
    """The shipped Year of Care budget with its cohort, merge size, trim and profile drawn."""
    text = (RULES / "budgets" / "ltc_year_of_care.yml").read_text()
    swaps = {"  when: age >= 18 and ltc_count >= 1\n": f"  when: age >= {draw(st.sampled_from([18, 65]))} "
                                                       f"and ltc_count >= {draw(st.integers(1, 3))}\n",
             "min_category_size: 30": f"min_category_size: {draw(st.sampled_from([1, 5, 30, 200]))}",
             "trim: {above_percentile: 99, method: cap}":
                 f"trim: {{above_percentile: {draw(st.sampled_from([90, 99.5, 100]))}, "
                 f"method: {draw(st.sampled_from(['cap', 'remove']))}}}",
             "profile: baseline ": f"profile: {draw(st.sampled_from(['baseline', 'flat']))} "}
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def _budget(path, store, out):
    """Every table of the budget's year, or the error."""
    return _or_error(store, lambda: run_budget(path, store, parse_year("2026-27"), out, history_path=out / "kpi.duckdb",
                                               register_path=out / "budgets.duckdb").tables)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 10_000), st.integers(300, 1_500), st.sampled_from([1, 2, 7]), budget_texts(), st.booleans())
def test_shards_and_spark_give_the_single_stores_budget(tmp_path_factory, spark, seed, patients, n, text, on_spark):
    """Random synthetic populations and budgets: every table of the year equal to the bit."""
    tmp = tmp_path_factory.mktemp("budgetprop")
    single_and_sharded(tmp, patients, seed, [n])
    shutil.copytree(RULES, tmp / "rules")  # the cohort rule and codelists, by relative path
    path = tmp / "rules" / "budgets" / "drawn.yml"
    path.write_text(text)
    want = _budget(path, tmp / "single", tmp / "one")
    with cfspark.on(spark) if on_spark else contextlib.nullcontext():
        got = _budget(path, tmp / f"sh{n}", tmp / "many")
    if isinstance(want, tuple):
        event(f"the same error: {want[0].__name__}")
        assert got == want, (n, on_spark)
        return
    event(f"{n} shard(s){' on Spark' if on_spark else ''}")
    assert want["register"].num_rows > 0
    for name, table in want.items():
        assert got[name].equals(table), (name, n, on_spark)
