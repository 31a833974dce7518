"""Model specs: located errors, the leak check on the IR, and model() in a rule (resolution,
the hash check, the compiled expression)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from casefind.models import artefact, spec
from casefind.rules import ir
from casefind.rules.compile import compile_rule
from casefind.rules.errors import RuleError

SPEC = """\
model: m
as_of: "2026-10-31"
population: registered and alive and age >= 18
outcome: exists(activity, setting == "emergency_admission", within=months(12))
features:
  age_years: age
  em: count(activity, setting == "emergency_admission", within=months(12))
  male: sex == "M"
"""


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_spec_compiles_its_predictors_in_order(tmp_path):
    cs = spec.compile_spec(spec.load_spec(_write(tmp_path / "models", "m.yml", SPEC)))
    assert list(cs.predictors) == ["age_years", "em", "male"]
    assert cs.predictors["male"].type is ir.T.BOOL and cs.leaks == {}
    assert cs.spec.c == spec.DEFAULT_C and str(cs.spec.as_of) == "2026-10-31"


@pytest.mark.parametrize("edit, line, message", [
    (lambda s: s.replace("outcome:", "outcom:"), 4, "unknown key 'outcom'"),
    (lambda s: s.replace('as_of: "2026-10-31"\n', ""), 1, "no as_of"),
    (lambda s: s + 'predictors: [age_years, nope]\n', 9, "'nope' is not a feature"),
    (lambda s: s + "regularisation: -1\n", 9, "regularisation is C"),
    (lambda s: s + '  text: sex\n', 9, "predictor 'text' is a text"),
    (lambda s: s.replace("exists(activity", "count(activity"), 4, "the outcome must be true/false"),
    (lambda s: s + "baseline: sex\n", 9, "the baseline is a number"),
])
def test_spec_errors_are_located(tmp_path, edit, line, message):
    path = _write(tmp_path / "models", "m.yml", edit(SPEC))
    with pytest.raises(RuleError) as e:
        spec.compile_spec(spec.load_spec(path))
    assert message in str(e.value) and e.value.span.line == line, str(e.value)


@pytest.mark.parametrize("expression, leaks", [
    ('count(activity, setting == "ae", within=months(12)) at as_of + months(12)', True),
    ("days_between(as_of, death_date)", True),
    ("case(registration_end > as_of, 1, 0)", True),
    ('count(activity, setting == "ae", within=months(12)) at as_of - months(6)', False),
    ('count(activity, setting == "ae", between=(months(12), months(6)))', False),
])
def test_the_leak_check(tmp_path, expression, leaks):
    path = _write(tmp_path / "models", "m.yml", SPEC + f"  x: {expression}\n")
    cs = spec.compile_spec(spec.load_spec(path))
    assert ("x" in cs.leaks) is leaks


def _artefact(rules: Path, coefficient: float = 0.5) -> Path:
    features = {"age_years": "age", "em": 'count(activity, setting == "emergency_admission")'}
    body = {"name": "m", "intercept": -2.0, "features": features,
            "predictors": [{"name": "age_years", "coefficient": 0.01, "mean": 50.0},
                           {"name": "em", "coefficient": coefficient, "mean": 0.1}]}
    (rules / "models").mkdir(parents=True, exist_ok=True)
    return artefact.write(rules / "models" / "m.model.json", body)


RULE = """\
rule: r
as_of: "2026-10-31"
features:
  risk: model("m")
  before: risk at as_of - months(6)
criteria:
  include:
    high: risk > 0.2
