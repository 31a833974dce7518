"""The ``casefind`` command line.

Exit codes (for schedulers): 0 success; 1 the job failed (bad source, bad store, I/O); 2 the
command was used wrongly; 3 --strict and some rows broke the data contract; 4 the rule or
KPI file has an error; 5 another process holds the KPI history or store (retry later).

Every user-caused failure is a ``casefind.errors.CasefindError``; it is caught once, here,
and printed as one ``error:`` line with a hint. Anything else is a bug: it is reported as
one, and its traceback is shown only with ``--debug`` (or CASEFIND_DEBUG=1).
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from casefind import __version__
from casefind.cli_common import emit_json, json_option, parse_params, project, resolve_store, setting
from casefind.errors import EXIT_FAILED, CasefindError, UsageError
from casefind.ui import console, current_stage, err_console, reset_stage, stage_progress

ISSUES_URL = ("the casefind issue tracker (include the command, the output of `casefind --version` "
              "and the traceback from --debug)")


def _print_error(message: str, hint: str | None = None) -> None:
    """One error line (and a hint), with the text escaped: a user's input never becomes markup."""
    err_console.print(f"[bold red]error:[/] {_escape(message)}", soft_wrap=True, highlight=False)
    if hint:
        err_console.print(f"[dim]hint:[/] {_escape(hint)}", soft_wrap=True, highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class CasefindGroup(click.Group):
    """Catches every CasefindError once, for every command: one error line, the right exit
    code, and the stage that failed. Unexpected exceptions are bugs, reported as such."""

    def invoke(self, ctx: click.Context):
        reset_stage()
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except OSError as e:  # the machine said no (a full disk, a name too long, no permission)
            what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
            _print_error(f"cannot read or write a file: {what}"[:1000],
                         "check the path, its permissions and the free disk space")
            ctx.exit(EXIT_FAILED)
        except CasefindError as e:
            stage = current_stage()
            where = f" (while {stage})" if stage and not isinstance(e, UsageError) else ""
            _print_error(e.describe() + where, e.hint)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            _print_error("interrupted; outputs written before this run are unchanged")
            ctx.exit(130)
        except Exception as e:  # a bug in casefind, not the user's mistake
            if _debug(ctx):
                traceback.print_exc()
            stage = current_stage()
            _print_error(f"casefind failed unexpectedly{f' while {stage}' if stage else ''}: "
                         f"{type(e).__name__}: {e}"[:2000],
                         "this is a bug in casefind, not in your input: run again with --debug for the traceback "
                         f"and report it to {ISSUES_URL}" if not _debug(ctx) else f"please report it to {ISSUES_URL}")
            ctx.exit(EXIT_FAILED)


def _debug(ctx: click.Context) -> bool:
    root = ctx.find_root()
    return bool((root.params or {}).get("debug")) or os.environ.get("CASEFIND_DEBUG", "") not in ("", "0")


def _store_option(f):
    return click.option(
        "--store", type=click.Path(path_type=Path), default=None,
        help="Population store to use. Default: $CASEFIND_STORE, else casefind.toml's [paths] store, "
             "else the demo workspace (created on first use).")(f)


def _rule(text: str, kind: str = "rule") -> Path:
    """A rule (or KPI file) argument: a path, or a name in the project's or the shipped rules."""
    from casefind.project import resolve_rule

    return resolve_rule(text, project(), kind=kind)


def _as_of(flag: str | None, store) -> str | None:
    """The evaluation date: --as-of, else the as_of setting; 'rule' leaves each rule its own,
    'latest' is the last date of the store's data."""
    value = setting("as_of", flag)
    if value == "rule":
        return None
    if value == "latest":
        from casefind.store.sharded import coverage_of

        last = coverage_of(store() if callable(store) else store).last
        if last is None:
            raise UsageError("as_of 'latest': the store has no dated events", "give --as-of YYYY-MM-DD")
        return last.isoformat()
    return value


@click.group(cls=CasefindGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="casefind")
@click.option("--debug", is_flag=True, help="Show the full traceback if casefind fails unexpectedly (a bug).")
def main(debug):
    """casefind: rules-based case-finding and outcomes for integrated care.

    \b
    A typical session:
      casefind synth --patients 100000 --out data/   # a synthetic population
      casefind ingest data/ --store pop/             # validate, quarantine, build the store
      casefind info --store pop/                     # what is in it

    \b
      casefind run rules/frail.yml --store pop/      # a validated review list per practice
      casefind check rules/frail.yml                 # is the rule valid? (no data needed)
      casefind explain rules/frail.yml               # its IR, plan and generated kernels
      casefind review import lists/.../Z00001.csv    # record clinicians' decisions
      casefind kpi rules/kpis/triple_aim.yml --period 2026-10   # monthly KPIs
      casefind report --period 2026-10               # the KPI pack (one HTML file)

    \b
    Your own project:
      casefind init myproject && cd myproject        # casefind.toml, the rules, a README
      casefind run frail                             # shipped or project rules by name
      casefind test                                  # the rules' declared test patients
      casefind catalogue --html                      # every rule, codelist, KPI file
      casefind quality --html                        # the store's data quality

    \b
    Practices review their lists in the browser:
      casefind serve                                 # http://127.0.0.1:8000 (demo accounts printed)
      casefind users add dr_a --role clinician --practice Z00001
      casefind audit verify                          # the audit log's hash chain is intact

    Settings (store, out, history, engine, as_of, disclosure) come from the flag, else
    CASEFIND_<NAME>, else casefind.toml (here or in a parent folder), else the default;
    `casefind info` shows which. With no store set, commands use a demo workspace with
    50,000 synthetic patients, created on first use.

    Exit codes: 0 ok, 1 failed, 2 usage (a bad option value, a
    date outside the data), 3 --strict found bad rows, 4 the rule or KPI file has an
    error (file:line:col, what, and a hint), 5 busy: another process is writing (retry).
    Every failure is one 'error:' line; --debug shows a traceback if casefind itself fails.
    """


@main.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--store", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A population store the project uses (recorded in casefind.toml). Default: none set, so "
                   "commands use the demo workspace.")
