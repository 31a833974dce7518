"""`weekday(date)` is the ISO day of the week: 1 for Monday to 7 for Sunday (ISO 8601, as
NHS England's "discharges across seven days" counts weekend days: 6 Saturday, 7 Sunday).
It applies to a per-patient date and, in a filter or `value=`, to each row's date; of a
missing date it is missing."""

title = "weekday"


def test_weekday_of_patient_dates_monday_is_1_sunday_is_7(spec_test):
    """Known days: 1970-01-01 was a Thursday, 2026-10-31 a Saturday, 2026-11-01 a Sunday,
    2024-02-29 a Thursday; a missing date gives a missing day."""
    spec_test(
        tables={},
        features="""
            epoch: weekday(date("1970-01-01"))
            monday: weekday(date("2026-10-26"))
            saturday: weekday(as_of)
            sunday: weekday(as_of + days(1))
            leap: weekday(date("2024-02-29"))
            before_epoch: weekday(date("1969-12-28"))
            gone: weekday(death_date)
        """,
        expected="""
            patient | epoch | monday | saturday | sunday | leap | before_epoch | gone
            --------+-------+--------+----------+--------+------+--------------+-----
            a       | 4     | 1      | 6        | 7      | 4    | 7            |
        """)


def test_weekday_of_each_row_counts_weekend_discharges(spec_test):
    """Per row: emergency spells discharged on a Saturday or Sunday (2026-10-24 and
    2026-10-25), and the day of the latest discharge; a spell with no end date has no day."""
    spec_test(
        tables={"activity": """
            patient | start_date | end_date   | setting
            --------+------------+------------+--------------------
            a       | 2026-10-20 | 2026-10-24 | emergency_admission
            a       | 2026-10-21 | 2026-10-25 | emergency_admission
            a       | 2026-10-22 | 2026-10-26 | emergency_admission
            a       | 2026-10-23 |            | emergency_admission
            b       | 2026-10-01 | 2026-10-02 | emergency_admission
        """},
        features="""
            weekend: count(activity, weekday(end_date) >= 6)
            days: sum(activity, value=weekday(end_date))
            latest: max(activity, value=weekday(end_date))
        """,
        expected="""
            patient | weekend | days | latest
            --------+---------+------+-------
            a       | 2       | 14   | 7
            b       | 0       | 5    | 5
            c       | 0       | 0    |
        """)
