"""The model pipeline on a synthetic population: fitted out of time, reported against the
prior-use baseline and the generator's latent-risk ceiling; a deliberately leaky spec is
caught; both engines give a fitted model's scores as the fit computed them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from casefind.cli_model import command
from casefind.engines.base import get_engine
from casefind.models import pipeline
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import synthetic_store

RULES = Path(__file__).resolve().parents[2] / "rules"
LEAK = '  future: count(activity, setting == "emergency_admission", within=months(12)) at as_of + months(12)\n'


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("model"), 10_000, 5)


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> Path:
    """A copy of the shipped model spec and its codelists, to fit without touching rules/."""
    folder = tmp_path_factory.mktemp("rules")
    shutil.copytree(RULES / "codelists" / "published", folder / "codelists" / "published")
    (folder / "models").mkdir()
    shutil.copy(RULES / "models" / "emergency_12m.yml", folder / "models")
    return folder


@pytest.fixture(scope="module")
def honest(store, rules) -> dict:
    return pipeline.run(rules / "models" / "emergency_12m.yml", Store.open(store), say=lambda m: None)


@pytest.fixture(scope="module")
def fitted(store, rules, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("out")
    r = CliRunner().invoke(command, ["fit", str(rules / "models" / "emergency_12m.yml"), "--store", str(store),
                                     "--report", str(out / "report.html"), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.output[r.output.index("{"):])


def test_fit_is_out_of_time(fitted):
    assert fitted["dates"] == {"train_features": "2024-10-31", "valid_features": "2025-10-31",
                               "valid_outcome_end": "2026-10-31"}
    assert fitted["training"]["outcome_to"] == "2025-10-31" and fitted["validation"]["outcome_to"] == "2026-10-31"


def test_model_beats_the_baseline_and_stays_below_the_latent_ceiling(fitted):
    c = {k: v["c_statistic"] for k, v in fitted["scores"].items()}
    assert set(c) == {"model", "baseline", "boosted", "latent"}
    assert c["baseline"]["c"] < c["model"]["low"]               # the model is clearly better than prior use
    assert c["model"]["c"] < c["latent"]["c"]                   # and no better than the generator's own risk
    assert 0.65 < c["model"]["c"] < 0.85 and c["model"]["low"] < c["model"]["c"] < c["model"]["high"]
    assert 0 < fitted["ceiling_share"] < 1 and fitted["flags"] == []
    m = fitted["scores"]["model"]
    assert len(m["deciles"]) == 10 and 0.5 < m["calibration"]["slope"] < 1.5
    assert [t["top_percent"] for t in m["top"]] == [0.5, 2.0, 5.0, 20.0]
    assert 0 < m["brier"] < fitted["validation"]["rate"]        # better than predicting 0 for everyone


def test_artefact_and_report_are_written(fitted, rules):
    body = json.loads((rules / "models" / "emergency_12m.model.json").read_text())
    assert body["training"]["snapshot_id"] == fitted["snapshot_id"] and len(body["sha256"]) == 64
    assert body["features"]["emergency_12m"].startswith("count(activity")
    html = Path(fitted["report"]["html"]).read_text()
    assert "latent risk: the ceiling" in html and "<script" not in html
    assert json.loads(Path(fitted["report"]["json"]).read_text())["model"] == "emergency_12m"


def test_a_leaky_spec_scores_higher_and_is_flagged(store, rules, honest, tmp_path):
    leaky = tmp_path / "rules" / "models" / "leaky.yml"
    shutil.copytree(rules, tmp_path / "rules")
    text = (rules / "models" / "emergency_12m.yml").read_text().replace("model: emergency_12m", "model: leaky")
    leaky.write_text(text + LEAK)
    result = pipeline.run(leaky, Store.open(store), say=lambda m: None)
    c_leaky = result["metrics"]["model"]["c_statistic"]["c"]
    assert c_leaky > result["metrics"]["latent"]["c_statistic"]["c"]
    assert c_leaky > honest["metrics"]["model"]["c_statistic"]["c"] + 0.1
    assert any("'future'" in f and "not out of time" in f for f in result["flags"])
    assert any("latent-risk ceiling" in f for f in result["flags"])


@pytest.mark.parametrize("engine", ["native", "duckdb"])
def test_both_engines_give_the_fitted_scores(fitted, honest, store, rules, engine):
    """model("emergency_12m") in a rule, on each engine, against the fit's own numpy scores."""
    (rules / "r.yml").write_text('rule: r\nas_of: "2025-10-31"\nfeatures:\n  risk: model("emergency_12m")\n')
    rule = compile_rule(rules / "r.yml")
    from casefind.models.sample import sample

    valid = sample(Store.open(store), honest["compiled"], rule.as_of, "duckdb")
    body = json.loads((rules / "models" / "emergency_12m.model.json").read_text())
    expected = _numpy_scores(body, valid)
    got = get_engine(engine).evaluate(Store.open(store), rule.features, rule.as_of, patients=valid.patients)
    np.testing.assert_allclose(got.column("risk").to_numpy(), expected, rtol=1e-9)


