"""Values compared with a column the contract enumerates are checked against it.

A fixed text (a literal or a parameter) compared with ``==``, ``!=`` or ``in (...)`` with
an enumerated column (setting, source, code_system, discharge_destination, kind,
decision), with first/last/min/max of one, or with the patient attribute ``sex``, must
be one of the column's values: anything else could never match, so it is a located
RuleError with a "did you mean", in ``casefind check`` and ``casefind run``.

``register`` and ``measure`` are open text: a practice may keep registers casefind does
not know. Another value is allowed, but one that is a near miss of a known value (the same
but for case, spaces or punctuation, or one letter away, two for names of 10 letters or
more; none for one or two letters) is refused as a misspelling: a warning would be lost, and a register that silently
matches nobody is the failure this guards against."""
from __future__ import annotations

from pathlib import Path

import pytest

from casefind.errors import EXIT_RULE, UsageError
from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError
from casefind_testdata import cli

HEAD = 'rule: t\nas_of: "2026-10-31"\n'


def write(tmp_path: Path, features: str, extra: str = "") -> Path:
    path = tmp_path / "r.yml"
    path.write_text(HEAD + extra + "features:\n" + features)
    return path


def refused(tmp_path: Path, feature: str, message: str, hint: str | None, extra: str = "") -> RuleError:
    path = write(tmp_path, f"  x: {feature}\n", extra)
    with pytest.raises(RuleError) as e:
        compile_rule(path)
    assert e.value.message == message, e.value
    if hint is not None:
        assert e.value.hint == hint, e.value
    assert e.value.span.file == str(path)
    return e.value


@pytest.mark.parametrize("feature,message,hint", [
    ('count(activity, setting == "emergency_admision")', "'emergency_admision' is not a setting",
     "did you mean 'emergency_admission'?"),
    ('count(activity, "A&E" == setting)', "'A&E' is not a setting", "did you mean 'ae'?"),
    ('count(activity, setting != "Emergency Admission")', "'Emergency Admission' is not a setting",
     "did you mean 'emergency_admission'?"),
    ('count(activity, setting in ("ae", "outpatients"))', "'outpatients' is not a setting",
     "did you mean 'outpatient'?"),
    ('count(activity, discharge_destination == "carehome")', "'carehome' is not a discharge destination",
     "did you mean 'care_home'?"),
    ('exists(diagnoses, source == "hospital")', "'hospital' is not a source", None),
    ('exists(diagnoses, code_system == "icd-10")', "'icd-10' is not a code system of diagnoses",
     "did you mean 'icd10'?"),
    ('exists(medications, code_system == "snomed")', "'snomed' is not a code system of medications",
     "one of: dmd, bnf"),
    ('exists(opt_outs, kind == "type_1")', "'type_1' is not an opt-out kind", "did you mean 'type1'?"),
    ('count(reviews, decision == "decline")', "'decline' is not a review decision", "did you mean 'declined'?"),
    ('reviewed(decision in ("accepted", "already known"))', "'already known' is not a review decision",
     "did you mean 'already_known'?"),
    ('last(activity.setting) == "gp_visit"', "'gp_visit' is not a setting", None),
    ('(last(activity.setting) at as_of - months(6)) == "a_e"', "'a_e' is not a setting", "did you mean 'ae'?"),
    ('sex == "female"', "'female' is not a sex (F, M or U)", None),
    ('sex == "f"', "'f' is not a sex (F, M or U)", "did you mean 'F'?"),
    ('sex in ("F", "X")', "'X' is not a sex (F, M or U)", "one of: F, M, U"),
])
def test_an_enumerated_column_compared_with_another_value_is_refused(tmp_path, feature, message, hint):
    refused(tmp_path, feature, message, hint)


def test_the_error_points_at_the_value(tmp_path):
    e = refused(tmp_path, 'count(activity, setting in ("ae", "outpatients"))', "'outpatients' is not a setting", None)
    assert (e.span.line, e.span.col) == (4, 40)
    e = refused(tmp_path, 'count(activity, setting == "emergency_admision")',
                "'emergency_admision' is not a setting", None)
    assert (e.span.line, e.span.col) == (4, 33)
    assert str(e).endswith("hint: did you mean 'emergency_admission'?")


