"""Continuous inpatient (CIP) spells and readmissions. Ingest derives activity.cips_position
(1 starts a CIP spell; 2, 3, ... a transfer that continues it: the admission before was
discharged to other_hospital at most 2 days earlier) and activity.previous_discharge (for a
CIP spell's first admission, the end of the patient's previous CIP spell, looking only
backwards). The cases share one set of admissions, all in 2026:

    patient     admissions (start..end, E emergency / L elective, OH other_hospital)      readmissions  transfers
    same_day    E 01-01..01-05, E 01-05..01-06                   (0 days)                 1             0
    day29       E 01-01..01-05, E 02-03..02-04                   (29 days)                1             0
    day30       E 01-01..01-05, E 02-04..02-05                   (30 days)                0             0
    day31       E 01-01..01-05, E 02-05..02-06                   (31 days)                0             0
    moved0      E 01-01..01-05 OH, E 01-05..01-09                (a transfer, same day)   0             1
    moved2      E 01-01..01-05 OH, E 01-07..01-09                (a transfer, 2 days)     0             1
    moved3      E 01-01..01-05 OH, E 01-08..01-09                (3 days: readmitted)     1             0
    chain       E 01-01..01-05 OH, L 01-06..01-10 OH, E 01-12..01-20 home,
                E 02-10..02-12        (21 days after the chain's end, 36 after 01-05)    1             2
    long_chain  E 01-01..01-05 OH, E 01-07..03-01 home, E 03-20..03-21
                                         (19 days after 03-01; 74 after 01-05)            1             1
    elective    L 01-01..01-03, E 01-20..01-22                   (an elective discharge)  1             0
    to_elective E 01-01..01-03, L 01-10..01-12                   (not an emergency)       0             0
    in_hospital E 01-01.. (no end), E 01-15..01-16               (no discharge yet)       0             0
    overlap     E 01-01..01-20, E 01-05..01-06, E 01-25..01-26   (5 days after 01-20)     1             0
    late        E 10-01..10-05, E 11-02 (after as_of, unseen)                              0             0
    nobody_in   a GP contact only                                                          0             0
"""

title = "CIP spells and readmissions"

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


def test_readmissions_within_29_days_and_transfers(spec_test):
    """An emergency admission starting a CIP spell within 0–29 days of the previous CIP
    spell's discharge is a readmission; a transfer continues the spell it came from."""
    spec_test(
        tables={"activity": ACTIVITY, "diagnoses": DIAGNOSES},
        features="""
            readmissions: count(activity, setting == "emergency_admission" and cips_position == 1
                and days_between(previous_discharge, start_date) <= 29)
            transfers: count(activity, cips_position >= 2)
        """,
        expected="""
            patient     | readmissions | transfers
            ------------+--------------+----------
            chain       | 1            | 2
            day29       | 1            | 0
            day30       | 0            | 0
            day31       | 0            | 0
            elective    | 1            | 0
            in_hospital | 0            | 0
            late        | 0            | 0
            long_chain  | 1            | 1
            moved0      | 0            | 1
            moved2      | 0            | 1
            moved3      | 1            | 0
            nobody_in   | 0            | 0
            overlap     | 1            | 0
            same_day    | 1            | 0
            to_elective | 0            | 0
        """)


def test_an_earlier_evaluation_date_sees_only_what_was_known_then(spec_test):
    """At 2026-02-05 the chain's readmission (02-10) and long_chain's (03-20) have not
    happened; day29's (02-03) has; the chain's latest spell is then C3, without diagnoses."""
    spec_test(
        tables={"activity": ACTIVITY, "diagnoses": DIAGNOSES},
        features="""
            readmissions: count(activity, setting == "emergency_admission" and cips_position == 1
                and days_between(previous_discharge, start_date) <= 29)
            transfers: count(activity, cips_position >= 2)
            index_spell: last(activity.spell_id, setting == "emergency_admission")
            has_index: index_spell > 0
            dx_in_index: count(diagnoses, spell_id == index_spell)
            primary_in_index: count(diagnoses, spell_id == index_spell and position == 1)
        """,
        as_of="2026-02-05",
        expected="""
            patient     | readmissions | transfers | dx_in_index | primary_in_index
            ------------+--------------+-----------+-------------+-----------------
            chain       | 0            | 2         | 0           | 0
            day29       | 1            | 0         | 0           | 0
            day30       | 0            | 0         | 0           | 0
            day31       | 0            | 0         | 0           | 0
            elective    | 1            | 0         | 0           | 0
            in_hospital | 0            | 0         | 0           | 0
            late        | 0            | 0         | 0           | 0
            long_chain  | 0            | 1         | 0           | 0
            moved0      | 0            | 1         | 0           | 0
            moved2      | 0            | 1         | 0           | 0
            moved3      | 1            | 0         | 0           | 0
            nobody_in   | 0            | 0         | 0           | 0
            overlap     | 1            | 0         | 0           | 0
            same_day    | 1            | 0         | 1           | 1
            to_elective | 0            | 0         | 0           | 0
        """)


def test_readmission_windows_at_their_edges(spec_test):
    """The gap from the previous discharge of each CIP spell's first admission, within 0,
    29 and 30 days: 0 days is within all, 29 within 29, 30 only within 30, 31 in none."""
    spec_test(
        tables={"activity": ACTIVITY, "diagnoses": DIAGNOSES},
        features="""
            within_0: count(activity, cips_position == 1 and days_between(previous_discharge, start_date) <= 0)
            within_29: count(activity, cips_position == 1 and days_between(previous_discharge, start_date) <= 29)
            within_30: count(activity, cips_position == 1 and days_between(previous_discharge, start_date) <= 30)
            gap: max(activity, cips_position == 1, value=days_between(previous_discharge, start_date))
        """,
        expected="""
            patient     | within_0 | within_29 | within_30 | gap
            ------------+----------+-----------+-----------+----
            chain       | 0        | 1         | 1         | 21
            day29       | 0        | 1         | 1         | 29
            day30       | 0        | 0         | 1         | 30
            day31       | 0        | 0         | 0         | 31
            elective    | 0        | 1         | 1         | 17
            in_hospital | 0        | 0         | 0         |
            late        | 0        | 0         | 0         |
            long_chain  | 0        | 1         | 1         | 19
            moved0      | 0        | 0         | 0         |
            moved2      | 0        | 0         | 0         |
            moved3      | 0        | 1         | 1         | 3
            nobody_in   | 0        | 0         | 0         |
            overlap     | 0        | 1         | 1         | 5
            same_day    | 1        | 1         | 1         | 0
            to_elective | 0        | 1         | 1         | 7
        """)
