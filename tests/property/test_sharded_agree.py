"""Random small populations and random rules: a sharded store (1, 2 and 7 shards; with up to
six patients, some shards hold nobody) and Spark's local mode give exactly the single
store's dataset and list, ranks within the population (percentile, top) included. The rules
are test_engines_agree's, with an include criterion, a ranking and a per-practice cap added,
so that the lists' per-practice top-k merge has ties and caps to get right."""
from __future__ import annotations

import contextlib
import json

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from test_engines_agree import populations, rule_text, rules, write_codelists

from casefind import spark as cfspark
from casefind.errors import CasefindError, UsageError
from casefind.ingest import run_ingest
from casefind.ingest.sharded import run_sharded_ingest
from casefind.lists.dataset import dataset
from casefind.lists.run import run
from casefind_testdata import write_source

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


def _outputs(rule, store, out):
    """The dataset and the list (with its counts), or the error both stores must give alike."""
    try:
        table = dataset(rule, store, allow_partial=True).replace_schema_metadata(None)
        return table, _list(run(rule, store, out, allow_partial=True))
    except CasefindError as e:
        return type(e), e.message.replace(str(store), "STORE")


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
    with cfspark.on(spark) if on_spark else contextlib.nullcontext():
        got = _outputs(tmp / "r.yml", tmp / "sharded", tmp / "many")
    if isinstance(want[0], type):
        event(f"the same error: {want[0].__name__}")
        assert got == want, (n, on_spark, feats)
        return
    event(f"{n} shard(s){' on Spark' if on_spark else ''}; {'someone' if want[1][0].num_rows else 'nobody'} listed")
    assert got[0].equals(want[0]), (n, on_spark, feats)
    assert got[1][0].equals(want[1][0]) and got[1][1] == want[1][1], (n, on_spark, feats)
