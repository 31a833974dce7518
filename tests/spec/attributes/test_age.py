"""`age` is the patient's age in whole years at the evaluation date; a 29 February birthday
falls on 1 March in other years."""

title = "age"


def test_age_at_birthdays_including_29_february(spec_test):
    """At 2025-02-28 someone born 2000-02-29 is still 24; on 2025-03-01 they are 25."""
    spec_test(
        tables={"patients": """
            patient | birth_date
            --------+-----------
            leap    | 2000-02-29
            eve     | 1961-03-01
            day     | 1961-02-28
        """},
        features="""
            age_now: age
            age_mar1: age at date("2025-03-01")
        """,
        as_of="2025-02-28",
        expected="""
            patient | age_now | age_mar1
            --------+---------+---------
            leap    | 24      | 25
            eve     | 63      | 64
            day     | 64      | 64
        """)
