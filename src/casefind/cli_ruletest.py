"""``casefind test [RULE...]``: a rule's declared test patients (``<rule>.test.yml``), on every engine.

Registered in cli.py as ``main.add_command(command)``. Exit codes: 0 every test passed, 1 a
test failed, 2 a rule named has no test file, 4 a test file (or its rule) has an error.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from casefind.engines.base import ENGINES
from casefind.errors import CasefindError, UsageError
from casefind.ui import console, err_console, stage_progress

ALL = "all"


class RuleTestsFailed(CasefindError):
    """A declared test patient was not treated as its test file expects (exit 1)."""


def _targets(rules: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """The test files to run, and the rules (when none is named: in the project's rules
    folder) that have no test file."""
    from casefind.project import load, resolve_rule, rule_files, rules_folder
    from casefind.ruletests.load import is_test_file, rule_test_file

    project = load()
    if not rules:
        folder = rules_folder(project)
        found = rule_files(folder)
        return [rule_test_file(r) for r in found if rule_test_file(r).is_file()], \
            [r for r in found if not rule_test_file(r).is_file()]
    tests = []
    for text in rules:
        path = Path(text) if is_test_file(text) else rule_test_file(resolve_rule(text, project))
        if not path.is_file():
            raise UsageError(f"{text}: no test file {path}",
                             f"declare test patients beside the rule in {path.name} (see docs/rule-tests.md)")
        tests.append(path)
    return list(dict.fromkeys(tests)), []


@click.command("test")
@click.argument("rules", nargs=-1, metavar="[RULE]...")
@click.option("--engine", type=click.Choice([*ENGINES, ALL]), default=ALL, show_default=True,
              help="Engine to check the test patients on; all: every engine.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary instead of tables.")
def command(rules, engine, as_json):
    """Check rules against the test patients declared beside them (RULE.test.yml).

    \b
    RULE is a rule file or a rule's name (found in the project's rules folder, then among
    the shipped rules); with none, every rule in the project's rules folder that has a
    test file. Each test patient's expected feature values, listing and reasons are
    checked on each engine. A failure names the test file line, the patient, the engine,
    the expected and actual values, and the rule line. Exit codes: 0 all passed, 1 a test
    failed, 4 a test file has an error (file:line:col and a hint).
    """
    from casefind.first_use import compile_notice
    from casefind.ruletests.check import check_file
    from casefind.ruletests.load import load_test_file

    engines = tuple(ENGINES) if engine == ALL else (engine,)
    tests, untested = _targets(rules)
    notice = compile_notice("native") if "native" in engines else None
    if notice and tests and not as_json:
        err_console.print(f"[cyan]{escape(notice)}[/]", highlight=False)
    with stage_progress("test") as say:
        say("reading the test files")
        loaded = [load_test_file(p) for p in tests]  # every file checked before any runs
        results = []
        for t in loaded:
            say(f"checking: {t.rule.name}")
            results.append(check_file(t, engines))
    if as_json:
        click.echo(json.dumps(_summary(results, untested), indent=2))
    else:
        _print(results, untested)
    failed = [r for r in results if not r.passed]
    if failed:
        raise RuleTestsFailed(f"{len(failed)} of {len(results)} rules failed their tests: "
                              f"{', '.join(r.rule for r in failed)}",
                              "each failure above names the test file line and the rule line")


def _summary(results, untested: list[Path]) -> dict:
    return {"passed": all(r.passed for r in results), "rules": [r.as_dict() for r in results],
            "untested": [str(p) for p in untested],
            "totals": {"rules": len(results), "failed_rules": sum(not r.passed for r in results),
                       "patients": sum(r.patients for r in results), "checks": sum(r.checks for r in results),
                       "failures": sum(len(r.failures) for r in results)}}


def _print(results, untested: list[Path]) -> None:
    for r in results:
        engines = ", ".join(r.engines)
        if r.passed:
            console.print(f"[green]passed[/] {escape(r.rule)}: {r.patients} patients × {len(r.engines)} engines "
                          f"({engines}), {r.checks} checks", highlight=False)
        else:
            console.print(f"[red]failed[/] {escape(r.rule)}: {len(r.failures)} of {r.checks} checks failed, "
                          f"{r.failed_patients} of {r.patients * len(r.engines)} patient × engine runs "
                          f"({engines})", highlight=False)
    for r in results:
        _print_failures(r)
    if untested:
        console.print(f"[yellow]no test file[/]: {escape(', '.join(p.stem for p in untested))} "
                      f"(declare test patients in <rule>.test.yml beside each)", highlight=False)
    if results:
        console.print(_table(results))


def _print_failures(result) -> None:
    """Failures grouped by patient and engine, each under one header line."""
    header = None
    for f in result.failures:
        if f.header() != header:
            header = f.header()
            console.print(f"[red]✗[/] {escape(header)}", highlight=False, soft_wrap=True)
        for line in f.details():
            console.print(f"    {escape(line)}", highlight=False, soft_wrap=True)


def _table(results) -> Table:
    t = Table(title="Rule tests", title_justify="left")
    for c in ("rule", "patients", "engines", "checks", "failed", "result"):
        t.add_column(c, justify="right" if c in ("patients", "checks", "failed") else "left")
    for r in results:
        t.add_row(escape(r.rule), f"{r.patients:,}", "/".join(r.engines), f"{r.checks:,}", f"{len(r.failures):,}",
                  "[green]passed[/]" if r.passed else "[red]failed[/]")
    return t
