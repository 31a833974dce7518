"""Weighted scores (score() / sum(t.weight, codelist=...)) are exact, on every engine.

Weights are whole numbers of 10^-k units (k: the most decimal places a codelist's weight
has, at most 4), added in 64 bits and divided once by 10^k: the score is the double
nearest to the exact decimal sum, identical on both engines, and a threshold such as 5 or
15 compares exactly with it. Sums that binary floating point gets wrong (0.1 + 0.2, or the
HFRS points 1.9 + 2.3 + 0.8, which add to 4.999999999999999) are exact here.

hierarchy=(higher > lower, ...) lists pairs of a score's categories: when a patient has
both, only the higher counts; each alone counts."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spec_helpers import ENGINES, evaluate_case, patient

from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError

AS_OF = "2026-10-31"
HFRS_CSV = Path(__file__).parents[2] / "rules" / "codelists" / "hfrs_icd10.csv"


def dx(pid, code, date="2026-06-01", system="icd10"):
    return (pid, date, system, code, "acute")


def exact(got, want) -> bool:
    """The same value, to the bit: a score must not be 'close'."""
    return type(got) is type(want) and repr(got) == repr(want)


# --- HFRS at its band edges, with the published points ----------------------------------------

HFRS_FEATURES = ("  hfrs: score(diagnoses, codelist=hfrs)\n"
                 '  band: case(hfrs > 15, "high", hfrs >= 5, "intermediate", "low")\n'
                 "  five_or_more: hfrs >= 5\n  at_five: hfrs == 5\n  at_fifteen: hfrs == 15\n"
                 "  above_fifteen: hfrs > 15\n  below_five: hfrs < 5\n")


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_hfrs_points_that_add_to_exactly_5_and_15_land_in_the_right_band(tmp_path, engine):
    shutil.copyfile(HFRS_CSV, tmp_path / "hfrs.csv")
    tables = {"patients": [patient(p, birth="1940-01-01") for p in ("five", "fifteen", "just_under", "just_over")],
              "diagnoses": [
                  # E53 1.9 + E86 2.3 + I63 0.8 = 5.0 (added as doubles in category order: 4.999999999999999)
                  dx("five", "E538"), dx("five", "E86"), dx("five", "I639"),
                  # F00 7.1 + F05 3.2 + G81 4.4 + K52 0.3 = 15.0 (as doubles: 15.000000000000002)
                  dx("fifteen", "F001"), dx("fifteen", "F059"), dx("fifteen", "G819"), dx("fifteen", "K529"),
                  # E53 1.9 + E86 2.3 + K52 0.3 + R50 0.1... = 4.6: under 5
                  dx("just_under", "E53"), dx("just_under", "E86"), dx("just_under", "K52"), dx("just_under", "R50"),
                  # 15.0 + R50 0.1 = 15.1: over 15
                  dx("just_over", "F00"), dx("just_over", "F05"), dx("just_over", "G81"), dx("just_over", "K52"),
                  dx("just_over", "R509")]}
    got = evaluate_case(tmp_path, engine, tables, HFRS_FEATURES, AS_OF, codelists="  hfrs: {file: hfrs.csv}\n")
    assert exact(got["five"]["hfrs"], 5.0) and exact(got["fifteen"]["hfrs"], 15.0)
    assert exact(got["just_under"]["hfrs"], 4.6) and exact(got["just_over"]["hfrs"], 15.1)
    bands = {p: (v["band"], v["five_or_more"], v["at_five"], v["at_fifteen"], v["above_fifteen"], v["below_five"])
             for p, v in got.items()}
    assert bands == {"five": ("intermediate", True, True, False, False, False),
                     "fifteen": ("intermediate", True, False, True, False, False),
                     "just_under": ("low", False, False, False, False, True),
                     "just_over": ("high", True, False, False, True, False)}


# --- exact sums of small codelists ----------------------------------------------------------------

CASES = {
    "0.1 + 0.2 is 0.3 (in doubles, 0.30000000000000004)": dict(
        csv="code,system,category,weight\nA01,icd10,a,0.1\nA02,icd10,b,0.2\nA03,icd10,c,0.7\n",
        diagnoses=[dx("p", "A01"), dx("p", "A02"), dx("q", "A01"), dx("q", "A02"), dx("q", "A03")],
        features="  s: score(diagnoses, codelist=g)\n  is_03: s == 0.3\n  w: sum(diagnoses.weight, codelist=g)\n",
        expected={"p": {"s": 0.3, "is_03": True, "w": 0.3}, "q": {"s": 1.0, "is_03": False, "w": 1.0}}),
    "four decimal places: 0.0001 three times is 0.0003": dict(
        csv="code,system,category,weight\nA01,icd10,a,0.0001\nA02,icd10,b,0.0001\nA03,icd10,c,0.0001\n",
        diagnoses=[dx("p", "A01"), dx("p", "A02"), dx("p", "A03")],
        features="  s: score(diagnoses, codelist=g)\n  edge: s >= 0.0003\n",
        expected={"p": {"s": 0.0003, "edge": True}}),
    "negative weights, and a total of exactly 0": dict(
        csv="code,system,category,weight\nA01,icd10,a,1.5\nA02,icd10,b,-1.5\nA03,icd10,c,-0.25\n",
        diagnoses=[dx("p", "A01"), dx("p", "A02"), dx("q", "A02"), dx("q", "A03")],
        features="  s: score(diagnoses, codelist=g)\n  zero: s == 0\n  floored: max(s, 0)\n",
        expected={"p": {"s": 0.0, "zero": True, "floored": 0.0}, "q": {"s": -1.75, "zero": False, "floored": 0.0}}),
    "a category's weight is its codes' largest, once; a weightless category scores 0": dict(
        csv="code,system,category,weight\nA01,icd10,a,\nA02,icd10,a,-0.5\nA03,icd10,a,-0.2\nB01,icd10,b,\n",
        diagnoses=[dx("p", "A01"), dx("p", "A02"), dx("p", "A03"), dx("q", "A01"), dx("r", "B01")],
        features="  s: score(diagnoses, codelist=g)\n",
        expected={"p": {"s": -0.2}, "q": {"s": -0.2}, "r": {"s": 0.0}}),
    "the category's weight, whichever of its codes the patient has": dict(
        csv="code,system,category,weight\nA01,icd10,heart,2\nA02,icd10,heart,5\nA02,icd10,lung,1\n",
        diagnoses=[dx("light", "A01"), dx("heavy", "A02")],
        features="  s: score(diagnoses, codelist=g)\n",
        expected={"light": {"s": 5.0}, "heavy": {"s": 6.0}}),
    "no rows: 0": dict(
        csv="code,system,category,weight\nA01,icd10,a,2.5\n",
        diagnoses=[dx("q", "Z99")],
        features="  s: score(diagnoses, codelist=g)\n",
        expected={"p": {"s": 0.0}, "q": {"s": 0.0}}),
}

# hierarchy: a over b (a pair), c over d over e (a chain), f and g both over h
HIERARCHY_CSV = ("code,system,category,weight\n"
                 "A01,icd10,a,-1\nB01,icd10,b,3\n"
                 "C01,icd10,c,10\nD01,icd10,d,5\nE01,icd10,e,1\n"
                 "F01,icd10,f,0.5\nG01,icd10,g,0.25\nH01,icd10,h,7\n")
HIERARCHY = "hierarchy=(a > b, c > d, d > e, f > h, g > h)"
CASES.update({
    "hierarchy: of a pair, only the higher counts; each alone counts": dict(
        csv=HIERARCHY_CSV,
        diagnoses=[dx("both", "A01"), dx("both", "B01"), dx("a_only", "A01"), dx("b_only", "B01")],
        features=f"  s: score(diagnoses, codelist=g, {HIERARCHY})\n  plain: score(diagnoses, codelist=g)\n",
        expected={"both": {"s": -1.0, "plain": 2.0}, "a_only": {"s": -1.0, "plain": -1.0},
                  "b_only": {"s": 3.0, "plain": 3.0}}),
    "hierarchy: a chain leaves out what is directly below a present category": dict(
        csv=HIERARCHY_CSV,
        diagnoses=[dx("cde", "C01"), dx("cde", "D01"), dx("cde", "E01"), dx("ce", "C01"), dx("ce", "E01"),
                   dx("de", "D01"), dx("de", "E01")],
        features=f"  s: score(diagnoses, codelist=g, {HIERARCHY})\n",
        expected={"cde": {"s": 10.0}, "ce": {"s": 11.0}, "de": {"s": 5.0}}),
    "hierarchy: a category below two counts only when neither is present": dict(
        csv=HIERARCHY_CSV,
        diagnoses=[dx("fh", "F01"), dx("fh", "H01"), dx("gh", "G01"), dx("gh", "H01"), dx("fgh", "F01"),
                   dx("fgh", "G01"), dx("fgh", "H01"), dx("h", "H01")],
        features=f"  s: score(diagnoses, codelist=g, {HIERARCHY})\n",
        expected={"fh": {"s": 0.5}, "gh": {"s": 0.25}, "fgh": {"s": 0.75}, "h": {"s": 7.0}}),
    "hierarchy: categories in quotes; the window and filter choose the rows first": dict(
        csv=HIERARCHY_CSV,
        diagnoses=[dx("old_a", "A01", date="2020-01-01"), dx("old_a", "B01"), dx("gp_a", "B01"),
                   ("gp_a", "2026-06-01", "icd10", "A01", "primary_care")],
        features='  s: score(diagnoses, source == "acute", codelist=g, within=months(12), hierarchy=("a" > "b"))\n',
        expected={"old_a": {"s": 3.0}, "gp_a": {"s": 3.0}}),
})


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("name", list(CASES))
def test_exact_scores(tmp_path, engine, name):
    case = CASES[name]
    (tmp_path / "g.csv").write_text(case["csv"])
    pids = sorted({r[0] for r in case["diagnoses"]} | set(case["expected"]))
    got = evaluate_case(tmp_path, engine, {"patients": [patient(p) for p in pids], "diagnoses": case["diagnoses"]},
                        case["features"], AS_OF, codelists="  g: {file: g.csv}\n")
    for pid, expected in case["expected"].items():
        for feature, value in expected.items():
            assert exact(got[pid][feature], value), (pid, feature, got[pid][feature], value)


def test_the_engines_agree_to_the_bit_on_every_pair_of_hfrs_categories(tmp_path):
    """Every HFRS category with every other: 5,886 patients, each score identical on both
    engines and equal to the exact sum of its two published points."""
    import csv

    rows = list(csv.DictReader(open(HFRS_CSV)))
    pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1:]]
    tables = {"patients": [patient(f"p{i}") for i in range(len(pairs))],
              "diagnoses": [dx(f"p{i}", r["code"].rstrip("*")) for i, pair in enumerate(pairs) for r in pair]}
    results = {}
    for e in ENGINES:
        (tmp_path / e).mkdir()
        shutil.copyfile(HFRS_CSV, tmp_path / e / "hfrs.csv")
        results[e] = evaluate_case(tmp_path / e, e, tables, "  s: score(diagnoses, codelist=hfrs)\n", AS_OF,
                                   codelists="  hfrs: {file: hfrs.csv}\n")
    for i, (a, b) in enumerate(pairs):
        want = (round(float(a["weight"]) * 10) + round(float(b["weight"]) * 10)) / 10
        assert {exact(results[e][f"p{i}"]["s"], want) for e in ENGINES} == {True}, (a, b, want)


# --- what a score's codelist and hierarchy must be -------------------------------------------------

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


# --- output rounding: output: {round: {feature: places}} (read by the rule loader) -------------

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
    shutil.copyfile(HFRS_CSV, tmp_path / "hfrs.csv")
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

    rules = Path(__file__).parents[2] / "rules"
    assert compile_rule(rules / "hfrs.yml").output_round == {"hfrs": 1}  # read from output: round:
    assert compile_rule(rules / "frail.yml").output_round == {"efi": 2}
    assert compile_rule(rules / "charlson.yml").output_round == {}
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


def test_a_score_needs_categories(tmp_path):
    path = _rule(tmp_path, "code,system,weight\nA01,icd10,1\nB01,icd10,2\n", "score(diagnoses, codelist=g)")
    with pytest.raises(RuleError, match="has no categories") as e:
        compile_rule(path)
    assert e.value.span.file == str(path) and e.value.span.line == 6
