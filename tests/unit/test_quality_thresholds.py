"""--fail-on: the grammar (good rules parse to what they say, bad ones are usage errors naming
the option) and the evaluation against a report."""
from __future__ import annotations

import pytest

from casefind.errors import EXIT_USAGE, UsageError
from casefind.quality.thresholds import describe, evaluate, parse


@pytest.mark.parametrize("text, metric, table, column, op, value", [
    ("completeness<0.95", "completeness", None, None, "<", 0.95),
    ("completeness < 95%", "completeness", None, None, "<", 0.95),
    ("completeness:activity.cost<=0.99", "completeness", "activity", "cost", "<=", 0.99),
    ("gaps>0", "gaps", None, None, ">", 0),
    ("gaps:activity>=2", "gaps", "activity", None, ">=", 2),
    ("unknown_codes>0.01", "unknown_codes", None, None, ">", 0.01),
    ("unknown_codes:diagnoses>1%", "unknown_codes", "diagnoses", None, ">", 0.01),
    ("malformed_codes>0", "malformed_codes", None, None, ">", 0),
    ("implausible>0", "implausible", None, None, ">", 0),
    ("quarantined>.5%", "quarantined", None, None, ">", 0.005),
    ("rows_change<-10%", "rows_change", None, None, "<", -0.1),
    ("rows_change:activity<-0.05", "rows_change", "activity", None, "<", -0.05),
])
def test_good_rules_parse(text, metric, table, column, op, value):
    rule = parse(text)
    assert (rule.metric, rule.table, rule.column, rule.op) == (metric, table, column, op)
    assert rule.value == pytest.approx(value)


@pytest.mark.parametrize("text, says", [
    ("", "is not a threshold"),
    ("gaps", "is not a threshold"),
    ("gaps=0", "is not a threshold"),
    ("gaps>>0", "is not a threshold"),
    ("gaps>zero", "is not a threshold"),
    ("Completeness<0.9", "is not a threshold"),
    ("completness<0.9", "unknown metric"),
    ("gaps>-1", "count of findings"),
    ("implausible>5%", "count of findings"),
    ("completeness<1.2", "share from 0 to 1"),
    ("unknown_codes>150%", "share from 0 to 1"),
    ("gaps:nosuch>0", "has no table"),
    ("unknown_codes:patients>0", "has no table"),
    ("gaps:activity.cost>0", "only completeness takes a column"),
    ("completeness:activity.nosuch<0.9", "not measured"),
    ("completeness:patients.death_date<0.9", "not measured"),
    ("gaps>0; rm -rf /", "is not a threshold"),
])
def test_bad_rules_are_usage_errors_naming_the_option(text, says):
    with pytest.raises(UsageError) as e:
        parse(text)
    assert e.value.exit_code == EXIT_USAGE and e.value.option == "--fail-on"
    assert e.value.message.startswith("--fail-on: ") and says in e.value.message
    assert e.value.hint


def _report(**tables) -> dict:
    base = {"completeness": {}, "quarantined": {"share": 0.0}}
    return {"tables": {n: {**base, **t} for n, t in tables.items()}, "gaps": [], "implausible": [], "trend": None}


REPORT = _report(
    activity={"completeness": {"cost": {"share": 0.99}, "provider_code": {"share": 0.5}, "end_date": {"share": None}},
              "codes": {"unknown_share": 0.02, "malformed_share": 0.0}, "quarantined": {"share": 0.001}},
    diagnoses={"completeness": {"source": {"share": 1.0}}, "codes": {"unknown_share": 0.0, "malformed_share": 0.0}},
)
REPORT["gaps"] = [{"table": "activity"}, {"table": "activity"}]
REPORT["implausible"] = [{"table": "activity", "rows": 7}]


@pytest.mark.parametrize("text, crossed, where", [
    ("completeness<0.95", True, ["activity.provider_code"]),
    ("completeness<0.995", True, ["activity.cost", "activity.provider_code"]),
    ("completeness<0.4", False, []),
    ("completeness:activity.cost<0.99", False, []),
    ("completeness:activity.cost<=0.99", True, ["activity.cost"]),
    ("completeness:diagnoses<1", False, []),
    ("gaps>0", True, ["all tables"]),
    ("gaps>2", False, []),
    ("gaps:diagnoses>0", False, []),
    ("gaps:activity>=2", True, ["activity"]),
    ("implausible>6", True, ["all tables"]),
    ("implausible>7", False, []),
    ("unknown_codes>0.01", True, ["activity"]),
    ("unknown_codes:diagnoses>0", False, []),
    ("malformed_codes>0", False, []),
    ("quarantined>0", True, ["activity"]),
])
def test_evaluate(text, crossed, where):
    [result] = evaluate([parse(text)], REPORT)
    assert result["crossed"] is crossed
    assert [w["where"] for w in result["where"]] == where


def test_rows_change_reads_the_trend():
    report = {**REPORT, "trend": {"tables": [{"table": "activity", "change_share": -0.2},
                                             {"table": "diagnoses", "change_share": None}]}}
    assert evaluate([parse("rows_change<-0.1")], report)[0]["crossed"]
    assert not evaluate([parse("rows_change<-0.3")], report)[0]["crossed"]
    assert not evaluate([parse("rows_change<-0.1")], REPORT)[0]["crossed"]  # no trend: nothing to cross


def test_describe_lists_what_crossed_which_threshold():
    results = evaluate([parse("completeness<0.95"), parse("gaps>0"), parse("gaps>5")], REPORT)
    text = describe(results)
    assert text == "completeness<0.95 (activity.provider_code 0.5); gaps>0 (all tables 2)"