@click.option("--name", help="The project's name (default: the folder's).")
@json_option
def init(directory, store, name, as_json):
    """Start an analyst's project in DIRECTORY (new, or an empty folder).

    \b
    It gets casefind.toml (every setting and its default, commented), the rules shipped
    with casefind (their test patients, codelists with provenance, KPI files) to edit
    and add to, rules/SHIPPED.json (release and sha256 of each copied file), a README
    and a .gitignore that keeps data out of git. Then, from inside it:
      casefind run frail        casefind test        casefind catalogue --html
    """
    from casefind.init_project import init_project

    result = init_project(directory, store=store, name=name)
    if as_json:
        emit_json({"command": "init", "root": str(result.root), "files": result.files, "rules": result.rules,
                   "kpi_files": result.kpi_files, "codelists": result.codelists})
        return
    console.print(f"[green]Created[/] project {_escape(str(result.root))}: casefind.toml, README.md, .gitignore and "
                  f"rules/ ({len(result.rules)} rules, {len(result.kpi_files)} KPI file(s), "
                  f"{result.codelists} codelists, copied from casefind {__version__})", highlight=False)
    console.print(f"Next: [bold]cd {_escape(str(directory))} && casefind info[/], then [bold]casefind run frail[/]")


@main.command()
@click.option("--patients", "-n", type=click.IntRange(min=10), default=50_000, show_default=True,
              help="How many patients (everyone registered at some point in the 36 months before --as-of).")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same population.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder to write the contract's tables to: new, empty, or an earlier synth output (replaced).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@click.option("--inject-errors", type=click.FloatRange(0, 0.5), default=0.0, show_default=True,
              help="Add contract-breaking rows of every kind at this rate, to exercise ingest's quarantine.")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), default="2026-10-31", show_default=True,
              help="Extract date: the history ends here.")
@click.option("--report", is_flag=True, help="Print how close the population lands to the calibration targets.")
@click.option("--identities/--no-identities", "with_identities", default=True, show_default=True,
              help="Write OUT/restricted/identities (names, NHS numbers from the test ranges: at most "
                   "1,818,182 patients). --no-identities writes the analysis tables only, for scale tests.")
@json_option
def synth(patients, seed, out, fmt, inject_errors, as_of, report, with_identities, as_json):
    """Generate a realistic synthetic population in the data contract's format.

    Deterministic per seed. Identities (NHS numbers, names) are written apart, to
    OUT/restricted/. Nothing here is real patient data. OUT must be a new or empty
    folder, or one an earlier `casefind synth` wrote (it is replaced only when the new
    population is complete); any other folder is refused, never overwritten. More than
    a million patients are made a million at a time, each million an area with its own
    practices, so memory stays that of a million (10 million: about 5 minutes, 4.2 GB).
    """
    from casefind.synth import check_out_folder, check_size, generate

    check_size(patients, with_identities, inject_errors)
    check_out_folder(out)
    with stage_progress("synth") as say:
        result = generate(patients, seed, out, inject_errors=inject_errors, fmt=fmt,
                          as_of=as_of.date(), progress=say, with_identities=with_identities)
    if as_json:
        _synth_json(result, out, as_of.date(), report)
        return
    from casefind.ui import rows_table

    console.print(rows_table(f"Synthetic population → {out}", result.rows))
    if result.injected:
        console.print(f"Injected {sum(result.injected.values()):,} contract-breaking rows "
                      f"({len(result.injected)} kinds); list in {out}/_truth/injected.json")
    console.print(f"Done in {result.seconds:.1f} s. Next: [bold]casefind ingest {out} --store STORE[/]")
    if report:
        from casefind.synth.report import calibration_report
        from casefind.ui import calibration_table

        rows = calibration_report(out, as_of=as_of.date())
        console.print(calibration_table(rows))
        from casefind.synth.report import truth_report
        from casefind.ui import truth_table

        console.print(truth_table(truth_report(out, as_of=as_of.date())))
        if not all(r.ok for r in rows):
            sys.exit(EXIT_FAILED)


