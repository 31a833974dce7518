"""Spell filters and filters that read other aggregations, on every engine.

spell_has(table, filter..., codelist=c), inside the filter of an aggregation over rows
with spells, is true for a row whose spell has a matching row of ``table`` dated on or
before the evaluation date. A filter may read a per-patient value that is itself an
aggregation ("the diagnoses of the latest admission"): the engines work it out first.

    activity (admissions)                      diagnoses (spell, position)
    patient  spell  start       setting        code  spell  position
    ann      S1     2026-03-01  emergency      J440  S1     1          COPD primary
    ann      S2     2026-06-01  emergency      J209  S2     1          bronchitis primary...
                                               J449  S2     2          ...with COPD secondary
    bob      S3     2026-04-01  emergency      J209  S3     1          bronchitis, no COPD
    bob      S4     2026-08-01  elective       I209  S4     1          angina + procedure K49
    cat      S5     2026-11-15  emergency      J440  S5     1          after as_of: invisible

    feature                 ann  bob  cat
    copd_admissions         2    0    0    COPD primary, or bronchitis with COPD secondary
    with_procedure          0    1    0    a K49 procedure in the spell
    secondary_in_latest     1    0    0    positions >= 2 in the latest emergency spell
    dx_in_latest            2    1    0    every diagnosis of the latest emergency spell
"""
from __future__ import annotations

import pytest

from spec_helpers import ENGINES, evaluate_case, patient

AS_OF = "2026-10-31"


def adm(pid, spell, start, setting="emergency_admission", end=None, dest="home"):
    end = end or start
    return (pid, start, end, setting, "1000", None, "RXX01", dest, spell)


def dx(pid, code, spell, position, date):
    return (pid, date, "icd10", code, "acute", spell, str(position))


def proc(pid, code, spell, date, position=1):
    return (pid, date, "opcs4", code, spell, str(position))


TABLES = {
    "patients": [patient(p) for p in ("ann", "bob", "cat")],
    "activity": [adm("ann", "S1", "2026-03-01"), adm("ann", "S2", "2026-06-01"),
                 adm("bob", "S3", "2026-04-01"), adm("bob", "S4", "2026-08-01", "elective_admission"),
                 adm("cat", "S5", "2026-10-01", end="2026-10-02")],
    "diagnoses": [dx("ann", "J440", "S1", 1, "2026-03-01"), dx("ann", "J209", "S2", 1, "2026-06-01"),
                  dx("ann", "J449", "S2", 2, "2026-06-01"), dx("bob", "J209", "S3", 1, "2026-04-01"),
                  dx("bob", "I209", "S4", 1, "2026-08-01"),
                  dx("cat", "J440", "S5", 1, "2026-11-15")],  # recorded after as_of: not seen
    "procedures": [proc("bob", "K491", "S4", "2026-08-01")],
}

FEATURES = """\
  copd_admissions: count(activity, setting == "emergency_admission" and (spell_has(diagnoses, position == 1, codelist=copd) or (spell_has(diagnoses, position == 1, codelist=bronchitis) and spell_has(diagnoses, position >= 2, codelist=copd))))
  with_procedure: count(activity, spell_has(procedures, codelist=cardiac))
  latest_spell: last(activity.spell_id, setting == "emergency_admission")
  secondary_in_latest: count(diagnoses, spell_id == latest_spell and position >= 2)
  dx_in_latest: count(diagnoses, spell_id == latest_spell)
"""
CODELISTS = """\
  copd: {system: icd10, prefixes: ["J41", "J42", "J43", "J44"]}
  bronchitis: {system: icd10, prefixes: ["J20"]}
  cardiac: {system: opcs4, prefixes: ["K49"]}
"""
EXPECTED = {
    "ann": {"copd_admissions": 2, "with_procedure": 0, "secondary_in_latest": 1, "dx_in_latest": 2},
    "bob": {"copd_admissions": 0, "with_procedure": 1, "secondary_in_latest": 0, "dx_in_latest": 1},
    "cat": {"copd_admissions": 0, "with_procedure": 0, "secondary_in_latest": 0, "dx_in_latest": 0},
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_spell_has_and_the_latest_spell(tmp_path, engine):
    got = evaluate_case(tmp_path, engine, TABLES, FEATURES, AS_OF, codelists=CODELISTS)
    for pid, want in EXPECTED.items():
        assert {k: got[pid][k] for k in want} == want, pid


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_a_filter_reads_an_aggregation_two_levels_deep(tmp_path, engine):
    """latest -> diagnoses in the two years before it -> activity with more cost than the
    mean of those: three passes, each reading the one before.

        patient  latest admission  diagnoses dated in (latest - 24 months, latest]
        ann      2026-06-01        3 (2026-03-01, and two on 2026-06-01)
        bob      2026-04-01        1
    """
    features = """\
  latest: last(activity.start_date, setting == "emergency_admission")
  dx_before: count(diagnoses, date <= latest and date > latest - months(24))
  costly_when_many: count(activity, dx_before >= 2 and cost > 500)
"""
    got = evaluate_case(tmp_path, engine, TABLES, features, AS_OF)
    assert [got[p]["dx_before"] for p in ("ann", "bob", "cat")] == [3, 1, 0]
    assert [got[p]["costly_when_many"] for p in ("ann", "bob", "cat")] == [2, 0, 0]
