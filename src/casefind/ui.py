"""Terminal output: progress while work runs, summary tables when it ends (rich)."""
from __future__ import annotations

import math
import time
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
err_console = Console(stderr=True)
_STAGE: list[str] = []  # the stage each running job is in (a stack: jobs may nest)
_FAILED: list[str] = []  # the stage a job was in when it failed


def reset_stage() -> None:
    """Forget the stage of an earlier command (the CLI calls this as each command starts)."""
    _STAGE.clear()
    _FAILED.clear()


def current_stage() -> str | None:
    """The stage of the innermost running job, or of the job that just failed, e.g.
    'ingest: validating: patients', so an error can say where it happened."""
    return _STAGE[-1] if _STAGE else (_FAILED[-1] if _FAILED else None)


@contextmanager
def stage_progress(job: str):
    """Yield ``say(stage)``: shows the current stage with a spinner and the elapsed time;
    each finished stage is printed with its duration (stderr, so stdout stays clean)."""
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(),
                        console=err_console, transient=True)
    state = {"task": None, "stage": None, "t": time.perf_counter()}

    def done(now: float, mark: str = "[green]✓[/]") -> None:
        progress.console.print(f"  {mark} {state['stage']} [dim]{now - state['t']:.1f} s[/]")

    def say(stage: str) -> None:
        """``stage`` or ``stage: detail``; a line is printed as each stage (not detail) ends."""
        now = time.perf_counter()
        head = stage.split(":", 1)[0]
        if state["stage"] is not None and head != state["stage"]:
            done(now)
        if head != state["stage"]:
            state.update(stage=head, t=now)
        _STAGE[-1] = f"{job}: {stage}"
        if state["task"] is None:
            state["task"] = progress.add_task(f"{job}: {stage}")
        else:
            progress.update(state["task"], description=f"{job}: {stage}")

    _STAGE.append(job)
    _FAILED.clear()
    with progress:
        try:
            yield say
        except BaseException:
            _FAILED.append(_STAGE.pop())
            if state["stage"] is not None:
                done(time.perf_counter(), "[red]✗[/]")
            raise
        _STAGE.pop()
        if state["stage"] is not None:
            done(time.perf_counter())


def rows_table(title: str, rows: dict[str, int]) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in rows.items():
        t.add_row(name, f"{n:,}")
    t.add_row("[bold]total[/]", f"[bold]{sum(rows.values()):,}[/]")
    return t


def calibration_table(rows) -> Table:
    t = Table(title="Calibration against the targets", title_justify="left")
    for c in ("measure", "target", "range", "actual", ""):
        t.add_column(c, justify="left" if c == "measure" else "right")
    for r in rows:
        t.add_row(r.measure, f"{r.target:,.4g}", f"{r.low:,.4g}–{r.high:,.4g}", f"{r.actual:,.4g}",
                  "[green]ok[/]" if r.ok else "[red]OFF[/]")
    return t


def truth_table(rows) -> Table:
    """Each shipped rule against the synthetic population's truth: sensitivity and PPV."""
    t = Table(title="Shipped rules against the truth (_truth/)", title_justify="left")
    for c in ("rule", "measure", "codelist", "people", "true", "flagged", "both", "sensitivity", "PPV", "expected"):
        t.add_column(c, justify="left" if c in ("rule", "measure", "codelist") else "right")

    def share(x) -> str:
        return "–" if x is None or math.isnan(x) else f"{x:.3f}"

    for r in rows:
        t.add_row(r.rule, r.measure, r.codelist, f"{r.people:,}", f"{r.true:,}", f"{r.flagged:,}",
                  f"{r.both:,}", share(r.sensitivity), share(r.ppv), "" if r.expected is None else f"{r.expected:.2f}")
    return t


