"""Fuzzed rule files: whatever an analyst types, casefind answers with a located error
(or a valid rule), never a traceback."""
from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError

SEED_RULE = (Path(__file__).parents[2] / "docs" / "rules-language.md").read_text().split("```yaml\n")[1].split("```")[0]
TOKENS = ["(", ")", ",", ":", " and ", " or ", "not ", "==", ">=", "months(", "within=", "between=(", '"',
          "'", "\n", "  ", "- ", "{", "}", "[", "]", "count(", "activity", "setting", "age", "%", ".", "at ",
          "codelist=", "x", "0", "-1", "99999999999999999999", "date(\"2026-02-30\")", "é", "\t", "#", "*"]


@st.composite
def mutated(draw):
    text = SEED_RULE
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        if kind == "insert":
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 12)):]
        else:
            n = draw(st.integers(1, 8))
            text = text[:pos] + draw(st.text(min_size=1, max_size=n)) + text[pos + n:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_only_located_errors(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "rule.yml"
    path.write_text(text, encoding="utf-8")
    try:
        compile_rule(path)
    except RuleError as e:
        assert e.message
        if e.span is not None:
            assert e.span.line >= 1 and e.span.col >= 1
            assert e.span.file == str(path)
