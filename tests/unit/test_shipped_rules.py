"""Every shipped rule compiles, names its rationale and sources, and its codelists exist."""
from pathlib import Path

import pytest

from casefind.rules.compile import compile_rule

RULES = sorted((Path(__file__).parents[2] / "rules").glob("*.yml"))


def test_rules_are_shipped():
    assert {p.stem for p in RULES} == {"frail", "multimorbidity", "rising_risk", "high_utilisers", "segments",
                                       "hfrs", "charlson"}


@pytest.mark.parametrize("path", RULES, ids=[p.stem for p in RULES])
def test_rule_compiles_and_explains_itself(path):
    rule = compile_rule(path)
    head = path.read_text().split("\nrule:")[0]
    assert "Rationale" in head and ("Source" in head or "source" in head), "header must give rationale and sources"
    assert rule.include, "a shipped rule lists people for a reason"
    assert rule.output_columns
