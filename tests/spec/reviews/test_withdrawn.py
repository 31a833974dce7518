"""A withdrawn decision (`casefind review undo`, a `withdrawn` row in the review log) no
longer counts for `reviewed(...)`: it cancels every decision recorded before it for the
patient and rule, the history stays in the log, and a decision recorded after it counts
again. (Rows are recorded in table order; the spec rule is named `spec`.)"""

title = "reviewed() and withdrawn decisions"


def test_a_withdrawn_decision_is_not_counted_and_a_later_one_is(spec_test):
    """withdrawn: declined then withdrawn; redecided: declined, withdrawn, declined again;
    elsewhere: another rule's withdrawal leaves this rule's decision in force; kept: a
    withdrawal recorded before the decision does not reach forward."""
    spec_test(
        tables={"reviews": """
            patient   | date       | rule           | decision
            ----------+------------+----------------+----------
            withdrawn | 2026-10-01 | spec           | declined
            withdrawn | 2026-10-02 | spec           | withdrawn
            redecided | 2026-10-01 | spec           | declined
            redecided | 2026-10-02 | spec           | withdrawn
            redecided | 2026-10-03 | spec           | declined
            elsewhere | 2026-10-01 | spec           | accepted
            elsewhere | 2026-10-02 | multimorbidity | withdrawn
            kept      | 2026-09-01 | spec           | withdrawn
            kept      | 2026-10-01 | spec           | declined
        """},
        features="""
            any: reviewed()
            declined: reviewed(decision == "declined", within=months(6))
            listings: count(reviews)
        """,
        expected="""
            patient   | any   | declined | listings
            ----------+-------+----------+---------
            withdrawn | false | false    | 0
            redecided | true  | true     | 1
            elsewhere | true  | false    | 1
            kept      | true  | true     | 1
            none      | false | false    | 0
        """)
