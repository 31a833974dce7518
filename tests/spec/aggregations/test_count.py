"""`count(table, filter..., window)` is the number of the patient's rows that pass the
filter and fall in the window; over no rows it is 0."""

title = "count"


def test_count_counts_rows_and_same_day_duplicates_each_count(spec_test):
    """Every row counts, two on the same day both; rows after the evaluation date do not."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-01-01 | ae
            a       | 2026-01-01 | ae
            a       | 2026-01-02 | gp
            a       | 2026-11-01 | ae
            b       | 2026-03-01 | gp
        """},
        features="""
            n: count(activity)
            ae: count(activity, setting == "ae")
        """,
        expected="""
            patient | n | ae
            --------+---+---
            a       | 3 | 2
            b       | 1 | 0
            c       | 0 | 0
        """)


def test_several_filters_all_apply(spec_test):
    """Filters given one after another must all hold, as if joined by `and`."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+-----
            a       | 2026-01-01 | ae      | 100
            a       | 2026-02-01 | ae      | 20
            a       | 2026-03-01 | gp      | 100
        """},
        features="""
            both: count(activity, setting == "ae", cost > 50)
            joined: count(activity, setting == "ae" and cost > 50)
        """,
        expected="""
            patient | both | joined
            --------+------+-------
            a       | 1    | 1
        """)
