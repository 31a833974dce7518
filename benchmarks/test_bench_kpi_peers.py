"""KPIs against their skilled-analyst peer (benchmarks/kpi_peers.py): all of
rules/kpis/triple_aim.yml for 12 monthly periods, every level and breakdown, against one
DuckDB query per measure over all 12 periods for the 19 measures the peer writes (the other
four are ours alone, so the ratio flatters the peer). Checked first: the peer's numerator and
denominator per period and practice equal ours for each of its measures."""
from __future__ import annotations

import math
from pathlib import Path

import duckdb

import kpi_peers
from bench_support import race, record, rounds
from casefind.kpis import compute
from casefind.kpis.periods import span
from casefind.store import Store

TRIPLE_AIM = Path(__file__).parents[1] / "rules" / "kpis" / "triple_aim.yml"
PERIODS = span("2025-11", "2026-10")


def ours(store: Store):
    ksets = compute.compile_for(TRIPLE_AIM, PERIODS)
    return compute.compute(store, ksets, compute.evaluate_chunks(store, ksets), "bench")  # as casefind kpi does


def practice_sums(results) -> dict[tuple, tuple[float, float]]:
    """(kpi, period end, practice) -> (numerator, denominator), crude and unbroken down."""
    out = {}
    for r in results.select(["kpi", "period_end", "level", "unit_code", "breakdown", "standardised",
                          "numerator", "denominator"]).to_pylist():
        if r["level"] == "practice" and not r["breakdown"] and not r["standardised"]:
            out[(r["kpi"], r["period_end"], r["unit_code"])] = (r["numerator"] or 0.0, r["denominator"] or 0.0)
    return out


def peer_sums(peer: dict[str, list[tuple]]) -> dict[tuple, tuple[float, float]]:
    out = {}
    for name, rows in peer.items():
        kind = kpi_peers.MEASURES[name][0]
        for d, practice, n, k, s in rows:
            out[(name, d, practice)] = (float(s or 0), float(k if kind == "mean" else n))
    return out


def check_same(ours_: dict, peer: dict) -> int:
    keys = {k for k in ours_ if k[0] in kpi_peers.MEASURES} | set(peer)
    bad = [(k, ours_.get(k), peer.get(k)) for k in sorted(keys)
           if not all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
                      for a, b in zip(ours_.get(k, (0.0, 0.0)), peer.get(k, (0.0, 0.0))))]
    assert not bad, f"{len(bad)} of {len(keys)} differ, e.g. {bad[:5]}"
    return len(keys)


def test_triple_aim_against_duckdb_peer(benchmark, rules_store, peer_db):
    store = Store.open(rules_store)
    con = duckdb.connect(str(peer_db), read_only=True)
    ends = [p.end for p in PERIODS]
    compared = check_same(practice_sums(ours(store)), peer_sums(kpi_peers.run_all(con, ends)))
    _, times = race(benchmark, "casefind", lambda: ours(store),
                    {"duckdb_peer": lambda: kpi_peers.run_all(con, ends)}, rounds(benchmark, 3))
    record(benchmark, "casefind", times)
    benchmark.extra_info.update(compared=compared, peer_measures=len(kpi_peers.MEASURES), periods=len(PERIODS))
    con.close()
