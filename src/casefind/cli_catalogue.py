"""``casefind catalogue``: every rule, KPI file and budget file of the project, described."""
from __future__ import annotations

from pathlib import Path

import click

from casefind.cli_common import emit_json, json_option
from casefind.errors import UsageError
from casefind.ui import console, err_console

OUTPUT_NAME = "catalogue.html"


def _existing_demo_store() -> Path | None:
    """The demo workspace's store if it is there already: listing the rules is no reason to
    make one (runs on it are what the catalogue looks for)."""
    from casefind.store.writer import CURRENT
    from casefind.workspace import demo_paths

    store = demo_paths()["store"]
    return store if (store / CURRENT).exists() else None


def _output_path(output: Path | None, root: Path | None) -> Path:
    path = output if output is not None else (root or Path.cwd()) / OUTPUT_NAME
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name such as {path / OUTPUT_NAME}", option="--output")
    if not path.parent.is_dir():
        raise UsageError(f"the folder {path.parent} does not exist", "create it first, or give another file",
                         option="--output")
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"{path.name}: the catalogue is HTML; give a file ending .html", option="--output")
    return path


def _catalogue(rules, out, store, history):
    from casefind.catalogue.collect import build
    from casefind.project import load, rules_folder

    project = load({"rules": rules, "out": out, "store": store, "history": history})
    folder = rules_folder(project)
    if not folder.is_dir():
        raise UsageError(f"the rules folder {folder} does not exist", "give --rules DIR, or set [paths] rules "
                         "in casefind.toml", option="--rules" if rules is not None else None)
    store_path = project.get("store") or _existing_demo_store()
    cat = build(folder, out_dir=project.get("out"), store=store_path, history=project.get("history"))
    return project, cat


@click.command("catalogue")
@click.option("--html", is_flag=True, help="Write the catalogue as one self-contained HTML file.")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="The HTML file to write (implies --html). Default: catalogue.html in the project folder, "
                   "else the current folder.")
@json_option
@click.option("--rules", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Rules folder to catalogue. Default: the rules setting, else the project's rules/, else the "
                   "rules shipped with casefind.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder runs wrote to (their manifests give each rule's last run). Default: the out setting.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Store whose registry of lists (and KPI history) to read. Default: the store setting, else "
                   "the demo workspace if it exists (it is not created).")
@click.option("--history", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="KPI history whose run log gives each KPI file's last run. Default: STORE/kpi/history.duckdb.")
def command(html, output, as_json, rules, out, store, history):
    """List every rule, KPI file and budget file of the project: title, version, sources,
    codelists (source, release, licence, codes, sha256), parameters, the tables and columns
    each reads, whether a rule has a test file, and its last run (from the run manifests,
    the store's registry of lists and the KPI history), with whether the file has changed
    since.

    \b
    Prints a summary table, then each file's detail; --json prints the whole catalogue
    as JSON; --html (or --output FILE) writes it as one self-contained HTML file (no
    scripts, nothing fetched), by default catalogue.html in the project folder.
    A file that does not compile is listed with its error (file:line:col).
    """
    project, cat = _catalogue(rules, out, store, history)
    written = None
    if html or output is not None:
        from casefind.catalogue.render import write_html

        written = write_html(cat, _output_path(output, project.root))
    if as_json:
        emit_json({"command": "catalogue", "html": None if written is None else str(written), **cat.to_dict()})
        return
    from casefind.catalogue.console import print_catalogue, summary_table

    if written is not None:
        console.print(summary_table(cat))
        failed = sum(1 for e in cat.entries if e.error)
        err_console.print(f"Catalogue of {len(cat.entries)} files ({failed} that do not compile) written to "
                          f"{written}", highlight=False, soft_wrap=True, markup=False)
        return
    print_catalogue(cat, console)

