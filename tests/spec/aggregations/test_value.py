"""`sum`, `mean`, `min` and `max` also take a value computed on each row, `value=...`: a row
whose value is missing (an admission without an end date) is skipped."""

title = "value= per row"


def test_length_of_stay_from_two_dates_a_missing_end_skipped(spec_test):
    """Bed days and length of stay of emergency admissions, from start and end dates."""
    spec_test(
        tables={"activity": """
            patient | start_date | end_date   | setting
            --------+------------+------------+--------------------
            a       | 2026-01-01 | 2026-01-05 | emergency_admission
            a       | 2026-02-01 | 2026-02-01 | emergency_admission
            a       | 2026-03-01 |            | emergency_admission
            a       | 2026-04-01 | 2026-04-03 | ae
        """},
        features="""
            bed_days: sum(activity, setting == "emergency_admission", value=days_between(start_date, end_date))
            los: mean(activity, setting == "emergency_admission", value=days_between(start_date, end_date))
            longest: max(activity, value=days_between(start_date, end_date) * 2)
        """,
        expected="""
            patient | bed_days | los | longest
            --------+----------+-----+--------
            a       | 4        | 2.0 | 8
        """)
