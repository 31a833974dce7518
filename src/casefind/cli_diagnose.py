"""``casefind diagnose RULE...``: cohort size per practice, turnover, overlap between rules,
PPV from clinicians' decisions and the crisis curve with a matched comparison (docs/diagnose.md)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option, parse_params, project, resolve_store, setting
from casefind.engines.base import DEFAULT, ENGINES, engines_help  # names only: no engine is loaded
from casefind.errors import UsageError
from casefind.ui import console, stage_progress


def _as_of(flag: str | None, store: Path, first_rule: Path, params: dict[str, str]) -> dt.date:
    """--as-of (or the as_of setting); 'latest' or nothing: the end of the store's data;
    'rule': the first rule's own as_of."""
    value = setting("as_of", flag)
    if value == "rule":
        from casefind.rules.compile import compile_rule

        return compile_rule(first_rule, params=params).as_of
    if value in (None, "latest"):
        from casefind.store.sharded import coverage_of

        last = coverage_of(store).last
        if last is None:
            raise UsageError("as_of 'latest': the store has no dated events", "give --as-of YYYY-MM-DD")
        return last
    return dt.date.fromisoformat(str(value))  # the setting checked it


def summary(d) -> dict:
    """The JSON summary (docs/scripting.md)."""
    return {"command": "diagnose", "as_of": d.as_of.isoformat(), "out_dir": str(d.out_dir),
            "sizes": {r: sum(by.values()) for r, by in d.sizes.items()},
            "turnover": [t.row() for t in d.turnover],
            "overlap": d.overlap.pairs(),
            "ppv": [r for r in d.ppv if r["practice"] == "(all)"],
            "crisis": [{"rule": c.rule, "identified": c.identified, "matched": c.matched, **c.summary}
                       for c in d.curves]}


def _print(d) -> None:
    from rich.table import Table

    t = Table(title=f"Rule diagnostics as of {d.as_of}", title_justify="left")
    for head in ("rule", "cohort", "earlier", "joined", "stayed", "left", "turnover", "PPV", "identified",
                 "matched"):
        t.add_column(head, justify="left" if head == "rule" else "right")
    ppv = {r["rule"]: r for r in d.ppv if r["practice"] == "(all)"}
    curves = {c.rule: c for c in d.curves}
    for move in d.turnover:
        p, c = ppv.get(move.rule), curves.get(move.rule)
        t.add_row(move.rule, f"{move.now_size:,}", f"{move.earlier_size:,}", f"{move.joined:,}", f"{move.stayed:,}",
                  f"{move.left_total:,}", "-" if move.turnover is None else f"{move.turnover:.1%}",
                  "-" if not p or p["ppv"] is None else f"{p['ppv']:.1%} of {p['reviewed']:,}",
                  f"{c.identified:,}" if c else "-", f"{c.matched:,}" if c else "-")
    console.print(t)
    console.print(f"written: {d.out_dir}", soft_wrap=True, markup=False, highlight=False)


@click.command("diagnose")
@click.argument("rules", nargs=-1, required=True)
@click.option("--against", metavar="RUN", default=None,
              help="Turnover against this registered run (its id) for its rule; otherwise against a year earlier.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Population store (default: CASEFIND_STORE, casefind.toml, else the demo workspace).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Output root (default: the out setting); writes OUT/diagnose-<as_of>/.")
@click.option("--as-of", metavar="YYYY-MM-DD|latest|rule", default=None,
              help="Date diagnosed; default the as_of setting, else the end of the store's data.")
@click.option("--window", type=click.IntRange(0, 24), default=6, show_default=True,
              help="Months in which people may be identified for the crisis curve (0: no curve).")
@click.option("--washout", type=click.IntRange(1, 24), default=6, show_default=True,
              help="Month-ends before the window at which the newly identified must not have been selected.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Set a rule parameter.")
@click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
              help=f"{engines_help()} Default: $CASEFIND_ENGINE, else casefind.toml, else {DEFAULT}.")
@json_option
def diagnose_command(rules, against, store, out, as_of, window, washout, params, engine, as_json):
    """Diagnose RULE... (files or names): cohort size per practice, turnover (joined,
    stayed, left: died, moved, no longer qualifies), overlap between the rules (matrix and
    UpSet chart), PPV from clinicians' decisions, and the crisis curve with a matched
    comparison group.

    \b
      casefind diagnose frail multimorbidity high_utilisers
      casefind diagnose frail --against 3f2a9c0d1e2b --window 0
    Writes OUT/diagnose-<as_of>/: report.html, sizes, turnover, overlap, upset, ppv and
    crisis as Parquet, and manifest.json.
    """
    from casefind.diagnose import report
    from casefind.diagnose.run import Options, diagnose
    from casefind.project import resolve_rule
    from casefind.startup import without_pandas

    settings = project()
    paths = [resolve_rule(r, settings) for r in rules]
    root = resolve_store(store)
    values = parse_params(params)
    when = _as_of(as_of, root, paths[0], values)
    options = Options(against, window, washout, setting("engine", engine))
    with stage_progress("diagnose") as say, without_pandas():
        d = diagnose(paths, root, when, options, params=values, progress=say)
        say("writing")
        report.write(d, Path(setting("out", out)))
    if as_json:
        emit_json(summary(d))
    else:
        _print(d)
