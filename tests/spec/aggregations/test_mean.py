"""`mean(table.column, filter..., window)` is the mean of the values present: missing when
there are none."""

title = "mean"


def test_mean_of_the_values_present(spec_test):
    """Rows without a value are left out of the mean, not counted as 0."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+------
            a       | 2026-01-01 | ae      | 100
            a       | 2026-02-01 | ae      | 250.5
            a       | 2026-03-01 | ae      |
            b       | 2026-03-01 | ae      |
        """},
        features="m: mean(activity.cost)",
        expected="""
            patient | m
            --------+-------
            a       | 175.25
            b       |
            c       |
        """)
