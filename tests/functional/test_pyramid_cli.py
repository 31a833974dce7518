"""casefind pyramid over a small synthetic store: the files it writes, units that add up,
bands of exactly round(N x p), both engines agreeing, the outcome year, the tie report held to
the engines' own top(), and mistakes refused with the right exit code."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from casefind.budgets.simulate import band_edges
from casefind.cli import CasefindGroup
from casefind.cli_pyramid import parse_cut, pyramid_command
from casefind.engines.base import get_engine
from casefind.errors import UsageError
from casefind.pyramid import compute
from casefind.pyramid.bands import parse_bands
from casefind.rules.compile import compile_rule
from casefind.store import Store
from casefind_testdata import synthetic_store

RULES = Path(__file__).parents[2] / "rules"
AS_OF = "2026-10-31"


@click.group(cls=CasefindGroup)
def main():
    """The command under the CLI's own error handling (exit codes), as cli.py registers it."""


main.add_command(pyramid_command)


# a transparent logistic risk over age and 12-month use (illustrative coefficients), kept here so
# that the test does not move when a shipped rule's score does
RULE = """rule: risky
title: Adults by a simple risk score
as_of: "2026-10-31"
parameters: {b0: -5.0, b_age: 0.03, b_emergency: 0.6, b_ae: 0.25}
population: registered and alive and age >= 18
features:
  emergency_12m: count(activity, setting == "emergency_admission", within=months(12))
  ae_12m: count(activity, setting == "ae", within=months(12))
  risk: logistic(b0 + b_age * age + b_emergency * emergency_12m + b_ae * ae_12m)
  top_2pct: top(risk, 2%)
criteria:
  include:
    high: top_2pct
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("pyramid"), 2500, 21)


@pytest.fixture(scope="module")
def rule(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rule") / "risky.yml"
    path.write_text(RULE)
    return path


def invoke(*args):
    return CliRunner().invoke(main, ["pyramid", *(str(a) for a in args)], catch_exceptions=False)


def rows_of(folder: Path) -> list[dict]:
    return pq.read_table(folder / "pyramid.parquet").to_pylist()


def test_the_pyramid_is_written_and_its_units_add_up(store, rule, tmp_path):
    r = invoke(rule, "--store", store, "--out", tmp_path, "--as-of", AS_OF, "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    folder = tmp_path / f"pyramid-risky-{AS_OF}"
    assert body["folder"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["pyramid.csv", "pyramid.html", "pyramid.json",
                                                        "pyramid.parquet"]
    assert (body["score"], body["outcome"], body["score_date"], body["outcome_to"]) == (
        "risk", "next", "2025-10-31", AS_OF)
    table = pq.read_table(folder / "pyramid.parquet")
    assert table.schema == compute.SCHEMA
    assert pacsv.read_csv(folder / "pyramid.csv").num_rows == table.num_rows
    rows = table.to_pylist()
    system = [x for x in rows if x["level"] == "system"]
    sizes = [b - a for a, b in band_edges(body["ranked"], parse_bands("0-0.5,0.5-5,5-20,20-100"))]
    assert [x["people"] for x in system] == [*sizes, body["ranked"]] and body["ranked"] == body["population"]
    assert body["system"] == system
    for level in ("practice", "locality"):
        for band in ("0-0.5%", "20-100%", "all"):
            mine = [x for x in rows if x["level"] == level and x["band"] == band]
            total = next(x for x in system if x["band"] == band)
            for column in ("people", "admissions"):
                assert sum(x[column] for x in mine) == total[column], (level, band, column)
            assert sum(x["cost"] for x in mine) == pytest.approx(total["cost"], abs=0.01 * len(mine))
    every = next(x for x in system if x["band"] == "all")
    assert every["to_avoid"] == pytest.approx(0.1 * every["admissions"])
    assert system[0]["relative_rate"] > 1 > system[-2]["relative_rate"]  # the score ranks the admitted higher
    meta = json.loads((folder / "pyramid.json").read_text())
    assert meta["tie_rule"].startswith("ranked by the score") and len(meta["edges"]) == 3
    page = (folder / "pyramid.html").read_text()
    assert "<svg" in page and "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert "Ties at the band edges" in page and system[0]["unit_code"] in page


def test_the_next_year_counts_what_follows_the_score(store, rule, tmp_path):
    """--outcome next: the population and score a year before as_of; the admissions in the
    year after, as the rule's population then and a count at as_of give them."""
    r = invoke(rule, "--store", store, "--out", tmp_path, "--as-of", AS_OF, "--json")
    body = json.loads(r.stdout)
    st = Store.open(store)
    then = compile_rule(rule, as_of="2025-10-31")
    engine = get_engine("duckdb")
    members = engine.evaluate(st, {"p": then.population}, then.as_of, then.population).column("p")
    assert body["population"] == int(np.asarray(members.fill_null(False)).sum())
    concurrent = json.loads(invoke(rule, "--store", store, "--out", tmp_path, "--as-of", AS_OF,
                                   "--outcome", "concurrent", "--json").stdout)
    now = compile_rule(rule, as_of=AS_OF)
    members = engine.evaluate(st, {"p": now.population}, now.as_of, now.population).column("p")
    assert concurrent["population"] == int(np.asarray(members.fill_null(False)).sum())
    assert concurrent["score_date"] == AS_OF


