"""Aggregations, windows, attributes and population ranks: the semantics pinned in
engines/duckdb_sql.py, each a small table with expected values, on every engine."""
from __future__ import annotations

import pytest

from spec_helpers import ENGINES, evaluate_case, patient, same

N = None
AS_OF = "2026-10-31"


def act(pid, start, setting="ae", cost=None, end=None, diag=None):
    return (pid, start, end, setting, cost, diag, None, None)


CASES = {
    "window edges: (D-12m, D] includes D and excludes D-12m": dict(
        tables={"patients": [patient("a")], "activity": [
            act("a", "2025-10-31"), act("a", "2025-11-01"), act("a", "2026-10-31"), act("a", "2026-11-01")]},
        features="  n: count(activity, within=months(12))\n  all: count(activity)\n",
        expected={"a": {"n": 2, "all": 3}}),
    "between=(12m, 6m) and within=6m partition the year": dict(
        tables={"patients": [patient("a")], "activity": [
            act("a", "2025-11-01"), act("a", "2026-04-30"), act("a", "2026-05-01"), act("a", "2026-10-31")]},
        features="  prior: count(activity, between=(months(12), months(6)))\n"
                 "  recent: count(activity, within=months(6))\n",
        expected={"a": {"prior": 2, "recent": 2}}),
    "month arithmetic clamps to the month end": dict(
        tables={"patients": [patient("a")], "activity": [act("a", "2026-02-28"), act("a", "2026-03-01")]},
        features="  n: count(activity, within=months(1))\n", as_of="2026-03-31",
        expected={"a": {"n": 1}}),
    "empty aggregations: 0, false, or missing": dict(
        tables={"patients": [patient("a")]},
        features="  c: count(activity)\n  e: exists(activity)\n  s: sum(activity.cost)\n"
                 "  m: mean(activity.cost)\n  l: last(activity.start_date)\n  d: days_since(activity)\n",
        expected={"a": {"c": 0, "e": False, "s": 0, "m": None, "l": None, "d": None}}),
    "missing costs are skipped; duplicates on one day both count": dict(
        tables={"patients": [patient("a")], "activity": [
            act("a", "2026-01-01", cost="100"), act("a", "2026-01-01", cost="300"), act("a", "2026-01-02")]},
        features="  n: count(activity)\n  s: sum(activity.cost)\n  m: mean(activity.cost)\n"
                 "  lo: min(activity.cost)\n  f: first(activity.cost)\n  l: last(activity.start_date)\n",
        expected={"a": {"n": 3, "s": 400.0, "m": 200.0, "lo": 100.0, "f": 100.0, "l": "2026-01-02"}}),
    "age at birthdays, including 29 February": dict(
        tables={"patients": [patient("leap", birth="2000-02-29"), patient("eve", birth="1961-03-01"),
                             patient("day", birth="1961-02-28")]},
        features="  age_now: age\n  age_mar1: age at date(\"2025-03-01\")\n", as_of="2025-02-28",
        expected={"leap": {"age_now": 24, "age_mar1": 25}, "eve": {"age_now": 63, "age_mar1": 64},
                  "day": {"age_now": 64, "age_mar1": 64}}),
    "registered and alive at as_of": dict(
        tables={"patients": [patient("ok"), patient("left", reg_end="2026-06-01"),
                             patient("died", death="2026-10-31"), patient("later", reg_start="2026-11-01")]},
        features="  r: registered\n  al: alive\n",
        expected={"ok": {"r": True, "al": True}, "left": {"r": False, "al": True},
                  "died": {"r": True, "al": False}, "later": {"r": False, "al": True}}),
    "events after as_of are invisible, also to at": dict(
        tables={"patients": [patient("a")], "activity": [act("a", "2026-03-01"), act("a", "2026-09-01")]},
        features="  n: count(activity)\n  then: n at as_of - months(6)\n",
        expected={"a": {"n": 2, "then": 1}}),
    "a missing value compared is false, and not of it is true": dict(
        tables={"patients": [patient("a")]},
        features="  m: mean(activity.cost)\n  gt: m > 1\n  ngt: not (m > 1)\n",
        expected={"a": {"m": None, "gt": False, "ngt": True}}),
    "trend: slope of monthly counts; 0 with fewer than two busy months": dict(
        tables={"patients": [patient("up"), patient("one")], "activity": [
            act("up", "2026-08-15"), act("up", "2026-09-15"), act("up", "2026-09-16"),
            act("up", "2026-10-15"), act("up", "2026-10-16"), act("up", "2026-10-17"),
            act("one", "2026-10-01"), act("one", "2026-10-02")]},
        features="  t: trend(activity, over=months(3))\n",
        expected={"up": {"t": 1.0}, "one": {"t": 0.0}}),
    "percentile and top within the population": dict(
        tables={"patients": [patient(p) for p in "abcd"] + [patient("kid", birth="2020-01-01")],
                "activity": [act("a", "2026-01-01")] * 3 + [act("b", "2026-01-01")] * 2
                + [act("c", "2026-01-01")] + [act("kid", "2026-01-01")] * 9},
        features="  n: count(activity)\n  p: percentile(n)\n  t: top(n, 25%)\n",
        population="age >= 18",
        expected={"a": {"p": 75.0, "t": True}, "b": {"p": 50.0, "t": False}, "c": {"p": 25.0, "t": False},
                  "d": {"p": 0.0, "t": False}}),
    "active register: started on or before as_of, not ended before it": dict(
        tables={"patients": [patient(p) for p in "abcd"], "registers": [
            ("a", "case_management", "2026-01-01", N), ("b", "case_management", "2026-01-01", "2026-10-31"),
            ("c", "case_management", "2026-01-01", "2026-10-30"), ("d", "case_management", "2026-11-01", N)]},
        features="  cm: exists(registers, register == \"case_management\", active)\n",
        expected={"a": {"cm": True}, "b": {"cm": True}, "c": {"cm": False}, "d": {"cm": False}}),
    "value= computes per row: length of stay from two dates, a missing end skipped": dict(
        tables={"patients": [patient("a")], "activity": [
            act("a", "2026-01-01", "emergency_admission", end="2026-01-05"),
            act("a", "2026-02-01", "emergency_admission", end="2026-02-01"),
            act("a", "2026-03-01", "emergency_admission"), act("a", "2026-04-01", "ae", end="2026-04-03")]},
        features="  bed_days: sum(activity, setting == \"emergency_admission\", value=days_between(start_date, end_date))\n"
                 "  los: mean(activity, setting == \"emergency_admission\", value=days_between(start_date, end_date))\n"
                 "  longest: max(activity, value=days_between(start_date, end_date) * 2)\n",
        expected={"a": {"bed_days": 4, "los": 2.0, "longest": 8}}),
}


