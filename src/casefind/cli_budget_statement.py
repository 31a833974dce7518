"""``casefind budget statement FOLDER``: the budget statement (one self-contained HTML file) and,
with ``--export``, the folder's flat tables for BI tools (docs/budget-statement.md)."""
from __future__ import annotations

from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option
from casefind.errors import UsageError


@click.command("statement")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--html", "html_out", type=click.Path(path_type=Path), default=None,
              help="Where to write the statement (default: FOLDER/statement.html).")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=None,
              help="Also write the flat tables for BI tools (Power BI, Excel) into this folder.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default=None,
              help="Format of the --export tables (default parquet). CSV: UTF-8 with BOM, ISO dates.")
@click.option("--records/--no-records", default=True, show_default=True,
              help="With --export: also write the tagged activity records (record-level, pseudonymised) "
                   "under record_level/.")
@json_option
def statement_command(folder, html_out, export_dir, fmt, records, as_json):
    """Write the budget statement for FOLDER, a folder `casefind budget` wrote.

    \b
    The statement holds counts and money only (no patient). It shows the
    headline, month by month budget, actual, variance and forecast, an SPC
    chart of monthly spend, practices and localities, tariffs, cohort movement,
    shadow budgets, the simulation (when run), risk share and outcome
    adjustments with their working.
    """
    from casefind.budgets.export import export_for_bi
    from casefind.budgets.statement import render_statement

    if export_dir is None and (fmt is not None or not records):
        raise UsageError("give --export DIR to say where the tables go", option="--format" if fmt else "--no-records")
    html = render_statement(folder, html_out)
    manifest = export_for_bi(folder, export_dir, fmt or "parquet", records=records) if export_dir else None
    if as_json:
        emit_json({"statement": str(html), "export": manifest})
        return
    click.echo(f"statement: {html}")
    if manifest:
        for t in manifest["tables"]:
            mark = "  (record-level, pseudonymised)" if t["record_level"] else ""
            rows = f"{t['rows']:,} row{'' if t['rows'] == 1 else 's'}"
            click.echo(f"  {Path(export_dir) / t['file']}: {rows}{mark}")
