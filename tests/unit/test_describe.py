"""The words casefind describe gives each construct of the rules language (describe/words.py),
table-driven: each expression is compiled as a feature of a small rule, then worded."""
from __future__ import annotations

import dataclasses
import textwrap

import pytest

from casefind.describe.words import UnwordedNode, Words, method_name, months_days, number, window_words
from casefind.rules import ir
from casefind.rules.compile import compile_rule

AS = "the list date"
ACTIVITY = "activity records (contacts, attendances and hospital spells)"


def _rule(tmp_path, features: dict[str, str], name: str = "t") -> object:
    (tmp_path / "w.csv").write_text("code,system,category,weight\nI50*,icd10,hf,1.5\nK70*,icd10,liver,2\n"
                                    "K72*,icd10,severe_liver,3\n")
    lines = "\n".join(f"  {k}: {v!r}" if "'" not in v else f'  {k}: "{v}"' for k, v in features.items())
    (tmp_path / f"{name}.yml").write_text(textwrap.dedent(f"""\
        rule: {name}
        title: T
        version: 1.0.0
        as_of: "2026-10-31"
        parameters:
          k: 3
        population: registered
        codelists:
          c: {{system: snomed, codes: ["1912002"]}}
          d: {{system: icd10, prefixes: ["I50"]}}
          w: w.csv
        features:
        """) + lines + "\n")
    return compile_rule(tmp_path / f"{name}.yml")


def _words(tmp_path, expr: str, **others: str) -> str:
    rule = _rule(tmp_path, {**others, "x": expr})
    names: dict[ir.Node, str] = {}
    for k, n in rule.features.items():
        names.setdefault(n, k)
    return Words(names).of(rule.features["x"], top=True)


