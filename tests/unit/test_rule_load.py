"""Rule files: positions kept for every value; shape errors located with a hint."""
import pytest

from casefind.rules.errors import RuleError
from casefind.rules.load import load_rule

GOOD = """\
rule: frail
as_of: "2026-10-31"
population: registered and alive and age >= 65
features:
  n: count(activity, setting == "ae", within=months(6))
segments:
  - busy: n > 2
  - rest: true
criteria:
  include:
    busy: n >= 2
rank_by: [n desc]
limit: {per_practice: 25}
output:
  columns: [n]
  evidence: 5
"""


def write(tmp_path, text):
    p = tmp_path / "rule.yml"
    p.write_text(text)
    return p


def test_values_and_positions(tmp_path):
    src = load_rule(write(tmp_path, GOOD))
    assert src.name.value == "frail"
    n = src.features["n"]
    assert n.value.startswith("count(") and (n.span.line, n.span.col) == (5, 6)
    assert [k for k, _ in src.segments] == ["busy", "rest"]
    assert src.limit["per_practice"].value == 25
    assert [c.value for c in src.output_columns] == ["n"]


@pytest.mark.parametrize("text,line,col,words", [
    ("rule: x\nfeaturs:\n  a: 1\n", 2, 1, "did you mean 'features'"),
    ("population: age > 3\n", 1, 1, "no name"),
    ("rule: x\nfeatures: [a, b]\n", 2, 11, "must be a mapping"),
    ("rule: x\ncriteria:\n  includes: {}\n", 3, 3, "did you mean 'include'"),
    ("rule: x\nfeatures:\n  a: [1\n", 4, 1, "not valid YAML"),
    ("rule: x\nsegments: {a: true}\n", 2, 11, "must be a list"),
])
def test_shape_errors_are_located(tmp_path, text, line, col, words):
    with pytest.raises(RuleError) as e:
        load_rule(write(tmp_path, text))
    assert (e.value.span.line, e.value.span.col) == (line, col), str(e.value)
    assert words in str(e.value)


@pytest.mark.parametrize("sub", ["kpis", "budgets", "models", "evaluations"])
def test_files_in_a_rules_subfolder_belong_to_the_rules_folder_above(tmp_path, sub):
    """KPI, budget, model and evaluation files read codelists (and fitted models) from the
    rules folder they sit under, as a rule beside them would; any other folder is its own root."""
    from casefind.rules.load import rules_root

    assert rules_root(tmp_path / "rules" / sub / "x.yml") == (tmp_path / "rules").resolve()
    assert rules_root(tmp_path / "rules" / "other" / "x.yml") == (tmp_path / "rules" / "other").resolve()
