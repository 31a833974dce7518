"""`days_since(table, filter..., window)` is the number of days from the latest matching row
to the evaluation date: 0 for a row on the date itself, missing when there is none."""

title = "days_since"


def test_days_since_the_latest_row(spec_test):
    """Counted to as_of (2026-10-31); later rows are invisible."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-10-01 | gp
            a       | 2026-01-01 | ae
            a       | 2026-11-30 | ae
            b       | 2026-10-31 | ae
        """},
        features="""
            any: days_since(activity)
            ae: days_since(activity, setting == "ae")
        """,
        expected="""
            patient | any | ae
            --------+-----+----
            a       | 30  | 303
            b       | 0   | 0
            c       |     |
        """)
