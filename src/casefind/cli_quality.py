"""``casefind quality``: the data-quality report of a store (docs/quality.md)."""
from __future__ import annotations

from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option, resolve_store
from casefind.errors import CasefindError, UsageError
from casefind.ui import console, stage_progress


class ThresholdsCrossed(CasefindError):
    """A --fail-on threshold was crossed: the report was still printed and written (exit 1)."""


def _codelist_folders() -> list[Path]:
    """The project's own codelists, whose codes are known too (beside the shipped ones)."""
    from casefind.cli_common import project
    from casefind.project import rules_folder

    return [rules_folder(project()) / "codelists"]


def _options(months: int, top: int, unit_costs: Path | None):
    from casefind.quality import unit_costs as uc
    from casefind.quality.codes import vocabulary
    from casefind.quality.report import Options

    return Options(months=months, top=top, unit_costs=uc.load(unit_costs),
                   unit_costs_file=str(unit_costs or uc.shipped_path()),
                   vocabulary=vocabulary(_codelist_folders()))


def _output(html: bool, output: Path | None, snapshot_id: str) -> Path | None:
    from casefind.quality.render import default_output

    if output is not None and output.is_dir():
        raise UsageError(f"{output} is a folder", "give the HTML file's name, e.g. quality.html", "--output")
    if output is None and not html:
        return None
    return output or default_output(snapshot_id)


def quality(store, against, html, output, as_json, fail_on, months, top, unit_costs):
    """The data-quality report finance teams need before they trust a budget.

    \b
    Per table, provider and month: rows, completeness of each column, codes that
    no shipped codelist or dictionary knows, implausible values (cost against the
    unit cost of its setting, lengths of stay, events per person), gaps (a month
    with no rows or far fewer than its neighbours), and the trend against an
    earlier snapshot (--against). A per-provider section can go back to each
    data provider. --fail-on exits 1 when a threshold is crossed, for scheduled
    runs (quote it: --fail-on 'completeness<0.95'). See docs/quality.md.
    """
    from casefind.quality import console as show
    from casefind.quality import render, report, thresholds, trend
    from casefind.store.sharded import open_any

    rules = thresholds.parse_all(fail_on)
    if against is None and any(r.metric == "rows_change" for r in rules):
        raise UsageError("rows_change needs an earlier snapshot", "add --against SNAPSHOT", "--fail-on")
    options = _options(months, top, unit_costs)
    root = resolve_store(store)
    st = open_any(root)  # one store or a sharded one: the same report
    path = _output(html, output, st.snapshot_id)
    with stage_progress("quality") as say:
        result = report.build(st, options, say)
        if against is not None:
            say("comparing with the earlier snapshot")
            result["trend"] = trend.compare(result, trend.earlier(against, root, lambda s: report.build(s, options)))
        result["thresholds"] = thresholds.evaluate(rules, result)
        if path is not None:
            say("writing the HTML report")
            render.write_html(result, path)
    if as_json:
        emit_json(result)
    else:
        show.show(result, console)
        if path is not None:
            console.print(f"HTML report: {path}", soft_wrap=True, markup=False, highlight=False)
    crossed = [t for t in result["thresholds"] if t["crossed"]]
    if crossed:
        raise ThresholdsCrossed(f"{len(crossed)} of {len(rules)} --fail-on thresholds crossed: "
                                + thresholds.describe(result["thresholds"]),
                                "the report says where; the thresholds grammar is in docs/quality.md")


command = click.command("quality")(
    click.option("--store", type=click.Path(path_type=Path), default=None,
                 help="Population store (default: CASEFIND_STORE, casefind.toml, else the demo workspace).")(
    click.option("--against", metavar="SNAPSHOT", default=None,
                 help="An earlier report (saved with --json > FILE), another store's folder, or a snapshot id "
                      "still in this store: adds the trend (rows up or down per table and provider).")(
    click.option("--html", is_flag=True, help="Also write the report as one self-contained HTML file.")(
    click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="Where --html writes (implies --html). Default: quality-<snapshot>.html here.")(
    json_option(
    click.option("--fail-on", multiple=True, metavar="RULE",
                 help="Exit 1 when crossed, e.g. 'completeness<0.95', 'gaps>0', 'unknown_codes>0.01', "
                      "'implausible>0' (repeatable; grammar in docs/quality.md).")(
    click.option("--months", type=click.IntRange(1, 600), default=36, show_default=True,
                 help="Months checked month by month, ending with the last month of the data.")(
    click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True,
                 help="Unknown codes and examples of implausible values listed per table and provider.")(
    click.option("--unit-costs", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="Your own unit costs per setting (CSV, the shipped file's columns) instead of the "
                      "national reference.")(
        quality))))))))))
