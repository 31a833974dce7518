"""Months are calendar months: moving a date by months keeps its day, clamped to the end of a
shorter month (31 March − 1 month is 28 February, or 29 in a leap year)."""

title = "Calendar months"


def test_month_arithmetic_clamps_to_the_month_end(spec_test):
    """At 2026-03-31, one month back is 2026-02-28: a row on 02-28 is outside (D−1m, D]."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-02-28 | ae
            a       | 2026-03-01 | ae
        """},
        features="n: count(activity, within=months(1))",
        as_of="2026-03-31",
        expected="""
            patient | n
            --------+---
            a       | 1
        """)


def test_in_a_leap_year_the_clamp_is_29_february(spec_test):
    """At 2024-03-31, one month back is 2024-02-29: a row on 02-29 is outside, on 03-01 inside."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2024-02-28 | ae
            a       | 2024-02-29 | ae
            a       | 2024-03-01 | ae
        """},
        features="""
            n: count(activity, within=months(1))
            back: as_of - months(1)
        """,
        as_of="2024-03-31",
        expected="""
            patient | n | back
            --------+---+-----------
            a       | 1 | 2024-02-29
        """)
