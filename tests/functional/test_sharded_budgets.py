"""`casefind budget` on a sharded store gives exactly what one store of the same patients
gives (docs/scale-out.md): every table of the budget folder equal to the bit, rows in the
same order, the statement's numbers the same; and `budget simulate` the same table. A
budget that ranks within the population is refused, not ranked within each shard."""
from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from casefind.budgets import parts, simulate, tariffs
from casefind.budgets.define import Trim
from casefind.budgets.run import run_budget
from casefind.budgets.scenario import load_scenario
from casefind.budgets.years import parse_year
from casefind.store.sharded import open_any
from casefind_testdata import cli, single_and_sharded

RULES = Path(__file__).resolve().parents[2] / "rules"
BUDGETS = RULES / "budgets"
SHARDS = (2, 7)
YEAR = "2026-27"
# what differs by construction: the sharded store's own snapshot, and so the run id
OWN = {"store_snapshot", "run_id"}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """12,000 patients: two practices in two localities, so store order crosses practices."""
    return single_and_sharded(tmp_path_factory.mktemp("budgets"), 12_000, 5, SHARDS)


def _history(store: Path) -> Path:
    """One KPI history path for every run (none is there: the outcome's note names it)."""
    return store.parent / "kpi-history.duckdb"


def _run(budget: str, store: Path, out: Path):
    return run_budget(BUDGETS / f"{budget}.yml", store, parse_year(YEAR), out, history_path=_history(store),
                      register_path=out / "budgets.duckdb")


@pytest.fixture(scope="module")
def single(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("single_budgets")
    return {b: _run(b, stores / "single", out) for b in ("ltc_year_of_care", "lead_provider")}


def _statement_numbers(statement: dict) -> dict:
    return {k: v for k, v in statement.items() if k not in OWN}


@pytest.mark.parametrize("n", SHARDS)
@pytest.mark.parametrize("budget", ["ltc_year_of_care", "lead_provider"])  # baseline profile and trims; flat, manual
def test_a_sharded_budget_is_the_single_stores(stores, single, budget, n, tmp_path):
    want = single[budget]
    monthly = want.tables["monthly"]
    assert len(set(monthly.filter(pc.equal(monthly["level"], "locality"))["unit_code"].to_pylist())) == 2
    assert want.tables["tagged_activity"].num_rows > 0 and pc.sum(want.tables["movement"]["joined"]).as_py() > 0
    got = _run(budget, stores / f"sh{n}", tmp_path)
    for name, table in want.tables.items():
        assert got.tables[name].equals(table), (name, n)  # dictionaries, order and every bit
    assert _statement_numbers(got.statement) == _statement_numbers(want.statement)
    assert got.statement["store_snapshot"] == open_any(stores / f"sh{n}").snapshot_id


def test_the_cli_writes_a_sharded_budget_folder_equal_to_the_single_stores(stores, single, tmp_path):
    r = cli("budget", BUDGETS / "ltc_year_of_care.yml", "--year", YEAR, "--store", stores / "sh7", "--out", tmp_path,
            "--history", _history(stores / "sh7"), "--register", tmp_path / "budgets.duckdb", "--json")
    assert r.exit_code == 0, r.output
    folder = Path(json.loads(r.stdout)["folder"])
    want = single["ltc_year_of_care"].folder
    for f in sorted(want.glob("*.parquet")):
        assert pq.read_table(folder / f.name).equals(pq.read_table(f)), f.name
    a, b = (json.loads((x / "statement.json").read_text()) for x in (want, folder))
    assert _statement_numbers(a) == _statement_numbers(b)


@pytest.mark.parametrize("ranked", [False, True])  # True: ranked by a percentile, pooled over the shards
def test_a_simulation_on_a_sharded_store_is_the_single_stores(stores, ranked, tmp_path):
    path = BUDGETS / "scenarios" / "fewer_emergency_admissions.yml"
    if ranked:
        cost = "sum(activity.cost, within=months(12))"
        text = path.read_text()
        assert f"rank_by: {cost}" in text
        path = tmp_path / path.name
        path.write_text(text.replace(f"rank_by: {cost}", f"rank_by: percentile({cost})"))
    scenario = load_scenario(path)
    as_of = parse_year(YEAR).start.replace(month=10, day=31)
    want = simulate.run(open_any(stores / "single"), scenario, as_of)
    got = simulate.run(open_any(stores / "sh7"), scenario, as_of)
    assert want.table.num_rows > 0 and got.table.equals(want.table)
    assert {k: v for k, v in got.meta.items() if k not in OWN} == {k: v for k, v in want.meta.items() if k not in OWN}


def test_a_budget_that_ranks_within_the_population_is_refused_on_a_sharded_store(stores, tmp_path):
    """It would rank within each shard; refused with a clear error (exit 2), not wrong."""
    shutil.copytree(RULES, tmp_path / "rules")  # the budget's rule and codelists, by relative path
    text = (BUDGETS / "ltc_year_of_care.yml").read_text()
    assert "  when: age >= 18 and ltc_count >= 1\n" in text
    ranked = tmp_path / "rules" / "budgets" / "ranked.yml"
    ranked.write_text(text.replace("  when: age >= 18 and ltc_count >= 1\n",
                                   "  when: age >= 18 and ltc_count >= 1 and percentile(age) >= 1\n"))
    args = ("--year", YEAR, "--out", tmp_path / "out", "--history", tmp_path / "kpi.duckdb")
    ok = cli("budget", ranked, "--store", stores / "single", *args, "--register", tmp_path / "a.duckdb")
    assert ok.exit_code == 0, ok.output
    r = cli("budget", ranked, "--store", stores / "sh2", *args, "--register", tmp_path / "b.duckdb")
    assert r.exit_code == 2 and "ranks within the population" in r.output and "Traceback" not in r.output


def test_the_trimmed_mean_and_the_population_sums_do_not_depend_on_the_order_or_split():
    """What makes the merge exact: the trims' means (the shadow rate pools every shard's
    costs in shard order) and the compensated sums per practice added shard by shard."""
    rng = np.random.default_rng(3)
    costs = rng.lognormal(6, 2, 5000) * rng.choice([1e-3, 1.0, 1e4], 5000)
    shuffled = costs.copy()
    random.Random(1).shuffle(shuffled)
    for trim in (Trim(99.0, "cap"), Trim(95.0, "remove")):
        assert tariffs.trimmed(shuffled, trim) == tariffs.trimmed(costs, trim)
    assert tariffs.trimmed(costs, Trim(100.0, "cap"))[2] == math.fsum(costs) / len(costs)
    group = rng.integers(0, 3, len(costs))
    whole = parts.compensated_sums(group, costs, 3)
    for cut in (1, 1234, 4999):
        added = parts.add_sums([parts.compensated_sums(group[:cut], costs[:cut], 3),
                                parts.compensated_sums(group[cut:], costs[cut:], 3)])
        assert np.array_equal(added[0] + added[1], whole[0] + whole[1])
    assert np.array_equal(whole[0] + whole[1], [math.fsum(costs[group == g]) for g in range(3)])
