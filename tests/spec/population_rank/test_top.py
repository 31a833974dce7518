"""`top(x, p%)` is true for members of the rule's population of whom fewer than p% have a
larger value, so ties at the edge are all in; a missing value is never top. A patient
outside the population is compared with its members without being one of them."""

title = "top"


def test_top_within_the_population(spec_test):
    """The top 25% of four adults is the one with 3 rows; the child, not a member, has more than all of them."""
    spec_test(
        tables={
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
            """},
        population="age >= 18",
        features="""
            n: count(activity)
            t: top(n, 25%)
        """,
        expected="""
            patient | t
            --------+------
            a       | true
            b       | false
            c       | false
            d       | false
            kid     | true
        """)


def test_ties_at_the_edge_are_all_in_and_missing_is_never_top(spec_test):
    """Two share the largest cost: both are in the top 25%; no cost is never top."""
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
            t: top(m, 25%)
        """,
        expected="""
            patient | t
            --------+------
            a       | true
            b       | true
            c       | false
            d       | false
        """)