def _synth_json(result, out: Path, as_of, report: bool) -> None:
    from dataclasses import asdict

    from casefind import summaries

    body = summaries.synth(result)
    ok = True
    if report:
        from casefind.synth.report import calibration_report

        rows = calibration_report(out, as_of=as_of)
        body["calibration"] = [asdict(r) for r in rows]
        ok = all(r.ok for r in rows)
    emit_json(body)
    if not ok:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--store", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Store to build or replace. Default: $CASEFIND_STORE, else casefind.toml's [paths] store, "
                   "else the demo workspace's store.")
@click.option("--identities", "identities_store", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Restricted store for identities. Default: $CASEFIND_IDENTITIES, else casefind.toml, "
                   "else STORE-identities beside the store.")
@click.option("--strict", is_flag=True,
              help="Fail (exit 3) if any row breaks the contract; the store is left unchanged.")
@click.option("--shards", type=click.IntRange(min=1, max=1024), default=None, metavar="N",
              help="Split the store into N shards by a hash of patient_id, each a store of its own with one "
                   "manifest over them (docs/scale-out.md); every command that takes --store reads it. "
                   "Under `casefind spark`, the shards are built on the executors. 1 or none: one store.")
@json_option
def ingest(source, store, identities_store, strict, shards, as_json):
    """Validate SOURCE against the data contract and build a population store from it.

    \b
    SOURCE is a folder of Parquet or CSV files named after the contract's tables
    (patients.parquet, activity.csv, ...; a table may also be a folder of Parquet parts,
    hive-partitioned or not; identities may sit in SOURCE/restricted/), or a DuckDB
    database holding those tables. See docs/data-contract.md.

    Every row that breaks the contract is quarantined with its reason (nothing is
    dropped silently); the summary counts them. The new store is built beside the old
    one and swapped in only when complete, so a failed ingest changes nothing. The
    review log (STORE/decisions/), the lists runs wrote (STORE/lists/) and the KPI
    history (STORE/kpi/) are kept across ingests.
    """
    from casefind.ingest import StrictModeError
    from casefind.ingest.sharded import ingest_store, summary_json
    from casefind.ui import ingest_summary

    store, identities_store = setting("store", store), setting("identities", identities_store)
    if store is None:
        from casefind.workspace import demo_paths

        store = demo_paths()["store"]
        identities_store = identities_store or demo_paths()["identities"]
    show = (lambda s: emit_json(summary_json(s))) if as_json else (lambda s: ingest_summary(s, console))
    try:
        with stage_progress("ingest") as say:
            summary = ingest_store(source, store, shards=shards, identities_store=identities_store,
                                   strict=strict, progress=say)
    except StrictModeError as e:
        show(e.summary)
        e.hint = "look at the reasons above; without --strict the bad rows go to quarantine"
        raise
    show(summary)


@main.command()
@_store_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the settings and the store's manifest as JSON instead.")
def info(store, as_json):
    """Show the settings in force (each with where it came from: flag, environment,
    casefind.toml or default) and what the population store holds: patients,
    hierarchy, rows, dates, quarantine."""
    from casefind.store import Store
    from casefind.store.shards import info_json, is_sharded, print_info
    from casefind.ui import settings_table, store_info

    settings = project(store=store)
    root = resolve_store(store)
    if is_sharded(root):
        if as_json:
            emit_json({"project_file": None if settings.file is None else str(settings.file),
                       "settings": settings.rows(), **info_json(root)})
        else:
            settings_table(settings, console)
            print_info(root, console)
        return
    st = Store.open(root)
    if as_json:
        emit_json({"project_file": None if settings.file is None else str(settings.file),
                   "settings": settings.rows(), "store": str(st.root), "manifest": st.manifest})
    else:
        settings_table(settings, console)
        store_info(st, console)


def _as_of_option(f):
    return click.option("--as-of", metavar="YYYY-MM-DD|latest",
                        help="Evaluation date, or 'latest' (the end of the store's data). Default: the as_of "
                             "setting ($CASEFIND_AS_OF, casefind.toml), else the rule's own as_of.")(f)


def _engine_option(f):
    from casefind.engines.base import DEFAULT, ENGINES, engines_help  # names only: no engine is loaded

    return click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
                        help=f"{engines_help()} Default: $CASEFIND_ENGINE, else casefind.toml, else {DEFAULT}.")(f)


def _allow_partial_option(f):
    return click.option("--allow-partial", is_flag=True,
                        help="Run even if the store's data only partly covers the dates evaluated "
                             "(recorded in the outputs). Dates wholly outside the data are always refused.")(f)


def _say_if_compiling(engine: str, job: str = "list") -> None:
    """Before a run whose kernels are not compiled yet (a fresh environment), say so and
    for about how long (``job``: "list" or "kpi", which compile differently)."""
    from casefind.first_use import compile_notice

    notice = compile_notice(engine, job)
    if notice:
        err_console.print(f"[cyan]{_escape(notice)}[/]", highlight=False)


def _warn(messages) -> None:
    for m in messages:
        err_console.print(f"[bold yellow]warning:[/] {_escape(m)}", soft_wrap=True, highlight=False)


