"""Output rounding, `output: {round: {feature: places}}`: a feature is published to that many
decimal places, half away from zero on its decimal value; criteria and rank_by use the
full value."""
from __future__ import annotations

from pathlib import Path

import pytest

from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError

title = "Output rounding"
AS_OF = "2026-10-31"
HFRS_CSV = Path(__file__).parents[3] / "rules" / "codelists" / "hfrs_icd10.csv"


def _with_round(monkeypatch, given: dict):
    """Compile with ``output: round:`` as the loader gives it (name -> Located places)."""
    from casefind.rules import compile as comp
    from casefind.rules.errors import Span
    from casefind.rules.load import Located

    real = comp.load_rule

    def load(path):
        src = real(path)
        src.output_round = {k: Located(v, Span(str(path), 9, 3)) for k, v in given.items()}
        return src

    monkeypatch.setattr(comp, "load_rule", load)


def test_output_round_is_compiled_for_numeric_features(tmp_path, monkeypatch):
    (tmp_path / "hfrs.csv").write_bytes(HFRS_CSV.read_bytes())
    (tmp_path / "r.yml").write_text(f'rule: r\nas_of: "{AS_OF}"\ncodelists:\n  hfrs: {{file: hfrs.csv}}\nfeatures:\n'
                                    "  hfrs: score(diagnoses, codelist=hfrs)\n  efi: count(diagnoses) / 36\n"
                                    '  band: case(hfrs > 15, "high", "other")\n')
    _with_round(monkeypatch, {"hfrs": 1, "efi": 2})
    assert compile_rule(tmp_path / "r.yml").output_round == {"hfrs": 1, "efi": 2}
    for given, words in (({"nope": 1}, "not a feature"), ({"band": 1}, "not a number"), ({"efi": -1}, "0 to 10"),
                         ({"efi": 1.5}, "0 to 10"), ({"efi": True}, "0 to 10")):
        _with_round(monkeypatch, given)
        with pytest.raises(RuleError, match=words) as e:
            compile_rule(tmp_path / "r.yml")
        assert e.value.span.line == 9


def test_shipped_rules_declare_the_published_precision_and_others_show_values_whole():
    from casefind.rules.compile import rounded

    rules = Path(__file__).parents[3] / "rules"
    assert compile_rule(rules / "hfrs.yml").output_round == {"hfrs": 1}  # read from output: round:
    assert compile_rule(rules / "frail.yml").output_round == {"efi": 2}
    assert compile_rule(rules / "charlson.yml").output_round == {"charlson": 0}  # SHMI weights are whole
    assert rounded(4.999999999999999, None) == 4.999999999999999


@pytest.mark.parametrize("value,places,want", [
    (5.0, 1, 5.0), (15.000000000000002, 1, 15.0), (4.999999999999999, 1, 5.0), (0.2777777777777778, 2, 0.28),
    (2.675, 2, 2.68), (-2.675, 2, -2.68), (0.125, 2, 0.13), (7, 1, 7), (None, 1, None), (True, 1, True),
    (float("nan"), 1, "nan"), (1e300, 2, 1e300), (12.34, 0, 12.0),
])
def test_rounded_is_half_away_from_zero_on_the_decimal_value(value, places, want):
    from casefind.rules.compile import rounded

    got = rounded(value, places)
    assert (repr(got) == "nan") if want == "nan" else (repr(got) == repr(want)), (value, places, got)
