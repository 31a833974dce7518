"""Issue 15: what sharding and Spark cost against one store of the same patients.

The same population as the other benchmarks, ingested once more as a sharded store
(CASEFIND_BENCH_SHARDS shards, default 4; CASEFIND_BENCH_SHARDED_STORE=PATH measures one
built before). Interleaved round by round in one session, each first checked to give the
single store's output:
- ``frail.yml``'s whole run (``casefind.lists.run.run``): sharded on this machine (ours), one
  store, Spark local[2] over the shards, and the peer a skilled analyst would write (one
  DuckDB SQL query over a DuckDB database of the source tables, benchmarks/peers.py);
- all of ``triple_aim.yml`` for 12 months: sharded, one store, Spark local[2];
- the sharded ingest (``casefind ingest --shards``): this machine a shard at a time, its
  shards built on Spark local[2] (``casefind spark ingest``), one store, and DuckDB's load
  of the same Parquet into a database (benchmarks/peers.py), each sharded build checked to
  give the same snapshot id.
Peak memory of a sharded ``casefind run`` and ``casefind kpi`` is measured in a fresh
process (one shard open at a time: bounded by a shard, not by the population)."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import peers
from bench_support import SHARDS, race, ratio, rounds, run_measured
from casefind import spark as cfspark
from casefind.kpis.periods import span
from casefind.kpis.run import run_kpis
from casefind.lists.run import run
from casefind.rules.compile import compile_rule

RULES = Path(__file__).parents[1] / "rules"
FRAIL = RULES / "frail.yml"
TRIPLE_AIM = RULES / "kpis" / "triple_aim.yml"
PERIODS = span("2025-11", "2026-10")


@pytest.fixture(scope="module")
def spark():
    session = cfspark.start_session("local[2]")
    yield session
    session.stop()


def _list(result):
    return pq.read_table(result.out_dir / "list.parquet").drop_columns(["run_id"]).replace_schema_metadata(None)


def test_frail_run_sharded_vs_single_spark_and_duckdb(benchmark, rules_store, sharded_store, peer_db, spark,
                                                      bench_dir):
    rule = compile_rule(FRAIL)
    out = bench_dir / "sharded-runs"

    def on_spark():
        with cfspark.on(spark):
            return run(FRAIL, sharded_store, out / "spark")

    want = _list(run(FRAIL, rules_store, out / "single"))  # warm: kernels compiled or loaded
    assert _list(run(FRAIL, sharded_store, out / "sharded")).equals(want)
    assert _list(on_spark()).equals(want)
    sql = peers.list_query(rule.name, rule.as_of)

    def duckdb_sql():
        with duckdb.connect(str(peer_db), read_only=True) as con:
            peers.duckdb_query(con, sql)

    others = {"single_store": lambda: run(FRAIL, rules_store, out / "single"), "spark_local2": on_spark,
              "duckdb_sql": duckdb_sql}
    race(benchmark, "sharded", lambda: run(FRAIL, sharded_store, out / "sharded"), others, rounds(benchmark, 5))
    benchmark.extra_info.update(shards=SHARDS, listed=want.num_rows)


def test_triple_aim_12_months_sharded_vs_single_and_spark(benchmark, rules_store, sharded_store, spark, bench_dir):
    periods = PERIODS if not benchmark.disabled else PERIODS[-2:]  # the smoke test: two months

    def kpis(store, history, on=None):
        if on is None:
            return run_kpis(TRIPLE_AIM, store, periods, history_path=bench_dir / history).results
        with on:
            return run_kpis(TRIPLE_AIM, store, periods, history_path=bench_dir / history).results

    want = kpis(rules_store, "k-single.duckdb").drop_columns(["run_id"])
    assert kpis(sharded_store, "k-sharded.duckdb").drop_columns(["run_id"]).equals(want)
    assert kpis(sharded_store, "k-spark.duckdb", cfspark.on(spark)).drop_columns(["run_id"]).equals(want)
    others = {"single_store": lambda: kpis(rules_store, "k-single.duckdb"),
              "spark_local2": lambda: kpis(sharded_store, "k-spark.duckdb", cfspark.on(spark))}
    race(benchmark, "sharded", lambda: kpis(sharded_store, "k-sharded.duckdb"), others, rounds(benchmark, 3))
    benchmark.extra_info.update(shards=SHARDS, rows=want.num_rows)


def test_sharded_ingest_on_this_machine_vs_spark(benchmark, population, spark, bench_dir):
    from casefind.ingest import run_ingest
    from casefind.ingest.sharded import run_sharded_ingest

    out = bench_dir / "ingests"

    def sharded(name, on=None):
        with on or contextlib.nullcontext():
            return run_sharded_ingest(population, out / name, SHARDS).snapshot_id

    def duckdb_load():
        (out / "peer.duckdb").unlink(missing_ok=True)
        peers.load_duckdb(population, out / "peer.duckdb")

    want = sharded("here")
    assert sharded("spark", cfspark.on(spark)) == want
    others = {"spark_local2": lambda: sharded("spark", cfspark.on(spark)),
              "single_store": lambda: run_ingest(population, out / "single"), "duckdb_load": duckdb_load}
    if benchmark.disabled:  # the smoke test: the two builds agree (above); three more ingests are no smoke test
        others = {}
    race(benchmark, "sharded", lambda: sharded("here"), others, rounds(benchmark, 3))
    benchmark.extra_info.update(shards=SHARDS)


def test_peak_memory_sharded_against_single(benchmark, rules_store, sharded_store, bench_dir):
    """Fresh processes: a sharded run holds one shard at a time (measured with
    --benchmark-enable only: four fresh processes are no smoke test)."""
    if benchmark.disabled:
        pytest.skip("peak memory is measured with --benchmark-enable")
    cli = [sys.executable, "-m", "casefind.cli"]
    peak = {}
    for name, store in (("single", rules_store), ("sharded", sharded_store)):
        peak[f"run_{name}_gb"] = run_measured([*cli, "run", str(FRAIL), "--store", str(store),
                                               "--out", str(bench_dir / f"mem-{name}")])
        peak[f"kpi_{name}_gb"] = run_measured([*cli, "kpi", str(TRIPLE_AIM), "--store", str(store),
                                               "--from", "2025-11", "--to", "2026-10",
                                               "--history", str(bench_dir / f"mem-{name}.duckdb")])
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update({k: round(v, 2) for k, v in peak.items()}, shards=SHARDS,
                                run_sharded_over_single=ratio(peak["run_sharded_gb"], peak["run_single_gb"]),
                                kpi_sharded_over_single=ratio(peak["kpi_sharded_gb"], peak["kpi_single_gb"]))
