"""`spell_has(table, filter..., codelist=c)`, inside the filter of an aggregation over rows
with spells, is true for a row whose hospital spell has a matching row of `table` dated on
or before the evaluation date: the primary diagnosis, a secondary one, a procedure. Its
filters read `table`'s columns and fixed values only."""

title = "spell_has"

ACTIVITY = """
    patient | start_date | end_date   | setting             | cost | spell_id
    --------+------------+------------+---------------------+------+---------
    ann     | 2026-03-01 | 2026-03-01 | emergency_admission | 1000 | S1
    ann     | 2026-06-01 | 2026-06-01 | emergency_admission | 1000 | S2
    bob     | 2026-04-01 | 2026-04-01 | emergency_admission | 1000 | S3
    bob     | 2026-08-01 | 2026-08-01 | elective_admission  | 1000 | S4
    cat     | 2026-10-01 | 2026-10-02 | emergency_admission | 1000 | S5
"""
DIAGNOSES = """
    patient | date       | code_system | code | source | spell_id | position
    --------+------------+-------------+------+--------+----------+---------
    ann     | 2026-03-01 | icd10       | J440 | acute  | S1       | 1
    ann     | 2026-06-01 | icd10       | J209 | acute  | S2       | 1
    ann     | 2026-06-01 | icd10       | J449 | acute  | S2       | 2
    bob     | 2026-04-01 | icd10       | J209 | acute  | S3       | 1
    bob     | 2026-08-01 | icd10       | I209 | acute  | S4       | 1
    cat     | 2026-11-15 | icd10       | J440 | acute  | S5       | 1
"""
PROCEDURES = """
    patient | date       | code_system | code | spell_id | position
    --------+------------+-------------+------+----------+---------
    bob     | 2026-08-01 | opcs4       | K491 | S4       | 1
"""

CODELISTS = {
    "copd": '{system: icd10, prefixes: ["J41", "J42", "J43", "J44"]}',
    "bronchitis": '{system: icd10, prefixes: ["J20"]}',
    "cardiac": '{system: opcs4, prefixes: ["K49"]}',
}


def test_spell_has_the_primary_a_secondary_diagnosis_or_a_procedure(spec_test):
    """COPD admissions: COPD primary, or bronchitis primary with COPD secondary; admissions
    with a K49 procedure; and the diagnoses of the latest emergency spell. cat's diagnosis is
    recorded after as_of, so it is not seen."""
    spec_test(
        tables={"activity": ACTIVITY, "diagnoses": DIAGNOSES, "procedures": PROCEDURES},
        codelists=CODELISTS,
        features="""
            copd_admissions: count(activity, setting == "emergency_admission"
                and (spell_has(diagnoses, position == 1, codelist=copd)
                     or (spell_has(diagnoses, position == 1, codelist=bronchitis)
                         and spell_has(diagnoses, position >= 2, codelist=copd))))
            with_procedure: count(activity, spell_has(procedures, codelist=cardiac))
            latest_spell: last(activity.spell_id, setting == "emergency_admission")
            secondary_in_latest: count(diagnoses, spell_id == latest_spell and position >= 2)
            dx_in_latest: count(diagnoses, spell_id == latest_spell)
        """,
        expected="""
            patient | copd_admissions | with_procedure | secondary_in_latest | dx_in_latest
            --------+-----------------+----------------+---------------------+-------------
            ann     | 2               | 0              | 1                   | 2
            bob     | 0               | 1              | 0                   | 1
            cat     | 0               | 0              | 0                   | 0
        """)
