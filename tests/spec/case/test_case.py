"""`case(condition, value, ..., default)` is the value of the first true condition, else the
default, else missing. Its values are of one type (whole numbers and decimals mix, as decimals)."""

title = "case"


def test_case_takes_the_first_true_condition(spec_test):
    """Tiers by a count: conditions are tried in order; without a default, no match is missing."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-01-01 | ae
            a       | 2026-02-01 | ae
            a       | 2026-03-01 | ae
            b       | 2026-03-01 | ae
        """},
        features="""
            n: count(activity)
            tier: case(n > 2, "high", n > 0, "some", "none")
            high_only: case(n > 2, "high")
            points: case(n > 2, 1.5, n > 0, 1, 0)
        """,
        expected="""
            patient | tier | high_only | points
            --------+------+-----------+-------
            a       | high | high      | 1.5
            b       | some |           | 1.0
            c       | none |           | 0.0
        """)
