"""``casefind budget simulate``: the Year of Care handbook's simulation of a scenario against
the baseline, by percentile cohort (docs/budgets.md, "Simulation")."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option, resolve_store, setting
from casefind.engines.base import DEFAULT, ENGINES, engines_help  # names only: no engine is loaded
from casefind.errors import UsageError
from casefind.ui import console, stage_progress


def _as_of(flag: str | None, scenario_as_of: str | None, store) -> dt.date:
    """--as-of (or the as_of setting; 'rule' defers to the file), else the scenario's as_of:,
    else the end of the store's data."""
    value = setting("as_of", flag)
    if value in (None, "rule"):
        value = scenario_as_of or "latest"
    if value == "latest":
        from casefind.store.coverage import Coverage
        from casefind.store.sharded import ShardedStore

        last = (store.coverage if isinstance(store, ShardedStore) else Coverage.of(store.manifest)).last
        if last is None:
            raise UsageError("as_of 'latest': the store has no dated events", "give --as-of YYYY-MM-DD")
        return last
    return dt.date.fromisoformat(str(value))  # the setting and the scenario file checked it


def _target(out: Path, budget_file: Path | None, year: str | None, scenario: str) -> tuple[Path, bool]:
    """Where the simulation goes, and whether that is a budget's folder (added to) rather
    than a folder of its own (replaced whole)."""
    if budget_file is None:
        if year is not None:
            raise UsageError("--year names a budget's folder: give the budget FILE too", option="--year")
        return out / f"simulation-{scenario}", False
    if year is None:
        raise UsageError("a budget FILE needs --year: the simulation is added to that year's budget folder",
                         "e.g. --year 2026-27, or leave FILE out for a folder of its own", option="--year")
    from casefind.budgets.define import load_budget
    from casefind.budgets.years import parse_year

    label = parse_year(year).label
    folder = out / f"budget-{load_budget(budget_file).name}-{label}"
    if not folder.is_dir():
        raise UsageError(f"{folder} does not exist", f"run `casefind budget {budget_file} --year {label}` first",
                         option="--out")
    return folder, True


def _summary(result, files: list[Path]) -> None:
    """The handbook's table per year: cohort, patients, mean annual cost a person (baseline,
    scenario, difference) and the totals, with every cohort together on the last line."""
    from rich.table import Table

    for year in range(1, result.meta["years"] + 1):
        t = Table(title=f"{result.meta['title']}: year {year}", title_justify="left",
                  caption="means are a person a year; whole pounds", caption_justify="left")
        for head in ("cohort", "patients", "baseline", "scenario", "difference", "total baseline", "total scenario"):
            t.add_column(head, justify="left" if head == "cohort" else "right", overflow="fold")
        rows = [r for r in result.table.to_pylist() if r["year"] == year]
        for r in rows + [x for x in result.meta["totals"] if x["year"] == year]:
            t.add_row(r["cohort"], f"{r['patients']:,}", *(_money(r[k]) for k in (
                "baseline_mean", "scenario_mean", "difference", "baseline_total", "scenario_total")),
                style="bold" if r["cohort"] == "total" else None)
        console.print(t)
    console.print(f"as of {result.meta['as_of']}, {result.meta['population']:,} people ranked; "
                  f"written: {', '.join(str(f) for f in files)}", soft_wrap=True, markup=False, highlight=False)


def _money(v: float | None) -> str:
    """Whole pounds, the minus sign before the pound sign (−£179)."""
    if v is None:
        return "-"
    return ("\u2212" if round(v) < 0 else "") + f"£{abs(v):,.0f}"


@click.command("simulate")
@click.argument("file", required=False)
@click.option("--scenario", "scenario_file", required=True, metavar="FILE|NAME",
              help="The scenario file (YAML): rank_by, cohorts, changes per cohort, years (docs/budgets.md); "
                   "a name is looked up in rules/budgets/scenarios/.")
@click.option("--years", type=click.IntRange(1, 3), default=None,
              help="Years simulated (1-3); default the file's years:.")
@click.option("--year", default=None, metavar="YYYY-YY",
              help="With FILE: add the simulation to OUT/budget-<name>-<year>/ (written by `casefind budget`).")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Population store (default: CASEFIND_STORE, casefind.toml, else the demo workspace).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Output root (default: the out setting). Without FILE: OUT/simulation-<scenario>/.")
@click.option("--as-of", metavar="YYYY-MM-DD|latest", default=None,
              help="The end of the baseline year; default the as_of setting, else the scenario's as_of:, "
                   "else the end of the store's data.")
@click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
              help=f"{engines_help()} Default: $CASEFIND_ENGINE, else casefind.toml, else {DEFAULT}.")
@json_option
def simulate_command(file, scenario_file, years, year, store, out, as_of, engine, as_json):
    """Simulate a scenario against the baseline, per percentile cohort (the Year of Care
    handbook's simulation table): patients, mean annual cost baseline and scenario, and
    the difference, for up to three years.

    \b
      casefind budget simulate --scenario fewer_emergency_admissions   # a shipped scenario, by name
      casefind budget simulate ltc_year_of_care --year 2026-27 --scenario S.yml
    """
    from casefind.budgets import simulate as sim
    from casefind.budgets.scenario import load_scenario
    from casefind.cli_budget import budget_file
    from casefind.store.sharded import open_any

    file = budget_file(file) if file is not None else None
    scenario = load_scenario(budget_file(scenario_file, "budgets/scenarios", "scenario"), years)
    target, into_budget = _target(Path(setting("out", out)), file, year, scenario.name)
    st = open_any(resolve_store(store))  # one store or a sharded one: the same table
    when = _as_of(as_of, scenario.as_of, st)
    with stage_progress("simulate") as say:
        say("evaluating")
        result = sim.run(st, scenario, when, setting("engine", engine))
        say("writing")
        files = sim.write(target, result) if into_budget else sim.write_folder(target, result)
    if as_json:
        emit_json({"command": "budget simulate", "folder": str(target), "files": [str(f) for f in files], **{
            k: result.meta[k] for k in ("scenario", "as_of", "years", "population", "run_id", "totals")},
            "rows": result.table.to_pylist()})
    else:
        _summary(result, files)
