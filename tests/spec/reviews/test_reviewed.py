"""`reviewed(filter..., window)` is true when a clinician recorded a decision on this rule's
list for the patient, in the window: a listing is not a decision, and decisions after the
evaluation date are invisible. A filter that names `rule` chooses the rules itself. (The
spec rule is named `spec`, so its own decisions are rule `spec`.)"""

title = "reviewed()"


def test_declined_within_6_months_and_decisions_after_d_invisible(spec_test):
    """(D−6m, D]: a decision on D−6m is outside, one on D inside, one after D unseen."""
    spec_test(
        tables={"reviews": """
            patient | date       | rule | decision
            --------+------------+------+---------
            in      | 2026-05-01 | spec | declined
            edge    | 2026-04-30 | spec | declined
            today   | 2026-10-31 | spec | declined
            later   | 2026-11-01 | spec | declined
        """},
        features='d: reviewed(decision == "declined", within=months(6))',
        expected="""
            patient | d
            --------+------
            in      | true
            edge    | false
            today   | true
            later   | false
            none    | false
        """)


def test_only_this_rules_decisions_and_a_listing_is_not_a_decision(spec_test):
    """Another rule's decision and a mere listing do not count."""
    spec_test(
        tables={"reviews": """
            patient | date       | rule           | decision
            --------+------------+----------------+---------
            other   | 2026-10-01 | multimorbidity | declined
            listed  | 2026-10-01 | spec           | listed
            mine    | 2026-10-01 | spec           | accepted
        """},
        features="""
            any: reviewed()
            recent: reviewed(within=months(1))
        """,
        expected="""
            patient | any   | recent
            --------+-------+-------
            other   | false | false
            listed  | false | false
            mine    | true  | true
        """)


def test_a_filter_naming_rule_chooses_the_rules_itself(spec_test):
    """`rule == "multimorbidity"` reads that rule's decisions; `rule != ""` any rule's."""
    spec_test(
        tables={"reviews": """
            patient | date       | rule           | decision
            --------+------------+----------------+---------
            other   | 2026-10-01 | multimorbidity | declined
            mine    | 2026-10-01 | spec           | declined
        """},
        features="""
            elsewhere: reviewed(rule == "multimorbidity")
            declined_anywhere: reviewed(rule != "", decision == "declined")
        """,
        expected="""
            patient | elsewhere | declined_anywhere
            --------+-----------+------------------
            other   | true      | true
            mine    | false     | true
        """)


def test_decisions_for_patients_not_in_the_snapshot_are_left_out(spec_test):
    """A decision about a patient the store does not hold adds no one."""
    spec_test(
        tables={
            "patients": """
                patient | birth_date
                --------+-----------
                a       | 1950-01-01
            """,
            "reviews": """
                patient | date       | rule | decision
                --------+------------+------+---------
                a       | 2026-10-01 | spec | declined
                gone    | 2026-10-01 | spec | declined
            """},
        features="d: reviewed()",
        expected="""
            patient | d
            --------+-----
            a       | true
        """)
