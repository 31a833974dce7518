"""``casefind describe RULE``: the rule in plain English for a governance board."""
from __future__ import annotations

from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option
from casefind.errors import UsageError
from casefind.ui import err_console

_HTML = (".html", ".htm")
_TEXT = (".md", ".markdown", ".txt")


def _output_path(output: Path, as_html: bool) -> bool:
    """Whether ``output`` gets HTML (``--html`` or an .html name); refuse a folder, a missing
    folder, or a name whose ending says another format."""
    if output.is_dir():
        raise UsageError(f"{output} is a folder; give a file name such as {output / 'rule.md'}", option="--output")
    if not output.parent.is_dir():
        raise UsageError(f"the folder {output.parent} does not exist", "create it first, or give another file",
                         option="--output")
    suffix = output.suffix.lower()
    if suffix not in _HTML + _TEXT:
        raise UsageError(f"{output.name}: give a file ending .md or .txt (Markdown) or .html", option="--output")
    if as_html and suffix in _TEXT:
        raise UsageError(f"{output.name}: --html writes HTML; give a file ending .html", option="--output")
    return as_html or suffix in _HTML


@click.command("describe")
@click.argument("rule")
@click.option("--html", "as_html", is_flag=True,
              help="One self-contained HTML page (no scripts, nothing fetched) instead of Markdown.")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Write to this file (.md, .txt or .html) instead of stdout.")
@json_option
def command(rule, as_html, output, as_json):
    """Describe RULE in plain English for a governance board: who is in the population, each
    criterion and exclusion in words, every feature's definition, the codelists by name,
    source and size, the tables and columns it reads, the columns of the list (what leaves
    the system) and the opt-out policy.

    \b
    RULE is a rule file, or a rule's name as `casefind run` takes it. The description is
    generated from the compiled rule (what `casefind run` evaluates), so it cannot drift
    from what runs. Markdown on stdout by default (it reads as plain text); --html for one
    page; --output FILE to write a file; --json for the same content as JSON.
    """
    from casefind.describe.document import describe
    from casefind.describe.render import html, markdown, write
    from casefind.project import load, resolve_rule
    from casefind.rules.compile import compile_rule

    path = resolve_rule(rule, load({}))
    html_out = _output_path(output, as_html) if output is not None else as_html
    description = describe(compile_rule(path))
    written = None
    if output is not None:
        written = write(description, output, html_out)
        if not as_json:
            n = len(description.codelists)
            err_console.print(f"Described rule {description.rule} ({len(description.include)} include and "
                              f"{len(description.exclude)} exclude criteria, {len(description.features)} features, "
                              f"{n} codelist{'' if n == 1 else 's'}) in {written}",
                              highlight=False, soft_wrap=True, markup=False)
    if as_json:
        emit_json({"command": "describe", "path": str(path), "output": None if written is None else str(written),
                   **description.to_dict()})
    elif written is None:
        click.echo(html(description) if html_out else markdown(description), nl=False)
