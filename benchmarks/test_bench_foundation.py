"""synth, ingest and store-open at scale, each beside a peer (DuckDB doing the same job).

Targets at 1M patients (issue 2): synth ≤ 60 s and ≤ 8 GB peak; ingest ≤ 60 s; open ≤ 0.2 s.
Timings are recorded, not asserted: these machines are shared and noisy."""
from __future__ import annotations

import resource
import subprocess
import sys
import time

import duckdb

from casefind.contract import INPUT_EVENT_TABLES, TABLES
from casefind.ingest import run_ingest
from casefind.store import Store
from bench_support import PATIENTS, _median_of, ratio


def _child_peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2


def test_synth(benchmark, bench_dir):
    """In a child process, so its peak memory is its own."""
    out = bench_dir / "synth-bench"

    def synth():
        subprocess.run([sys.executable, "-m", "casefind.cli", "synth", "--patients", str(PATIENTS),
                        "--seed", "3", "--out", str(out)], check=True, capture_output=True)

    benchmark.pedantic(synth, rounds=1, iterations=1)
    benchmark.extra_info["patients"] = PATIENTS
    benchmark.extra_info["peak_rss_gb"] = round(_child_peak_gb(), 2)
    rows = {}
    import pyarrow.parquet as pq

    for name in INPUT_EVENT_TABLES:
        path = out / f"{name}.parquet"
        rows[name] = pq.ParquetFile(path).metadata.num_rows if path.exists() else 0
    benchmark.extra_info["event_rows"] = rows
    benchmark.extra_info["event_rows_total"] = sum(rows.values())


def test_ingest(benchmark, population, bench_dir):
    store = bench_dir / "store"
    summary = benchmark.pedantic(lambda: run_ingest(population, store), rounds=1, iterations=1)
    rows = sum(t.read for t in summary.tables.values())
    benchmark.extra_info.update(patients=PATIENTS, rows_read=rows,
                                rows_per_second=ratio(rows, _median_of(benchmark), 0))
    # peer: DuckDB loading the same files into tables sorted by patient and date (no validation)
    con = duckdb.connect(str(bench_dir / "peer.duckdb"))
    t0 = time.perf_counter()
    for name in INPUT_EVENT_TABLES:
        path = population / f"{name}.parquet"
        if path.exists():
            con.execute(f"create or replace table {name} as select * from read_parquet('{path}') "
                        f"order by patient_id, {TABLES[name].sort_date}")
    peer = time.perf_counter() - t0
    con.close()
    benchmark.extra_info["duckdb_load_and_sort_s"] = round(peer, 2)
    benchmark.extra_info["ratio_vs_duckdb"] = ratio(_median_of(benchmark), peer)


def test_open_store(benchmark, population, bench_dir):
    store = bench_dir / "store-open"
    run_ingest(population, store)

    def open_and_touch():
        st = Store.open(store)
        a = st.table("activity")
        return int(a.offsets[-1]) + int(a["start_date"][-1])  # mapped, not read

    benchmark(open_and_touch)
    assert Store.open(store).table("activity").num_rows > 0
    db = bench_dir / "peer-open.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"create table if not exists activity as select * from "
                    f"read_parquet('{population / 'activity.parquet'}')")
    t0 = time.perf_counter()
    con = duckdb.connect(str(db), read_only=True)
    con.execute("select count(*), max(start_date) from activity").fetchall()
    benchmark.extra_info["duckdb_open_and_count_s"] = round(time.perf_counter() - t0, 4)
