"""`+ - * /` on numbers: whole numbers stay whole except under `/`, which always gives a
decimal; `*` and `/` bind tighter than `+` and `-`; a leading `-` negates."""

title = "Arithmetic"


def test_arithmetic_on_whole_numbers_and_decimals(spec_test):
    """3 admissions: 3 + 1, 3 − 5, 3 × 2, 3 ÷ 2, −3, 3 × 1.5 and 1 + 3 × 2."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-01-01 | ae
            a       | 2026-02-01 | ae
            a       | 2026-03-01 | ae
        """},
        features="""
            n: count(activity)
            plus: n + 1
            minus: n - 5
            times: n * 2
            half: n / 2
            neg: -n
            scaled: n * 1.5
            precedence: 1 + n * 2
        """,
        expected="""
            patient | n | plus | minus | times | half | neg | scaled | precedence
            --------+---+------+-------+-------+------+-----+--------+-----------
            a       | 3 | 4    | -2    | 6     | 1.5  | -3  | 4.5    | 7
            b       | 0 | 1    | -5    | 0     | 0.0  | 0   | 0.0    | 1
        """)
