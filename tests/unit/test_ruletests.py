"""Rule test files (casefind.ruletests): the format's validation errors, value matching, that
every shipped rule's test file passes on every engine, and that each of those files exercises
every include and exclude criterion of its rule."""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from casefind.engines.base import ENGINES
from casefind.errors import EXIT_RULE
from casefind.rules.errors import RuleError, Span
from casefind.ruletests import check_file, load_test_file, rule_test_file
from casefind.ruletests.check import matches
from casefind.ruletests.load import Expectation

RULES = Path(__file__).resolve().parents[2] / "rules"
SHIPPED = sorted(p for p in RULES.glob("*.yml") if not p.name.endswith(".test.yml"))

RULE = """\
rule: tiny
as_of: "2026-10-31"
parameters:
  min_admissions: 2
population: registered and alive and age >= 18
features:
  emergency_12m: count(activity, setting == "emergency_admission", within=months(12))
criteria:
  include:
    admitted:
      when: emergency_12m >= min_admissions
      reason: "{emergency_12m} emergency admissions"
  exclude:
    palliative_care: exists(registers, register == "palliative_care", active)
"""

GOOD_PATIENT = """\
patients:
  - id: p1
    description: two admissions
    activity:
      - {start_date: 2026-06-01, setting: emergency_admission}
      - {start_date: 2026-07-01, setting: emergency_admission}
    expect: {emergency_12m: 2, listed: true, reason: "2 emergency admissions"}
"""


def _write(folder: Path, test_text: str) -> Path:
    (folder / "tiny.yml").write_text(RULE)
    path = folder / "tiny.test.yml"
    path.write_text(textwrap.dedent(test_text))
    return path


def _patient(body: str) -> str:
    """A test file of one patient p1 whose lines after its description are ``body``."""
    return "patients:\n  - id: p1\n    description: a patient\n" + textwrap.indent(textwrap.dedent(body), "    ")


# (what, test file text, line of the error, words the message must have)
INVALID = [
    ("no patients", "description: nothing\n", 1, "patients:"),
    ("unknown top-level key", "patient:\n  - id: p1\n", 1, "unknown key 'patient'"),
    ("unknown feature", _patient("expect: {emergency_13m: 1}\n"), 4, "no 'emergency_13m'"),
    ("unknown criterion", _patient("expect: {include:admited: true}\n"), 4, "no 'include:admited'"),
    ("unknown exclusion in excluded_by", _patient("expect: {excluded_by: palliative}\n"), 4, "not an exclusion"),
    ("unknown table", _patient("diagnosis:\n  - {date: 2026-01-01}\nexpect: {listed: false}\n"), 4,
     "unknown key 'diagnosis'"),
    ("unknown column", _patient("activity:\n  - {start_date: 2026-01-01, setting: ae, price: 3}\n"
                                "expect: {listed: false}\n"), 5, "unknown key 'price'"),
    ("patient_id given in an event", _patient("activity:\n  - {patient_id: x, start_date: 2026-01-01, setting: ae}\n"
                                              "expect: {listed: false}\n"), 5, "unknown key 'patient_id'"),
    ("bad date", _patient("activity:\n  - {start_date: 2026-02-30, setting: ae}\nexpect: {listed: false}\n"), 5,
     "not a date"),
    ("bad attribute date", _patient("death_date: 31/10/2026\nexpect: {listed: false}\n"), 4, "not a date"),
    ("date out of range", _patient("activity:\n  - {start_date: 1890-01-01, setting: ae}\nexpect: {listed: false}\n"),
     5, "outside"),
    ("unknown setting", _patient("activity:\n  - {start_date: 2026-01-01, setting: a_and_e}\n"
                                 "expect: {listed: false}\n"), 5, "activity.setting is one of"),
    ("missing required column", _patient("activity:\n  - {start_date: 2026-01-01}\nexpect: {listed: false}\n"), 5,
     "has no setting"),
    ("negative cost", _patient("activity:\n  - {start_date: 2026-01-01, setting: ae, cost: -5}\n"
                               "expect: {listed: false}\n"), 5, "activity.cost is 0 or more"),
    ("no description", "patients:\n  - id: p1\n    expect: {listed: true}\n", 2, "one-line description"),
    ("no expect", _patient("age: 70\n"), 2, "'expect'"),
    ("bad id", "patients:\n  - id: a b\n    description: x\n    expect: {listed: true}\n", 2, "patient id"),
    ("duplicate id", "patients:\n  - {id: p1, description: x, expect: {listed: true}}\n"
                     "  - {id: p1, description: y, expect: {listed: true}}\n", 3, "given twice"),
    ("age and birth date", _patient("age: 70\nbirth_date: 1950-01-01\nexpect: {listed: true}\n"), 4, "not both"),
    ("age not whole", _patient("age: 70.5\nexpect: {listed: true}\n"), 4, "whole years"),
    ("listed not a boolean", _patient("expect: {listed: yes}\n"), 4, "true or false"),
    ("reason for a patient not listed", _patient("expect: {listed: false, reason: admissions}\n"), 4,
     "only for a patient listed"),
    ("excluded_by for a listed patient", _patient("expect: {listed: true, excluded_by: palliative_care}\n"), 4,
     "only for a patient not listed"),
    ("impossible as_of", "as_of: 2026-13-01\n" + GOOD_PATIENT, 1, "not a date"),
    ("bad as_of", "as_of: 31/10/2026\n" + GOOD_PATIENT, 1, "YYYY-MM-DD"),
    ("unknown parameter", "params: {min_admission: 3}\n" + GOOD_PATIENT, 1, "no such parameter"),
    ("parameter of the wrong type", "params: {min_admissions: many}\n" + GOOD_PATIENT, 1, "a number"),
    ("rule file missing", "rule: other.yml\n" + GOOD_PATIENT, 1, "no rule file"),
    ("not YAML", "patients: [\n", 2, "not valid YAML"),
    ("event quarantined by ingest", _patient("death_date: 2026-01-01\nactivity:\n"
                                             "  - {start_date: 2026-06-01, setting: ae}\n"
                                             "expect: {listed: false}\n"), 6, "event_after_death"),
]


