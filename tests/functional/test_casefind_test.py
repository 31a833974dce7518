"""``casefind test``: shipped rules pass their test patients on both engines; a rule changed
behind its test file (a mutation) fails on both, naming the patient; exit codes and --json."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from casefind.cli import main
from casefind.cli_ruletest import command

RULES = Path(__file__).resolve().parents[2] / "rules"
BOTH = ["duckdb", "native"]

if "test" not in main.commands:  # until cli.py registers it
    main.add_command(command)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def no_project(tmp_path, monkeypatch):
    """A working folder outside any project, with no casefind settings in the environment."""
    for name in ("CASEFIND_RULES", "CASEFIND_PROJECT", "CASEFIND_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def copy_rule(folder: Path, name: str, with_tests: bool = True) -> Path:
    """A shipped rule (and its test file) copied into ``folder`` with the codelists it reads."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "codelists").exists():
        shutil.copytree(RULES / "codelists", folder / "codelists")
    shutil.copy(RULES / f"{name}.yml", folder / f"{name}.yml")
    if with_tests:
        shutil.copy(RULES / f"{name}.test.yml", folder / f"{name}.test.yml")
    return folder / f"{name}.yml"


def mutate(rule: Path, old: str, new: str) -> int:
    """Replace ``old`` (once) in the rule file; the line it is on."""
    text = rule.read_text()
    assert text.count(old) == 1, old
    rule.write_text(text.replace(old, new))
    return text[:text.index(old)].count("\n") + 1


def test_a_shipped_rule_by_name_passes_on_both_engines(no_project):
    r = run("test", "frail", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    (frail,) = summary["rules"]
    assert summary["passed"] and frail["passed"] and frail["failures"] == []
    assert frail["rule"] == "frail" and sorted(frail["engines"]) == BOTH and frail["patients"] >= 20
    assert frail["checks"] >= 2 * frail["patients"]


def test_without_a_rule_every_rule_of_the_project_with_a_test_file_runs(no_project):
    (no_project / "casefind.toml").write_text("")
    copy_rule(no_project / "rules", "hfrs")
    copy_rule(no_project / "rules", "high_utilisers", with_tests=False)
    r = run("test")
    assert r.exit_code == 0, r.output
    assert "passed hfrs" in r.output and "× 2 engines" in r.output
    assert "no test file: high_utilisers" in r.output
    assert "Rule tests" in r.output  # the summary table


def test_a_changed_threshold_fails_on_both_engines_naming_the_patient(no_project):
    rule = copy_rule(no_project / "mutant", "frail")
    line = mutate(rule, "when: efi > 0.24", "when: efi > 0.25")
    r = run("test", rule)
    assert r.exit_code == 1, r.output
    for engine in BOTH:
        assert f"nine_deficits_admitted [{engine}]" in r.output
    assert f"frail.yml:{line} (include moderate_or_severe_frailty)" in r.output
    assert "listed: expected true, got false" in r.output
    assert "error: 1 of 1 rules failed their tests: frail" in r.output

    failures = json.loads(run("test", rule, "--json").stdout)["rules"][0]["failures"]
    listed = {(f["patient"], f["engine"]) for f in failures if f["expectation"] == "listed"}
    assert {("nine_deficits_admitted", e) for e in BOTH} <= listed
    assert {("polypharmacy_makes_nine", e) for e in BOTH} <= listed
    first = next(f for f in failures if f["patient"] == "nine_deficits_admitted" and f["expectation"] == "listed")
    assert (first["expected"], first["actual"], first["rule_line"]) == (True, False, line)
    assert first["test_file"].endswith("frail.test.yml") and first["line"] == 17


def test_a_disabled_exclusion_fails_on_both_engines_naming_the_patient(no_project):
    rule = copy_rule(no_project / "mutant", "multimorbidity")
    mutate(rule, 'palliative_care: exists(registers, register == "palliative_care", active)', "palliative_care: false")
    r = run("test", rule, "--json")
    assert r.exit_code == 1
    failures = json.loads(r.stdout)["rules"][0]["failures"]
    assert {f["engine"] for f in failures} == set(BOTH)
    assert {f["patient"] for f in failures} == {"palliative_care"}
    assert {(f["expectation"], f["engine"]) for f in failures} >= {("listed", e) for e in BOTH}


def test_a_dropped_exclusion_makes_its_test_file_invalid(no_project):
    rule = copy_rule(no_project / "mutant", "hfrs")
    mutate(rule, '    case_managed: exists(registers, register == "case_management", active)\n', "")
    r = run("test", rule)
    assert r.exit_code == 4, r.output
    assert "hfrs.test.yml:" in r.output and "'exclude:case_managed'" in r.output


def test_an_invalid_test_file_exits_4_with_its_line(no_project):
    rule = copy_rule(no_project / "bad", "charlson")
    tests = rule.with_name("charlson.test.yml")
    tests.write_text(tests.read_text().replace("charlson_conditions: 2", "charlson_condition: 2", 1))
    r = run("test", rule)
    assert r.exit_code == 4
    assert "charlson.test.yml:" in r.output and "no 'charlson_condition'" in r.output
    assert "did you mean 'charlson_conditions'?" in r.output


def test_a_rule_without_a_test_file_is_a_usage_error(no_project):
    rule = copy_rule(no_project / "untested", "high_utilisers", with_tests=False)
    r = run("test", rule)
    assert r.exit_code == 2
    assert "no test file" in r.output and "high_utilisers.test.yml" in r.output


def test_one_engine_and_a_test_file_given_directly(no_project):
    rule = copy_rule(no_project / "one", "segments")
    r = run("test", rule.with_name("segments.test.yml"), "--engine", "duckdb", "--json")
    assert r.exit_code == 0, r.output
    (segments,) = json.loads(r.stdout)["rules"]
    assert segments["engines"] == ["duckdb"] and segments["passed"]
