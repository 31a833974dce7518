"""`sum(table.column, filter..., window)` adds the values of the rows that have one: 0 when
none has."""

title = "sum"


def test_sum_adds_the_values_present(spec_test):
    """Decimals add as decimals; rows without a value add nothing; a filter and window apply."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+------
            a       | 2026-01-01 | ae      | 100
            a       | 2026-02-01 | gp      | 250.5
            a       | 2024-02-01 | gp      | 1000
            b       | 2026-03-01 | gp      |
        """},
        features="""
            all: sum(activity.cost)
            recent_gp: sum(activity.cost, setting == "gp", within=months(12))
        """,
        expected="""
            patient | all    | recent_gp
            --------+--------+----------
            a       | 1350.5 | 250.5
            b       | 0.0    | 0.0
            c       | 0.0    | 0.0
        """)