def _numpy_scores(body: dict, valid) -> np.ndarray:
    """logistic(intercept + sum b * x), a missing x taken as its training mean, from the artefact."""
    z = np.full(len(valid.y), body["intercept"])
    for j, p in enumerate(body["predictors"]):
        x = valid.X[:, valid.names.index(p["name"])]
        z += p["coefficient"] * np.where(np.isnan(x), p["mean"], x)
        assert valid.names[j] == p["name"]
    return 1 / (1 + np.exp(-z))


def test_show(fitted, rules):
    path = rules / "models" / "emergency_12m.model.json"
    r = CliRunner().invoke(command, ["show", str(path), "--json"], catch_exceptions=False)
    assert r.exit_code == 0 and json.loads(r.output)["name"] == "emergency_12m"
    r = CliRunner().invoke(command, ["show", str(path)], catch_exceptions=False)
    assert r.exit_code == 0 and "emergency_12m" in r.output and "intercept" in r.output


def test_the_summary_table_names_every_score(fitted):
    from rich.console import Console

    from casefind.cli_model import _summary_table

    out = Console(width=200, record=True)
    out.print(_summary_table(fitted))
    text = out.export_text()
    assert all(k in text for k in ("model", "baseline", "boosted", "latent"))
    assert f"{fitted['scores']['model']['c_statistic']['c']:.3f}" in text


@pytest.mark.parametrize("option, value, message", [
    ("--report", "no-such-folder/report.html", "the folder"),
    ("--artefact", "no-such-folder/emergency_12m.model.json", "the folder"),
    ("--artefact", "other.model.json", "must be named emergency_12m.model.json"),
])
def test_bad_output_paths_are_refused_before_fitting(store, rules, tmp_path, option, value, message):
    """A mistake in where to write costs nothing: refused (exit 2) before the fit, and the
    spec's existing artefact is left as it was."""
    artefact = rules / "models" / "emergency_12m.model.json"
    before = artefact.read_bytes() if artefact.exists() else None
    from casefind_testdata import cli

    r = cli("model", "fit", rules / "models" / "emergency_12m.yml", "--store", store, option, tmp_path / value)
    assert r.exit_code == 2 and message in r.output, r.output
    assert (artefact.read_bytes() if artefact.exists() else None) == before


def test_an_artefact_renamed_to_another_model_is_refused(fitted, rules, tmp_path):
    from casefind.rules.compile import compile_rule
    from casefind.rules.errors import RuleError

    (tmp_path / "models").mkdir()
    shutil.copy(rules / "models" / "emergency_12m.model.json", tmp_path / "models" / "other.model.json")
    rule = tmp_path / "r.yml"
    rule.write_text('rule: r\nas_of: "2026-10-31"\npopulation: registered\nfeatures:\n  risk: model("other")\n')
    with pytest.raises(RuleError, match="holds model 'emergency_12m', not 'other'"):
        compile_rule(rule)


def test_a_spec_edited_after_fitting_is_flagged_wherever_the_model_is_shown(fitted, rules, tmp_path):
    """The artefact is what was fitted: model show and --json say when its spec has changed."""
    from casefind_testdata import cli

    copy = tmp_path / "rules"
    shutil.copytree(rules, copy)
    assert json.loads(cli("model", "show", copy / "models" / "emergency_12m.model.json", "--json").stdout)[
        "spec_changed"] is None
    spec = copy / "models" / "emergency_12m.yml"
    spec.write_text(spec.read_text().replace("  age_years: age\n", "  age_years: age * 2\n"))
    shown = json.loads(cli("model", "show", copy / "models" / "emergency_12m.model.json", "--json").stdout)
    assert "has changed since the model was fitted" in shown["spec_changed"]
    spec.unlink()
    r = cli("model", "show", copy / "models" / "emergency_12m.model.json")
    assert r.exit_code == 0 and "is not there any more" in r.output
