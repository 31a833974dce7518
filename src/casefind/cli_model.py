"""``casefind model fit SPEC`` and ``casefind model show NAME``: fit a risk model out of time,
validate it, write its artefact and report; show a fitted artefact (docs/models.md)."""
from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from casefind.cli_common import emit_json, json_option, project, resolve_store, setting
from casefind.errors import UsageError
from casefind.ui import console, err_console, stage_progress


def _spec_path(given: str) -> Path:
    """SPEC as a path, else a name in the rules folder's models/ (NAME or NAME.yml)."""
    path = Path(given)
    if path.is_file():
        return path
    from casefind.project import rules_folder

    folder = rules_folder(project()) / "models"
    named = folder / (given if given.endswith((".yml", ".yaml")) else f"{given}.yml")
    if named.is_file():
        return named
    known = sorted(p.stem for p in folder.glob("*.yml")) if folder.is_dir() else []
    raise UsageError(f"no model spec {given!r} (not a file, nor in {folder})",
                     f"models: {', '.join(known)}" if known else "give the spec's path", "SPEC")


def _summary_table(data: dict) -> Table:
    t = Table(title=f"Model {data['model']}: validation {data['validation']['date']} to "
              f"{data['validation']['outcome_to']}", title_justify="left")
    for col in ("score", "c-statistic (95% CI)", "Brier", "slope", "top 5% sens / PPV"):
        t.add_column(col, justify="left" if col == "score" else "right")
    for key, s in data["scores"].items():
        c = s["c_statistic"]
        top5 = next(x for x in s["top"] if x["top_percent"] == 5.0)
        t.add_row(key, f"{c['c']:.3f} ({c['low']:.3f}-{c['high']:.3f})", f"{s['brier']:.4f}",
                  f"{s['calibration']['slope']:.2f}", f"{100 * top5['sensitivity']:.1f}% / {100 * top5['ppv']:.1f}%")
    return t


def _check_outputs(name: str, artefact: Path | None, report: Path | None) -> None:
    """Before any fitting: the artefact is named for its model (``model("NAME")`` reads
    NAME.model.json), and both files' folders exist, so a mistake costs nothing."""
    from casefind.models.artefact import SUFFIX

    if artefact is not None and artefact.name != f"{name}{SUFFIX}":
        raise UsageError(f"the artefact of model {name!r} must be named {name}{SUFFIX}, not {artefact.name!r}",
                         f"rules read it by that name: e.g. --artefact FOLDER/{name}{SUFFIX}", option="--artefact")
    for option, path in (("--artefact", artefact), ("--report", report)):
        if path is not None and not path.resolve().parent.is_dir():
            raise UsageError(f"the folder {path.parent} does not exist", "create it first, or give another path",
                             option=option)


def fit(spec, store, engine, truth, artefact, report, as_json):
    """Fit and validate a risk model out of time, and write its artefact and report.

    \b
    Predictors (rules-language features) are evaluated at as_of - 24 months with the
    outcome counted over the 12 months after; the model is validated on predictors at
    as_of - 12 months with the outcome up to as_of, against a prior-use baseline and, on
    synthetic data, the generator's latent risk. Writes NAME.model.json beside the spec
    (rules use it as model("NAME")) and an HTML and JSON validation report.
    """
    from casefind.models import artefact as art
    from casefind.models import pipeline
    from casefind.models import report as rep
    from casefind.models.spec import load_spec
    from casefind.store.sharded import open_any

    path = _spec_path(spec)
    _check_outputs(load_spec(path).name, artefact, report)
    st = open_any(resolve_store(store))
    engine = setting("engine", engine)
    with stage_progress("model fit") as say:
        result = pipeline.run(path, st, engine, truth, say)
        out = artefact or art.artefact_path(path, result["spec"].name)
        say("writing the artefact and the report")
        art.write(out, pipeline.artefact_body(result))
        data = rep.summary(result, out)
        html = report or Path(f"model-{data['model']}-{data['snapshot_id']}.html")
        data["report"] = {"html": str(html), "json": str(html.with_suffix(".json"))}
        rep.write_html(data, html)
        rep.write_json(data, html.with_suffix(".json"))
    if as_json:
        emit_json({"command": "model fit", **data})
        return
    console.print(_summary_table(data))
    for flag in data["flags"]:
        console.print(f"[red]warning:[/] {flag}", soft_wrap=True, highlight=False)
    console.print(f"Artefact: {out}\nReport: {html}", soft_wrap=True, markup=False, highlight=False)


def show(name, as_json):
    """Show a fitted model: its dates, training snapshot, coefficients and validation."""
    from casefind.models import artefact as art

    path = Path(name)
    if not path.is_file():
        from casefind.project import rules_folder
        from casefind.rules.errors import Span

        if not art.RULE_NAME.fullmatch(name):
            raise UsageError(f"{name[:40]!r} is not a model name or an artefact file",
                             "a model's name: lower-case letters, digits and _ (e.g. emergency_12m)", "NAME")
        folder = rules_folder(project()) / "models"
        if not (folder / f"{name}{art.SUFFIX}").is_file():
            known = sorted(p.name[: -len(art.SUFFIX)] for p in folder.glob(f"*{art.SUFFIX}")) if folder.is_dir() else []
            raise UsageError(f"no fitted model {name!r} in {folder}",
                             f"fitted models: {', '.join(known)}" if known else "fit one: casefind model fit SPEC",
                             "NAME")
        path = art.find(rules_folder(project()) / "rule.yml", name, Span("model", 1, 1))
    body = art.read(path)
    changed = art.spec_changed(path, body)
    if as_json:
        emit_json({"command": "model show", "file": str(path), "spec_changed": changed, **body})
        return
    if changed:
        err_console.print(f"warning: {changed}", soft_wrap=True, markup=False, highlight=False)
    v = body["validation"]
    console.print(f"{body['name']}: {body['title']}\nfile {path}\nsha256 {body['sha256']}\n"
                  f"trained on snapshot {body['training']['snapshot_id']} ({body['dates']['train_features']}), "
                  f"validated {v['date']} to {v['outcome_to']}: c {v['c_statistic']['c']:.3f} "
                  f"({v['c_statistic']['low']:.3f}-{v['c_statistic']['high']:.3f}), Brier {v['brier']:.4f}",
                  soft_wrap=True, markup=False, highlight=False)
    t = Table(title="risk = logistic(intercept + sum of coefficient x feature)", title_justify="left")
    for col in ("predictor", "feature", "coefficient"):
        t.add_column(col)
    t.add_row("intercept", "", f"{body['intercept']:.5f}")
    for p in body["predictors"]:
        t.add_row(p["name"], body["features"][p["name"]], f"{p['coefficient']:.5f}")
    console.print(t)


@click.group("model")
def model():
    """Risk models: fit one out of time and validate it (fit), or show a fitted one (show)."""


model.command("fit")(
    click.argument("spec")(
    click.option("--store", type=click.Path(path_type=Path), default=None,
                 help="Population store (default: CASEFIND_STORE, casefind.toml, else the demo workspace).")(
    click.option("--engine", default=None, help="Rules engine for the features (default: the setting, else native).")(
    click.option("--truth", type=click.Path(path_type=Path, file_okay=False), default=None,
                 help="A synthetic source's _truth/ folder (default: the store's source's, when it has one).")(
    click.option("--artefact", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="Where the fitted model is written (default: NAME.model.json beside the spec).")(
    click.option("--report", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="The HTML report (default: model-NAME-SNAPSHOT.html here; the .json beside it).")(
    json_option(fit))))))))
model.command("show")(click.argument("name")(json_option(show)))
command = model