def ingest_summary(summary, out: Console) -> None:
    t = Table(title=f"Ingest → {summary.store}", title_justify="left")
    for c in ("table", "read", "stored", "quarantined"):
        t.add_column(c, justify="left" if c == "table" else "right")
    for name, s in summary.tables.items():
        q = sum(s.quarantined.values())
        label = f"{name} [dim](restricted store)[/]" if name == "identities" else name
        t.add_row(label, f"{s.read:,}", f"{s.stored:,}", f"[yellow]{q:,}[/]" if q else "0")
    out.print(t)
    if summary.quarantined_total:
        r = Table(title="Quarantined rows by reason", title_justify="left")
        for c in ("table", "reason", "rows"):
            r.add_column(c, justify="right" if c == "rows" else "left")
        for name, s in summary.tables.items():
            for reason, n in sorted(s.quarantined.items(), key=lambda kv: -kv[1]):
                r.add_row(name, reason, f"{n:,}")
        out.print(r)
        out.print("Quarantined rows are kept, verbatim, with their reason: "
                  f"{summary.store}/current/quarantine/<table>.parquet")
    for name, cols in summary.missing_columns.items():
        out.print(f"[yellow]note:[/] {name} has no column(s) {', '.join(cols)}: read as empty")
    for name, cols in summary.identifier_columns.items():
        out.print(f"[yellow]note:[/] {name}: {len(cols)} column(s) that identify people removed, never "
                  f"stored: {', '.join(cols)} (identities belong in restricted/identities)")
    for name, why in summary.dropped_columns.items():
        out.print(f"[yellow]note:[/] {name}: column(s) not kept: "
                  + "; ".join(f"{col} ({reason})" for col, reason in why.items()))
    for name, cols in summary.extras.items():
        out.print(f"Extra columns kept in {name} (as extra__<name>): {', '.join(cols)}")
    if summary.ignored:
        out.print(f"[yellow]note:[/] ignored (not contract tables): {', '.join(summary.ignored)}")
    if summary.snapshot_id:
        out.print(f"Store snapshot [bold]{summary.snapshot_id}[/] in {summary.seconds:.1f} s."
                  + (f" Identities stored apart in {summary.identities_store}." if summary.identities_store else ""))


def store_info(store, out: Console) -> None:
    m = store.manifest
    c = m["counts"]
    out.print(f"[bold]Store[/] {store.root}  snapshot [bold]{m['snapshot_id']}[/]  "
              f"created {m['created']}  casefind {m['casefind_version']}")
    out.print(f"Source: {m['source']['path']} ({m['source']['kind']})")
    out.print(f"[bold]{c['patients']:,}[/] patients in {c['practices']:,} practices, "
              f"{c['localities']:,} localities, {c['systems']:,} systems")
    t = Table(title="Tables", title_justify="left")
    for col in ("table", "rows", "date range", "read", "quarantined"):
        t.add_column(col, justify="left" if col in ("table", "date range") else "right")
    for name, meta in m["tables"].items():
        if meta.get("file") is None:  # the review log, shown below
            continue
        ing = m["ingest"].get(name, {})
        q = sum(ing.get("quarantined", {}).values())
        dr = meta.get("date_range")
        t.add_row(name, f"{meta['rows']:,}", f"{dr[0]} → {dr[1]}" if dr else "",
                  f"{ing.get('read', 0):,}", f"[yellow]{q:,}[/]" if q else "0")
    out.print(t)
    reasons = [(n, r, k) for n, ing in m["ingest"].items() for r, k in ing.get("quarantined", {}).items()]
    if reasons:
        r = Table(title="Quarantine by reason", title_justify="left")
        for col in ("table", "reason", "rows"):
            r.add_column(col, justify="right" if col == "rows" else "left")
        for n, reason, k in sorted(reasons, key=lambda x: -x[2]):
            r.add_row(n, reason, f"{k:,}")
        out.print(r)
    codes = {k.split(".", 1)[1]: v["size"] for k, v in m["dictionaries"].items() if k.startswith("code.")}
    if codes:
        out.print("Code dictionaries: " + ", ".join(f"{s} {n:,}" for s, n in codes.items()))
    rv = m.get("reviews", {})
    out.print(f"Review log: {rv.get('rows', 0):,} rows in {rv.get('batches', 0):,} batches "
              "(`casefind review show`)")
    from casefind.store.identities import identities_state

    ids = identities_state(store)
    if ids.matches:
        out.print(f"Identities: held apart in a restricted store ({ids.root}), for this snapshot.")
    elif ids.root is None:
        out.print("Identities: none held for this snapshot (ingested without identities).")
    else:
        out.print(f"[yellow]Identities: {ids.problem}: {ids.hint}.[/]")


