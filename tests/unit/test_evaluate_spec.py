"""Evaluation specs: what they compile to, and each mistake as a RuleError at its line."""
from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from casefind.evaluate.spec import load_spec
from casefind.rules import ir
from casefind.rules.errors import RuleError

GOOD = """\
evaluation: cm
features:
  emergency_before: count(activity, setting == "emergency_admission", within=window)
group:
  register: case_management
  from: "2024-11-01"
  to: "2025-10-31"
window: 6
match:
  exact: [sex]
  features: [age, emergency_before]
outcomes:
  emergency: count(activity, setting == "emergency_admission", within=window)
  deaths: not alive
"""


def _write(tmp_path, text: str):
    p = tmp_path / "spec.yml"
    p.write_text(textwrap.dedent(text))
    return p


def test_good_spec_compiles_with_defaults(tmp_path):
    s = load_spec(_write(tmp_path, GOOD))
    assert (s.name, s.group_kind, s.group_label, s.window_months) == ("cm", "register", "case_management", 6)
    assert (s.first, s.last) == (dt.date(2024, 11, 1), dt.date(2025, 10, 31))
    m = s.matching
    assert (m.method, m.caliper, m.ratio, m.replacement, m.seed) == ("propensity", 0.2, 1, False, 1)
    assert [n for n, _ in m.exact] == ["sex"] and [n for n, _ in m.features] == ["age", "emergency_before"]
    assert [n for n, _ in s.outcomes] == ["emergency", "deaths"] and s.confidence == 0.95
    assert s.index_date.type is ir.T.DATE


@pytest.mark.parametrize("group, kind", [
    ("accepted: frail", "accepted"),
    ('date: first(registers.start_date, register == "virtual_ward")', "date"),
])
def test_group_kinds(tmp_path, group, kind):
    s = load_spec(_write(tmp_path, GOOD.replace("register: case_management", group)))
    assert s.group_kind == kind and s.index_date.type is ir.T.DATE


def _err(tmp_path, text: str) -> RuleError:
    with pytest.raises(RuleError) as e:
        load_spec(_write(tmp_path, text))
    return e.value


# (what is changed, to what, the line of the error, words in its message)
CASES = [
    ("evaluation: cm", "evaluation: Bad-Name", 1, "lower-case"),
    ("evaluation: cm", "title: no name", 1, "no name"),
    ("window: 6", "window: 0", 8, "window is a whole number"),
    ("window: 6", "window: twelve", 8, "window is a whole number"),
    ("window: 6", "windows: 6", 8, "unknown key 'windows'"),
    ("  register: case_management", "  register: case_management\n  accepted: frail", 5, "exactly one of"),
    ("  register: case_management", "  register: case management", 5, "is not a name"),
    ("  register: case_management", "  date: age", 5, "one date per patient"),
    ('  from: "2024-11-01"', '  from: "2024-13-01"', 6, "is not a date"),
    ('  to: "2025-10-31"', '  to: "2023-10-31"', 7, "is before from"),
    ('  to: "2025-10-31"\n', "", 4, "no to: date"),
    ("  features: [age, emergency_before]", "  features: [age, sex]", 11, "exact:"),
    ("  features: [age, emergency_before]", "  features: age", 11, "must be a list"),
    ("  features: [age, emergency_before]", "  features: [age, age]", 11, "twice"),
    ("  features: [age, emergency_before]", "  features: [agee]", 11, "agee"),
    ("  features: [age, emergency_before]\n", "", 9, "needs features"),
    ("  exact: [sex]", "  exact: [sex]\n  method: exact", 11, "method 'exact'"),
    ("  exact: [sex]", "  exact: [sex]\n  caliper: -1", 11, "caliper"),
    ("  exact: [sex]", "  exact: [sex]\n  ratio: 11", 11, "ratio"),
    ("  exact: [sex]", "  exact: [sex]\n  replacement: maybe", 11, "true or false"),
    ("  exact: [sex]", "  exact: [sex]\n  seed: -2", 11, "seed"),
    ("  exact: [sex]", "  exact: [sex]\n  calliper: 1", 11, "did you mean"),
    ("  deaths: not alive", '  deaths: sex', 14, "number or true/false"),
    ("  deaths: not alive", '  9lives: alive', 14, "not a name"),
    ("outcomes:\n  emergency: count(activity, setting == \"emergency_admission\", within=window)\n"
     "  deaths: not alive\n", "outcomes: []\n", 12, "mapping of name: expression"),
    ("window: 6", "window: 6\nconfidence: 2", 9, "confidence"),
    ("window: 6", "window: 6\neligible: age", 9, "true/false"),
    ("window: 6", "window: 6\nperiod: 1", 9, "unknown key 'period'"),
]


@pytest.mark.parametrize("old, new, line, words", CASES)
def test_mistakes_are_located(tmp_path, old, new, line, words):
    assert old in GOOD
    e = _err(tmp_path, GOOD.replace(old, new, 1))
    assert words.lower() in str(e).lower() + (e.hint or "").lower(), str(e)
    assert e.span.line == line, str(e)


@pytest.mark.parametrize("missing", ["group", "match", "outcomes"])
def test_required_sections(tmp_path, missing):
    text = GOOD.replace(f"{missing}:", f"{missing}_gone:")
    e = _err(tmp_path, text)
    assert "unknown key" in str(e) or f"no {missing}" in str(e)


def test_group_must_be_a_mapping(tmp_path):
    group = 'group:\n  register: case_management\n  from: "2024-11-01"\n  to: "2025-10-31"\n'
    e = _err(tmp_path, GOOD.replace(group, "group: case_management\n"))
    assert "must be a mapping" in str(e)


def test_window_in_a_rule_outside_an_evaluation_is_a_name_error(tmp_path):
    # 'window' means the spec's months only in an evaluation file
    from casefind.rules.compile import compile_rule

    p = tmp_path / "r.yml"
    p.write_text('rule: r\npopulation: registered\nfeatures:\n  n: count(activity, within=window)\n'
                 'criteria:\n  include:\n    any: n > 0\n')
    with pytest.raises(RuleError):
        compile_rule(p)
