"""`between=(months(a), months(b))` sees the rows dated in (D − a, D − b]: a window that
ends before the evaluation date."""

title = "between="


def test_between_12_and_6_months_and_within_6_months_partition_the_year(spec_test):
    """(D−12m, D−6m] and (D−6m, D] share no row and together make (D−12m, D]."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2025-11-01 | ae
            a       | 2026-04-30 | ae
            a       | 2026-05-01 | ae
            a       | 2026-10-31 | ae
        """},
        features="""
            prior: count(activity, between=(months(12), months(6)))
            recent: count(activity, within=months(6))
        """,
        expected="""
            patient | prior | recent
            --------+-------+-------
            a       | 2     | 2
        """)
