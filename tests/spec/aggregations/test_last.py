"""`last(table.column, filter..., window)` is the value of the latest row (by date) that has
one; missing when there is none."""

title = "last"


def test_last_value_date_and_text(spec_test):
    """The latest row with a cost gives the cost; the latest date; a text column."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+-----
            a       | 2026-03-01 | gp      |
            a       | 2026-01-01 | ae      | 70
            a       | 2026-02-01 | ae      | 50
        """},
        features="""
            cost: last(activity.cost)
            latest: last(activity.start_date)
            setting: last(activity.setting)
            ae_cost: last(activity.cost, setting == "ae", within=months(12))
        """,
        expected="""
            patient | cost | latest     | setting | ae_cost
            --------+------+------------+---------+--------
            a       | 50.0 | 2026-03-01 | gp      | 50.0
            b       |      |            |         |
        """)
