"""`min(table.column, filter..., window)` is the smallest value present, of numbers or dates;
missing when there is none."""

title = "min"


def test_min_of_numbers_and_of_dates(spec_test):
    """The smallest cost, and the earliest date."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+-----
            a       | 2026-03-01 | ae      | 70
            a       | 2026-01-01 | ae      |
            a       | 2026-02-01 | ae      | 50
        """},
        features="""
            lo: min(activity.cost)
            earliest: min(activity.start_date)
        """,
        expected="""
            patient | lo   | earliest
            --------+------+-----------
            a       | 50.0 | 2026-01-01
            b       |      |
        """)