CASES = [
    # the brief's own example
    ('count(activity, setting == "emergency_admission", within=months(12)) >= 3',
     f"3 or more emergency admissions in the 12 months before {AS}"),
    ('count(activity, setting == "ae", within=months(6)) > 2',
     f"more than 2 A&E attendances in the 6 months before {AS}"),
    ('count(activity, setting == "gp") <= 4', f"at most 4 GP appointments at any time up to {AS}"),
    ('count(activity, setting == "outpatient") < 4', f"fewer than 4 outpatient attendances at any time up to {AS}"),
    ('count(activity, setting == "gp") == 0', f"exactly 0 GP appointments at any time up to {AS}"),
    ('count(activity, setting == "gp") != 0', f"other than 0 GP appointments at any time up to {AS}"),
    ('count(activity, setting in ("ae", "emergency_admission"), between=(months(12), months(6)))',
     f"the number of A&E attendances or emergency admissions from 12 months to 6 months before {AS}"),
    ('count(activity, within=days(10))', f"the number of {ACTIVITY} in the 10 days before {AS}"),
    ('count(activity, setting == "ae", cost > 100, within=months(1))',
     f"the number of A&E attendances where cost is more than 100, in the 1 month before {AS}"),
    ('exists(registers, register == "palliative_care", active)', f"on the palliative care register on {AS}"),
    ('exists(registers, active)', f"has a register entry active on {AS} (started by then and not ended before it)"),
    ('exists(diagnoses, codelist=c)', f"has a diagnosis coded in codelist `c` at any time up to {AS}"),
    ('exists(activity, setting == "emergency_admission")', f"has an emergency admission at any time up to {AS}"),
    ('exists(diagnoses, source == "acute", codelist=d)',
     f"has a diagnosis coded in codelist `d` where source is “acute”, at any time up to {AS}"),
    ('sum(activity.cost, within=months(12))', f"the total cost of {ACTIVITY} in the 12 months before {AS}"),
    ('mean(activity.cost)', f"the mean cost of {ACTIVITY} at any time up to {AS}"),
    ('median(observations.value)', f"the median value of observations at any time up to {AS}"),
    ('min(activity.cost)', f"the smallest cost of {ACTIVITY} at any time up to {AS}"),
    ('max(activity.start_date, setting == "ae")', f"the largest start date of A&E attendances at any time up to {AS}"),
    ('first(activity.start_date, setting == "gp")',
     f"the start date of the earliest GP appointment at any time up to {AS}"),
    ('last(activity.start_date, setting == "emergency_admission")',
     f"the start date of the latest emergency admission at any time up to {AS}"),
    ('days_since(activity, setting == "emergency_admission")',
     f"the days since the latest emergency admission at any time up to {AS}"),
    ('count_distinct(medications.code, within=months(12))',
     f"the number of different codes among medicine issues in the 12 months before {AS}"),
    ('count_distinct(diagnoses.category, codelist=w)',
     "the number of different categories of codelist `w` among diagnoses coded in codelist `w` "
     f"at any time up to {AS}"),
    ('score(diagnoses, codelist=w, hierarchy=(severe_liver > liver))',
     "the sum of the weights in codelist `w` of each category found, each category counted once, among diagnoses "
     f"coded in codelist `w` at any time up to {AS} (when both of a pair are found only the higher counts: "
     "severe_liver over liver)"),
    ('trend(activity, setting == "ae", per=month, over=months(6))',
     f"the trend (least-squares slope per month) of the monthly number of A&E attendances, over the last 6 whole "
     f"months up to {AS}"),
    ('trend(activity.cost, over=months(3))',
     f"the trend (least-squares slope per month) of the monthly total cost of {ACTIVITY}, over the last 3 whole "
     f"months up to {AS}"),
    ('count(procedures)', f"the number of hospital procedures at any time up to {AS}"),
    ('count(experience)', f"the number of patient-reported measures at any time up to {AS}"),
    ('count(activity, spell_has(diagnoses, position == 1, codelist=d))',
     f"the number of {ACTIVITY} belonging to a hospital spell that has diagnoses coded in codelist `d` where "
     f"position is 1 at any time up to {AS}"),
    ('reviewed(decision == "declined", within=months(6))',
     f"has a decision a clinician recorded on the t list (declined) in the 6 months before {AS}"),
    ('reviewed(rule in ("frail", "hfrs"))',
     f"has a decision a clinician recorded on the frail or hfrs lists at any time up to {AS}"),
    # patients, values and operators
    ("age >= 65", "aged 65 or over"), ("age > 80", "older than 80"), ("age <= 5", "aged 5 or under"),
    ("age < 18", "younger than 18"), ("age == 50", "aged 50"), ("age != 50", "not aged 50"),
    ("age >= k", "aged `k` (3) or over"),
    ("registered and alive", f"registered with a GP practice on {AS} and alive on {AS}"),
    ("age > 80 or (registered and alive)",
     f"older than 80 or (registered with a GP practice on {AS} and alive on {AS})"),
    ("not registered", f"not (registered with a GP practice on {AS})"),
    ("registered == true", f"registered with a GP practice on {AS}"),
    ("registered == false", f"not registered with a GP practice on {AS}"),
    ('sex == "F"', "sex is “F”"), ('sex != "F"', "sex is not “F”"), ('sex in ("F", "U")', "sex is one of “F”, “U”"),
    ('imd_decile > 2', "deprivation decile (IMD, 1 most deprived) is more than 2"),
    ('birth_date < date("1950-01-01")', "date of birth is before 1 Jan 1950"),
    ('death_date >= as_of - months(6)', f"date of death is on or after 6 months before {AS}"),
    ('registration_start <= birth_date + days(3)',
     "registration start date is on or before 3 days after date of birth"),
    ("registration_end > as_of - months(1) - days(2)",
     f"registration end date is after 2 days before 1 month before {AS}"),
    ("-age", "minus age (whole years)"),
    ("age + 1", "age (whole years) plus 1"), ("age - 1", "age (whole years) minus 1"),
    ("age * 2", "age (whole years) times 2"), ("age / 2", "age (whole years) divided by 2"),
    ("(age + 1) * 2", "(age (whole years) plus 1) times 2"), ("age * 2 + 1", "(age (whole years) times 2) plus 1"),
    ("age + 1 + 2", "age (whole years) plus 1 plus 2"),
    ("logistic(age)", "the logistic function (1 / (1 + e^−x)) of age (whole years)"),
    ("exp(age)", "e to the power of age (whole years)"), ("log(age)", "the natural logarithm of age (whole years)"),
    ("abs(age)", "the absolute value of age (whole years)"),
    ("round(age / 3)", "(age (whole years) divided by 3) rounded to a whole number"),
    ("min(age, 3)", "the smallest of age (whole years) and 3"),
    ("max(age, 3, 4)", "the largest of age (whole years), 3 and 4"),
    ("days_between(birth_date, as_of)", f"the days from date of birth to {AS}"),
    ("weekday(as_of)", f"the day of the week of {AS} (1 Monday to 7 Sunday)"),
    ('case(age > 80, "old", "young")', "if older than 80, “old”; otherwise “young”"),
    ('case(age > 80, "old", age > 60, "older")',
     "if older than 80, “old”; else if older than 60, “older”; otherwise missing"),
    ("case(age > 80, 1, 0) + case(registered, 1, 0) + case(alive, 1, 0)",
     f"how many of these 3 are true: older than 80, registered with a GP practice on {AS}, alive on {AS}"),
    ("age + case(registered, 1, 0)",
     f"age (whole years) plus (if registered with a GP practice on {AS}, 1; otherwise 0)"),
    ("case(age == age, age, 40)", "age (whole years) (or 40 when it is missing)"),  # model()'s imputation
    ("case(age == age, age)", "if age (whole years) is age (whole years), age (whole years); otherwise missing"),
    ("true", "true"), ("2.5", "2.5"), ('"text"', "“text”"),
    ("percentile(age)", "the percentile (0-100) of age (whole years) within the rule's population"),
    ("top(age, 2%)", "in the top 2% of the rule's population by age (whole years)"),
    ("top(age, 0.5%)", "in the top 0.5% of the rule's population by age (whole years)"),
]