def run_summary(result, out: Console) -> None:
    m = result.manifest
    t = Table(title=f"{result.rule.name} (as_of {result.rule.as_of}) → {result.out_dir}", title_justify="left")
    t.add_column("step")
    t.add_column("patients", justify="right")
    for k in ("population", "meets_criteria", "eligible", "listed"):
        t.add_row(k.replace("_", " "), f"{result.counts.get(k, 0):,}")
    for k, v in result.excluded.items():
        t.add_row(f"  excluded: {k.replace('policy:', '')}", f"{v:,}")
    t.add_row("  capped (over the limits)", f"{m['counts']['capped']:,}")
    out.print(t)
    if result.segments:
        s = Table(title="Segments", title_justify="left")
        for c in ("segment", "people", "share", "cost share"):
            s.add_column(c, justify="left" if c == "segment" else "right")
        for name, seg in result.segments.items():
            cs = seg["cost_share"]
            s.add_row(name, f"{seg['people']:,}", f"{seg['share']:.1%}", "" if cs is None else f"{cs:.1%}")
        out.print(s)
    if result.per_practice:
        p = Table(title="Listed per practice", title_justify="left")
        p.add_column("practice")
        p.add_column("listed", justify="right")
        for code, n in result.per_practice.items():
            p.add_row(code, f"{n:,}")
        out.print(p)
    out.print(f"Run {result.run_id}: list in {result.out_dir}/list.csv (per practice: practices/), "
              f"manifest.json; {m['counts']['rechecked_against_reference']:,} patients re-checked "
              f"against the reference engine.", soft_wrap=True)


def review_import_summary(summaries, out: Console) -> None:
    if not summaries:
        return
    t = Table(title="Review decisions recorded", title_justify="left")
    for c in ("file", "read as", "rows", "listed", "accepted", "declined", "already known", "undecided",
              "already recorded"):
        t.add_column(c, justify="left" if c in ("file", "read as") else "right")
    for s in summaries:
        d = s.decisions_added
        t.add_row(str(s.path), s.encoding or "", f"{s.rows:,}", f"{s.listed_added:,}", f"{d.get('accepted', 0):,}",
                  f"{d.get('declined', 0):,}", f"{d.get('already_known', 0):,}", f"{s.undecided:,}",
                  f"{s.already_recorded:,}")
    out.print(t)


def review_table(rows, out: Console) -> None:
    t = Table(title="Review of case-finding lists (latest decision per patient)", title_justify="left")
    for c in rows.column_names:
        t.add_column(c.replace("_", " "), justify="left" if c in ("rule", "practice") else "right")
    for r in rows.to_pylist():
        t.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in r.values()))
    if not rows.num_rows:
        out.print("No lists recorded yet: `casefind review import LIST` after a practice has reviewed one.")
        return
    out.print(t)


def kpi_summary(result, out: Console) -> None:
    levels = {}
    if result.results is not None:
        for lv in result.results.column("level").to_pylist():
            levels[lv] = levels.get(lv, 0) + 1
    t = Table(title=f"KPIs {result.kpi_set} → {result.history}", title_justify="left")
    t.add_column("")
    t.add_column("", justify="right")
    t.add_row("periods", ", ".join(result.periods) if len(result.periods) <= 4
              else f"{result.periods[0]} … {result.periods[-1]} ({len(result.periods)})")
    t.add_row("measures", f"{result.measures}")
    for lv, n in levels.items():
        t.add_row(f"rows: {lv}", f"{n:,}")
    t.add_row("suppressed (disclosure control)", f"{result.suppressed:,}")
    t.add_row("run id", result.run_id)
    out.print(t)
    out.print("Timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))


def settings_table(project, out: Console) -> None:
    """The settings in force and where each came from (``casefind info``)."""
    where = f"project file {project.file}" if project.file else "no casefind.toml here or in a parent folder"
    t = Table(title=f"Settings ({where})", title_justify="left")
    for c in ("setting", "value", "from", "environment variable"):
        t.add_column(c)
    for row in project.rows():
        value = "[dim](default)[/]" if row["value"] is None else escape(row["value"])
        t.add_row(row["setting"], value, escape(row["source"]), row["environment"])
    out.print(t)
    from casefind.project import rules_folder

    out.print(f"Rules named without a path come from {escape(str(rules_folder(project)))}", highlight=False)