@main.command()
@click.argument("rule")
@_store_option
@_as_of_option
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a rule parameter (repeatable).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for the run's outputs: OUT/<rule>-<as_of>/. Default: $CASEFIND_OUT, else "
                   "casefind.toml's [paths] out, else out/.")
@_engine_option
@_allow_partial_option
@json_option
def run(rule, store, as_of, params, out, engine, allow_partial, as_json):
    """Run RULE over a store and write a validated review list per practice.

    RULE is a rule file, or a rule's name: `casefind run frail` runs frail.yml from the
    project's rules folder, else the rules shipped with casefind.

    \b
    Writes OUT/<rule>-<as_of>/: list.parquet and list.csv (every listed patient with
    rank, segment, output columns, each criterion, the reasons and their evidence),
    practices/<code>.csv (one file per practice), and manifest.json (rule hash, store
    snapshot, parameters, engine and versions, counts at each step, timings).

    Before writing, the list is validated: nobody dead, deregistered or opted out
    (type 1), no duplicates, and listed patients re-checked against the reference
    engine. Outputs are swapped in only when complete. An as_of the store's data does
    not cover is refused (exit 2); see --allow-partial.
    """
    from casefind.lists.run import run as run_rule
    from casefind.startup import without_pandas
    from casefind.ui import run_summary

    rule, store, engine = _rule(rule), resolve_store(store), setting("engine", engine)
    as_of, out = _as_of(as_of, store), setting("out", out)
    _say_if_compiling(engine)
    with stage_progress(f"run {rule.name}") as say, without_pandas():
        result = run_rule(rule, store, out, as_of=as_of, params=parse_params(params), engine=engine,
                          allow_partial=allow_partial, progress=say)
    _warn(result.warnings)
    if as_json:
        from casefind import summaries

        emit_json(summaries.run(result))
    else:
        run_summary(result, console)


@main.command()
@click.argument("rules", nargs=-1, required=True)
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE")
@json_option
def check(rules, params, as_json):
    """Check rule files (paths or names) without running them: syntax, names, types,
    codelists, cycles. The first error stops the check (exit 4, file:line:col)."""
    from casefind import summaries
    from casefind.rules.compile import compile_rule

    checked = []
    for text in rules:
        path = _rule(text)
        r = compile_rule(path, params=parse_params(params))
        checked.append(summaries.check(r, path))
        if not as_json:
            console.print(f"[green]ok[/] {_escape(str(path))}: rule {r.name!r}, {len(r.features)} features, "
                          f"{len(r.include)} include / {len(r.exclude)} exclude criteria, as_of {r.as_of}")
    if as_json:
        emit_json({"command": "check", "rules": checked})


@main.command()
@click.argument("rule")
@_store_option
@_as_of_option
@click.option("--sql", "sql", is_flag=True,
              help="Print only the reference engine's SQL for the rule (one query over the store's views), "
                   "as dbt compile does.")
def explain(rule, store, as_of, sql):
    """Show how RULE compiles: the IR of each feature as an indented tree, its codelists by
    name and size, each table's scan (a named slot per aggregation, the row ranges it reads)
    and the generated Numba kernel source; with --sql, the reference engine's SQL instead
    (written inline: it needs no store to read)."""
    from casefind.rules.compile import compile_rule

    r = compile_rule(_rule(rule), as_of=_as_of(as_of, lambda: resolve_store(store)))
    if sql:
        from casefind.engines.duckdb_sql import query_text
        from casefind.lists.run import rule_expressions

        click.echo(query_text(rule_expressions(r), r.as_of, r.population))
        return
    from casefind.explain import sections
    from casefind.store.sharded import ShardedStore, open_any

    st = open_any(resolve_store(store))
    if isinstance(st, ShardedStore):  # every shard runs the same scans and kernels
        console.print(f"sharded store: the scans and kernels each of its {st.n_shards} shards runs, shown on shard "
                      "000", soft_wrap=True, markup=False, highlight=False)
        st = st.open_shard(0)
    for title, text in sections(r, st):
        console.rule(title)
        click.echo(text)


@main.group()
def review():
    """Record and show clinicians' review of case-finding lists.

    \b
    The loop:
      casefind run rules/frail.yml --out lists/     # practices/<code>.csv per practice
      # the practice fills in decision (accepted / declined / already_known, blank
      # while undecided), and optionally decided_on, reviewer, note
      casefind review import lists/frail-2026-10-31/practices/Z00001.csv
      casefind review show                          # listed, reviewed, accepted ...
      casefind review undo --rule frail --patient ID   # withdraw a decision (kept in history)

    Decisions are kept beside the store (STORE/decisions/), survive new ingests, and
    rules read them: reviewed(decision == "declined", within=months(6)) keeps a patient
    declined in the last six months off the next list. Importing the same file twice
    records nothing new. Every row is checked against the run that wrote the list: its
    rule, its practice and the patients it listed.
    """


@review.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@_store_option
@click.option("--reviewer", help="Who reviewed, for rows whose reviewer column is empty.")
@click.option("--on", "decided_on", type=click.DateTime(["%Y-%m-%d"]),
              help="Decision date for rows whose decided_on is empty (default: today).")
