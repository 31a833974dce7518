"""Spell ids are numbers shared by an admission and its diagnoses (and procedures), so
`spell_id == index_spell` finds the diagnoses of one admission: here the latest emergency
admission's. Spell numbers are the store's own (only `==` makes sense for them)."""

title = "The diagnoses of an admission"

ACTIVITY = """
    patient     | start_date | end_date   | setting             | discharge_destination | spell_id
    ------------+------------+------------+---------------------+-----------------------+---------
    same_day    | 2026-01-01 | 2026-01-05 | emergency_admission | home                  | S1
    same_day    | 2026-01-05 | 2026-01-06 | emergency_admission | home                  | S2
    day29       | 2026-01-01 | 2026-01-05 | emergency_admission | home                  | D1
    day29       | 2026-02-03 | 2026-02-04 | emergency_admission | home                  | D2
    day30       | 2026-01-01 | 2026-01-05 | emergency_admission | home                  |
    day30       | 2026-02-04 | 2026-02-05 | emergency_admission | home                  |
    day31       | 2026-01-01 | 2026-01-05 | emergency_admission | home                  |
    day31       | 2026-02-05 | 2026-02-06 | emergency_admission | home                  |
    moved0      | 2026-01-01 | 2026-01-05 | emergency_admission | other_hospital        |
    moved0      | 2026-01-05 | 2026-01-09 | emergency_admission | home                  |
    moved2      | 2026-01-01 | 2026-01-05 | emergency_admission | other_hospital        |
    moved2      | 2026-01-07 | 2026-01-09 | emergency_admission | home                  |
    moved3      | 2026-01-01 | 2026-01-05 | emergency_admission | other_hospital        |
    moved3      | 2026-01-08 | 2026-01-09 | emergency_admission | home                  |
    chain       | 2026-01-01 | 2026-01-05 | emergency_admission | other_hospital        | C1
    chain       | 2026-01-06 | 2026-01-10 | elective_admission  | other_hospital        | C2
    chain       | 2026-01-12 | 2026-01-20 | emergency_admission | home                  | C3
    chain       | 2026-02-10 | 2026-02-12 | emergency_admission | home                  | C4
    long_chain  | 2026-01-01 | 2026-01-05 | emergency_admission | other_hospital        |
    long_chain  | 2026-01-07 | 2026-03-01 | emergency_admission | home                  |
    long_chain  | 2026-03-20 | 2026-03-21 | emergency_admission | home                  |
    elective    | 2026-01-01 | 2026-01-03 | elective_admission  | home                  |
    elective    | 2026-01-20 | 2026-01-22 | emergency_admission | home                  |
    to_elective | 2026-01-01 | 2026-01-03 | emergency_admission | home                  |
    to_elective | 2026-01-10 | 2026-01-12 | elective_admission  | home                  |
    in_hospital | 2026-01-01 |            | emergency_admission | home                  |
    in_hospital | 2026-01-15 | 2026-01-16 | emergency_admission | home                  |
    overlap     | 2026-01-01 | 2026-01-20 | emergency_admission | home                  |
    overlap     | 2026-01-05 | 2026-01-06 | emergency_admission | home                  |
    overlap     | 2026-01-25 | 2026-01-26 | emergency_admission | home                  |
    late        | 2026-10-01 | 2026-10-05 | emergency_admission | home                  |
    late        | 2026-11-02 | 2026-11-03 | emergency_admission | home                  |
    nobody_in   | 2026-03-01 |            | gp                  |                       |
"""
DIAGNOSES = """
    patient  | date       | code_system | code | source       | spell_id | position
    ---------+------------+-------------+------+--------------+----------+---------
    chain    | 2026-02-10 | icd10       | J189 | acute        | C4       | 1
    chain    | 2026-02-10 | icd10       | I10  | acute        | C4       | 2
    chain    | 2026-02-11 | icd10       | E119 | acute        | C4       | 3
    chain    | 2026-01-01 | icd10       | J189 | acute        | C1       | 1
    chain    | 2026-03-01 | icd10       | J189 | primary_care |          |
    same_day | 2026-01-05 | icd10       | J440 | acute        | S2       | 1
    same_day | 2026-01-01 | icd10       | J440 | acute        | S1       | 1
    day29    | 2026-01-01 | icd10       | J189 | acute        | D1       | 1
"""


def test_the_diagnoses_of_the_index_spell(spec_test):
    """chain's latest emergency spell is C4 with three diagnoses (one primary); same_day's is
    S2 with one; day29's D2 has none (D1 has J189); without spell ids there is no index spell."""
    spec_test(
        tables={"activity": ACTIVITY, "diagnoses": DIAGNOSES},
        features="""
            index_spell: last(activity.spell_id, setting == "emergency_admission")
            has_index: index_spell > 0
            dx_in_index: count(diagnoses, spell_id == index_spell)
            primary_in_index: count(diagnoses, spell_id == index_spell and position == 1)
        """,
        expected="""
            patient     | dx_in_index | primary_in_index | has_index
            ------------+-------------+------------------+----------
            chain       | 3           | 1                | true
            day29       | 0           | 0                | true
            day30       | 0           | 0                | false
            day31       | 0           | 0                | false
            elective    | 0           | 0                | false
            in_hospital | 0           | 0                | false
            late        | 0           | 0                | false
            long_chain  | 0           | 0                | false
            moved0      | 0           | 0                | false
            moved2      | 0           | 0                | false
            moved3      | 0           | 0                | false
            nobody_in   | 0           | 0                | false
            overlap     | 0           | 0                | false
            same_day    | 1           | 1                | true
            to_elective | 0           | 0                | false
        """)
