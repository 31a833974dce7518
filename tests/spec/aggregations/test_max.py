"""`max(table.column, filter..., window)` is the largest value present, of numbers or dates;
missing when there is none."""

title = "max"


def test_max_of_numbers_and_of_dates(spec_test):
    """The largest cost, and the latest end date (an admission without one is skipped)."""
    spec_test(
        tables={"activity": """
            patient | start_date | end_date   | setting             | cost
            --------+------------+------------+---------------------+-----
            a       | 2026-01-01 | 2026-01-09 | emergency_admission | 70
            a       | 2026-02-01 |            | emergency_admission | 50
            b       | 2026-02-01 |            | emergency_admission |
        """},
        features="""
            hi: max(activity.cost)
            latest_end: max(activity.end_date)
        """,
        expected="""
            patient | hi   | latest_end
            --------+------+-----------
            a       | 70.0 | 2026-01-09
            b       |      |
        """)
