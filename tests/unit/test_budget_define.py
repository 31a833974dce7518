"""Budget files: the shipped ones compile, every mistake is a RuleError at file:line:col with a
hint, and financial years read as the UK's (1 April to 31 March)."""
from __future__ import annotations

import datetime as dt

import pytest

from casefind.budgets.define import load_budget
from casefind.budgets.years import YearError, parse_year
from casefind.project import shipped_rules
from casefind.rules.errors import RuleError

SHIPPED = shipped_rules() / "budgets"
GOOD = 'budget: b\ncohort: {when: "age >= 18"}\ncategories:\n  old: {when: "age >= 65"}\n  rest: {}\n'


def test_the_ltc_year_of_care_file_states_its_method():
    s = load_budget(SHIPPED / "ltc_year_of_care.yml")
    assert s.rule_name == "multimorbidity" and s.baseline_year.label == "2025-26"
    assert (s.trim.above_percentile, s.trim.method, s.min_category_size, s.uplift) == (99.0, "cap", 30, 0.025)
    assert s.category_names()[:2] == ["4plus_mental", "4plus_physical"] and s.categories[-1].when is None
    assert s.profile == "baseline" and s.risk_share.bands[0].up_to == 0.02 and s.risk_share.bands[1].provider == 0.5
    assert [o.kpi for o in s.outcomes] == ["emergency_admissions"]
    assert set(s.services.exclude_funding) == {"block", "national", "out_of_area", "high_cost_low_volume"}


def test_the_lead_provider_file_has_the_published_tariffs():
    """"Lead-provider tariffs by need: low £70, medium £150, high £260 a year; long-term
    maintenance incentive £24 (6 sessions)." """
    s = load_budget(SHIPPED / "lead_provider.yml")
    assert {c.name: c.tariff for c in s.categories} == {"high": 260, "medium": 150, "low": 70}
    assert s.incentive.amount == 24 and not s.computed and s.profile == "flat"


@pytest.mark.parametrize("text, where, message, hint", [
    (GOOD.replace("categories", "categorise"), (3, 1), "unknown key 'categorise'", "categories"),
    (GOOD.replace("age >= 65", "agee >= 65"), (4, 15), "unknown name 'agee'", "age"),
    (GOOD.replace('cohort: {when: "age >= 18"}', "cohort: {}"), (2, 9), "needs a rule: or a when:", "rule"),
    (GOOD.replace("  rest: {}", '  rest: {when: "age < 65"}'), (5, 16), "takes everyone left", "when"),
    (GOOD.replace('  old: {when: "age >= 65"}', "  old: {}"), (4, 3), "has no when:", "last category"),
    (GOOD + "profile: lumpy\n", (6, 10), "profile 'lumpy'", None),
    (GOOD + "tariffs: {trim: {above_percentile: 101}}\n", (6, 36), "above_percentile must be", None),
    (GOOD + "tariffs: {baseline_year: 2025-27}\n", (6, 26), "baseline_year", "2025-26"),
    (GOOD + "services: {settings: [gp, spa]}\n", (6, 27), "'spa' is not one of", None),
    (GOOD + "services: {exclude_funding: [activity]}\n", (6, 29), "activity-funded", "exclude some"),
    (GOOD.replace("  rest: {}", "  rest: {merge_into: olde}"), (5, 22), "merge_into 'olde'", "old"),
    (GOOD + "risk_share: {bands: [{provider: 0.5}, {up_to: 0.02, provider: 1}]}\n", (6, 22), "bands run upwards",
     None),
    (GOOD + "outcomes: {x: {title: no kpi}}\n", (6, 12), "names its kpi", None),
    (GOOD.replace("cohort: {", "cohort: {rule: ../nope.yml, "), (2, 16), "no rule file", "path"),
    (GOOD.replace("cohort: {", "cohort: {list: frail, "), (2, 16), "list: names the list", "accepted_by_clinician"),
    (GOOD.replace("  old:", "  '2 old!':"), (4, 3), "category name", None),
    (GOOD.replace("budget: b", "title: no name"), (1, 1), "has no name", "budget:"),
    (GOOD + "tariffs: {incentive: {amount: 24}}\n", (6, 22), "amount: and when:", None),
])
def test_a_mistake_is_located_with_a_hint(tmp_path, text, where, message, hint):
    folder = tmp_path / "rules" / "budgets"
    folder.mkdir(parents=True)
    path = folder / "b.yml"
    path.write_text(text)
    with pytest.raises(RuleError) as e:
        load_budget(path)
    assert (e.value.span.line, e.value.span.col) == where, e.value.describe()
    assert message in e.value.message
    if hint:
        assert hint in (e.value.hint or "")
    assert e.value.describe().startswith(f"{path}:{where[0]}:{where[1]}: ")


def test_a_rules_features_are_usable_in_the_budget_file(tmp_path):
    (tmp_path / "r.yml").write_text('rule: r\nas_of: "2026-10-31"\nparameters: {n: 2}\nfeatures:\n'
                                    '  visits: count(activity, setting == "gp")\ncriteria:\n  include:\n'
                                    "    busy: visits >= n\n")
    folder = tmp_path / "budgets"
    folder.mkdir()
    (folder / "b.yml").write_text('budget: b\ncohort: {rule: ../r.yml}\ncategories:\n'
                                  '  busy: {when: "visits >= n + 3"}\n  rest: {}\n')
    s = load_budget(folder / "b.yml")
    assert s.rule_name == "r" and s.categories[0].when is not None


@pytest.mark.parametrize("text, start, end, days", [
    ("2026-27", dt.date(2026, 4, 1), dt.date(2027, 3, 31), 365),
    ("2027-28", dt.date(2027, 4, 1), dt.date(2028, 3, 31), 366),   # 29 February 2028
    ("2099-00", None, None, None),
    ("2026-28", None, None, None),
    ("26-27", None, None, None),
])
def test_financial_years(text, start, end, days):
    if start is None:
        with pytest.raises(YearError):
            parse_year(text)
        return
    y = parse_year(text)
    assert (y.start, y.end, y.days, y.label, str(y)) == (start, end, days, text, text)
    assert y.month_labels()[0] == f"{start.year}-04" and y.month_labels()[-1] == f"{end.year}-03"
    assert y.month_ends()[10].day in (28, 29) and y.previous().label == f"{start.year - 1}-{start.year % 100:02d}"
