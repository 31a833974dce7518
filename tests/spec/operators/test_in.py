"""`x in (a, b, ...)` is true when x equals one of the values (text or numbers); a missing x
is in no list."""

title = "in"


def test_in_a_list_of_text_and_of_numbers(spec_test):
    """Rows whose setting is one of two; a count that is one of two numbers."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting
            --------+------------+-----------
            a       | 2026-01-01 | gp
            a       | 2026-02-01 | outpatient
            a       | 2026-03-01 | ae
            b       | 2026-03-01 | ae
        """},
        features="""
            community: count(activity, setting in ("gp", "outpatient"))
            not_community: count(activity, not setting in ("gp", "outpatient"))
            n: count(activity)
            few: n in (1, 2)
            latest: last(activity.setting)
            latest_ae: latest in ("ae")
        """,
        expected="""
            patient | community | not_community | few   | latest_ae
            --------+-----------+---------------+-------+----------
            a       | 2         | 1             | false | true
            b       | 0         | 1             | true  | true
            c       | 0         | 0             | false | false
        """)
