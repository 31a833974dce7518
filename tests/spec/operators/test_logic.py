"""`and`, `or` and `not` join true/false values; a missing true/false counts as false."""

title = "and, or, not"


def test_logic_with_a_missing_true_false_as_false(spec_test):
    """`maybe` is missing unless the patient has more than one row (a case with no default)."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-01-01 | ae
            a       | 2026-02-01 | gp
            b       | 2026-01-01 | ae
        """},
        features="""
            n: count(activity)
            maybe: case(n > 1, true)
            both: maybe and n >= 1
            either: maybe or n == 1
            neither: not maybe
        """,
        expected="""
            patient | maybe | both  | either | neither
            --------+-------+-------+--------+--------
            a       | true  | true  | true   | false
            b       |       | false | true   | true
            c       |       | false | false  | true
        """)
