"""`percentile(x)` is 100 × (members of the rule's population with a smaller value) ÷ (members
with a value): ties share a value; a patient without a value has none. A patient outside the
population is placed among its members without being one of them."""

title = "percentile"

ADULTS_AND_A_CHILD = {
    "patients": """
        patient | birth_date
        --------+-----------
        a       | 1950-01-01
        b       | 1950-01-01
        c       | 1950-01-01
        d       | 1950-01-01
        kid     | 2020-01-01
    """,
    "activity": """
        patient | start_date | setting
        --------+------------+--------
        a       | 2026-01-01 | ae
        a       | 2026-01-01 | ae
        a       | 2026-01-01 | ae
        b       | 2026-01-01 | ae
        b       | 2026-01-01 | ae
        c       | 2026-01-01 | ae
        kid     | 2026-01-01 | ae
        kid     | 2026-01-01 | ae
        kid     | 2026-01-01 | ae
        kid     | 2026-01-01 | ae
    """}


def test_percentile_within_the_population(spec_test):
    """The child, outside `age >= 18`, is not counted among the members, but stands above all four."""
    spec_test(
        tables=ADULTS_AND_A_CHILD,
        population="age >= 18",
        features="""
            n: count(activity)
            p: percentile(n)
        """,
        expected="""
            patient | n | p
            --------+---+-----
            a       | 3 | 75.0
            b       | 2 | 50.0
            c       | 1 | 25.0
            d       | 0 | 0.0
            kid     | 4 | 100.0
        """)


def test_ties_share_a_percentile_and_missing_values_have_none(spec_test):
    """Two at 20, one at 10: 10 is above none, 20 above one of three; no cost, no percentile."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+-----
            a       | 2026-01-01 | ae      | 20
            b       | 2026-01-01 | ae      | 20
            c       | 2026-01-01 | ae      | 10
            d       | 2026-01-01 | ae      |
        """},
        features="""
            m: mean(activity.cost)
            p: percentile(m)
        """,
        expected="""
            patient | p
            --------+-------------------
            a       | 33.333333333333336
            b       | 33.333333333333336
            c       | 0.0
            d       |
        """)
