"""`median(table.column, filter..., window)` is the median of the values present: the middle
one, or the mean of the two middle ones when there is an even number of them; missing when
there are none. A value computed per row (`value=`) works as for sum and mean."""

title = "median"


def test_median_of_the_values_present(spec_test):
    """Rows without a value are left out; an even number of values gives the mean of the two
    middle ones."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+------
            a       | 2026-01-01 | ae      | 100
            a       | 2026-02-01 | ae      | 7
            a       | 2026-03-01 | ae      |
            a       | 2026-04-01 | ae      | 30
            b       | 2026-01-01 | ae      | 40
            b       | 2026-02-01 | ae      | 10
            b       | 2026-03-01 | ae      | 25
            b       | 2026-04-01 | ae      | 1000
            c       | 2026-03-01 | ae      |
        """},
        features="m: median(activity.cost)",
        expected="""
            patient | m
            --------+------
            a       | 30
            b       | 32.5
            c       |
        """)


def test_median_of_a_value_computed_per_row_within_a_window(spec_test):
    """Lengths of stay of emergency admissions in the 12 months to as_of: the admission
    without a discharge date has no length and is left out, the one before the window too."""
    spec_test(
        tables={"activity": """
            patient | start_date | end_date   | setting
            --------+------------+------------+--------------------
            a       | 2025-06-01 | 2025-06-30 | emergency_admission
            a       | 2026-01-01 | 2026-01-03 | emergency_admission
            a       | 2026-02-01 | 2026-02-11 | emergency_admission
            a       | 2026-03-01 |            | emergency_admission
            a       | 2026-04-01 | 2026-04-05 | emergency_admission
            b       | 2026-05-01 | 2026-05-02 | ae
        """},
        features='stay: median(activity, setting == "emergency_admission", '
                 'value=days_between(start_date, end_date), within=months(12))',
        expected="""
            patient | stay
            --------+-----
            a       | 4
            b       |
            c       |
        """)
