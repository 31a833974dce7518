"""A filter may read a per-patient value that is itself an aggregation ("the diagnoses in
the two years before the latest admission"): the engines work it out first, one pass per
level of nesting."""

title = "Filters that read aggregations"

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


def test_a_filter_reads_an_aggregation_two_levels_deep(spec_test):
    """latest admission → diagnoses in the 24 months up to it → admissions costing more than
    500 for patients with at least two such diagnoses: three passes, each reading the one
    before (ann's latest is 2026-06-01, with 3 diagnoses; bob's 2026-04-01, with 1)."""
    spec_test(
        tables={"activity": ACTIVITY, "diagnoses": DIAGNOSES},
        features="""
            latest: last(activity.start_date, setting == "emergency_admission")
            dx_before: count(diagnoses, date <= latest and date > latest - months(24))
            costly_when_many: count(activity, dx_before >= 2 and cost > 500)
        """,
        expected="""
            patient | latest     | dx_before | costly_when_many
            --------+------------+-----------+-----------------
            ann     | 2026-06-01 | 3         | 2
            bob     | 2026-04-01 | 1         | 0
            cat     | 2026-10-01 | 0         | 0
        """)
