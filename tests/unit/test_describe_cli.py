"""``casefind describe RULE``: Markdown, HTML, --output, --json and its errors; and the list
columns it names are those ``casefind run`` writes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from casefind.cli import CasefindGroup
from casefind.cli_describe import command
from casefind.describe.document import describe
from casefind.project import shipped_rules
from casefind.rules.compile import compile_rule
from casefind_testdata import cli

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "describe"


def _describe(*args, **kw):
    group = CasefindGroup(commands={"describe": command})
    return CliRunner().invoke(group, ["describe", *map(str, args)], catch_exceptions=False, **kw)


def _hostile_rule(tmp_path: Path) -> Path:
    path = tmp_path / "odd.yml"
    path.write_text("# <b>Bold</b> summary\n#\n# Sources: a | pipe\nrule: odd\ntitle: \"<script>alert(1)</script>\"\n"
                    "version: 1.0.0\nas_of: \"2026-10-31\"\npopulation: registered\n"
                    "features:\n  n: count(activity)\ncriteria:\n  include:\n    some: n >= 1\n")
    return path


def test_markdown_on_stdout_is_the_golden_description():
    r = _describe("frail")
    assert r.exit_code == 0, r.output
    assert r.output == (GOLDEN / "frail.md").read_text(encoding="utf-8")


def test_html_page_is_self_contained_and_escaped(tmp_path):
    r = _describe(_hostile_rule(tmp_path), "--html")
    assert r.exit_code == 0, r.output
    page = r.output
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;Bold&lt;/b&gt;" in page
    assert not re.search(r"(src|href)=|@import|url\(", page)  # nothing fetched
    assert "<code>n</code> is at least 1" in page
    assert "The number of activity records (contacts, attendances and hospital spells) at any time" in page


def test_markdown_escapes_table_cells(tmp_path):
    r = _describe(_hostile_rule(tmp_path))
    assert "**Sources.** A | pipe" in r.output  # a paragraph, as written
    assert "| `n` | whole number |" in r.output


@pytest.mark.parametrize("name, html", [("frail.md", False), ("frail.txt", False), ("frail.html", True)])
def test_output_file(tmp_path, name, html):
    r = _describe("frail", "--output", tmp_path / name)
    assert r.exit_code == 0, r.output
    text = (tmp_path / name).read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") is html
    assert "Described rule frail (2 include and 4 exclude criteria, 11 features, 1 codelist)" in r.output
    if not html:
        assert text == (GOLDEN / "frail.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("args, message", [
    (["--html", "--output", "{tmp}/x.md"], "--html writes HTML"),
    (["--output", "{tmp}/x.pdf"], "give a file ending .md or .txt"),
    (["--output", "{tmp}"], "is a folder"),
    (["--output", "{tmp}/missing/x.md"], "does not exist"),
])
def test_bad_output_is_a_usage_error(tmp_path, args, message):
    r = _describe("frail", *[a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2
    assert message in r.output


def test_json_holds_the_description(tmp_path):
    r = _describe("high_utilisers", "--json", "--output", tmp_path / "h.html")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert body["command"] == "describe" and body["rule"] == "high_utilisers"
    assert body["output"] == str(tmp_path / "h.html") and body["path"].endswith("high_utilisers.yml")
    assert [c["name"] for c in body["include"]] == ["repeated_admissions", "highest_cost"]
    assert body["reads"]["activity"] == ["cost", "setting", "start_date"]
    keys = {"command", "path", "output", "rule", "title", "version", "file", "sha256", "as_of", "summary", "header",
            "population", "include", "require", "exclude", "list_policy", "segments", "ranking", "features",
            "parameters", "codelists", "reads", "attributes", "columns", "outputs", "opt_out", "notes"}
    assert set(body) == keys  # as docs/describe.md lists them


def test_a_broken_rule_is_a_rule_error(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("rule: bad\ntitle: B\nversion: 1.0.0\nas_of: \"2026-10-31\"\npopulation: age >= nonsense\n")
    r = _describe(bad)
    assert r.exit_code == 4
    assert f"{bad}:5:" in r.output and "unknown name 'nonsense'" in r.output


def test_an_unknown_rule_name_is_a_usage_error():
    r = _describe("fraill")
    assert r.exit_code == 2 and "did you mean 'frail'" in r.output


def test_require_words(tmp_path):
    base = ("rule: t\ntitle: T\nversion: 1.0.0\nas_of: \"2026-10-31\"\npopulation: registered\n"
            "criteria:\n  include:\n    old: age >= 80\n    young: age < 20\n    woman: sex == \"F\"\n")
    cases = {"": "every include criterion (all)", "  require: any\n": "at least one include criterion (any)",
             "  require: old and (young or woman)\n":
             "this combination of the include criteria: `old` and (`young` or `woman`)"}
    for require, words in cases.items():
        (tmp_path / "t.yml").write_text(base + require)
        assert words in describe(compile_rule(tmp_path / "t.yml")).require
    (tmp_path / "t.yml").write_text(base.split("criteria:")[0])
    d = describe(compile_rule(tmp_path / "t.yml"))
    assert d.require.startswith("Everyone in the population is a candidate")
    assert d.ranking == "Patients are listed in the store's order (the rule ranks by nothing). The list is not capped."


def test_list_columns_are_those_run_writes(tmp_path, tiny_source):
    """The columns describe names are the columns of the list `casefind run` writes."""
    store, out = tmp_path / "store", tmp_path / "out"
    assert cli("ingest", tiny_source, "--store", store).exit_code == 0
    for rule in ("frail", "segments"):
        r = cli("run", rule, "--store", store, "--out", out, "--allow-partial", "--as-of", "2024-12-31")
        assert r.exit_code == 0, r.output
        written = pq.read_schema(next(out.glob(f"{rule}-*")) / "list.parquet").names
        described = [c.name for c in describe(compile_rule(shipped_rules() / f"{rule}.yml")).columns]
        assert described == written


def test_parameters_with_their_notes(tmp_path):
    (tmp_path / "p.yml").write_text(
        "rule: p\ntitle: P\nversion: 1.0.0\nas_of: \"2026-10-31\"\nparameters:\n"
        "  min_age: 65  # the eFI is validated from 65\n  since: 2024-04-01\npopulation: age >= min_age\n"
        "features:\n  recent: count(activity) >= 1\n")
    d = describe(compile_rule(tmp_path / "p.yml"))
    assert [(p.name, p.words, p.note) for p in d.parameters] == [
        ("min_age", "65", "the eFI is validated from 65"), ("since", "2024-04-01", None)]
    assert d.population == "Aged `min_age` (65) or over."
    assert [c.name for c in d.columns][:7] == ["run_id", "rule", "as_of", "practice", "locality", "patient_id", "rank"]
