"""casefind catalogue end to end (issue 11): after `casefind run` and `casefind kpi` on a small
store, the catalogue shows each one's last run, says "changed since" once the file is
edited, lists a broken rule with its error, and writes one self-contained HTML file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from casefind.cli_catalogue import command
from casefind.store import Store
from casefind_testdata import cli, synthetic_store

ROOT = Path(__file__).parents[2]
SETTINGS = ("CASEFIND_STORE", "CASEFIND_OUT", "CASEFIND_HISTORY", "CASEFIND_RULES", "CASEFIND_PROJECT")


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    """A wide console, so that no cell of the table wraps however long tmp_path is (under
    pytest-xdist it is longer)."""
    from casefind import ui

    monkeypatch.setattr(ui.console, "width", 200)


def catalogue(*args):
    """`casefind catalogue ...` through the casefind command group (its error handling),
    whether or not cli.py has registered the command yet."""
    from casefind.cli import CasefindGroup, main

    if "catalogue" in main.commands:
        return cli("catalogue", *args)
    group = CasefindGroup("casefind", commands=[command])
    return CliRunner().invoke(group, ["catalogue", *map(str, args)], catch_exceptions=False)


@pytest.fixture(autouse=True)
def no_settings(monkeypatch, tmp_path):
    """No settings from the environment, no casefind.toml above, no demo workspace."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CASEFIND_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A copy of the shipped rules, frail run and triple_aim computed over a small store."""
    root = tmp_path_factory.mktemp("catalogue")
    store = synthetic_store(root, 2000, 5)
    rules = Path(shutil.copytree(ROOT / "rules", root / "rules"))
    out, history = root / "out", root / "history.duckdb"
    r = cli("run", rules / "frail.yml", "--store", store, "--out", out)
    assert r.exit_code == 0, r.output
    r = cli("kpi", rules / "kpis" / "triple_aim.yml", "--store", store, "--period", "2026-10", "--history", history)
    assert r.exit_code == 0, r.output
    return {"rules": rules, "store": store, "out": out, "history": history}


def _json(ran, *extra) -> dict:
    r = catalogue("--json", "--rules", ran["rules"], "--store", ran["store"], "--out", ran["out"],
                  "--history", ran["history"], *extra)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _entry(data: dict, name: str) -> dict:
    return next(e for e in data["entries"] if e["name"] == name)


def test_the_last_run_of_a_rule_and_a_kpi_file_and_changed_since(ran):
    snapshot = Store.open(ran["store"]).snapshot_id
    manifest = json.loads((ran["out"] / "frail-2026-10-31" / "manifest.json").read_text())
    data = _json(ran)
    frail = _entry(data, "frail")["last_run"]
    assert (frail["source"], frail["run_id"], frail["as_of"], frail["store_snapshot"], frail["changed"]) == \
           ("manifest", manifest["run_id"], "2026-10-31", snapshot, False)
    assert frail["date"] == manifest["created"] and frail["file_sha256"] == manifest["rule_sha256"]
    kpi = _entry(data, "triple_aim")["last_run"]
    assert (kpi["source"], kpi["periods"], kpi["store_snapshot"], kpi["changed"], kpi["status"]) == \
           ("KPI history", ["2026-10"], snapshot, False, "ok")
    assert _entry(data, "hfrs")["last_run"] is None
    r = catalogue("--rules", ran["rules"], "--store", ran["store"], "--out", ran["out"], "--history", ran["history"])
    assert r.exit_code == 0 and "unchanged since last run" in r.output and "changed since run" not in r.output

    frail_file = ran["rules"] / "frail.yml"
    original = frail_file.read_text()
    try:
        frail_file.write_text(original.replace("min_age: 65", "min_age: 70"))
        data = _json(ran)
        assert _entry(data, "frail")["last_run"]["changed"] is True
        assert _entry(data, "triple_aim")["last_run"]["changed"] is False
        r = catalogue("--rules", ran["rules"], "--store", ran["store"], "--out", ran["out"])
        assert r.exit_code == 0 and "changed since last run" in " ".join(r.output.split())
    finally:
        frail_file.write_text(original)


def test_without_manifests_the_store_registry_gives_the_last_run(ran, tmp_path):
    data = _json(ran, "--out", tmp_path / "elsewhere")
    frail = _entry(data, "frail")["last_run"]
    assert (frail["source"], frail["as_of"], frail["changed"]) == ("store registry", "2026-10-31", False)
    assert frail["date"] and frail["file_sha256"]  # the registry records when, and the rule's hash


def test_a_broken_rule_is_listed_with_its_error_and_the_rest_still_appear(ran):
    broken = ran["rules"] / "broken.yml"
    broken.write_text("rule: broken\nas_of: \"2026-10-31\"\npopulation: age >=\n")
    try:
        data = _json(ran)
        r = catalogue("--rules", ran["rules"])
    finally:
        broken.unlink()
    names = [e["name"] for e in data["entries"]]
    assert len(names) == 11 and "broken" in names and "frail" in names  # 7 rules, 1 KPI file, 2 budgets, broken
    assert _entry(data, "broken")["error"].startswith(f"{broken}:3:")
    assert [e["name"] for e in data["entries"] if not e["ok"]] == ["broken"]
    assert r.exit_code == 0 and "does not compile" in r.output and "broken.yml:3:" in r.output.replace("\n", "")


def test_html_is_written_to_the_current_folder_and_is_self_contained(ran, tmp_path):
    r = catalogue("--html", "--rules", ran["rules"], "--out", ran["out"])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "catalogue.html").read_text()
    assert "frail" in html and "triple_aim" in html and "unchanged since last run" in html
    assert "<script" not in html and "<link" not in html and 'href="http' not in html
    assert not (tmp_path / "home").exists()  # no store given: the demo workspace is not made for a catalogue
    target = tmp_path / "sub" / "cat.html"
    target.parent.mkdir()
    r = catalogue("--output", target, "--rules", ran["rules"], "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["html"] == str(target) and target.is_file()


@pytest.mark.parametrize("output, message", [
    ("missing/cat.html", "--output: the folder missing does not exist"),
    (".", "is a folder"),
    ("cat.txt", "give a file ending .html"),
])
def test_a_bad_output_is_a_usage_error(ran, output, message):
    r = catalogue("--output", output, "--rules", ran["rules"])
    assert r.exit_code == 2 and message in " ".join(r.output.split())
    assert not list(Path.cwd().glob("*.html"))


def test_a_missing_rules_folder_is_a_usage_error(tmp_path):
    r = catalogue("--rules", tmp_path / "nope")
    assert r.exit_code == 2 and "--rules" in r.output
