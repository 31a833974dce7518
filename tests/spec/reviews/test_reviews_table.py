"""The decisions are also the event table `reviews` (`date`, `rule`, `decision`, every rule's),
which aggregates like any other: how often someone was listed, when they were accepted."""

title = "The reviews table"


def test_the_reviews_table_aggregates_like_any_other(spec_test):
    """Two listings, and two acceptances on one day (two runs) that both count."""
    spec_test(
        tables={"reviews": """
            patient | date       | rule | decision | run_id
            --------+------------+------+----------+-------
            in      | 2026-01-31 | spec | listed   | r1
            in      | 2026-02-28 | spec | listed   | r2
            in      | 2026-03-10 | spec | accepted | r2
            in      | 2026-03-10 | spec | accepted | r3
        """},
        features="""
            times_listed: count(reviews, decision == "listed")
            accepted_on: last(reviews.date, decision == "accepted")
            decided: count(reviews, decision in ("accepted", "declined"))
        """,
        expected="""
            patient | times_listed | accepted_on | decided
            --------+--------------+-------------+--------
            in      | 2            | 2026-03-10  | 2
            none    | 0            |             | 0
        """)
