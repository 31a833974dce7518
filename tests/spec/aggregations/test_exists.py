"""`exists(table, filter..., window)` is true when the patient has a row that passes the
filter in the window, else false (never missing)."""

title = "exists"


def test_exists_is_true_for_a_matching_row_and_false_otherwise(spec_test):
    """A filter and a window narrow the rows; a patient with none is false."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-10-01 | gp
            a       | 2024-01-01 | ae
        """},
        features="""
            any: exists(activity)
            recent_ae: exists(activity, setting == "ae", within=months(12))
            gp: exists(activity, setting == "gp")
        """,
        expected="""
            patient | any   | recent_ae | gp
            --------+-------+-----------+------
            a       | true  | false     | true
            b       | false | false     | false
        """)


def test_exists_over_other_event_tables(spec_test):
    """Every event table aggregates alike: medications, observations, experience."""
    spec_test(
        tables={
            "medications": """
                patient | date       | code_system | code              | quantity
                --------+------------+-------------+-------------------+---------
                a       | 2026-06-01 | dmd         | 39732311000001104 | 28
            """,
            "observations": """
                patient | date       | code_system | code      | value | unit
                --------+------------+-------------+-----------+-------+-----
                b       | 2026-06-01 | snomed      | 271649006 | 142   | mmHg
            """,
            "experience": """
                patient | date       | measure | value
                --------+------------+---------+------
                a       | 2026-07-01 | pam     | 55.2
            """},
        features="""
            on_meds: exists(medications)
            bp_high: exists(observations, value >= 140)
            pam: last(experience.value, measure == "pam")
        """,
        expected="""
            patient | on_meds | bp_high | pam
            --------+---------+---------+-----
            a       | true    | false   | 55.2
            b       | false   | true    |
        """)
