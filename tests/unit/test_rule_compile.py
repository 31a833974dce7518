"""Compiling rules to the IR: names resolve, and every mistake is located with a hint."""
import datetime as dt

import pytest

from casefind.rules import ir
from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError

HEAD = 'rule: t\nas_of: "2026-10-31"\n'


def rule(tmp_path, body, **kw):
    p = tmp_path / "r.yml"
    p.write_text(HEAD + body)
    return compile_rule(p, **kw)


def test_features_resolve_in_any_order_and_share_nodes(tmp_path):
    r = rule(tmp_path, "features:\n  b: a * 2\n  a: count(activity, setting == \"ae\", within=months(12))\n")
    assert r.features["b"].left is r.features["a"]
    assert r.features["a"].window == ir.Range((12, 0), (0, 0))


def test_codelists_inline_prefixes_and_csv(tmp_path):
    (tmp_path / "efi.csv").write_text("code,category,term\n161898004,falls,Falls\n22298006,ihd,MI\n")
    r = rule(tmp_path, "codelists:\n  efi: {file: efi.csv, system: snomed}\n"
             "  hf: {system: icd10, prefixes: [I50, I11.0]}\n"
             "features:\n  deficits: count_distinct(diagnoses.category, codelist=efi)\n"
             "  hf_adm: count(activity, setting == \"emergency_admission\", codelist=hf)\n")
    efi = r.codelists["efi"]
    assert efi.codes == ("161898004", "22298006") and efi.categories == ("falls", "ihd")
    assert r.codelists["hf"].prefixes == ("I50", "I110")
    assert isinstance(r.features["hf_adm"].where.left, ir.InCodelist)
    assert r.features["deficits"].value == ir.CategoryOf(efi, ir.Column("diagnoses", "code", ir.T.CODE))


def test_parameters_and_overrides(tmp_path):
    body = "parameters:\n  min_age: 65\nfeatures:\n  old: age >= min_age\n"
    assert rule(tmp_path, body).parameters["min_age"].value == 65
    r = rule(tmp_path, body, params={"min_age": "75"}, as_of="2026-11-30")
    assert r.parameters["min_age"].value == 75 and r.as_of == dt.date(2026, 11, 30)


@pytest.mark.parametrize("body,line,col,words,hint", [
    ("features:\n  a: cont(activity)\n", 4, 6, "unknown function 'cont'", "did you mean 'count'"),
    ("features:\n  a: count(activty)\n", 4, 12, "unknown event table 'activty'", "did you mean 'activity'"),
    ("features:\n  a: count(activity, setting == \"ae\")\n  b: aa + 1\n", 5, 6, "unknown name 'aa'", None),
    ("features:\n  emergency: count(activity)\n  b: emergncy + 1\n", 5, 6, "unknown name 'emergncy'",
     "did you mean 'emergency'"),
    ("features:\n  a: count(activity, setng == \"ae\")\n", 4, 22, "unknown name 'setng'", "did you mean 'setting'"),
    ("features:\n  a: count(activity, start_date > 3)\n", 4, 22, "cannot compare a date with a int",
     "dates with dates"),
    ("features:\n  a: b + 1\n  b: c + 1\n  c: a + 1\n", 6, 6, "cycle: a → b → c → a", None),
    ("codelists:\n  x: {system: snomed, codes: []}\n", 4, 6, "codelist 'x' is empty", None),
    ("features:\n  a: count(activity, between=(months(6), months(12)))\n", 4, 30, "can never match", None),
    ("features:\n  a: count(activity, codelist=nope)\n", 4, 31, "unknown codelist 'nope'", None),
    ("features:\n  a: sum(activity.price)\n", 4, 10, "no column 'price'", None),
    ("features:\n  a: activity.cost > 1\n", 4, 6, "one value per activity row", "aggregate it"),
    ("population: age\n", 3, 13, "must be true/false", None),
    ("features:\n  a: count(activity, within=12)\n", 4, 29, "within= takes a duration", None),
])
def test_mistakes_are_located(tmp_path, body, line, col, words, hint):
    with pytest.raises(RuleError) as e:
        rule(tmp_path, body)
    err = e.value
    assert words in err.message, str(err)
    assert (err.span.line, err.span.col) == (line, col), str(err)
    if hint:
        assert hint in (err.hint or ""), str(err)
