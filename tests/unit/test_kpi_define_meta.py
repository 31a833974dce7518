"""A KPI's basis, integrity, framework, cohorts, levels and per_year keys (kpis/measure_meta.py).

The integrated-care sources: "only 18% of the measures in five national outcomes frameworks
were judged 'high integrity' (measurable, reportable and influenced by integrated care)".
Each shipped KPI states the three tests, so that judgement is visible in the pack."""
from __future__ import annotations

import json
import textwrap

import pytest

from casefind.kpis.define import load_kpis
from casefind.kpis.measure_meta import NOT_ASSESSED, Integrity, derived_basis
from casefind.project import shipped_rules
from casefind.rules.errors import RuleError

SEGMENTS = """\
rule: segs
as_of: "2026-10-31"
population: registered and alive
segments:
  - frailty: age >= 80
  - long_term_conditions: age >= 60
  - mostly_healthy: true
"""


def _kpis(tmp_path, measure: str, top: str = "", segments: bool = False):
    """A one-measure KPI file ``m`` (its keys indented under it) loaded, or its RuleError."""
    if segments:
        (tmp_path / "segs.yml").write_text(SEGMENTS)
        top += "segments_from: segs.yml\n"
    body = textwrap.indent(textwrap.dedent(measure).strip() + "\n", "    ")
    path = tmp_path / "k.yml"
    path.write_text(f"kpis: k\n{top}measures:\n  m:\n    title: t\n    domain: cost\n{body}")
    return load_kpis(path)


def _error(tmp_path, measure: str, **kw) -> RuleError:
    with pytest.raises(RuleError) as e:
        _kpis(tmp_path, measure, **kw)
    return e.value


def test_every_measure_of_a_shipped_kpi_file_states_its_integrity():
    files = sorted((shipped_rules() / "kpis").glob("*.yml"))
    assert files
    for path in files:
        for m in load_kpis(path).measures.values():
            assert isinstance(m.integrity, Integrity), (path.name, m.name)
            assert m.framework, (path.name, m.name)
            assert m.cohorts, (path.name, m.name)


def test_the_shipped_file_keeps_few_high_integrity_measures_and_says_which():
    ms = load_kpis(shipped_rules() / "kpis" / "triple_aim.yml").measures
    high = {n for n, m in ms.items() if m.integrity.high_integrity}
    assert "emergency_admissions" in high and "frailty_65" not in high and "deaths" not in high
    assert 0 < len(high) < len(ms)
    assert ms["excess_bed_days_month"].integrity.measurable is False  # one trim point, no HRG


def test_high_integrity_needs_all_three_tests():
    assert Integrity(True, True, True).high_integrity
    for tests in [(False, True, True), (True, False, True), (True, True, False)]:
        i = Integrity(*tests, note="n")
        assert not i.high_integrity
        assert json.loads(i.as_json()) == {"measurable": tests[0], "reportable": tests[1],
                                           "influenced": tests[2], "high_integrity": False, "note": "n"}


@pytest.mark.parametrize("value, basis", [
    ("count(activity, within=period)", "month"),
    ("count(activity, within=months(12))", "rolling_12m"),
    ("count(activity, within=days(365))", "rolling_12m"),
    ("count(activity, within=period) + count(activity, setting == \"ae\", within=period)", "month"),
    ("count(activity)", "point"),
    ("age", "point"),
    ("case(death_date > as_of - months(12), 1, 0)", "rolling_12m"),
])
def test_basis_defaults_from_the_windows_when_only_one_fits(tmp_path, value, basis):
    m = _kpis(tmp_path, f"kind: total\npopulation: registered\nvalue: {value}").measures["m"]
    assert m.basis == basis


@pytest.mark.parametrize("value", [
    "count(activity, within=period) + count(activity, within=months(12))",
    "count(activity, within=days(91))",
])
def test_a_basis_is_required_when_the_windows_do_not_say(tmp_path, value):
    e = _error(tmp_path, f"kind: total\npopulation: registered\nvalue: {value}")
    assert "needs a basis" in str(e) and e.span.line == 3 and "rolling_12m" in e.hint


def test_a_stated_basis_wins_and_a_wrong_one_is_located(tmp_path):
    m = _kpis(tmp_path, "kind: total\nbasis: point\npopulation: registered\nvalue: count(activity, within=days(91))")
    assert m.measures["m"].basis == "point"
    e = _error(tmp_path, "kind: total\nbasis: monthly\npopulation: registered\nvalue: count(activity)")
    assert (e.span.line, "monthly" in str(e), e.hint) == (7, True, "did you mean 'month'?")


