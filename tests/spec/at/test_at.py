"""`x at DATE` is `x` evaluated as if the evaluation date were DATE: its windows move with it,
and events after DATE are invisible to it. DATE is the same for everyone."""

title = "at"


def test_events_after_as_of_are_invisible_also_to_at(spec_test):
    """Six months back only the March row had happened."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-03-01 | ae
            a       | 2026-09-01 | ae
        """},
        features="""
            n: count(activity)
            then: n at as_of - months(6)
        """,
        expected="""
            patient | n | then
            --------+---+-----
            a       | 2 | 1
        """)


def test_windows_move_with_at(spec_test):
    """The last 3 months at 2026-10-31 and at 2026-04-30 (a fixed date)."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+--------
            a       | 2026-02-15 | ae
            a       | 2026-03-15 | ae
            a       | 2026-10-15 | ae
        """},
        features="""
            recent: count(activity, within=months(3))
            in_spring: recent at date("2026-04-30")
            older_then: age at date("2026-04-30")
        """,
        expected="""
            patient | recent | in_spring | older_then
            --------+--------+-----------+-----------
            a       | 1      | 2         | 76
        """)