"""


def test_model_compiles_to_the_logistic_of_its_linear_predictor(tmp_path):
    _artefact(tmp_path)
    rule = compile_rule(_write(tmp_path, "r.yml", RULE))
    risk = rule.features["risk"]
    assert isinstance(risk, ir.Logistic)
    consts = sorted(x.value for x in ir.walk(risk) if isinstance(x, ir.Const) and x.type is ir.T.FLOAT)
    assert consts == sorted([-2.0, 0.01, 50.0, 0.5, 0.1])
    assert isinstance(rule.features["before"], ir.At)


@pytest.mark.parametrize("text, message", [
    ('model("other")', "no fitted model 'other'"),
    ("model(m)", "model() takes the name of a fitted model in quotes"),
    ('model("../m")', "is not a model name"),
    ('count(activity, model("m") > 1)', "cannot be used inside an aggregation"),
])
def test_model_errors_are_located(tmp_path, text, message):
    _artefact(tmp_path)
    path = _write(tmp_path, "r.yml", RULE.replace('model("m")', text))
    with pytest.raises(RuleError) as e:
        compile_rule(path)
    assert message in str(e.value) and e.value.span.line == 4 and e.value.span.file == str(path)


def test_an_edited_artefact_is_refused(tmp_path):
    path = _artefact(tmp_path)
    body = json.loads(path.read_text())
    body["intercept"] = 3.0
    path.write_text(json.dumps(body))
    with pytest.raises(RuleError, match="does not match its own sha256"):
        compile_rule(_write(tmp_path, "r.yml", RULE))


@pytest.mark.parametrize("content, message", [("{not json", "not JSON"),
                                              ('{"format": "other"}', "is not a casefind-model/1")])
def test_a_file_that_is_not_an_artefact_is_refused(tmp_path, content, message):
    _write(tmp_path / "models", "m.model.json", content)
    with pytest.raises(RuleError, match=message):
        compile_rule(_write(tmp_path, "r.yml", RULE))


def test_the_shipped_rule_uses_the_shipped_model():
    rules = Path(__file__).resolve().parents[2] / "rules"
    rule = compile_rule(rules / "rising_risk.yml")
    body = artefact.read(rules / "models" / "emergency_12m.model.json")
    assert isinstance(rule.features["risk"], ir.Logistic)
    assert body["spec"]["file"] == "models/emergency_12m.yml" and body["flags"] == []
    shipped = spec.load_spec(rules / "models" / "emergency_12m.yml")
    assert [p["name"] for p in body["predictors"]] == list(shipped.features)


def test_a_rule_records_the_model_it_reads_and_the_models_codelists():
    """A refitted model changes what a rule does while the rule file stays the same: the
    compiled rule (and so the run's manifest) carries the artefact's sha256, and the
    model's codelists are among the rule's, so runs record and descriptions list them."""
    rules = Path(__file__).resolve().parents[2] / "rules"
    rule = compile_rule(rules / "rising_risk.yml")
    body = artefact.read(rules / "models" / "emergency_12m.model.json")
    used = rule.models["emergency_12m"]
    assert used["sha256"] == body["sha256"] and used["file"] == "models/emergency_12m.model.json"
    assert used["trained_on_snapshot"] == body["training"]["snapshot_id"]
    assert {"qof", "efi"} <= set(rule.codelists) and set(body["codelists"]) <= set(rule.codelists)


def test_a_model_codelist_named_like_a_different_rule_codelist_keeps_both(tmp_path):
    (tmp_path / "models").mkdir()
    artefact.write(tmp_path / "models" / "m.model.json", {
        "name": "m", "intercept": -2.0, "codelists": {"dx": {"system": "snomed", "codes": ["111"]}},
        "features": {"dxs": "count(diagnoses, codelist=dx)"},
        "predictors": [{"name": "dxs", "coefficient": 0.5, "mean": 0.0}]})
    rule = compile_rule(_write(tmp_path, "r.yml", """\
        rule: r
        as_of: "2026-10-31"
        population: registered
        codelists:
          dx: {system: snomed, codes: ["222"]}
        features:
          risk: model("m")
          mine: count(diagnoses, codelist=dx)
        """))
    assert rule.codelists["dx"].codes == ("222",) and rule.codelists["m.dx"].codes == ("111",)


def test_specs_and_models_are_found_by_name():
    from click.testing import CliRunner

    from casefind.cli_model import _spec_path, command
    from casefind.errors import UsageError

    assert _spec_path("emergency_12m").name == "emergency_12m.yml"
    with pytest.raises(UsageError, match="no model spec 'nope'") as e:
        _spec_path("nope")
    assert "emergency_12m" in e.value.hint
    r = CliRunner().invoke(command, ["show", "emergency_12m"], catch_exceptions=False)
    assert r.exit_code == 0 and "emergency_admission" in r.output
