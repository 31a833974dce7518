"""What a score's codelist and hierarchy must be: refused at compile time, at the line that
says so (the CSV's line for a weight, the rule's for a hierarchy)."""
from __future__ import annotations

from pathlib import Path

import pytest

from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError

title = "Score errors"
AS_OF = "2026-10-31"


def _rule(tmp_path: Path, csv_text: str, feature: str) -> Path:
    (tmp_path / "g.csv").write_text(csv_text)
    (tmp_path / "r.yml").write_text(f'rule: r\nas_of: "{AS_OF}"\ncodelists:\n  g: {{file: g.csv}}\n'
                                    f"features:\n  s: {feature}\n")
    return tmp_path / "r.yml"


def test_a_weight_with_more_than_four_decimal_places_is_refused_at_its_line(tmp_path):
    path = _rule(tmp_path, "code,system,category,weight\nA01,icd10,a,0.5\nA02,icd10,b,0.12345\n",
                 "score(diagnoses, codelist=g)")
    with pytest.raises(RuleError) as e:
        compile_rule(path)
    assert e.value.span.file == str(tmp_path / "g.csv") and e.value.span.line == 3
    assert "0.12345" in e.value.message and "4" in e.value.message


def test_weights_too_large_to_add_exactly_are_refused(tmp_path):
    path = _rule(tmp_path, "code,system,category,weight\nA01,icd10,a,9e15\nA02,icd10,b,0.5\n",
                 "score(diagnoses, codelist=g)")
    with pytest.raises(RuleError, match="too large to add exactly") as e:
        compile_rule(path)
    assert e.value.span.file == str(path)


@pytest.mark.parametrize("hierarchy,words", [
    ("(a > bb)", "has no category 'bb'"),
    ("(a > a)", "cannot be above itself"),
    ("(a > b, b > c, c > a)", "goes round in a circle"),
    ("(a, b)", "the higher first"),
    ("(a < b)", "the higher first"),
    ("(a > b.c)", "name a category"),
])
def test_a_hierarchy_names_categories_without_a_circle(tmp_path, hierarchy, words):
    path = _rule(tmp_path, "code,system,category,weight\nA01,icd10,a,1\nB01,icd10,b,2\nC01,icd10,c,3\n",
                 f"score(diagnoses, codelist=g, hierarchy={hierarchy})")
    with pytest.raises(RuleError, match=words) as e:
        compile_rule(path)
    assert e.value.span.file == str(path) and e.value.span.line == 6
    if "bb" in hierarchy:
        assert e.value.hint == "did you mean 'b'?"


def test_a_hierarchy_is_only_for_a_weighted_score(tmp_path):
    path = _rule(tmp_path, "code,system,category,weight\nA01,icd10,a,1\nB01,icd10,b,2\n",
                 "count_distinct(diagnoses.category, codelist=g, hierarchy=(a > b))")
    with pytest.raises(RuleError, match="weighted score"):
        compile_rule(path)


def test_a_score_needs_categories(tmp_path):
    path = _rule(tmp_path, "code,system,weight\nA01,icd10,1\nB01,icd10,2\n", "score(diagnoses, codelist=g)")
    with pytest.raises(RuleError, match="has no categories") as e:
        compile_rule(path)
    assert e.value.span.file == str(path) and e.value.span.line == 6