def test_both_engines_give_the_same_pyramid(store, rule, tmp_path):
    for engine in ("native", "duckdb"):
        r = invoke(rule, "--store", store, "--out", tmp_path / engine, "--as-of", AS_OF, "--engine", engine)
        assert r.exit_code == 0, r.output
    a, b = (rows_of(tmp_path / e / f"pyramid-risky-{AS_OF}") for e in ("native", "duckdb"))
    assert [{k: v for k, v in x.items() if k not in ("cost", "cost_share", "cost_per_head")} for x in a] == \
        [{k: v for k, v in x.items() if k not in ("cost", "cost_share", "cost_per_head")} for x in b]
    assert [x["cost"] for x in a] == pytest.approx([x["cost"] for x in b])


def test_the_tie_report_says_what_top_takes(store, rule, tmp_path):
    """The rule's own top_2pct (top(risk, 2%)) at as_of takes exactly the number the edge
    report says, ties in; the pyramid's 0-2% band is round(N x 2%)."""
    r = invoke(rule, "--store", store, "--out", tmp_path, "--as-of", AS_OF, "--outcome", "concurrent",
               "--bands", "0-2,2-100", "--json")
    body = json.loads(r.stdout)
    rule = compile_rule(rule, as_of=AS_OF)
    values = get_engine("native").evaluate(Store.open(store), {"p": rule.population, "t": rule.features["top_2pct"]},
                                           rule.as_of, rule.population)
    member = np.asarray(values.column("p").fill_null(False), bool)
    took = int(np.asarray(values.column("t").fill_null(False), bool)[member].sum())
    edge = body["edges"][0]
    assert edge["top_takes"] == took
    assert edge["rank"] == round(body["ranked"] * 0.02) == body["system"][0]["people"]
    # top() takes those with fewer than N x 2% above them: ceil(N x 2%) people, and everyone tied
    # with the last of them; the band takes round(N x 2%) by rank
    n = body["ranked"]
    assert took >= -(-n * 2 // 100) >= edge["rank"] and took - edge["rank"] <= 1 + edge["tied_below"]


def test_the_console_summary(store, rule, tmp_path):
    r = invoke(rule, "--store", store, "--out", tmp_path, "--as-of", AS_OF, "--cut", "5%")
    assert r.exit_code == 0, r.output
    assert "Risk pyramid by risk" in r.stdout and "0-0.5%" in r.stdout and "avoid" in r.stdout
    assert "people ranked (score at 2025-10-31)" in r.stdout and "ties straddling an edge" in r.stdout


@pytest.mark.parametrize("args, code, message", [
    (["--score", "risky"], 2, "--score: the rule risky has no feature 'risky'"),
    (["--score", "top_2pct"], 2, "top_2pct is a bool, not a number per patient"),
    (["--bands", "0-5,5-50"], 2, "--bands: the bands end at 50%"),
    (["--cut", "0%"], 2, "--cut: '0%' is not a share to cut"),
    (["--as-of", "2030-01-31"], 2, "is outside the store's data"),
    (["--as-of", "2024-06-30"], 2, "only partly covered"),
])
def test_mistakes_are_refused(store, rule, tmp_path, args, code, message):
    r = invoke(rule, "--store", store, "--out", tmp_path, *args)
    assert r.exit_code == code, r.output
    assert message in r.output
    assert not (tmp_path / f"pyramid-risky-{AS_OF}").exists()


def test_did_you_mean_a_feature(store, rule, tmp_path):
    r = invoke(rule, "--store", store, "--out", tmp_path, "--score", "rsk")
    assert r.exit_code == 2 and "did you mean 'risk'?" in r.output


def test_partial_coverage_may_be_allowed(store, rule, tmp_path):
    r = invoke(rule, "--store", store, "--out", tmp_path, "--as-of", "2024-06-30", "--allow-partial",
               "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["warnings"] and "only partly covered" in body["warnings"][0]


def test_an_error_in_the_rule_is_exit_4(store, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text('rule: bad\nas_of: "2026-10-31"\npopulation: registered\nfeatures:\n  risk: count(activty)\n'
                   "criteria:\n  include:\n    any: risk > 0\n")
    r = invoke(bad, "--store", store, "--out", tmp_path)
    assert r.exit_code == 4, r.output
    assert "bad.yml:5" in r.output


@pytest.mark.parametrize("text, value", [("10%", 0.1), ("2.5", 0.025), (" 100 % ", 1.0)])
def test_the_cut_is_a_percentage(text, value):
    assert parse_cut(text) == value


@pytest.mark.parametrize("text", ["0", "101%", "-5%", "ten"])
def test_a_cut_out_of_range_is_refused(text):
    with pytest.raises(UsageError, match="not a share to cut"):
        parse_cut(text)


def test_the_year_before_a_leap_day():
    d = compute.Dates.of(dt.date(2028, 2, 29), "next")
    assert (d.score, d.outcome_from) == (dt.date(2027, 2, 28), dt.date(2027, 2, 28))


@pytest.fixture(scope="module")
def fitted(store, tmp_path_factory) -> Path:
    """A rules folder with emergency_12m fitted on the store (helper I1's model(), docs/models.md)."""
    import shutil

    pipeline = pytest.importorskip("casefind.models.pipeline")
    from casefind.models import artefact

    rules = tmp_path_factory.mktemp("rules")
    shutil.copytree(RULES / "codelists", rules / "codelists")
    (rules / "models").mkdir()
    spec = Path(shutil.copy(RULES / "models" / "emergency_12m.yml", rules / "models"))
    result = pipeline.run(spec, Store.open(store), say=lambda _: None)
    artefact.write(artefact.artefact_path(spec, "emergency_12m"), pipeline.artefact_body(result))
    return rules


def test_a_fitted_model_ranks_its_own_population(store, rule, fitted, tmp_path, monkeypatch):
    """MODEL by path and by name: the model's population, ranked by model("NAME"), at the end
    of the store's data (a model has no as_of of its own)."""
    path = fitted / "models" / "emergency_12m.model.json"
    by_path = json.loads(invoke(path, "--store", store, "--out", tmp_path / "a", "--json").stdout)
    monkeypatch.setenv("CASEFIND_RULES", str(fitted))
    by_name = json.loads(invoke("emergency_12m", "--store", store, "--out", tmp_path / "b", "--json").stdout)
    assert by_path["system"] == by_name["system"]
    assert (by_name["rule"], by_name["score"], by_name["as_of"]) == ("emergency_12m", 'model("emergency_12m")', AS_OF)
    assert by_name["population"] == json.loads(invoke(rule, "--store", store, "--out", tmp_path / "c",
                                                      "--as-of", AS_OF, "--json").stdout)["population"]  # adults alive
    assert by_name["system"][0]["relative_rate"] > 2  # a fitted risk model: its top band is admitted more


def test_a_changed_artefact_is_refused(store, fitted, tmp_path):
    changed = tmp_path / "models" / "emergency_12m.model.json"
    changed.parent.mkdir()
    body = json.loads((fitted / "models" / "emergency_12m.model.json").read_text())
    body["intercept"] += 1
    changed.write_text(json.dumps(body))
    r = invoke(changed, "--store", store, "--out", tmp_path)
    assert r.exit_code == 4 and "does not match its own sha256" in r.output


def test_latest_and_params(store, rule, tmp_path):
    r = invoke(rule, "--store", store, "--out", tmp_path, "--as-of", "latest", "--param", "b_age=0.05",
               "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["as_of"] == Store.open(store).manifest["tables"]["activity"]["date_range"][1]
    assert invoke(rule, "--store", store, "--param", "b_age").exit_code == 2


def test_a_model_takes_no_score_or_params(store, fitted, tmp_path):
    """A MODEL ranks by its own probability: a --score or --param given with one is a mistake,
    refused before any work rather than silently ignored."""
    path = fitted / "models" / "emergency_12m.model.json"
    for extra in (["--score", "efi"], ["--param", "min_age=70"]):
        r = invoke(path, "--store", store, "--out", tmp_path, *extra)
        assert r.exit_code == 2 and "does not apply to a MODEL" in r.output, r.output
    assert not list(tmp_path.iterdir())


def test_nobody_to_rank_is_refused_and_writes_nothing(store, rule, tmp_path):
    empty = tmp_path / "empty.yml"
    empty.write_text(Path(rule).read_text().replace("population: ", "population: age > 200 and ", 1))
    r = invoke(empty, "--store", store, "--out", tmp_path)
    assert r.exit_code == 2 and "nobody to rank" in r.output, r.output
    assert not list(tmp_path.glob("pyramid-*"))
