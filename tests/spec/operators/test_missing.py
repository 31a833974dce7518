"""A comparison with a missing value is false, so `not` of it is true; arithmetic with a
missing value is missing, and so is division by zero."""

title = "Missing values"


def test_a_missing_value_compared_is_false_and_not_of_it_is_true(spec_test):
    """The mean of no costs is missing: `m > 1` is false and `not (m > 1)` true."""
    spec_test(
        tables={},
        features="""
            m: mean(activity.cost)
            gt: m > 1
            ngt: not (m > 1)
        """,
        expected="""
            patient | m | gt    | ngt
            --------+---+-------+-----
            a       |   | false | true
        """)


def test_arithmetic_with_a_missing_value_or_dividing_by_zero_is_missing(spec_test):
    """A missing mean plus one is missing; a count divided by zero is missing, not infinite."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+-----
            a       | 2026-01-01 | ae      | 10
        """},
        features="""
            m: mean(activity.cost)
            plus: m + 1
            times_zero: m * 0
            n: count(activity)
            per_none: n / (n - n)
        """,
        expected="""
            patient | m    | plus | times_zero | n | per_none
            --------+------+------+------------+---+---------
            a       | 10.0 | 11.0 | 0.0        | 1 |
            b       |      |      |            | 0 |
        """)
