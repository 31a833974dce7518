"""``casefind budget FILE --year 2026-27``: a Year of Care capitated budget (docs/budgets.md).

``budget`` is a group: ``casefind budget FILE ...`` runs the default ``run`` command, and
subcommands (``casefind budget simulate ...``) can be added with ``budget.add_command``.
"""
from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from casefind.cli_common import emit_json, json_option, project, resolve_store, setting
from casefind.errors import UsageError
from casefind.ui import console, err_console, stage_progress

DEFAULT_COMMAND = "run"


class DefaultGroup(click.Group):
    """A group whose first argument, when it names no subcommand, goes to ``run``: so
    ``casefind budget FILE --year Y`` works beside ``casefind budget simulate ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands:
            return DEFAULT_COMMAND, self.commands[DEFAULT_COMMAND], args
        return super().resolve_command(ctx, args)


@click.group("budget", cls=DefaultGroup, no_args_is_help=True)
def budget():
    """Year of Care capitated budgets: `casefind budget FILE --year 2026-27`.

    \b
    casefind budget ltc_year_of_care --year 2026-27     # a shipped budget file, by name
    casefind budget rules/budgets/lead_provider.yml --year 2026-27

    See `casefind budget run --help` for what a run writes, and docs/budgets.md.
    """


def budget_file(text: str, folder: str = "budgets", what: str = "budget") -> Path:
    """A budget (or scenario) file given as a path, or by name in the project's
    rules/<folder>/, else the shipped ones."""
    from casefind.project import rules_folder, shipped_rules

    path = Path(text)
    if path.exists() or path.suffix in (".yml", ".yaml") or len(path.parts) > 1:
        return path
    if not text.isidentifier():
        raise UsageError(f"{text!r} is neither a file nor a {what} name", "give a path to a .yml file, or a name")
    folders = list(dict.fromkeys([rules_folder(project()) / folder, shipped_rules() / folder]))
    for f in folders:
        if (f / f"{text}.yml").is_file():
            return f / f"{text}.yml"
    known = sorted({p.stem for f in folders if f.is_dir() for p in f.glob("*.yml")})
    raise UsageError(f"no {what} file named {text!r} in {folders[0]} or among the shipped {what}s",
                     f"{what} files: {', '.join(known) or 'none'}")


def _engine_option(f):
    from casefind.engines.base import DEFAULT, ENGINES, engines_help

    return click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
                        help=f"{engines_help()} Default: $CASEFIND_ENGINE, else casefind.toml, else {DEFAULT}.")(f)


@budget.command("run")
@click.argument("file")
@click.option("--year", required=True, metavar="YYYY-YY", help="The financial year, e.g. 2026-27 (April to March).")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Population store. Default: $CASEFIND_STORE, else casefind.toml, else the demo workspace.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for OUT/budget-<name>-<year>/. Default: $CASEFIND_OUT, else casefind.toml, else out/.")
@click.option("--history", "history_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="KPI history the outcome adjustments read. Default: $CASEFIND_HISTORY, else "
                   "STORE/kpi/history.duckdb.")
@click.option("--register", "register_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="DuckDB file for the register's changes. Default: budgets.duckdb beside the KPI history.")
@_engine_option
@click.option("--allow-partial", is_flag=True, help="Run even if the baseline year is only partly in the data.")
@json_option
def run_command(file, year, store, out, history_path, register_path, engine, allow_partial, as_json):
    """Compute the budget FILE states for a financial year, in one pass over the store.

    \b
    Writes OUT/budget-<name>-<year>/ (renamed into place whole): tariffs.parquet,
    register.parquet (the cohort register: join and leave dates and reasons),
    monthly.parquet (budget against actual per practice, locality, system,
    category and month, with the forecast), movement.parquet (joiners and
    leavers), tagged_activity.parquet (the records inside the capitation, not to
    be paid again), shadow.parquet (whole population beside the cohort),
    statement.json (totals, risk share and outcome adjustments with the working)
    and manifest.json. The register's changes also go to budgets.duckdb beside the
    KPI history. Exit codes: 0 ok, 1 failed, 2 usage (a year outside the data),
    4 error in FILE (file:line:col), 5 another run is writing the register.
    """
    from casefind.budgets.run import run_budget
    from casefind.budgets.years import parse_year

    fy = parse_year(year)
    path, root = budget_file(file), resolve_store(store)
    engine, out = setting("engine", engine), setting("out", out)
    history_path = setting("history", history_path)
    with stage_progress(f"budget {path.name}") as say:
        result = run_budget(path, root, fy, out, engine=engine, history_path=history_path,
                            register_path=register_path, allow_partial=allow_partial, progress=say)
    for w in result.warnings:
        err_console.print(f"[bold yellow]warning:[/] {w}", soft_wrap=True, highlight=False, markup=False)
    if as_json:
        emit_json(summary(result))
    else:
        show(result)


def summary(result) -> dict:
    """The --json summary (docs/scripting.md)."""
    st = result.statement
    tariffs = result.tables["tariffs"].select(["category", "people", "tariff", "incentive", "source"]).to_pylist()
    return {"command": "budget", "budget": result.budget, "year": result.year, "run_id": result.run_id,
            "folder": str(result.folder), "register_db": str(result.register_db), "totals": st["totals"],
            "adjusted_total": st["adjusted_total"], "risk_share": st["risk_share"], "outcomes": st["outcomes"],
            "tariffs": tariffs, "notes": st["notes"], "warnings": result.warnings,
            "timings_s": {k: round(v, 3) for k, v in result.timings.items()}}


def money(v: float, places: int = 0) -> str:
    """£1,234 or −£1,234 (a minus sign before the pound sign, as finance reports write it)."""
    return ("\u2212" if round(v, places) < 0 else "") + f"£{abs(v):,.{places}f}"


def show(result) -> None:
    st, tot = result.statement, result.statement["totals"]
    t = Table(title=f"Budget {result.budget} {result.year} → {result.folder}", title_justify="left")
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("people in the cohort at the start / at the last complete month",
              f"{tot['people_start']:,} / {tot['people_end']:,}")
    t.add_row("months the data covers", f"{tot['months_complete']} of 12")
    for key, label in (("budget", "budget for the year"), ("budget_to_date", "budget to date"),
                       ("actual", "actual to date (in-scope spend)"), ("variance", "variance to date (+ underspend)"),
                       ("forecast", "forecast outturn")):
        t.add_row(label, money(tot[key]))
    if st["risk_share"]:
        t.add_row("provider's share of the variance", money(st['risk_share']['provider_share']))
    for o in st["outcomes"]:
        t.add_row(f"outcome: {o['kpi']}", "not judged" if o["met"] is None else money(o["adjustment"]))
    t.add_row("adjusted total", money(st["adjusted_total"]))
    t.add_row("run id", result.run_id)
    console.print(t)
    c = Table(title="Tariffs", title_justify="left")
    for col in ("category", "people", "tariff", "incentive", "source"):
        c.add_column(col, justify="left" if col in ("category", "source") else "right")
    for row in result.tables["tariffs"].to_pylist():
        c.add_row(row["category"], f"{row['people']:,}", money(row["tariff"], 2), money(row["incentive"], 2),
                  row["source"] + (f" (as {row['merged_into']})" if row["merged_into"] else ""))
    console.print(c)
    for n in st["notes"]:
        console.print(f"note: {n}", soft_wrap=True, markup=False, highlight=False)


# the subcommands in their own modules (each imports this one only inside its function)
from casefind.cli_budget_simulate import simulate_command  # noqa: E402
from casefind.cli_budget_statement import statement_command  # noqa: E402

budget.add_command(simulate_command)
budget.add_command(statement_command)