CODELIST_CASES = {
    "a code in two categories counts for both; categories versus codes": dict(
        tables={"patients": [patient("a"), patient("b")], "diagnoses": [
            ("a", "2020-01-01", "snomed", "111", None), ("a", "2021-01-01", "snomed", "222", None),
            ("a", "2022-01-01", "snomed", "222", None), ("b", "2020-01-01", "snomed", "333", None)]},
        codelists="  groups: {file: groups.csv}\n",
        csv="code,system,category,weight\n111,snomed,heart,2\n222,snomed,heart,5\n222,snomed,lung,1\n333,snomed,lung,1\n",
        features="  cats: count_distinct(diagnoses.category, codelist=groups)\n"
                 "  codes: count_distinct(diagnoses.code, codelist=groups)\n"
                 "  rows: count(diagnoses, codelist=groups)\n"
                 "  points: score(diagnoses, codelist=groups)\n",
        expected={"a": {"cats": 2, "codes": 2, "rows": 3, "points": 6.0},   # heart max(2,5) + lung 1
                  "b": {"cats": 1, "codes": 1, "rows": 1, "points": 1.0}}),
    "missing end dates and costs: spells still count, sums skip them": dict(
        tables={"patients": [patient("a")], "activity": [
            act("a", "2026-01-01", "emergency_admission", cost=None, end=None),
            act("a", "2026-02-01", "emergency_admission", cost="1000", end="2026-02-05")]},
        features="  n: count(activity, setting == \"emergency_admission\")\n"
                 "  ended: count(activity, end_date >= date(\"2026-01-01\"))\n"
                 "  s: sum(activity.cost)\n  latest_end: max(activity.end_date)\n",
        expected={"a": {"n": 2, "ended": 1, "s": 1000.0, "latest_end": "2026-02-05"}}),
}


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("name", list(CODELIST_CASES))
def test_spec_codelists(tmp_path, engine, name):
    case = CODELIST_CASES[name]
    if "csv" in case:
        (tmp_path / "groups.csv").write_text(case["csv"])
    got = evaluate_case(tmp_path, engine, case["tables"], case["features"], AS_OF, codelists=case.get("codelists", ""))
    for pid, expected in case["expected"].items():
        for feature, value in expected.items():
            assert same(got[pid][feature], value), (pid, feature, got[pid][feature], value)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("name", list(CASES))
def test_spec(tmp_path, engine, name):
    case = CASES[name]
    got = evaluate_case(tmp_path, engine, case["tables"], case["features"], case.get("as_of", AS_OF),
                        population=case.get("population"))
    for pid, expected in case["expected"].items():
        for feature, value in expected.items():
            assert same(got[pid][feature], value), (pid, feature, got[pid][feature], value)
