"""`first(table.column, filter..., window)` is the value of the earliest row (by date) that
has one; `first(table)` is the date of the earliest row. Missing when there is none."""

title = "first"


def test_first_value_date_and_text(spec_test):
    """The earliest row with a cost gives the cost; text columns work too."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+-----
            a       | 2026-03-01 | ae      | 70
            a       | 2026-01-01 | gp      |
            a       | 2026-02-01 | ae      | 50
        """},
        features="""
            cost: first(activity.cost)
            seen: first(activity)
            setting: first(activity.setting)
        """,
        expected="""
            patient | cost | seen       | setting
            --------+------+------------+--------
            a       | 50.0 | 2026-01-01 | gp
            b       |      |            |
        """)
