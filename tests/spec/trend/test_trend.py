"""`trend(table, filter..., over=months(n))` is the least-squares slope, per month, of the
patient's monthly counts over the last n whole months up to D; 0 when fewer than two of
those months have rows."""

title = "trend"


def test_slope_of_monthly_counts_and_0_with_fewer_than_two_busy_months(spec_test):
    """1, 2, 3 rows in August, September, October: slope 1; two rows in one month: 0."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            up      | 2026-08-15 | ae
            up      | 2026-09-15 | ae
            up      | 2026-09-16 | ae
            up      | 2026-10-15 | ae
            up      | 2026-10-16 | ae
            up      | 2026-10-17 | ae
            one     | 2026-10-01 | ae
            one     | 2026-10-02 | ae
        """},
        features="t: trend(activity, over=months(3))",
        expected="""
            patient | t
            --------+-----
            up      | 1.0
            one     | 0.0
        """)


def test_a_falling_trend_and_a_filter(spec_test):
    """3, 2, 1 A&E rows: slope −1; the GP rows are filtered out."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            down    | 2026-08-01 | ae
            down    | 2026-08-02 | ae
            down    | 2026-08-03 | ae
            down    | 2026-09-01 | ae
            down    | 2026-09-02 | ae
            down    | 2026-10-01 | ae
            down    | 2026-10-02 | gp
            down    | 2026-10-03 | gp
        """},
        features='t: trend(activity, setting == "ae", per=month, over=months(3))',
        expected="""
            patient | t
            --------+------
            down    | -1.0
            none    | 0.0
        """)
