"""Functions of per-patient numbers: `logistic`, `exp`, `log`, `abs`, `round` (half away
from zero), `min` and `max` (of values, skipping missing ones), and `days_between(a, b)`
of two dates. `log` of zero or less, and a result too large for its type, are missing."""

title = "Functions"


def test_scalar_functions(spec_test):
    """Each function on a fixed value, and `max` skipping a missing mean."""
    spec_test(
        tables={},
        features="""
            lg: logistic(0)
            e: exp(0)
            ln: log(1)
            ln0: log(0)
            big: exp(1000)
            a: abs(-3)
            up: round(2.5)
            down: round(-2.5)
            lo: min(3, 1.5)
            m: mean(activity.cost)
            floor: max(m, 0)
            days: days_between(date("2026-01-01"), as_of)
        """,
        expected="""
            patient | lg  | e   | ln  | ln0 | big | a | up | down | lo  | m | floor | days
            --------+-----+-----+-----+-----+-----+---+----+------+-----+---+-------+-----
            a       | 0.5 | 1.0 | 0.0 |     |     | 3 | 3  | -3   | 1.5 |   | 0     | 303
        """)
