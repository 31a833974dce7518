"""The catalogue in the terminal: a summary table of every file, then each file's detail."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from casefind.catalogue.model import KIND_LABELS, SHIPPED_LABELS, Catalogue, Entry, LastRun, status

_STYLE = {"error": "bold red", "changed": "bold yellow", "ok": "green", "none": "dim"}


_SHORT = {"error": "error", "changed": "changed since run", "ok": "ok", "none": "–"}


def _status(e: Entry, short: bool = False) -> str:
    text, css = status(e)
    if short and not (css == "none" and e.kind == "rule"):
        text = _SHORT[css]
    return f"[{_STYLE[css]}]{escape(text)}[/]"


def run_text(run: LastRun | None) -> str:
    """The last run in a few words: when, for which as_of or periods."""
    if run is None:
        return "–"
    when = (run.date or "date not recorded").replace("T", " ").replace("+00:00", "Z")
    what = f"as_of {run.as_of}" if run.as_of else (f"periods {', '.join(run.periods)}" if run.periods else "")
    return f"{when}" + (f", {what}" if what else "")


def summary_table(cat: Catalogue) -> Table:
    """One row per file, the title last so that a narrow terminal wraps it rather than the
    status; the last run's date only (the detail has the rest)."""
    t = Table(title=f"Catalogue of {escape(cat.rules_dir)}", title_justify="left")
    t.add_column("file", min_width=10)
    t.add_column("version")
    t.add_column("codelists", justify="right")
    t.add_column("test")
    t.add_column("last run", min_width=10)
    t.add_column("status", min_width=9)
    t.add_column("title", ratio=1)
    for e in cat.entries:
        test = ("yes" if e.test_file else "[yellow]no[/]") if e.kind == "rule" else "–"
        run = e.last_run
        when = "–" if run is None else (run.date or "not dated")[:10]
        t.add_row(f"{escape(e.name)}\n[dim]{KIND_LABELS[e.kind]}[/]", escape(e.version), str(len(e.codelists)),
                  test, escape(when), _status(e, short=True), escape(e.title))
    return t


def _detail_rows(e: Entry) -> list[tuple[str, str]]:
    rows = [("file", e.path), ("sha256", e.sha256)]
    if e.error:
        rows.append(("error", e.error + (f"\nhint: {e.hint}" if e.hint else "")))
    rows += [(k, v) for k, v in (("summary", e.description), ("sources", e.sources), ("as_of", e.as_of or "")) if v]
    if e.kind == "rule":
        rows.append(("test file", e.test_file or "none"))
    if e.shipped:
        edited = [c.name for c in e.codelists if c.shipped == "edited"]
        rows.append(("shipped copy", SHIPPED_LABELS[e.shipped]
                     + (f"; codelists edited: {', '.join(edited)}" if edited else "")))
    rows += [(f"header: {k}", str(v)) for k, v in e.header.items()]
    for p in e.parameters:
        note = f": {p.description}" if p.description else ""
        rows.append((f"parameter {p.name}", f"{p.default} ({p.type}){note}"))
    rows += [(f"reads {t}", ", ".join(cols)) for t, cols in e.reads.items()]
    if e.attributes:
        rows.append(("patient attributes", ", ".join(e.attributes)))
    if e.measures:
        rows.append(("measures", ", ".join(e.measures)))
    run = e.last_run
    if run is not None:
        rows.append(("last run", f"{run_text(run)}; snapshot {run.store_snapshot or '–'}; run {run.run_id or '–'}; "
                                 f"from the {run.source} {run.where} ({run.runs} found)"
                     + (f"; status {run.status}" if run.status else "")
                     + (f"; that run read {run.ran_file}" if run.ran_file else "")))
    return rows


def _codelist_table(e: Entry) -> Table:
    t = Table(title=f"Codelists of {escape(e.name)}", title_justify="left")
    for c in ("codelist", "system", "file", "codes", "rows", "source", "release", "licence", "sha256"):
        t.add_column(c, justify="right" if c in ("codes", "rows") else "left", overflow="fold")
    for c in e.codelists:
        codes = f"{c.codes:,}" + (f" + {c.prefixes:,} prefixes" if c.prefixes else "")
        source = escape(c.source) if c.source else ("[yellow]no provenance sidecar[/]" if c.file else "inline")
        rows = f"{c.rows:,}" + (f" of {c.file_rows:,}" if c.file_rows else "")
        t.add_row(escape(c.name), escape(c.system), escape(c.file or "inline"), codes, rows,
                  source,
                  escape(c.release or ""), escape(c.licence or ""), (c.sha256 or "–")[:12])
    return t


def entry_detail(e: Entry, out: Console) -> None:
    name = f"{KIND_LABELS[e.kind]} {escape(e.name)}"
    t = Table(title=f"{name}: {escape(e.title)}" if e.title else name, title_justify="left", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    t.add_row("status", _status(e))
    for k, v in _detail_rows(e):
        t.add_row(escape(k), escape(v))
    out.print(t)
    if e.codelists:
        out.print(_codelist_table(e))


def print_catalogue(cat: Catalogue, out: Console) -> None:
    out.print(summary_table(cat))
    if cat.budgets_dir is None:
        out.print("Budget files: none (no budgets/ folder in the rules folder).")
    for note in cat.notes:
        out.print(f"[yellow]could not read:[/] {escape(note)}", soft_wrap=True)
    for e in cat.entries:
        entry_detail(e, out)
