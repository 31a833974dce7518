"""Issue 15 item 5: the main commands on one machine as the population grows, on a sharded store.

Measures a sharded store (CASEFIND_BENCH_SHARDED_STORE, e.g. 10M patients in 16 shards built by
``casefind ingest SRC --store S --shards 16``; otherwise the session's population in
CASEFIND_BENCH_SHARDS shards) with no single store beside it: a single store of 10M is what
does not fit. The peers read the same source (CASEFIND_BENCH_SOURCE) as the Parquet it is,
through DuckDB views (``peers.parquet_views``: at 500M rows an analyst would not build a
database first), each first checked to give our answer:
- ``frail.yml``'s whole run (``casefind.lists.run.run``) against ONE DuckDB SQL query, and
  with CASEFIND_BENCH_POLARS=1 one Polars lazy query over the Parquet (off by default: at 10M
  it is the memory of the machine that is measured);
- frail's dataset (every feature for everyone in its population) against the DuckDB query
  (and, with CASEFIND_BENCH_POLARS=1, the Polars lazy query);
- all of ``triple_aim.yml`` for 12 months, once (minutes at 10M), against one DuckDB query per
  measure over all 12 periods (benchmarks/kpi_peers.py; 19 of the 23 measures);
- peak memory of ``casefind run``, ``casefind dataset --output`` and ``casefind kpi`` in fresh
  processes.
Each figure carries the patients and seconds per million, for the ratio to a linear fit
(docs/scale-out.md)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import kpi_peers
import peers
from bench_support import check_rows, race, rounds, run_measured, summary
from casefind.kpis import compute
from casefind.kpis.periods import span
from casefind.kpis.sharded import compute_sharded
from casefind.lists.dataset import dataset
from casefind.lists.run import run
from casefind.rules.compile import compile_rule
from casefind.store.sharded import ShardedStore
from test_bench_kpi_peers import check_same, peer_sums, practice_sums

RULES = Path(__file__).parents[1] / "rules"
FRAIL = RULES / "frail.yml"
TRIPLE_AIM = RULES / "kpis" / "triple_aim.yml"
PERIODS = span("2025-11", "2026-10")
POLARS = os.environ.get("CASEFIND_BENCH_POLARS") == "1"


@pytest.fixture(scope="module")
def shards(sharded_store):
    return ShardedStore(sharded_store)


@pytest.fixture(scope="module")
def views(population):
    con = peers.parquet_views(population)
    yield con
    con.close()


def _size(benchmark, shards: ShardedStore, times: list[float] | None = None) -> None:
    patients = shards.n_patients
    benchmark.extra_info.update(patients=patients, shards=shards.n_shards)
    if times:
        benchmark.extra_info["median_s_per_million"] = round(summary(times)["median"] / (patients / 1e6), 3)


def test_frail_run_against_duckdb_over_the_parquet(benchmark, sharded_store, shards, views, population, bench_dir):
    rule = compile_rule(FRAIL)
    out = bench_dir / "scale-runs"
    first = run(FRAIL, sharded_store, out)  # warm: kernels compiled or loaded
    ours = pq.read_table(first.out_dir / "list.parquet").to_pylist()
    sql = peers.list_query(rule.name, rule.as_of)
    key = ("practice", "rank")
    compared = {"duckdb_sql": check_rows(ours, peers.duckdb_query(views, sql).to_pylist(), key,
                                         "DuckDB SQL over the Parquet", rule.output_round)}
    others = {"duckdb_sql_parquet": lambda: peers.duckdb_query(views, sql)}
    if POLARS:
        compared["polars_lazy"] = check_rows(ours, peers.list_polars(rule.name, population, rule.as_of).to_dicts(),
                                             key, "Polars list", rule.output_round)
        others["polars_lazy"] = lambda: peers.list_polars(rule.name, population, rule.as_of)
    _, times = race(benchmark, "sharded_run", lambda: run(FRAIL, sharded_store, out), others, rounds(benchmark, 3))
    _size(benchmark, shards, times["sharded_run"])
    benchmark.extra_info.update(listed=len(ours), rows_compared=compared)


def test_frail_dataset_against_duckdb_over_the_parquet(benchmark, sharded_store, shards, views, population):
    rule = compile_rule(FRAIL)
    args = {"as_of": rule.as_of, "min_age": rule.parameters["min_age"].value}
    sql = peers.frail_sql(peers.FRAIL_DATASET_SQL, **args)
    table = dataset(FRAIL, sharded_store)
    key = ("patient_id",)
    compared = {"duckdb_sql": check_rows(table.to_pylist(), peers.duckdb_query(views, sql).to_pylist(), key,
                                         "DuckDB SQL dataset over the Parquet", rule.output_round)}
    others = {"duckdb_sql_parquet": lambda: peers.duckdb_query(views, sql)}
    if POLARS:
        polars_rows = peers.frail_dataset_polars(population, **args).to_dicts()
        compared["polars_lazy"] = check_rows(table.to_pylist(), polars_rows, key, "Polars dataset", rule.output_round)
        others["polars_lazy"] = lambda: peers.frail_dataset_polars(population, **args)
    _, times = race(benchmark, "sharded_dataset", lambda: dataset(FRAIL, sharded_store), others,
                    rounds(benchmark, 3))
    _size(benchmark, shards, times["sharded_dataset"])
    benchmark.extra_info.update(rows=table.num_rows, columns=table.num_columns, rows_compared=compared)


def test_triple_aim_12_months_against_duckdb_over_the_parquet(benchmark, shards, views):
    periods = PERIODS if not benchmark.disabled else PERIODS[-2:]  # the smoke test: two months
    ends = [p.end for p in periods]

    def ours():  # as `casefind kpi` computes them, before disclosure control (the peer has none)
        return compute_sharded(shards, compute.compile_for(TRIPLE_AIM, periods), "bench")

    compared = check_same(practice_sums(ours()), peer_sums(kpi_peers.run_all(views, ends)))
    peer = {"duckdb_per_measure_parquet": lambda: kpi_peers.run_all(views, ends)}
    _, times = race(benchmark, "sharded_kpis", ours, peer, rounds(benchmark, 1))
    _size(benchmark, shards, times["sharded_kpis"])
    benchmark.extra_info.update(periods=len(periods), practice_sums_compared=compared)


def test_peak_memory_of_fresh_processes(benchmark, sharded_store, shards, bench_dir):
    """What one machine needs: each command in a fresh process, one shard open at a time
    (measured with --benchmark-enable only)."""
    if benchmark.disabled:
        pytest.skip("peak memory is measured with --benchmark-enable")
    cli = [sys.executable, "-m", "casefind.cli"]
    store = ["--store", str(sharded_store)]
    peak = {
        "run_gb": run_measured([*cli, "run", str(FRAIL), *store, "--out", str(bench_dir / "scale-mem")]),
        "dataset_gb": run_measured([*cli, "dataset", str(FRAIL), *store,
                                    "--output", str(bench_dir / "scale-mem-dataset.parquet")]),
        "kpi_12_months_gb": run_measured([*cli, "kpi", str(TRIPLE_AIM), *store, "--from", "2025-11", "--to", "2026-10",
                                          "--history", str(bench_dir / "scale-mem.duckdb")]),
    }
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    _size(benchmark, shards)
    benchmark.extra_info.update({k: round(v, 2) for k, v in peak.items()})
