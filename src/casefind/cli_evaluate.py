"""``casefind evaluate SPEC``: a matched-cohort evaluation of a programme (docs/evaluate.md)."""
from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from casefind.cli_common import emit_json, json_option, parse_params, resolve_store, setting
from casefind.ui import console, err_console, stage_progress


def _engine_option(f):
    from casefind.engines.base import DEFAULT, ENGINES, engines_help

    return click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
                        help=f"{engines_help()} Default: $CASEFIND_ENGINE, else casefind.toml, else {DEFAULT}.")(f)


@click.command("evaluate")
@click.argument("spec")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Population store. Default: $CASEFIND_STORE, else casefind.toml, else the demo workspace.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for OUT/evaluate-<name>/. Default: $CASEFIND_OUT, else casefind.toml, else out/.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a parameter (repeatable).")
@_engine_option
@click.option("--allow-partial", is_flag=True, help="Run even if the windows reach outside the store's data.")
@json_option
def command(spec, store, out, params, engine, allow_partial, as_json):
    """Evaluate a programme against matched controls, as SPEC states.

    \b
    casefind evaluate case_management            # rules/evaluations/case_management.yml
    casefind evaluate rules/evaluations/case_management.yml --store STORE

    \b
    The intervention group (a register's start, an acceptance from a rule's list,
    or a date expression) is matched at each index month to controls (exact
    strata, then nearest on the propensity score or the features, within a
    caliper); outcomes are counted in the window before and after, and each
    effect is a difference in differences with its interval. Writes
    OUT/evaluate-<name>/ (renamed into place whole): effects.parquet,
    balance.parquet (standardised mean differences before and after matching),
    matches.parquet (the pairs and their outcomes), report.html and
    manifest.json. Exit codes: 0 ok, 1 failed, 2 usage (dates outside the data,
    nobody to evaluate), 4 error in SPEC (file:line:col).
    """
    from casefind.cli_budget import budget_file
    from casefind.evaluate import report
    from casefind.evaluate.run import evaluate

    path, root = budget_file(spec, "evaluations", "evaluation"), resolve_store(store)
    engine, out = setting("engine", engine), Path(setting("out", out))
    with stage_progress(f"evaluate {path.name}") as say:
        result = evaluate(path, root, engine=engine, params=parse_params(params), allow_partial=allow_partial,
                          progress=say)
        say("writing the report")
        folder = report.write(result, out)
    for w in result.warnings:
        err_console.print(f"[bold yellow]warning:[/] {w}", soft_wrap=True, highlight=False, markup=False)
    if as_json:
        emit_json(summary(result, folder))
    else:
        show(result, folder)


def summary(result, folder: Path) -> dict:
    """The --json summary (docs/scripting.md)."""
    effects = [{"outcome": e.outcome, "sets": e.sets, "estimate": e.estimate, "lower": e.lower, "upper": e.upper,
                "confidence": e.confidence, "relative": e.relative} for e in result.effects]
    balance = [{"feature": b.feature, "stage": b.stage, "smd": b.smd, "flagged": b.flagged} for b in result.balance]
    return {"command": "evaluate", "evaluation": result.spec.name, "run_id": result.run_id, "folder": str(folder),
            "counts": result.counts, "effects": effects, "balance": balance, "warnings": result.warnings,
            "timings_s": {k: round(v, 3) for k, v in result.timings.items()}}


def show(result, folder: Path) -> None:
    from casefind.evaluate.report import effect_places, fmt

    c = result.counts
    t = Table(title=f"Evaluation {result.spec.name} → {folder}", title_justify="left")
    for col in ("outcome", "treated before", "treated after", "controls before", "controls after", "effect",
                f"{result.spec.confidence:.0%} interval"):
        t.add_column(col, justify="left" if col == "outcome" else "right")
    for e in result.effects:
        k = effect_places(e)
        t.add_row(e.outcome, fmt(e.treated_before), fmt(e.treated_after), fmt(e.control_before),
                  fmt(e.control_after), fmt(e.estimate, k), f"{fmt(e.lower, k)} to {fmt(e.upper, k)}")
    console.print(t)
    flagged = sorted({b.feature for b in result.balance if b.stage == "after" and b.flagged})
    console.print(f"{c['matched']:,} of {c['treated_eligible']:,} treated people matched "
                  f"({c['unmatched']:,} without a control within the caliper), {c['pairs']:,} treated-control pairs "
                  f"(up to {result.spec.matching.ratio} controls each); "
                  + (f"still imbalanced after matching (|SMD| > 0.1): {', '.join(flagged)}" if flagged
                     else "every matching feature balanced (|SMD| <= 0.1)"), soft_wrap=True, markup=False,
                  highlight=False)
