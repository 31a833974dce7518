"""The risk pyramid against its skilled-analyst peer (benchmarks/pyramid_peer.py; issue 14):
``casefind pyramid`` of RULE below (a transparent logistic risk over age and a year's use,
the outcome year after the score, the default bands and a 10% cut), in-process and warm, with
its four files written, against ONE DuckDB query over the database of the source tables; and,
in the same race, casefind computing without writing (``casefind_computing``). Checked first:
per practice, locality and system and band, people and admissions exactly, the rates, shares
and share to avoid to 1e-9 relative, and cost to 1e-9 relative. At 1M: docs/benchmarks.md says
how (CASEFIND_BENCH_STORE / CASEFIND_BENCH_SOURCE)."""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import duckdb

import pyramid_peer
from bench_support import check_rows, race, rounds
from casefind.pyramid import compute, report
from casefind.pyramid.bands import parse_bands
from casefind.pyramid.source import from_rule
from casefind.rules.compile import compile_rule
from casefind.store import Store

AS_OF = dt.date(2026, 10, 31)
RULE = """rule: bench_risk
title: Adults by a transparent risk score
as_of: "2026-10-31"
parameters: {b0: -5.0, b_age: 0.03, b_emergency: 0.6, b_ae: 0.25}
population: registered and alive and age >= 18
features:
  emergency_12m: count(activity, setting == "emergency_admission", within=months(12))
  ae_12m: count(activity, setting == "ae", within=months(12))
  risk: logistic(b0 + b_age * age + b_emergency * emergency_12m + b_ae * ae_12m)
criteria:
  include:
    high: risk > 0.5
"""
COLUMNS = ("level", "unit_code", "band", "people", "admissions", "admissions_per_1000", "relative_rate",
           "admissions_share", "people_share", "cost_share", "avoid_share")


def ours(rule: Path, store: Path, out: Path) -> compute.PyramidResult:
    """``casefind pyramid RULE``'s work: compile, evaluate, rank, count, write the four files."""
    result = computing(rule, store)
    report.write(out / f"pyramid-bench_risk-{AS_OF.isoformat()}", result)
    return result


def computing(rule: Path, store: Path) -> compute.PyramidResult:
    source = from_rule(compile_rule(rule, as_of=AS_OF), "risk")
    return compute.run(Store.open(store), source, compute.Options(parse_bands("0-0.5,0.5-5,5-20,20-100")))


def check_same(result: compute.PyramidResult, peer: list[dict]) -> int:
    mine = [r for r in result.table.to_pylist() if r["band"] != compute.ALL and r["people"]]
    compared = check_rows([{k: r[k] for k in COLUMNS} for r in mine],
                          [{k: r[k] for k in COLUMNS} for r in peer], ("level", "unit_code", "band"), "pyramid")
    cost = {(r["level"], r["unit_code"], r["band"]): r["cost"] for r in mine}
    for r in peer:
        assert math.isclose(cost[(r["level"], r["unit_code"], r["band"])], r["peer_cost"], rel_tol=1e-9,
                            abs_tol=0.006), r
    return compared


def test_pyramid_against_duckdb_peer(benchmark, rules_store, peer_db, tmp_path):
    rule = tmp_path / "bench_risk.yml"
    rule.write_text(RULE)
    con = duckdb.connect(str(peer_db), read_only=True)
    mine = ours(rule, rules_store, tmp_path)  # also the warm-up run
    compared = check_same(mine, pyramid_peer.run(con, AS_OF))
    assert compared > 0 and mine.meta["ranked"] > 0
    result, _ = race(benchmark, "casefind", lambda: ours(rule, rules_store, tmp_path),
                     {"duckdb_peer": lambda: pyramid_peer.run(con, AS_OF),
                      "casefind_computing": lambda: computing(rule, rules_store)}, rounds(benchmark, 3))
    benchmark.extra_info.update(compared=compared, ranked=result.meta["ranked"],
                                straddling=[e["edge"] for e in result.meta["edges"] if e["straddles"]])
    con.close()