@pytest.mark.parametrize(("what", "text", "line", "words"), INVALID, ids=[c[0] for c in INVALID])
def test_an_invalid_test_file_is_a_rule_error_at_its_line(tmp_path, what, text, line, words):
    path = _write(tmp_path, text)
    with pytest.raises(RuleError) as e:
        check_file(load_test_file(path), ("duckdb",))  # quarantined rows are found by the build
    assert e.value.exit_code == EXIT_RULE
    assert e.value.span is not None and e.value.span.file == str(path), e.value
    assert e.value.span.line == line, (what, str(e.value))
    assert words in e.value.message, (what, e.value.message)


def test_a_valid_test_file_loads_with_positions_and_defaults(tmp_path):
    tests = load_test_file(_write(tmp_path, GOOD_PATIENT))
    (p,) = tests.patients
    assert (p.id, p.description, p.span.line) == ("p1", "two admissions", 2)
    assert p.attributes["birth_date"].text == "1950-01-01" and p.attributes["sex"].text == "F"
    assert [e.table for e in p.events] == ["activity", "activity"]
    assert {e.name: e.span.line for e in p.expect} == {"emergency_12m": 7, "listed": 7, "reason": 7}
    assert tests.rule.name == "tiny" and tests.rule_path == tmp_path / "tiny.yml"


def test_age_is_exact_on_as_of_and_codes_keep_their_digits(tmp_path):
    text = _patient("age: 65\nmedications:\n  - {date: 2026-01-01, code_system: bnf, code: 0206020A0}\n"
                    "  - {date: 2026-01-01, code_system: dmd, code: 0123}\nexpect: {age: 65}\n")
    tests = load_test_file(_write(tmp_path, text))
    (p,) = tests.patients
    assert p.attributes["birth_date"].text == "1961-10-31"
    assert [e.cells["code"].text for e in p.events] == ["0206020A0", "0123"]


