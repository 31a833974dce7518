"""`casefind init` and the settings every command reads: casefind.toml from the working
folder or a parent, CASEFIND_<NAME> over it, a flag over both (issue 11, item 1)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from casefind.kpis import history
from casefind.store import Store
from casefind.store.coverage import Coverage
from casefind_testdata import cli, synthetic_store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("project-store"), 2000, 3)


@pytest.fixture
def project(tmp_path, store, monkeypatch) -> Path:
    for name in ("STORE", "OUT", "ENGINE", "AS_OF", "HISTORY", "RULES", "SUPPRESS_BELOW", "ROUND_TO", "PROJECT"):
        monkeypatch.delenv(f"CASEFIND_{name}", raising=False)
    r = cli("init", tmp_path / "proj", "--store", store)
    assert r.exit_code == 0, r.output
    (tmp_path / "proj" / "work").mkdir()
    monkeypatch.chdir(tmp_path / "proj" / "work")  # commands find casefind.toml in a parent
    return tmp_path / "proj"


def _json(r):
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def set_toml(project: Path, section: str, line: str) -> None:
    """Uncomment-or-add ``line`` under ``[section]`` of the project's casefind.toml."""
    path = project / "casefind.toml"
    text = path.read_text()
    path.write_text(text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1))


def test_init_makes_a_project_with_the_shipped_rules_and_their_provenance(project):
    names = {p.name for p in (project / "rules").glob("*.yml")}
    assert {"frail.yml", "segments.yml", "charlson.yml"} <= names
    shipped = json.loads((project / "rules" / "SHIPPED.json").read_text())
    assert "frail.yml" in shipped["files"] and "codelists/efi_deficits_snomed.csv" in shipped["files"]
    assert list((project / "rules" / "codelists").glob("*.provenance.json"))
    ignore = (project / ".gitignore").read_text()
    assert "/store/" in ignore and "*.duckdb" in ignore and "*.parquet" in ignore
    assert "casefind run frail" in (project / "README.md").read_text()


def test_init_never_writes_into_a_folder_that_has_something_in_it(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    r = cli("init", tmp_path / "full")
    assert r.exit_code == 2 and "not an empty folder" in r.output
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
    assert not list(tmp_path.glob(".full.init-*"))  # nothing half made left behind


def test_info_says_where_each_setting_came_from(project, monkeypatch, store):
    monkeypatch.setenv("CASEFIND_ENGINE", "duckdb")
    body = _json(cli("info", "--json", "--store", store))
    sources = {row["setting"]: row["source"] for row in body["settings"]}
    assert sources["[paths] store"] == "flag"
    assert sources["[defaults] engine"] == "environment"
    assert sources["[paths] out"] == "default"
    assert body["project_file"] == str((project / "casefind.toml").resolve())
    r = cli("info", "--store", store)
    assert "Settings (project file" in r.output and "environment" in r.output


def test_run_by_name_reads_store_and_out_from_the_project_file(project):
    body = _json(cli("run", "frail", "--json"))
    assert Path(body["out_dir"]) == (project / "out" / "frail-2026-10-31").resolve()
    assert Path(body["manifest"]).is_file()


def test_out_and_engine_from_flag_over_environment_over_file(project, monkeypatch, tmp_path):
    set_toml(project, "paths", 'out = "from-file"')
    set_toml(project, "defaults", 'engine = "duckdb"')
    manifest = lambda body: json.loads(Path(body["manifest"]).read_text())  # noqa: E731
    body = _json(cli("run", "frail", "--json"))
    assert Path(body["out_dir"]).parent == (project / "from-file").resolve()
    assert manifest(body)["engine"] == "duckdb"
    monkeypatch.setenv("CASEFIND_OUT", str(tmp_path / "from-env"))
    monkeypatch.setenv("CASEFIND_ENGINE", "native")
    body = _json(cli("run", "frail", "--json"))
    assert Path(body["out_dir"]).parent == tmp_path / "from-env" and manifest(body)["engine"] == "native"
    body = _json(cli("run", "frail", "--json", "--out", tmp_path / "from-flag", "--engine", "duckdb"))
    assert Path(body["out_dir"]).parent == tmp_path / "from-flag" and manifest(body)["engine"] == "duckdb"


def test_as_of_latest_is_the_end_of_the_stores_data(project, store):
    set_toml(project, "defaults", 'as_of = "latest"')
    last = Coverage.of(Store.open(store).manifest).last
    assert _json(cli("run", "frail", "--json"))["as_of"] == last.isoformat()
    assert _json(cli("run", "frail", "--json", "--as-of", "2026-09-30"))["as_of"] == "2026-09-30"
    r = cli("run", "frail", "--as-of", "soon")
    assert r.exit_code == 2 and "--as-of" in r.output


def test_kpi_history_and_disclosure_come_from_the_project_file(project):
    set_toml(project, "paths", 'history = "kpi/history.duckdb"')
    set_toml(project, "disclosure", "suppress_below = 3\nround_to = 1")
    body = _json(cli("kpi", "triple_aim", "--period", "2026-10", "--json"))
    hist = (project / "kpi" / "history.duckdb").resolve()
    assert Path(body["history"]) == hist and hist.is_file()
    log = history.runs(hist).to_pylist()
    assert "suppress_below=3, round_to=1" in log[-1]["message"]
    rows = history.read(hist, "triple_aim").to_pylist()
    counts = [r["numerator"] for r in rows if r["level"] == "practice" and r["numerator"] is not None]
    assert any(c % 5 for c in counts)  # round_to = 1: not rounded to fives
    r = cli("report", "--period", "2026-10", "--json", "--output", project / "pack.html")
    assert _json(r)["output"] == str(project / "pack.html") and (project / "pack.html").is_file()


def test_every_summary_command_speaks_json(project, tmp_path):
    checked = _json(cli("check", "frail", "hfrs", "--json"))
    assert [c["rule"] for c in checked["rules"]] == ["frail", "hfrs"]
    made = _json(cli("init", tmp_path / "second", "--json"))
    assert made["rules"] and made["kpi_files"] == ["triple_aim"]
    data = _json(cli("dataset", "frail", "--output", tmp_path / "d.parquet", "--json"))
    assert data["rows"] > 0 and (tmp_path / "d.parquet").is_file()


def _commands(group, prefix=""):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_with_a_summary_has_json_and_docs_list_it():
    from casefind.cli import main

    # explain's output is the text itself; serve runs until stopped; users add/remove/reset print one
    # line (a password shown once), not a summary (docs/scripting.md says so)
    text_only = {"explain", "serve", "users add", "users remove", "users reset"}
    docs = (Path(__file__).resolve().parents[2] / "docs" / "scripting.md").read_text()
    for name, command in _commands(main):
        if name in text_only:
            continue
        assert "--json" in {o for p in command.params for o in getattr(p, "opts", [])}, name
        assert f"| `{name}` |" in docs, f"docs/scripting.md does not list {name}'s JSON keys"
