"""Comparisons `== != < <= > >=` compare numbers with numbers (whole or decimal), dates with
dates and text with text (only `==` and `!=`), each giving true or false."""

title = "Comparisons"


def test_comparisons_of_numbers_dates_and_text(spec_test):
    """The latest row's date against six months back; a whole number against a decimal; text."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+------
            a       | 2026-09-01 | ae      | 2.5
            b       | 2026-01-01 | gp      | 2
        """},
        features="""
            latest: last(activity.start_date)
            recent: latest > as_of - months(6)
            on_or_before: latest <= date("2026-01-01")
            c: sum(activity.cost)
            over_two: c > 2
            exactly_two: c == 2
            not_two: c != 2
            ae_last: last(activity.setting) == "ae"
        """,
        expected="""
            patient | recent | on_or_before | over_two | exactly_two | not_two | ae_last
            --------+--------+--------------+----------+-------------+---------+--------
            a       | true   | false        | true     | false       | true    | true
            b       | false  | true         | false    | true        | false   | false
        """)