@click.option("--practice", metavar="CODE",
              help="Whose files these are: a row for another practice's patient is refused. "
                   "(A file named practices/<CODE>.csv is taken to be CODE's.)")
@json_option
def review_import(files, store, reviewer, decided_on, practice, as_json):
    """Record the decisions filled in on list FILES (a list's .csv, .xlsx or .parquet, or a run
    folder). Every row is recorded as listed; rows with a decision also as decided.
    A file with any bad row records nothing and lists every problem (exit code 1)."""
    from casefind.lists.review import import_reviews
    from casefind.ui import review_import_summary

    store = resolve_store(store)
    summaries = []
    try:
        for f in files:
            summaries.append(import_reviews(f, store, reviewer=reviewer, practice=practice,
                                            decided_on=decided_on.date() if decided_on else None))
    finally:
        if as_json:
            from dataclasses import asdict

            emit_json({"command": "review import", "files": [asdict(s) for s in summaries]})
        else:
            review_import_summary(summaries, console)


@review.command("record")
@_store_option
@click.option("--rule", required=True, help="The rule whose list the patient was on (e.g. frail).")
@click.option("--patient", "patient_id", required=True, help="Pseudonymised patient id, as on the list.")
@click.option("--decision", required=True, help="accepted, declined or already_known.")
@click.option("--on", "decided_on", type=click.DateTime(["%Y-%m-%d"]), help="Decision date (default: today).")
@click.option("--reviewer")
@click.option("--note")
@json_option
def review_record(store, rule, patient_id, decision, decided_on, reviewer, note, as_json):
    """Record one decision without a list file (for a patient a run of RULE listed)."""
    from casefind.lists.review import record_decision

    new = record_decision(resolve_store(store), rule=rule, patient_id=patient_id, decision=decision,
                          on=decided_on.date() if decided_on else None, reviewer=reviewer, note=note)
    if as_json:
        emit_json({"command": "review record", "rule": rule, "decision": decision, "recorded": bool(new)})
    else:
        console.print("recorded" if new else "already recorded; nothing added")


@review.command("show")
@_store_option
@click.option("--rule", help="Only this rule's lists.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows instead of a table.")
def review_show(store, rule, as_json):
    """Per rule and practice: patients listed, reviewed, and the latest decisions."""
    from casefind.lists.review import review_status
    from casefind.ui import review_table

    t = review_status(resolve_store(store), rule)
    if as_json:
        import json

        click.echo(json.dumps(t.to_pylist(), indent=2))
    else:
        review_table(t, console)


def _periods(period, first, last):
    from casefind.kpis.periods import PeriodError, parse, span

    try:
        if period and (first or last):
            raise click.UsageError("give --period, or --from and --to, not both")
        if period:
            return [parse(p) for p in period]
        if first or last:
            if not (first and last):
                raise click.UsageError("--from and --to go together")
            return span(first, last)
    except PeriodError as e:
        raise click.BadParameter(e.message, param_hint="--period" if period else "--from/--to") from None
    return []


@main.command()
@click.argument("file", required=False)
@_store_option
@click.option("--period", multiple=True, metavar="YYYY-MM|YYYY-Qn",
              help="A reporting month (2026-10), quarter (2026-Q3) or rolling year (12m-to-2026-10); repeatable.")
@click.option("--from", "first", metavar="PERIOD", help="Backfill: first period of a range ...")
@click.option("--to", "last", metavar="PERIOD", help="... and its last (inclusive).")
@click.option("--history", "history_path", type=click.Path(path_type=Path, dir_okay=False),
              help="KPI history database. Default: $CASEFIND_HISTORY, else casefind.toml, else "
                   "STORE/kpi/history.duckdb.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a parameter of FILE.")