def test_derived_basis_of_nothing_is_a_point():
    assert derived_basis([]) == "point"


def test_a_user_file_may_leave_integrity_out_and_it_reads_not_assessed(tmp_path):
    m = _kpis(tmp_path, "kind: total\npopulation: registered\nvalue: count(activity)").measures["m"]
    assert m.integrity is None and json.loads(NOT_ASSESSED) == {"assessed": False, "note": "not assessed"}


@pytest.mark.parametrize("integrity, message, line", [
    ("[true, true, true]", "integrity must be a mapping", 9),
    ("{measurable: true, reportable: true}", "integrity needs influenced", 9),
    ("{measurable: yes please, reportable: true, influenced: true}", "integrity needs measurable", 9),
    ("{measurable: true, reportable: true, influenced: true, notes: x}", "unknown key 'notes'", 9),
])
def test_integrity_errors_are_located(tmp_path, integrity, message, line):
    e = _error(tmp_path, f"kind: total\npopulation: registered\nvalue: count(activity)\nintegrity: {integrity}")
    assert message in str(e) and e.span.line == line


def test_integrity_framework_and_cohorts_are_read(tmp_path):
    m = _kpis(tmp_path, """
        kind: total
        population: registered
        value: count(activity)
        framework: ASCOF 2A(2)
        integrity: {measurable: true, reportable: false, influenced: true, note: small numbers}
        cohorts: [frailty, all, people aged 65+]
    """, segments=True).measures["m"]
    assert m.framework == "ASCOF 2A(2)" and m.cohorts == ("frailty", "all", "people aged 65+")
    assert m.integrity == Integrity(True, False, True, "small numbers")


@pytest.mark.parametrize("cohorts, segments, message, hint", [
    ("[frailtty]", True, "'frailtty' is not a segment of segments_from", "did you mean 'frailty'?"),
    ("[frailty]", False, "names a segment, but the KPI file has no segments_from", "segments_from: ../segments.yml"),
    ("frailty", True, "cohorts must be a list", "cohorts: [frailty, people aged 65+]"),
    ('["65+, frail"]', True, "without commas", None),
])
def test_cohort_errors_are_located(tmp_path, cohorts, segments, message, hint):
    e = _error(tmp_path, f"kind: total\npopulation: registered\nvalue: count(activity)\ncohorts: {cohorts}",
               segments=segments)
    assert message in str(e) and (hint is None or e.hint.startswith(hint))
    assert e.span.line == (10 if segments else 9)


def test_levels_are_read_with_the_settings_a_service_splits_by(tmp_path):
    m = _kpis(tmp_path, """
        kind: rate
        population: registered
        value: count(activity, setting == "ae") + sum(activity.cost, setting in ("outpatient", "gp"))
        levels: [provider, service, provider]
    """).measures["m"]
    assert m.split.levels == ("provider", "service") and m.split.settings == ("gp", "ae", "outpatient")
    m = _kpis(tmp_path, "kind: total\npopulation: registered\nvalue: count(activity)\nlevels: [provider]").measures["m"]
    assert m.split.levels == ("provider",) and m.split.settings is None


@pytest.mark.parametrize("kind, value, levels, message", [
    ("total", "count(activity)", "[practice]", "unknown level 'practice'"),
    ("total", "count(activity)", "provider", "levels must be a list"),
    ("proportion", "exists(activity)", "[provider]", "only a rate, per_head, total is split by provider"),
    ("total", "count(activity) * 2", "[provider]", "must add up activity rows"),
    ("total", "count(diagnoses)", "[provider]", "must add up activity rows"),
    ("total", "count(activity, cost > 5)", "[service]", "does not say which settings it counts"),
    ("total", "count(activity)", "[service]", "does not say which settings it counts"),
])
def test_level_errors_are_located(tmp_path, kind, value, levels, message):
    e = _error(tmp_path, f"kind: {kind}\npopulation: registered\nvalue: {value}\nlevels: {levels}")
    assert message in str(e) and e.span.line == 9


@pytest.mark.parametrize("kind, per_year", [("mean", "true"), ("rate", "yes")])
def test_per_year_is_a_flag_for_sums_of_the_population(tmp_path, kind, per_year):
    e = _error(tmp_path, f"kind: {kind}\npopulation: registered\nvalue: count(activity)\nper_year: {per_year}")
    assert "per_year is true or false" in str(e) and e.span.line == 9


def test_a_segment_breakdown_still_needs_segments_from(tmp_path):
    e = _error(tmp_path, "kind: total\npopulation: registered\nvalue: count(activity)\nbreakdowns: [segment]")
    assert "a segment breakdown needs segments_from" in str(e)
