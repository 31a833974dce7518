"""casefind dataset at scale (issue 9 item 5): every feature of frail.yml for everyone in its
population must take within 2x the evaluate phase of ``casefind run`` on the same store
(target at 1M patients), and nothing may get more than 25% slower than the previous figures
(docs/benchmarks.md, docs/datasets.md) without a reason.

Raced in the same session, interleaved round by round: ``dataset(rules/frail.yml, store)``
(what ``casefind dataset`` calls: compile, open, check, evaluate, assemble; the default
opt-out policy), the run's evaluate phase (on a freshly opened store, as a run has it), and
the peers (benchmarks/peers.py, independent of casefind's engines), each first checked to
give the same table, patient by patient and column by column: ONE DuckDB SQL query over a
DuckDB database of the source tables and ONE Polars lazy query over the Parquet source. Then
``casefind dataset --output FILE.parquet`` in a fresh process against the peers as scripts in
their own processes writing the same Parquet.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

import peers
from bench_support import check_rows, race, ratio, rounds
from casefind.engines import native
from casefind.lists.dataset import dataset
from casefind.lists.run import rule_expressions
from casefind.rules.compile import compile_rule
from casefind.store import Store

RULES_DIR = Path(__file__).parents[1] / "rules"
FRAIL = RULES_DIR / "frail.yml"
PEERS_PY = Path(__file__).with_name("peers.py")


def _check(rule, ours, peer_rows, what) -> int:
    return check_rows(ours.to_pylist(), peer_rows, ("patient_id",), what, rule.output_round)


def test_dataset_vs_run_evaluate_vs_duckdb_and_polars(benchmark, rules_store, population, peer_db):
    rule = compile_rule(FRAIL)
    exprs = rule_expressions(rule)
    st = Store.open(rules_store)
    native.evaluate(st, exprs, rule.as_of, rule.population)  # warm: kernels compiled (or loaded from the cache)
    table = dataset(FRAIL, rules_store)
    assert table.num_rows > 0 and set(rule.features) <= set(table.column_names)
    args = {"as_of": rule.as_of, "min_age": rule.parameters["min_age"].value}
    sql = peers.frail_sql(peers.FRAIL_DATASET_SQL, **args)
    with duckdb.connect(str(peer_db), read_only=True) as con:
        duck = peers.duckdb_query(con, sql)
    polars_df = peers.frail_dataset_polars(population, **args)
    assert duck.column_names == table.column_names == polars_df.columns
    compared = {"duckdb_sql": _check(rule, table, duck.to_pylist(), "DuckDB SQL dataset"),
                "polars_lazy": _check(rule, table, polars_df.to_dicts(), "Polars dataset")}

    def evaluate():  # as `casefind run` does: open the store, then evaluate
        native.evaluate(Store.open(rules_store), exprs, rule.as_of, rule.population)

    def duckdb_sql():
        with duckdb.connect(str(peer_db), read_only=True) as con:
            peers.duckdb_query(con, sql)

    _, times = race(benchmark, "dataset", lambda: dataset(FRAIL, rules_store),
                    {"run_evaluate_phase": evaluate, "duckdb_sql": duckdb_sql,
                     "polars_lazy": lambda: peers.frail_dataset_polars(population, **args)},
                    rounds(benchmark, 7))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    benchmark.extra_info.update(rule="frail", patients=st.n_patients, rows=table.num_rows, columns=table.num_columns,
                                rows_compared=compared,
                                dataset_over_run_evaluate=ratio(med["dataset"], med["run_evaluate_phase"]))
    if st.n_patients >= 1_000_000 and not benchmark.disabled:
        assert med["dataset"] <= 2 * med["run_evaluate_phase"], benchmark.extra_info


def test_dataset_fresh_process_vs_peer_processes(benchmark, rules_store, population, peer_db, bench_dir):
    out = bench_dir / "frail-dataset.parquet"
    cli = [sys.executable, "-m", "casefind.cli", "dataset", str(FRAIL), "--store", str(rules_store),
           "--output", str(out)]
    subprocess.run(cli, check=True, capture_output=True)  # the kernel cache holds frail's kernels
    peer_out = {e: bench_dir / f"peer-dataset-{e}.parquet" for e in ("duckdb", "polars")}
    peer_in = {"duckdb": str(peer_db), "polars": str(population)}

    def peer(engine):
        return lambda: subprocess.run([sys.executable, str(PEERS_PY), "dataset", engine, peer_in[engine],
                                       str(peer_out[engine])], check=True, capture_output=True)

    race(benchmark, "casefind_dataset_process", lambda: subprocess.run(cli, check=True, capture_output=True),
         {"duckdb_sql_process": peer("duckdb"), "polars_lazy_process": peer("polars")}, rounds(benchmark, 5))
    ours = pq.read_table(out)
    mine = sorted(ours.column("patient_id").to_pylist())
    for engine, path in peer_out.items():  # the same patients (the peers order them by id, ours by store order)
        theirs = pq.read_table(path)
        assert theirs.num_rows == ours.num_rows and theirs.num_columns == ours.num_columns, engine
        assert sorted(theirs.column("patient_id").to_pylist()) == mine, engine
        path.unlink(missing_ok=True)
    benchmark.extra_info.update(rule="frail", rows=ours.num_rows, columns=ours.num_columns)
    out.unlink(missing_ok=True)
