"""KPIs at scale (issue 4 target at 1M patients): all of rules/kpis/triple_aim.yml for 12
monthly periods at all three levels <= 10 s.

Beside it, for reference only: the same KPIs through our reference engine's SQL (the
KPI's population and value per patient at the period end, then grouped by practice in SQL),
one query per KPI per period. The reference engine is a correctness oracle, not the
performance peer (a hand-written DuckDB / Polars peer, as benchmarks/peers.py has for
frail.yml, is not written for the 23 KPIs yet), so its figure is recorded as
``reference_sql_s``, not as a speed-up over a peer.

The reference SQL is slow at 1M (tens of seconds per period), so CASEFIND_BENCH_PEER_PERIODS
(default 1) says how many of the 12 periods it runs; its time is scaled to 12 and the
scaling is recorded beside it."""
from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from bench_support import _median_of, ratio
from casefind.engines import duckdb_sql
from casefind.kpis import compute
from casefind.kpis.periods import span
from casefind.kpis.run import run_kpis
from casefind.store import Store

TRIPLE_AIM = Path(__file__).parents[1] / "rules" / "kpis" / "triple_aim.yml"
PERIODS = span("2025-11", "2026-10")
PEER_PERIODS = int(os.environ.get("CASEFIND_BENCH_PEER_PERIODS", "1"))


def _peer(store_path, periods) -> float:
    """One query per KPI per period: per-patient population and value from the reference
    engine's SQL, then the per-practice sums in SQL."""
    st = Store.open(store_path)
    ksets = compute.compile_for(TRIPLE_AIM, periods)
    t = time.perf_counter()
    for p, ks in ksets.items():
        for m in ks.measures.values():
            con = duckdb.connect()
            per_patient = duckdb_sql.evaluate(st, {"pop": m.population, "val": m.value}, p.end, None, con=con)
            con.register("per_patient", per_patient)
            con.register("patients_practice", st.table("patients").arrow.select(["practice"]))
            con.execute("""SELECT pp.practice, count(*) AS denominator, sum(CAST(v.val AS DOUBLE)) AS numerator
                           FROM per_patient v JOIN (SELECT row_number() OVER () - 1 AS patient, practice
                                                    FROM patients_practice) pp ON pp.patient = v.patient
                           WHERE v.pop GROUP BY pp.practice""").fetchall()
            con.close()
    return time.perf_counter() - t


def test_triple_aim_12_months_all_levels(benchmark, rules_store, bench_dir):
    store = rules_store
    history = bench_dir / "kpi-history.duckdb"
    run_kpis(TRIPLE_AIM, store, PERIODS, history_path=history)  # compile (or load cached) kernels first
    result = benchmark.pedantic(lambda: run_kpis(TRIPLE_AIM, store, PERIODS, history_path=history),
                                rounds=3, iterations=1)
    peer = _peer(store, PERIODS[-PEER_PERIODS:]) * len(PERIODS) / PEER_PERIODS
    benchmark.extra_info.update(rows=result.rows, measures=result.measures, periods=len(PERIODS),
                                timings=result.timings, reference_sql_s=round(peer, 1),
                                reference_sql_periods_run=PEER_PERIODS,
                                reference_sql_over_ours=ratio(peer, _median_of(benchmark), 1))
