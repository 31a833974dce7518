"""casefind budget simulate over a small synthetic store: the folder it writes, the cohorts'
sizes, both engines agreeing, a budget's folder, and mistakes refused."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from casefind.budgets import simulate as sim
from casefind.budgets.scenario import load_scenario
from casefind.cli_budget_simulate import simulate_command
from casefind.engines.base import ENGINES
from casefind.errors import CasefindError, UsageError
from casefind.rules.errors import RuleError
from casefind.store import Store
from casefind_testdata import synthetic_store

SHIPPED = Path(__file__).parents[2] / "rules" / "budgets" / "scenarios" / "fewer_emergency_admissions.yml"
BUDGET = Path(__file__).parents[2] / "rules" / "budgets" / "ltc_year_of_care.yml"
AS_OF = "2026-10-31"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("simulate"), 2500, 13)


def invoke(*args):
    return CliRunner().invoke(simulate_command, [str(a) for a in args], catch_exceptions=False)


def test_the_shipped_scenario_writes_its_folder(store, tmp_path):
    r = invoke("--scenario", SHIPPED, "--store", store, "--out", tmp_path, "--as-of", AS_OF)
    assert r.exit_code == 0, r.output
    folder = tmp_path / "simulation-fewer_emergency_admissions"
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # no build folder left beside it
    table = pq.read_table(folder / "simulation.parquet")
    assert table.schema == sim.SCHEMA
    assert table.column("year").to_pylist() == [1] * 4 + [2] * 4 + [3] * 4
    meta = json.loads((folder / "simulation.json").read_text())
    assert meta["file_sha256"] and meta["scenario_text"] == SHIPPED.read_text()
    assert meta["as_of"] == AS_OF and meta["years"] == 3 and len(meta["assumptions"]) >= 8
    sizes = [b - a for a, b in sim.band_edges(meta["population"], load_scenario(SHIPPED).bands)]
    assert table.column("patients").to_pylist()[:4] == sizes
    rows = table.to_pylist()
    for t in meta["totals"]:
        mine = [x for x in rows if x["year"] == t["year"]]
        assert t["patients"] == sum(sizes)
        assert t["baseline_total"] == pytest.approx(sum(x["baseline_total"] for x in mine), abs=0.01)
    year1, year2 = rows[0], rows[4]
    assert year1["baseline_total"] == pytest.approx(year1["baseline_mean"] * year1["patients"])
    assert year2["baseline_total"] == pytest.approx(year1["baseline_total"] * 1.02, abs=0.01)  # growth: 2%
    assert year1["scenario_total"] < year1["baseline_total"]  # the top 0.5% cost less with case management
    assert "total" in r.output and "0-0.5%" in r.output
    # run again: the folder is replaced whole
    r = invoke("--scenario", SHIPPED, "--store", store, "--out", tmp_path, "--as-of", AS_OF, "--years", 1)
    assert r.exit_code == 0, r.output
    assert pq.read_table(folder / "simulation.parquet").num_rows == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


def test_both_engines_give_the_same_simulation(store):
    st = Store.open(store)
    s = load_scenario(SHIPPED)
    tables = {name: sim.run(st, s, dt.date.fromisoformat(AS_OF), name).table.to_pylist() for name in ENGINES}
    reference, *others = tables.values()
    for other in others:
        for a, b in zip(reference, other):
            assert (a["cohort"], a["year"], a["patients"]) == (b["cohort"], b["year"], b["patients"])
            for k in ("baseline_total", "scenario_total", "baseline_mean", "scenario_mean"):
                assert a[k] == pytest.approx(b[k], rel=1e-9, abs=0.01), k


def test_into_a_budgets_folder(store, tmp_path):
    args = (BUDGET, "--scenario", SHIPPED, "--store", store, "--out", tmp_path, "--as-of", AS_OF, "--year", "2026-27")
    with pytest.raises(UsageError, match="does not exist") as e:
        invoke(*args)
    assert e.value.hint == f"run `casefind budget {BUDGET} --year 2026-27` first"
    folder = tmp_path / "budget-ltc_year_of_care-2026-27"
    folder.mkdir()
    (folder / "statement.json").write_text("{}")  # the budget's own files are left alone
    r = invoke(*args, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["folder"] == str(folder) and len(summary["rows"]) == 12
    assert set(summary) == {"command", "folder", "files", "scenario", "as_of", "years", "population", "run_id",
                            "totals", "rows"}
    assert sorted(p.name for p in folder.iterdir()) == ["simulation.json", "simulation.parquet", "statement.json"]


@pytest.mark.parametrize("args,message", [
    (("--year", "2026-27"), "--year names a budget's folder"),
    ((BUDGET,), "a budget FILE needs --year"),
    (("--as-of", "31/10/2026"), "as_of '31/10/2026' is not 'rule', 'latest' or a date"),
])
def test_mistakes_on_the_command_line_are_refused(store, tmp_path, args, message):
    with pytest.raises(CasefindError, match=message):
        invoke("--scenario", SHIPPED, "--store", store, "--out", tmp_path, *args)
    assert not any(tmp_path.iterdir())


def test_the_as_of_defaults_to_the_scenario_then_the_end_of_the_data(store, tmp_path):
    scenario = tmp_path / "s.yml"
    scenario.write_text('scenario: s\nas_of: "2026-06-30"\nrank_by: age\nyears: 1\nchanges: {}\n')
    r = invoke("--scenario", scenario, "--store", store, "--out", tmp_path, "--json")
    assert json.loads(r.stdout)["as_of"] == "2026-06-30"
    scenario.write_text("scenario: s\nrank_by: age\nchanges: {all: {gp_appointments: +10%}}\n")
    r = invoke("--scenario", scenario, "--store", store, "--out", tmp_path, "--json")
    summary = json.loads(r.stdout)
    assert summary["as_of"] == AS_OF  # the synthetic data end on their as_of
    assert all(row["scenario_total"] >= row["baseline_total"] for row in summary["rows"])


def test_a_scenario_with_a_mistake_is_located_through_the_command(store, tmp_path):
    scenario = tmp_path / "s.yml"
    scenario.write_text("scenario: s\nrank_by: sum(activity.cost, within=months(12))\n"
                        "changes:\n  all: {emergency_admissions: -10}\n")
    with pytest.raises(RuleError) as e:
        invoke("--scenario", scenario, "--store", store, "--out", tmp_path)
    assert str(e.value).startswith(f"{scenario}:4:31: ")
    assert "write the % sign" in str(e.value)


@pytest.mark.parametrize("value,shown", [
    (None, "-"), (-179.26, "\u2212£179"), (-0.4, "£0"), (12345.5, "£12,346"), (7, "£7"),
])
def test_money_is_shown_in_whole_pounds_with_the_sign_first(value, shown):
    from casefind.cli_budget_simulate import _money

    assert _money(value) == shown
