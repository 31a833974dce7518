"""reviewed(...) and the reviews table: clinicians' decisions read by the rules language,
each case on every engine. The spec rule is named 'spec', so its own decisions are rule 'spec'."""
from __future__ import annotations

import pytest

from spec_helpers import ENGINES, evaluate_case, patient, same

AS_OF = "2026-10-31"

CASES = {
    "declined within 6 months: (D-6m, D], decisions after D invisible": dict(
        reviews=[("in", "2026-05-01", "spec", "declined"), ("edge", "2026-04-30", "spec", "declined"),
                 ("today", "2026-10-31", "spec", "declined"), ("later", "2026-11-01", "spec", "declined")],
        features='  d: reviewed(decision == "declined", within=months(6))\n',
        expected={"in": {"d": True}, "edge": {"d": False}, "today": {"d": True}, "later": {"d": False},
                  "none": {"d": False}}),
    "only this rule's decisions, and a listing is not a decision": dict(
        reviews=[("other", "2026-10-01", "multimorbidity", "declined"), ("listed", "2026-10-01", "spec", "listed"),
                 ("mine", "2026-10-01", "spec", "accepted")],
        features="  any: reviewed()\n  recent: reviewed(within=months(1))\n",
        expected={"other": {"any": False}, "listed": {"any": False}, "mine": {"any": True, "recent": True}}),
    "a filter naming rule chooses the rules itself": dict(
        reviews=[("other", "2026-10-01", "multimorbidity", "declined"), ("mine", "2026-10-01", "spec", "declined")],
        features='  elsewhere: reviewed(rule == "multimorbidity")\n'
                 '  declined_anywhere: reviewed(rule != "", decision == "declined")\n',
        expected={"other": {"elsewhere": True, "declined_anywhere": True},
                  "mine": {"elsewhere": False, "declined_anywhere": True}}),
    "the reviews table aggregates like any other: listings, counts, last decision date": dict(
        reviews=[("in", "2026-01-31", "spec", "listed", "r1"), ("in", "2026-02-28", "spec", "listed", "r2"),
                 ("in", "2026-03-10", "spec", "accepted", "r2"), ("in", "2026-03-10", "spec", "accepted", "r3")],
        features='  times_listed: count(reviews, decision == "listed")\n'
                 '  accepted_on: last(reviews.date, decision == "accepted")\n'
                 '  decided: count(reviews, decision in ("accepted", "declined"))\n',
        expected={"in": {"times_listed": 2, "accepted_on": "2026-03-10", "decided": 2},
                  "none": {"times_listed": 0, "accepted_on": None, "decided": 0}}),
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("name", list(CASES))
def test_reviews(tmp_path, engine, name):
    case = CASES[name]
    people = sorted({r[0] for r in case["reviews"]} | set(case["expected"]))
    got = evaluate_case(tmp_path, engine, {"patients": [patient(p) for p in people], "reviews": case["reviews"]},
                        case["features"], AS_OF)
    for pid, expected in case["expected"].items():
        for feature, value in expected.items():
            assert same(got[pid][feature], value), (pid, feature, got[pid][feature], value)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_decisions_for_patients_not_in_the_snapshot_are_left_out(tmp_path, engine):
    got = evaluate_case(tmp_path, engine, {"patients": [patient("a")], "reviews": [
        ("a", "2026-10-01", "spec", "declined"), ("gone", "2026-10-01", "spec", "declined")]},
        "  d: reviewed()\n", AS_OF)
    assert got == {"a": {"d": True}}
