"""Aggregations skip rows without a value (a missing cost, a missing end date), but such
rows still count as rows; over no rows at all, `count` is 0, `exists` false, `sum` 0 and
the others missing."""

title = "Missing values and no rows"


def test_over_no_rows_aggregations_are_0_false_or_missing(spec_test):
    """A patient without rows: 0, false, 0, or missing."""
    spec_test(
        tables={},
        features="""
            c: count(activity)
            e: exists(activity)
            s: sum(activity.cost)
            m: mean(activity.cost)
            l: last(activity.start_date)
            d: days_since(activity)
        """,
        expected="""
            patient | c | e     | s   | m | l | d
            --------+---+-------+-----+---+---+---
            a       | 0 | false | 0.0 |   |   |
        """)


def test_missing_costs_are_skipped_and_same_day_duplicates_both_count(spec_test):
    """Two rows on one day both count; a row without a cost counts but adds nothing."""
    spec_test(
        tables={"activity": """
            patient | start_date | setting | cost
            --------+------------+---------+-----
            a       | 2026-01-01 | ae      | 100
            a       | 2026-01-01 | ae      | 300
            a       | 2026-01-02 | ae      |
        """},
        features="""
            n: count(activity)
            s: sum(activity.cost)
            m: mean(activity.cost)
            lo: min(activity.cost)
            f: first(activity.cost)
            l: last(activity.start_date)
        """,
        expected="""
            patient | n | s     | m     | lo    | f     | l
            --------+---+-------+-------+-------+-------+-----------
            a       | 3 | 400.0 | 200.0 | 100.0 | 100.0 | 2026-01-02
        """)


def test_spells_without_an_end_date_or_cost_still_count_and_sums_skip_them(spec_test):
    """An admission with no end date or cost is still an admission; a filter on its end
    date is false, and sums and maxima skip it."""
    spec_test(
        tables={"activity": """
            patient | start_date | end_date   | setting             | cost
            --------+------------+------------+---------------------+-----
            a       | 2026-01-01 |            | emergency_admission |
            a       | 2026-02-01 | 2026-02-05 | emergency_admission | 1000
        """},
        features="""
            n: count(activity, setting == "emergency_admission")
            ended: count(activity, end_date >= date("2026-01-01"))
            s: sum(activity.cost)
            latest_end: max(activity.end_date)
        """,
        expected="""
            patient | n | ended | s      | latest_end
            --------+---+-------+--------+-----------
            a       | 2 | 1     | 1000.0 | 2026-02-05
        """)
