"""`within=months(n)` (or `days(n)`, `years(n)`) sees the rows dated in (D − n, D]: after the
same day n months back, up to and including the evaluation date D."""

title = "within="


def test_window_edges_include_d_and_exclude_d_minus_12_months(spec_test):
    """(D−12m, D] includes D and excludes D−12m; a row after D is invisible to every window."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2025-10-31 | ae
            a       | 2025-11-01 | ae
            a       | 2026-10-31 | ae
            a       | 2026-11-01 | ae
        """},
        features="""
            n: count(activity, within=months(12))
            all: count(activity)
        """,
        expected="""
            patient | n | all
            --------+---+----
            a       | 2 | 3
        """)


def test_windows_in_days_and_years(spec_test):
    """90 days back from 2026-10-31 is 2026-08-02 (excluded); 2 years back is 2024-10-31."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-08-02 | ae
            a       | 2026-08-03 | ae
            a       | 2024-10-31 | gp
            a       | 2024-11-01 | gp
        """},
        features="""
            days90: count(activity, within=days(90))
            years2: count(activity, within=years(2))
        """,
        expected="""
            patient | days90 | years2
            --------+--------+-------
            a       | 1      | 3
        """)
