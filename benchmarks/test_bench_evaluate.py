"""casefind evaluate (issue 14) against a hand-written DuckDB SQL peer (benchmarks/evaluate_peer.py).

The work that grows with the population is the engine stage: every patient's eligibility,
matching features and outcomes at each index month end and a window later (24 dates for
the shipped spec, rules/evaluations/case_management.yml). ``ours`` evaluates them all in one
fused pass (``casefind.evaluate.outcomes.evaluate``, the native engine; the evaluation
itself needs less: the features at the index months, the outcomes of the matched only);
the peer computes the same per-patient values in SQL over the source tables. Checked first, per date: people
eligible and their ages, and the sums of emergency admissions, cost, bed days, distinct
diagnosis codes and deaths, equal (cost to 1e-9 relative). The whole evaluation (index
dates, values, propensity matching, balance, effects; no report) runs in the same race as
``casefind_whole_evaluation``, for the figure a user waits for."""
from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

import evaluate_peer
from bench_support import check_rows, race, rounds
from casefind.evaluate import outcomes
from casefind.evaluate.run import evaluate
from casefind.evaluate.spec import load_spec
from casefind.store import Store

SPEC = Path(__file__).parents[1] / "rules" / "evaluations" / "case_management.yml"
MONTHS = [outcomes.month_end(2024, 11 + k) for k in range(12)]
DATES = MONTHS + [outcomes.months_later(m, 12) for m in MONTHS]


def ours(store: Path) -> outcomes.Values:
    """Everything at every date for everyone, as the peer computes it (the evaluation itself
    reads the features at the index months and the outcomes of the matched only)."""
    spec = load_spec(SPEC)
    return outcomes.evaluate(Store.open(store), {**outcomes.expressions(spec), **outcomes.outcome_expressions(spec)},
                             DATES)


def sums(v: outcomes.Values) -> list[dict]:
    """casefind's values in the peer's shape: per date, sums over patients."""
    rows = []
    for k, d in enumerate(DATES):
        eligible = v.at("eligible", d) == 1
        outcome = {name: np.nan_to_num(v.at(f"outcome|{name}", d)) for name in
                   ("emergency_admissions", "cost", "bed_days", "deaths")}
        ltcs = np.nan_to_num(v.at("feature|coded_conditions", d))
        rows.append({"k": k, "eligible": int(eligible.sum()),
                     "age_eligible": int(v.at("feature|age", d)[eligible].sum()),
                     "emergency": int(outcome["emergency_admissions"].sum()), "cost": float(outcome["cost"].sum()),
                     "bed_days": int(outcome["bed_days"].sum()), "ltcs": int(ltcs.sum()),
                     "dead": int(outcome["deaths"].sum())})
    return rows


def test_evaluate_against_duckdb_peer(benchmark, rules_store, peer_db):
    with duckdb.connect(str(peer_db), read_only=False) as con:  # closed on failure too: the file is shared
        mine = sums(ours(rules_store))  # also the warm-up run
        compared = check_rows(mine, evaluate_peer.run(con, DATES), ("k",), "evaluate values per date")
        assert compared == len(DATES) and mine[0]["eligible"] > 0
        race(benchmark, "casefind", lambda: ours(rules_store) and None,  # nothing held between rounds
                        {"duckdb_peer": lambda: evaluate_peer.run(con, DATES),
                         "casefind_whole_evaluation": lambda: evaluate(SPEC, rules_store)}, rounds(benchmark, 3))
    result = evaluate(SPEC, rules_store)
    benchmark.extra_info.update(dates=len(DATES), counts=result.counts,
                                timings={k: round(v, 3) for k, v in result.timings.items()})