@_engine_option
@click.option("--export", "--output", "export", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the history (this KPI file's, these periods if given) to .csv or .parquet for BI tools.")
@click.option("--suppress-below", type=click.IntRange(min=0), default=None,
              help="Disclosure control: suppress counts from 1 to this − 1. Default: $CASEFIND_SUPPRESS_BELOW, "
                   "else casefind.toml's [disclosure], else the KPI file's (else 8).")
@click.option("--round-to", type=click.IntRange(min=0), default=None,
              help="Disclosure control: round counts to a multiple of this. Default: $CASEFIND_ROUND_TO, "
                   "else casefind.toml, else the KPI file's (else 5).")
@click.option("--drop-period", "drop", multiple=True, metavar="PERIOD",
              help="Remove a period's results from the history (with --kpis, or FILE's set); logged. Repeatable.")
@click.option("--kpis", "kpi_set", help="Which KPI set --drop-period or --export applies to (default: FILE's).")
@_allow_partial_option
@json_option
def kpi(file, store, period, first, last, history_path, params, engine, export, suppress_below, round_to, drop,
        kpi_set, allow_partial, as_json):
    """Compute the KPIs of FILE for reporting periods into the KPI history.

    \b
    Monthly:   casefind kpi triple_aim --period 2026-10   (a name, or a path)
    Backfill:  casefind kpi rules/kpis/triple_aim.yml --from 2025-11 --to 2026-10
    Export:    casefind kpi --export kpis.csv [--period 2026-10]
    Mend:      casefind kpi --kpis triple_aim --drop-period 2019-01
    The pack:  casefind report --period 2026-10

    Every measure and period is computed in one pass over the store, at practice,
    locality and system level (and the file's breakdowns), with 95% intervals (Wilson,
    Byar, Dobson for age-standardised rates) and disclosure control applied last.
    Re-running a period replaces it; the run log keeps every run. A period the store's
    data does not cover is refused (exit 2); see --allow-partial. Exit codes: 0 ok,
    1 failed, 2 usage, 4 error in FILE (file:line:col), 5 another run is writing the
    history (nothing changed; retry).
    """
    from casefind.kpis import history

    periods = _periods(period, first, last)
    if file is None and export is None and not drop:
        raise click.UsageError("give a KPI FILE to compute, --export PATH or --drop-period PERIOD")
    if file is not None and not periods:
        raise click.UsageError("give --period YYYY-MM (or --from and --to)")
    if drop and file is None and not kpi_set:
        raise click.UsageError("--drop-period needs --kpis NAME (or a KPI FILE) to say which KPI set")
    store = resolve_store(store)
    hist = setting("history", history_path) or history.default_path(store)
    said = {"command": "kpi", "history": str(hist)}
    if file is not None:
        from casefind import summaries
        from casefind.kpis.run import run_kpis
        from casefind.ui import kpi_summary

        file, engine = _rule(file, kind="KPI file"), setting("engine", engine)
        disclosure = {k: v for k, v in (("suppress_below", setting("suppress_below", suppress_below)),
                                        ("round_to", setting("round_to", round_to))) if v is not None}
        _say_if_compiling(engine, "kpi")
        with stage_progress(f"kpi {file.name}") as say:
            result = run_kpis(file, store, periods, history_path=hist, engine=engine, params=parse_params(params),
                              allow_partial=allow_partial, progress=say,
                              disclosure_overrides=disclosure)
        _warn(result.warnings)
        said.update(summaries.kpi(result))
        if not as_json:
            kpi_summary(result, console)
        kpi_set = kpi_set or result.kpi_set
    if drop:
        from casefind.kpis.periods import parse

        labels = [_drop_label(parse, p) for p in drop]
        removed = history.drop_periods(hist, kpi_set, labels)
        said["dropped"] = {"kpi_set": kpi_set, "periods": labels, "rows": removed}
        if not as_json:
            console.print(f"dropped {removed:,} rows of {_escape(kpi_set)} for {', '.join(labels)} from {hist} "
                          "(logged in the run log)")
    if export is not None:
        n = history.export(hist, export, kpi_set, [p.label for p in periods])
        said["exported"] = {"path": str(export), "rows": n}
        if not as_json:
            console.print(f"exported {n:,} rows to {_escape(str(export))}")
    if as_json:
        emit_json(said)


def _drop_label(parse, text: str) -> str:
    from casefind.kpis.periods import PeriodError

    try:
        return parse(text).label
    except PeriodError as e:
        raise click.BadParameter(e.message, param_hint="--drop-period") from None


@main.command()
@_store_option
@click.option("--period", required=True, metavar="YYYY-MM|YYYY-Qn", help="The pack's period (the latest shown).")
@click.option("--history", "history_path", type=click.Path(path_type=Path, dir_okay=False),
              help="KPI history database. Default: $CASEFIND_HISTORY, else casefind.toml, else "
                   "STORE/kpi/history.duckdb.")
@click.option("--kpis", "kpi_set", default="triple_aim", show_default=True, help="Which KPI file's results.")
@click.option("--output", "--out", "out", type=click.Path(path_type=Path, dir_okay=False),
              help="HTML file to write. Default: kpi-pack-<kpis>-<period>.html in the current folder.")
@click.option("--baseline", type=click.IntRange(min=2), default=None, metavar="N",
              help="Fix SPC limits from the first N points (e.g. 12 or 20), then hold them.")
@click.option("--rebase", multiple=True, metavar="KPI=YYYY-MM",
              help="Re-base KPI's SPC limits at a period (a change in the service); repeatable.")
@click.option("--overdispersion", is_flag=True,
              help="Widen funnel limits by Spiegelhalter's overdispersion factor where practices are overdispersed.")
@click.option("--export", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the pack's data, with the SPC columns per unit and period, to .csv or .parquet.")
@json_option
def report(store, period, history_path, kpi_set, out, baseline, rebase, overdispersion, export, as_json):
    """Write the monthly KPI pack: one self-contained HTML file (opens offline, prints).

    \b
    A triple-aim summary per system and locality; for each KPI a statistical process
    control chart (XmR, Making Data Count rules) of its trend, a funnel plot of the
    practices against the system, and a table per practice. Every number comes from
    the KPI history (`casefind kpi` first); nothing is recomputed. Monthly measures
    are XmR charts with Making Data Count variation and assurance icons; rolling-year
    figures are run charts. --export writes the same data for Power BI.
    """
    from casefind.kpis import history
    from casefind.kpis.periods import PeriodError, parse
    from casefind.reports.pack import PackOptions, render_pack
    from casefind.reports.pack_export import check_export_path, export_pack

    try:
        period = parse(period).label
    except PeriodError as e:
        raise click.BadParameter(e.message, param_hint="--period") from None
    rebases = tuple(_rebase_option(parse, r) for r in rebase)
    options = PackOptions(baseline=baseline, rebase=rebases, overdispersion=overdispersion)
    if export is not None:
        check_export_path(export)
    hist = setting("history", history_path) or history.default_path(resolve_store(store))
    table = history.read(hist, kpi_set, through=period)
    if period not in set(table.column("period").to_pylist()):
        raise CasefindError(f"the KPI history has no {kpi_set} results for {period}",
                            f"casefind kpi rules/kpis/{kpi_set}.yml --period {period}")
    out = out or Path(f"kpi-pack-{kpi_set}-{period}.html")
    run_ids = sorted(set(table.column("run_id").to_pylist()))
    path = render_pack(table, period, out, title=f"casefind KPI pack: {kpi_set}", options=options,
                       meta={"run_ids": run_ids, "snapshot_ids": history.snapshots_of(hist, table),
                             "history": str(hist), "disclosure": _disclosure_of(history.runs(hist), run_ids)})
    kpis = len(set(table.column("kpi").to_pylist()))
    said = {"command": "report", "period": period, "kpi_set": kpi_set, "output": str(path), "kpis": kpis,
            "history": str(hist)}
    if export is not None:
        said["exported"] = {"path": str(export), "rows": export_pack(table, period, export, options)}
    if as_json:
        emit_json(said)
    else:
        console.print(f"KPI pack for {period}: {_escape(str(path))} ({kpis} KPIs)")
        if export is not None:
            console.print(f"exported {said['exported']['rows']:,} rows to {_escape(str(export))}")


def _rebase_option(parse, text: str) -> tuple[str, str]:
    """KPI=YYYY-MM for --rebase."""
    from casefind.kpis.periods import PeriodError

    kpi, sep, when = text.partition("=")
    if not sep or not kpi.strip():
        raise click.BadParameter(f"{text!r}: write KPI=YYYY-MM", param_hint="--rebase")
    try:
        return kpi.strip(), parse(when.strip()).label
    except PeriodError as e:
        raise click.BadParameter(e.message, param_hint="--rebase") from None


def _disclosure_of(runs, run_ids: list[str]) -> list[str]:
    """The disclosure policies (JSON) the pack's runs applied; none in histories from before
    the run log recorded them."""
    if "disclosure" not in runs.column_names:
        return []
    return [r["disclosure"] for r in runs.to_pylist() if r["run_id"] in run_ids and r["disclosure"]]


# --- casefind dataset: one row per patient of a rule's population, every feature (issue 9) ---
@main.command("dataset")
@click.argument("rule")
@click.option("--output", "-o", "output", type=click.Path(path_type=Path), required=True,
              help="File to write; the format follows its extension: .parquet, .csv (with FILE.meta.json "
                   "beside it), .arrow or .feather. Its folder must exist.")
@_store_option
@click.option("--as-of", "as_of", multiple=True, metavar="YYYY-MM-DD|latest",
              help="Evaluation date (or 'latest': the end of the store's data); default: the as_of setting, else "
                   "the rule's. Repeat it for several dates: one block of rows per date, with an as_of column "
                   "(long form), all evaluated in one pass.")
@click.option("--columns", metavar="a,b,c",
              help="Only these columns (features, attributes such as age, include:NAME / exclude:NAME, "
                   "segment, eligible); patient_id, practice and locality always come. Default: all.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a rule parameter (repeatable).")
@_engine_option
@click.option("--opt-out", "opt_out", type=click.Choice(["exclude-ndo-and-type1", "exclude-type1", "none"]),
              default="exclude-ndo-and-type1", show_default=True,
              help="Whose records are left out: by default anyone with a type 1 or national data opt-out "
                   "(secondary use), from every as_of whatever the opt-out's date. exclude-type1 and none are "
                   "only for direct care, or with a legal basis that sets the opt-out aside.")
@_allow_partial_option
@json_option
def dataset_command(rule, output, store, as_of, columns, params, engine, opt_out, allow_partial, as_json):
    """Write RULE's dataset: one row per patient of its population, every feature.

    \b
    Examples:
      casefind dataset rules/frail.yml --output frail.parquet
      casefind dataset rules/frail.yml --as-of 2026-04-30 --as-of 2026-10-31 \\
          --columns efi,frailty,emergency_12m --output frail-trend.csv

    \b
    Columns: patient_id (pseudonymised), as_of (with several dates), practice,
    locality, age, sex, then every feature, each criterion (include:NAME,
    exclude:NAME) and eligible (would `casefind run` list the patient before its
    caps). Dates are dates, numbers numbers, true/false booleans; missing is empty.

    This is secondary use of the data (planning, research), so the national data
    opt-out applies: by default patients with a type 1 or a national data opt-out
    are left out (from every as_of: the opt-out governs this use, made now), and
    counted. Nobody else is removed: the rule's population alone decides who is
    in (the dead or deregistered stay unless it leaves them out). The rule, its
    version and hash, the store snapshot, dates, engine, opt-out policy and counts
    are recorded in the file's metadata (Parquet/Arrow key "casefind";
    FILE.meta.json beside a CSV). An as_of the store's data does not cover is
    refused (exit 2); see --allow-partial. The file is replaced only once
    complete. See docs/datasets.md.
    """
    import time

    from casefind.lists.dataset import check_output, metadata, write
    from casefind.lists.dataset import dataset as make_dataset

    t0 = time.perf_counter()
    check_output(output)
    rule, store, engine = _rule(rule), resolve_store(store), setting("engine", engine)
    dates = [_as_of(a, store) for a in as_of] if as_of else [_as_of(None, store)]
    as_of = [d for d in dates if d is not None]
    _say_if_compiling(engine)
    with stage_progress(f"dataset {rule.name}") as say:
        table = make_dataset(rule, store, as_of=list(as_of) or None, params=parse_params(params),
                             columns=None if columns is None else columns.split(","), engine=engine,
                             opt_out=opt_out, allow_partial=allow_partial, progress=say)
        say("writing")
        write(table, output)
    meta = metadata(table)
    _warn(meta["coverage"]["partial"])
    excluded = sum(c["excluded_opt_out_total"] for c in meta["counts"])
    kinds = " or ".join(meta["opt_out"]["excluded_kinds"]) or "none"
    dates = ", ".join(meta["as_of"]) if len(meta["as_of"]) <= 3 else f"{len(meta['as_of'])} dates"
    if as_json:
        emit_json({"command": "dataset", "rule": meta["rule"], "output": str(output), "rows": table.num_rows,
                   "columns": table.num_columns, "as_of": meta["as_of"], "opt_out_excluded": excluded,
                   "seconds": round(time.perf_counter() - t0, 3)})
        return
    console.print(f"dataset {_escape(meta['rule'])}: {table.num_rows:,} rows × {table.num_columns} columns "
                  f"(as_of {dates}) → {_escape(str(output))} in {time.perf_counter() - t0:.1f} s; "
                  f"opt-outs left out ({kinds}): {excluded:,}", highlight=False)


# --- casefind codelists check: a rule's codelists against a store, with provenance (issue 9) ---
@main.group("codelists")
def codelists_group():
    """Look at the codelists a rule uses.

    \b
      casefind codelists check rules/frail.yml --store pop/
    """


@codelists_group.command("check")
@click.argument("rule")
@_store_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (every code never seen, "
              "the whole provenance) instead of tables.")
def codelists_check(rule, store, as_json):
    """Each codelist of RULE against a store: its codes, prefixes and categories, how many
    the store holds (its dictionary for the code system), which it never holds, and where
    the codes came from (the file's .provenance.json sidecar: source, release, licence,
    date retrieved; the file's sha256)."""
    from casefind.codelists_report import codelist_check, codelist_check_table
    from casefind.rules.compile import compile_rule
    from casefind.store.sharded import open_any

    compiled = compile_rule(_rule(rule))
    path = resolve_store(store)
    report = codelist_check(compiled, open_any(path), path)  # a sharded store: its shards' codes together
    if as_json:
        import json

        click.echo(json.dumps(report, indent=2, default=str))
    else:
        codelist_check_table(report, console)


# Commands that live in their own modules (each imports only click at load time).
from casefind.cli_audit import command as audit_command  # noqa: E402
from casefind.cli_budget import budget as budget_command  # noqa: E402
from casefind.cli_catalogue import command as catalogue_command  # noqa: E402
from casefind.cli_describe import command as describe_command  # noqa: E402
from casefind.cli_diagnose import diagnose_command  # noqa: E402
from casefind.cli_evaluate import command as evaluate_command  # noqa: E402
from casefind.cli_model import command as model_command  # noqa: E402
from casefind.cli_pyramid import pyramid_command  # noqa: E402
from casefind.cli_quality import command as quality_command  # noqa: E402
from casefind.cli_reidentify import command as reidentify_command  # noqa: E402
from casefind.cli_review_undo import command as review_undo_command  # noqa: E402
from casefind.cli_ruletest import command as ruletest_command  # noqa: E402
from casefind.cli_serve import serve_command, users_command  # noqa: E402
from casefind.cli_spark import add_commands as _spark_commands  # noqa: E402
from casefind.cli_spark import spark_group  # noqa: E402

main.add_command(ruletest_command)
main.add_command(catalogue_command)
main.add_command(quality_command)
main.add_command(audit_command)
main.add_command(reidentify_command)
review.add_command(review_undo_command)
main.add_command(serve_command)
main.add_command(users_command)
main.add_command(budget_command)
main.add_command(model_command)
main.add_command(pyramid_command)
main.add_command(describe_command)
main.add_command(evaluate_command)
main.add_command(diagnose_command)
main.add_command(spark_group)
_spark_commands(ingest, run, dataset_command, kpi, diagnose_command, evaluate_command, quality_command)

if __name__ == "__main__":
    main()
