"""Year of Care budget against its skilled-analyst peer (benchmarks/budget_peer.py; issue 13):
benchmarks/budgets/bench_ltc.yml for 2025-26 (the last year the synthetic data covers in
full), casefind's ``run_budget`` in-process and warm (what ``casefind budget`` runs, writing
its folder and register database included) against the same budget as a short script of
DuckDB queries over the database of the source tables; and, in the same race, casefind
computing without writing (``casefind_computing``: the peer takes away only the answers
checked below, casefind also writes tagged activity, shadow budgets and the statement). Checked first: per practice and
month the budget and actual to 1e-6 relative and people at the month's end exactly, the
tariffs to 1e-9, the baseline profile's weights, and joiners and leavers by reason per month
exactly. At 1M: docs/benchmarks.md says how (CASEFIND_BENCH_STORE / CASEFIND_BENCH_SOURCE)."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import duckdb

import budget_peer
from bench_support import race, rounds
from casefind.budgets import compute, rollup
from casefind.budgets.define import load_budget
from casefind.budgets.run import BudgetRunResult, run_budget
from casefind.budgets.years import parse_year
from casefind.store import Store

RULES = Path(__file__).parents[1] / "rules"
BUDGET = Path(__file__).parent / "budgets" / "bench_ltc.yml"
CODELIST = Path("codelists") / "published" / "qof_snomed.csv"
YEAR = "2025-26"


def stage(root: Path) -> Path:
    """bench_ltc.yml in a rules tree of its own (ROOT/rules/budgets/) beside the codelist it
    reads: a budget file's codelists must lie in its rules folder."""
    rules = root / "rules"
    (rules / "budgets").mkdir(parents=True, exist_ok=True)
    (rules / CODELIST).parent.mkdir(parents=True, exist_ok=True)
    for f in (RULES / CODELIST).parent.glob(CODELIST.stem + ".*"):
        shutil.copy(f, rules / CODELIST.parent / f.name)
    return Path(shutil.copy(BUDGET, rules / "budgets" / BUDGET.name))


def ours(budget: Path, store: Path, out: Path) -> BudgetRunResult:
    """``casefind budget``'s run: every table, the statement, the folder and the register."""
    return run_budget(budget, store, parse_year(YEAR), out / "budgets", history_path=out / "kpi.duckdb",
                      register_path=out / "budgets.duckdb")


def ours_computing(budget: Path, store: Path):
    """casefind computing what the peer computes (and its other levels and categories), writing
    nothing: the evaluation, tariffs, register, tagging, the monthly roll-up and movement."""
    c = compute.run(Store.open(store), load_budget(budget), parse_year(YEAR))
    return rollup.monthly(c), rollup.movement(c)


def casefind_answer(r: BudgetRunResult) -> budget_peer.PeerBudget:
    """casefind's tables in the peer's shape (practices with no one in the cohort left out)."""
    t = r.tables
    tariffs = dict(zip(t["tariffs"]["category"].to_pylist(), t["tariffs"]["tariff"].to_pylist()))
    labels = t["movement"]["month"].to_pylist()
    practice_month = {}
    for row in t["monthly"].to_pylist():
        if row["level"] == "practice" and row["category"] == "all" and (row["people"] or row["budget"]
                                                                         or row["cohort_days"]):
            practice_month[(row["unit_code"], labels.index(row["month"]) + 1)] = (
                row["people"], row["budget"], row["actual"])
    movement = {}
    for k, row in enumerate(t["movement"].to_pylist(), start=1):
        counts = (row["joined"], row["left_died"], row["left_deregistered"], row["left_no_longer_qualifies"])
        if any(counts):
            movement[k] = counts
    return budget_peer.PeerBudget(tariffs, r.statement["profile_weights"], practice_month, movement)


def _close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6)


def check_same(mine: budget_peer.PeerBudget, peer: budget_peer.PeerBudget) -> int:
    """The peer's answer equals casefind's; returns the practice-months compared."""
    assert mine.tariffs.keys() == peer.tariffs.keys()
    bad = {c: (mine.tariffs[c], peer.tariffs[c]) for c in mine.tariffs
           if not _close(mine.tariffs[c], peer.tariffs[c], 1e-9)}
    assert not bad, f"tariffs differ (casefind, peer): {bad}"
    assert all(_close(a, b, 1e-9) for a, b in zip(mine.weights, peer.weights, strict=True)), (mine.weights,
                                                                                               peer.weights)
    assert mine.movement == peer.movement, f"joiners/leavers (casefind, peer): {mine.movement} {peer.movement}"
    keys = mine.practice_month.keys() | peer.practice_month.keys()
    zero = (0, 0.0, 0.0)
    differ = []
    for k in sorted(keys):
        (n1, b1, a1), (n2, b2, a2) = mine.practice_month.get(k, zero), peer.practice_month.get(k, zero)
        if n1 != n2 or not _close(b1, b2, 1e-6) or not _close(a1, a2, 1e-6):
            differ.append((k, (n1, b1, a1), (n2, b2, a2)))
    assert not differ, f"{len(differ)} of {len(keys)} practice-months differ (casefind, peer), e.g. {differ[:3]}"
    return len(keys)


def test_budget_against_duckdb_peer(benchmark, rules_store, peer_db, tmp_path):
    budget = stage(tmp_path)
    con = duckdb.connect(str(peer_db), read_only=True)
    mine = ours(budget, rules_store, tmp_path)  # also the warm-up run
    compared = check_same(casefind_answer(mine), budget_peer.run(con))
    assert compared > 0 and len(mine.tables["register"]) > 0
    result, _ = race(benchmark, "casefind", lambda: ours(budget, rules_store, tmp_path),
                     {"duckdb_peer": lambda: budget_peer.run(con),
                      "casefind_computing": lambda: ours_computing(budget, rules_store)}, rounds(benchmark, 3))
    benchmark.extra_info.update(compared=compared, spells=len(result.tables["register"]),
                                timings={k: round(v, 3) for k, v in result.timings.items()})
    con.close()