def test_params_and_as_of_reach_the_rule(tmp_path):
    tests = load_test_file(_write(tmp_path, 'as_of: "2026-06-30"\nparams: {min_admissions: 3}\n' + GOOD_PATIENT))
    assert tests.rule.as_of == dt.date(2026, 6, 30)
    assert tests.rule.parameters["min_admissions"].value == 3


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_failing_expectation_names_the_lines_patient_engine_and_values(tmp_path, engine):
    text = GOOD_PATIENT.replace("emergency_12m: 2", "emergency_12m: 3").replace("listed: true", "listed: false")
    text = text.replace(', reason: "2 emergency admissions"', "")
    result = check_file(load_test_file(_write(tmp_path, text)), (engine,))
    assert not result.passed and result.checks == 2
    by_name = {f.name: f for f in result.failures}
    count, listed = by_name["emergency_12m"], by_name["listed"]
    assert (count.patient, count.engine, count.expected, count.actual) == ("p1", engine, 3, 2)
    assert count.patient_span.line == 2 and count.expectation_span.line == 7
    assert (count.rule_span.file, count.rule_span.line) == (str(tmp_path / "tiny.yml"), 7)
    assert (listed.expected, listed.actual) == (False, True)
    assert listed.rule_span.line == 11 and "listed: 2 emergency admissions" in listed.why
    text_lines = "\n".join(count.lines())
    assert "tiny.test.yml:2 p1" in text_lines and "expected 3, got 2" in text_lines and "tiny.yml:7" in text_lines


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_excluded_by_and_why_not_listed(tmp_path, engine):
    text = """\
    patients:
      - id: excluded
        description: admitted twice, on palliative care
        activity:
          - {start_date: 2026-06-01, setting: emergency_admission}
          - {start_date: 2026-07-01, setting: emergency_admission}
        registers:
          - {register: palliative_care, start_date: 2026-01-01}
        expect: {excluded_by: palliative_care}
      - id: once
        description: admitted once, wrongly expected excluded
        activity:
          - {start_date: 2026-06-01, setting: emergency_admission}
        expect: {excluded_by: palliative_care}
      - id: child
        description: a child, wrongly expected listed
        age: 10
        expect: {listed: true}
    """
    result = check_file(load_test_file(_write(tmp_path, text)), (engine,))
    failures = {f.patient: f for f in result.failures}
    assert set(failures) == {"once", "child"}
    assert "does not meet the criteria: admitted not met" in failures["once"].why
    assert failures["once"].rule_span.line == 11  # the include criterion that failed
    assert failures["child"].why == "not in the rule's population" and failures["child"].rule_span.line == 5


# (expected as written, actual, matches?)
MATCHES = [
    ("0.25", 0.25, True), ("0.222", 8 / 36, True), ("0.223", 8 / 36, False), ("0.28", 10 / 36, True),
    ("1", 1, True), ("1", 1.0, True), ("1", 2, False), ("1", True, False), ("true", True, True),
    ("true", 1, False), ("false", None, False), ("null", None, True), ("0", None, False),
    ("moderate", "moderate", True), ("moderate", "severe", False), ("2026-06-01", dt.date(2026, 6, 1), True),
    ("2026-06-01", dt.date(2026, 6, 2), False), ("5.0", 4.95, True), ("5.0", 4.94, False),
    ("1.0e-3", 0.001, True), ("1.0e-3", 0.0011, False),
]


@pytest.mark.parametrize(("written", "actual", "ok"), MATCHES)
def test_matches(written, actual, ok):
    from ruamel.yaml import YAML

    from casefind.ruletests.load import _places

    value = YAML(typ="rt").load(f"x: {written}\n")["x"]
    assert matches(actual, Expectation("x", value, Span("t", 1, 1), _places(value))) is ok


@pytest.mark.parametrize("rule", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_rule_has_a_test_file_that_passes_on_every_engine(rule):
    path = rule_test_file(rule)
    assert path.is_file(), f"{rule.name} has no test file {path.name}"
    result = check_file(load_test_file(path), tuple(sorted(ENGINES)))
    assert result.passed, "\n".join(line for f in result.failures for line in f.lines())
    assert result.checks >= 2 * result.patients


@pytest.mark.parametrize("rule", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_criterion_of_every_shipped_rule_is_exercised(rule):
    """Each include criterion has a listed patient that meets it and a patient not listed that
    misses it; each exclusion has a patient it keeps off the list. A new criterion without
    test patients fails here."""
    tests = load_test_file(rule_test_file(rule))
    expected = [{e.name: e.value for e in p.expect} for p in tests.patients]

    def listed(exp):
        return exp.get("listed", True if "reason" in exp else False if "excluded_by" in exp else None)

    missing = []
    for name, _ in tests.rule.include:
        if not any(exp.get(f"include:{name}") is True and listed(exp) is True for exp in expected):
            missing.append(f"include {name}: no listed patient expects it met")
        if not any(exp.get(f"include:{name}") is False and listed(exp) is False for exp in expected):
            missing.append(f"include {name}: no patient not listed expects it missed")
    for name, _ in tests.rule.exclude:
        if not any(name in exp.get("excluded_by", ()) and listed(exp) is False for exp in expected):
            missing.append(f"exclude {name}: no patient expects excluded_by {name}")
    assert not missing, f"{tests.path}: " + "; ".join(missing)


def test_the_documented_example_passes_on_every_engine(tmp_path):
    """docs/rule-tests.md's example rule and test file, as written there."""
    import re

    text = (RULES.parent / "docs" / "rule-tests.md").read_text()
    rule, tests = re.findall(r"```yaml\n(.*?)```", text, re.S)[:2]
    (tmp_path / "admitted.yml").write_text(rule)
    (tmp_path / "admitted.test.yml").write_text(tests)
    result = check_file(load_test_file(tmp_path / "admitted.test.yml"), tuple(sorted(ENGINES)))
    assert result.passed and result.patients == 4, [f.lines() for f in result.failures]