def test_every_known_value_is_accepted(tmp_path):
    from casefind.contract.schema import (
        CLINICAL_CODE_SYSTEMS,
        DISCHARGE_DESTINATIONS,
        KNOWN_MEASURES,
        KNOWN_REGISTERS,
        MEDICATION_CODE_SYSTEMS,
        OPT_OUT_KINDS,
        REVIEW_DECISIONS,
        SETTINGS,
        SEX,
        SOURCES,
    )

    def each(values):
        return ", ".join(f'"{v}"' for v in values)

    path = write(tmp_path, f"  a: count(activity, setting in ({each(SETTINGS)}))\n"
                 f"  b: count(activity, discharge_destination in ({each(DISCHARGE_DESTINATIONS)}))\n"
                 f"  c: exists(diagnoses, source in ({each(SOURCES)}) "
                 f"and code_system in ({each(CLINICAL_CODE_SYSTEMS)}))\n"
                 f"  d: exists(medications, code_system in ({each(MEDICATION_CODE_SYSTEMS)}))\n"
                 f"  e: exists(opt_outs, kind in ({each(OPT_OUT_KINDS)}))\n"
                 f"  f: count(reviews, decision in ({each(REVIEW_DECISIONS)}))\n"
                 f"  g: sex in ({each(SEX)})\n"
                 f"  h: exists(registers, register in ({each(KNOWN_REGISTERS)}))\n"
                 f"  i: exists(experience, measure in ({each(KNOWN_MEASURES)}))\n"
                 '  j: count(activity, setting == "ae") + count(activity, setting != "gp")\n')
    assert len(compile_rule(path).features) == 10


def test_text_columns_without_an_enumeration_take_any_value(tmp_path):
    path = write(tmp_path, '  a: count(activity, provider_code == "RXX01")\n'
                 '  b: exists(diagnoses, code in ("I509", "anything"))\n'
                 '  c: practice == "Q99999"\n  d: count(reviews, rule == "no_such_rule")\n')
    assert len(compile_rule(path).features) == 4


@pytest.mark.parametrize("feature,near", [
    ('exists(registers, register == "palliative_cares", active)', "palliative_care"),
    ('exists(registers, register == "Palliative Care", active)', "palliative_care"),
    ('exists(registers, register in ("case_managment"), active)', "case_management"),
    ('exists(registers, register == "virtual-ward", active)', "virtual_ward"),
    ('exists(registers, register == "care_hom", active)', "care_home"),
    ('exists(experience, measure == "PAM")', "pam"),
    ('exists(experience, measure == "outcome_star")', "outcomes_star"),
])
def test_a_near_miss_of_a_known_register_or_measure_is_refused(tmp_path, feature, near):
    path = write(tmp_path, f"  x: {feature}\n")
    with pytest.raises(RuleError) as e:
        compile_rule(path)
    assert "looks like a misspelling of the known" in e.value.message
    assert e.value.hint.startswith(f"did you mean '{near}'?")
    assert "are allowed" in e.value.hint


@pytest.mark.parametrize("feature", [
    'exists(registers, register == "frailty", active)',
    'exists(registers, register in ("learning_disability", "dementia_register"), active)',
    'exists(registers, register == "care_home_residents", active)',
    'exists(experience, measure == "eq5d")',
    'exists(experience, measure == "wemwbs")',
])
def test_another_register_or_measure_is_allowed(tmp_path, feature):
    assert "x" in compile_rule(write(tmp_path, f"  x: {feature}\n")).features


def test_a_parameter_compared_with_an_enumerated_column_is_checked(tmp_path):
    extra = "parameters:\n  where: emergency_admision\n"
    e = refused(tmp_path, "count(activity, setting == where)",
                "parameter 'where': 'emergency_admision' is not a setting",
                "did you mean 'emergency_admission'?", extra)
    assert e.span.line == 6
    good = write(tmp_path, "  x: count(activity, setting == where)\n", "parameters:\n  where: ae\n")
    assert compile_rule(good, params={"where": "gp"}).parameters["where"].value == "gp"
    with pytest.raises(UsageError) as u:  # a bad --param names the option, not the rule file
        compile_rule(good, params={"where": "A and E"})
    assert u.value.option == "--param" and "'A and E' is not a setting" in u.value.message


def test_check_and_run_refuse_it_at_the_line(tmp_path):
    path = write(tmp_path, '  x: count(activity, setting == "emergency_admision")\n')
    for args in (("check", path), ("run", path, "--store", tmp_path / "no_store", "--out", tmp_path / "out")):
        result = cli(*args)
        assert result.exit_code == EXIT_RULE, result.output
        text = " ".join(result.output.split())
        assert f"{path}:4:33" in text and "'emergency_admision' is not a setting" in text, result.output
        assert "did you mean 'emergency_admission'?" in text


def test_a_long_in_list_of_registers_is_checked_quickly(tmp_path):
    import time

    texts = ", ".join(f'"reg_{i:08d}"' for i in range(25_000))  # as long as virtual_ward: each compared
    path = write(tmp_path, f"  x: exists(registers, register in ({texts}), active)\n")
    t = time.perf_counter()
    compile_rule(path)
    assert time.perf_counter() - t < 15