@pytest.mark.parametrize("expr, expected", CASES, ids=[c[0][:60] for c in CASES])
def test_words_of_each_construct(tmp_path, expr, expected):
    assert _words(tmp_path, expr) == expected


@pytest.mark.parametrize("others, expr, expected", [
    ({"e": 'count(activity, setting == "emergency_admission", within=months(12))'}, "e >= 1", "`e` is at least 1"),
    ({"e": 'count(activity, setting == "emergency_admission", within=months(12))'}, "e at as_of - months(6)",
     f"`e` as it was 6 months before {AS}"),
    ({"e": 'count(activity, setting == "ae")'}, 'e at date("2026-01-01")', "`e` as it was on 1 Jan 2026"),
    ({"d1": 'last(diagnoses.date, codelist=c)', "d2": 'last(diagnoses.date, codelist=d)'}, "not (d2 >= d1)",
     "not (`d2` is on or after `d1`)"),
    ({"a": "age > 80", "b": "age < 90"}, "a and b", "`a` and `b`"),
    ({"a": "registered"}, "a and alive",
     f"registered with a GP practice on {AS} and alive on {AS}"),  # an attribute stays words
    ({"a": "age + 1"}, "a * 2", "`a` times 2"),
])
def test_features_are_named_not_spelled_out(tmp_path, others, expr, expected):
    assert _words(tmp_path, expr, **others) == expected


def _concrete_node_classes() -> list[type]:
    """Every class of casefind.rules.ir a rule can be compiled to: the leaves of Node."""
    out, stack = [], [ir.Node]
    while stack:
        cls = stack.pop()
        subs = [s for s in cls.__subclasses__() if s.__module__ == ir.__name__]
        if not subs and not cls.__name__.startswith("_") and cls is not ir.Node:
            out.append(cls)
        stack.extend(subs)
    return out


def test_every_ir_node_class_has_words():
    classes = _concrete_node_classes()
    assert len(classes) >= 50  # the walk found the IR (a broken walk would pass vacuously)
    missing = [c.__name__ for c in classes if not callable(getattr(Words, method_name(c), None))]
    assert missing == [], f"casefind.describe.words has no words for {missing}: add <classname>_words"


def test_an_unknown_node_class_fails_loudly():
    @dataclasses.dataclass(frozen=True)
    class Telepathy(ir.Node):
        type: ir.T = ir.T.BOOL
        domain: ir.Domain = ir.PATIENT

    with pytest.raises(UnwordedNode, match="Telepathy"):
        Words().of(Telepathy())


def test_nodes_a_rule_never_names_directly():
    cl = ir.Codelist("w", "icd10", prefixes=("I50",), categories=("hf",), weights=(1.5,))
    code = ir.Column("diagnoses", "code", ir.T.CODE)
    assert Words().of(ir.WeightOf(cl, code)) == "weight in codelist `w`"
    assert Words().of(ir.CategoryOf(cl, code)) == "categories of codelist `w`"
    assert Words().of(ir.InCodelist(code, cl)) == "coded in codelist `w`"
    assert Words().of(ir.Param("k", 3, ir.T.INT)) == "`k` (3)"
    assert Words().of(ir.Const(dt_date(), ir.T.DATE)) == "1 Apr 2026"


def dt_date():
    import datetime as dt

    return dt.date(2026, 4, 1)


@pytest.mark.parametrize("value, text", [
    (True, "true"), (False, "false"), (5, "5"), (12_345, "12,345"), (0.25, "0.25"), (1e16, "10,000,000,000,000,000"),
    ("F", "“F”"), (None, "None"),
])
def test_numbers_and_values(value, text):
    assert number(value) == text


@pytest.mark.parametrize("window, text", [
    (ir.Ever(), f"at any time up to {AS}"),
    (ir.Range((12, 0)), f"in the 12 months before {AS}"),
    (ir.Range((1, 0)), f"in the 1 month before {AS}"),
    (ir.Range((0, 1)), f"in the 1 day before {AS}"),
    (ir.Range((1, 5), (0, 3)), f"from 1 month and 5 days to 3 days before {AS}"),
    (ir.Active(), f"active on {AS} (started by then and not ended before it)"),
])
def test_windows(window, text):
    assert window_words(window) == text


def test_an_unknown_window_fails_loudly():
    class Someday(ir.Window):
        kind = "someday"

    with pytest.raises(UnwordedNode, match="Someday"):
        window_words(Someday())


def test_months_days():
    assert months_days((0, 0)) == "0 days"
    assert months_days((2, 1)) == "2 months and 1 day"
