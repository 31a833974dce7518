"""``casefind pyramid RULE|MODEL``: the risk pyramid and opportunity analysis per practice,
locality and system (docs/pyramid.md)."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option, parse_params, project, resolve_store, setting
from casefind.engines.base import DEFAULT, ENGINES, engines_help  # names only: no engine is loaded
from casefind.errors import UsageError
from casefind.pyramid.options import DEFAULT_BANDS, OUTCOMES
from casefind.ui import console, err_console, stage_progress

_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%?\s*")
MODEL_SUFFIX = ".model.json"


def parse_cut(text: str) -> float:
    """``10%`` (or ``10``) as 0.1: the share of all emergency admissions to cut, over 0 and at most 100%."""
    m = _PERCENT.fullmatch(str(text))
    value = float(m.group(1)) / 100 if m else -1.0
    if not 0 < value <= 1:
        raise UsageError(f"{text!r} is not a share to cut", "give a percentage over 0 and at most 100, e.g. 10%",
                         option="--cut")
    return value


def _latest(store) -> dt.date:
    from casefind.store.sharded import coverage_of

    last = coverage_of(store.root).last
    if last is None:
        raise UsageError("as_of 'latest': the store has no dated events", "give --as-of YYYY-MM-DD")
    return last


def _as_of(flag: str | None, store, model: bool) -> dt.date | None:
    """--as-of (or the as_of setting): a date, 'latest' (the end of the store's data) or
    'rule' (the rule's own; None). A model has no as_of of its own: latest."""
    value = setting("as_of", flag)
    if value in (None, "rule"):
        return _latest(store) if model else None
    if value == "latest":
        return _latest(store)
    from casefind.rules.compile import check_as_of

    return check_as_of(value, None, "--as-of")


def _model_artefact(text: str) -> Path | None:
    """The artefact MODEL names: a path ending .model.json, or NAME with the project's
    rules/models/NAME.model.json (when no rule is called NAME)."""
    if text.endswith(MODEL_SUFFIX):
        return Path(text)
    from casefind.project import rules_folder

    candidate = rules_folder(project()) / "models" / f"{text}{MODEL_SUFFIX}"
    rule_named = (rules_folder(project()) / f"{text}.yml").is_file()
    return candidate if text.isidentifier() and candidate.is_file() and not rule_named else None


def source_of(text: str, score: str, as_of_flag: str | None, params: dict[str, str], store):
    """The population and score to rank: a rule's (and its feature ``score``) or a model's."""
    from casefind.pyramid import source

    artefact = _model_artefact(text)
    if artefact is not None:
        for option, given in (("--score", score), ("--param", params)):
            if given:
                raise UsageError(f"this does not apply to a MODEL: {text} ranks by its own probability",
                                 f"leave out {option}, or give a rule and one of its features", option=option)
        return source.from_model(artefact, _as_of(as_of_flag, store, model=True))
    from casefind.project import resolve_rule
    from casefind.rules.compile import compile_rule

    rule = compile_rule(resolve_rule(text, project()), as_of=_as_of(as_of_flag, store, model=False), params=params)
    return source.from_rule(rule, score or "risk")


def _summary(result, folder: Path) -> None:
    """The system's pyramid as the sources print it, then the ties at the edges."""
    from rich.table import Table

    from casefind.pyramid.report import num, pct, times

    m = result.meta
    for code in dict.fromkeys(r["unit_code"] for r in result.table.to_pylist() if r["level"] == "system"):
        t = Table(title=f"Risk pyramid by {m['score']}: {code}, emergency admissions {m['outcome_from']} to "
                        f"{m['outcome_to']} ({m['outcome']})", title_justify="left")
        for head in ("band", "people", "per 1,000", "× average", "% admissions", "% cost",
                     f"to avoid for {m['cut']:.0%}"):
            t.add_column(head, justify="left" if head == "band" else "right")
        for r in (x for x in result.table.to_pylist() if x["level"] == "system" and x["unit_code"] == code):
            avoid = pct(r["avoid_share"]) + ("" if r["achievable"] is not False else " (not achievable)")
            t.add_row(r["band"], num(r["people"]), num(r["admissions_per_1000"], 1), times(r["relative_rate"]),
                      pct(r["admissions_share"]), pct(r["cost_share"]), avoid if r["band"] != "all" else "",
                      style="bold" if r["band"] == "all" else None)
        console.print(t)
    straddled = [e for e in m["edges"] if e["straddles"]]
    console.print(f"{m['ranked']:,} people ranked (score at {m['score_date']})"
                  + (f", {m['unscored']:,} without a score" if m["unscored"] else "")
                  + "; ties straddling an edge: "
                  + (", ".join(f"{e['edge']} ({e['tied_above']} kept above, {e['tied_below']} put below; top() "
                               f"would take {e['top_takes']:,})" for e in straddled) or "none")
                  + f"; written: {folder}", soft_wrap=True, markup=False, highlight=False)


@click.command("pyramid")
@click.argument("source", metavar="RULE|MODEL")
@click.option("--score", default=None, metavar="FEATURE",
              help="The RULE's feature to rank by (a number per patient; default: risk). A MODEL ranks by its "
                   "probability.")
@click.option("--outcome", type=click.Choice(OUTCOMES), default="next", show_default=True,
              help="next: the score a year before as_of, admissions in the year after it; concurrent: the score "
                   "at as_of, admissions in the 12 months to it.")
@click.option("--bands", default=DEFAULT_BANDS, show_default=True, metavar="FROM-TO,...",
              help="Bands in percent of the ranked population, from 0 to 100.")
@click.option("--cut", default="10%", show_default=True, metavar="PERCENT",
              help="The cut in all emergency admissions the opportunity figures are for.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Population store (default: CASEFIND_STORE, casefind.toml, else the demo workspace).")
@click.option("--as-of", metavar="YYYY-MM-DD|latest", default=None,
              help="The end of the outcome year. Default: the as_of setting, else the rule's as_of "
                   "(a MODEL: the end of the store's data).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a rule parameter (repeatable).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Output root (default: the out setting): writes OUT/pyramid-<name>-<as_of>/.")
@click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
              help=f"{engines_help()} Default: $CASEFIND_ENGINE, else casefind.toml, else {DEFAULT}.")
@click.option("--allow-partial", is_flag=True,
              help="Run even if the store's data only partly covers the dates read (recorded in pyramid.json).")
@json_option
def pyramid_command(source, score, outcome, bands, cut, store, as_of, params, out, engine, allow_partial, as_json):
    """The risk pyramid and opportunity analysis per practice, locality and system: bands of
    the population by a score (0-0.5, 0.5-5, 5-20, 20-100% by default), with each band's
    people, emergency admissions per 1,000, rate relative to the average, shares of
    admissions and cost, and the share of its admissions a --cut through that band alone
    would need avoided.

    \b
      casefind pyramid rising_risk                 # its feature risk, the year after the score
      casefind pyramid my_rule.yml --score efi --outcome concurrent --cut 5%
      casefind pyramid emergency_12m               # a fitted model, rules/models/emergency_12m.model.json

    Writes OUT/pyramid-<name>-<as_of>/: pyramid.parquet and pyramid.csv (a row per unit and
    band), pyramid.json (method, dates, ties at each band edge) and pyramid.html.
    """
    from casefind.outputs import safe_child
    from casefind.pyramid import compute, report
    from casefind.pyramid.bands import parse_bands
    from casefind.store.sharded import open_any

    opts = compute.Options(bands=parse_bands(bands), outcome=outcome, cut=parse_cut(cut),
                           engine=setting("engine", engine), allow_partial=allow_partial)
    st = open_any(resolve_store(store))
    with stage_progress("pyramid") as say:
        say("compiling")
        scored = source_of(source, score, as_of, parse_params(params), st)
        say("evaluating")
        result = compute.run(st, scored, opts)
        if not result.meta["ranked"]:
            raise UsageError(f"nobody to rank: {scored.name}'s population at {result.meta['score_date']} is empty"
                             + (f" ({result.meta['unscored']:,} without a score)" if result.meta["unscored"] else ""),
                             "check the rule's population and its parameters (--param), or give another --as-of")
        say("writing")
        folder = safe_child(Path(setting("out", out)), f"pyramid-{scored.name}-{scored.as_of.isoformat()}")
        files = report.write(folder, result)
    for w in result.meta["warnings"]:
        err_console.print(f"warning: {w}", soft_wrap=True, markup=False, highlight=False)
    if as_json:
        keys = ("rule", "score", "outcome", "as_of", "score_date", "outcome_from", "outcome_to", "population",
                "ranked", "unscored", "bands", "cut", "run_id", "edges", "warnings")
        emit_json({"command": "pyramid", "folder": str(folder), "files": [str(f) for f in files],
                   **{k: result.meta[k] for k in keys},
                   "system": [r for r in result.table.to_pylist() if r["level"] == "system"]})
    else:
        _summary(result, folder)
