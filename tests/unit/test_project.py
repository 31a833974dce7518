"""casefind.toml, the environment and flags: precedence for every setting, and clear errors.

The issue asks: "Settings precedence (flag > environment > casefind.toml > default) tested for
every setting." The table below gives, per setting, a value for each layer; the test stacks the
layers and peels them off one at a time."""
from __future__ import annotations

from pathlib import Path

import pytest

from casefind.errors import CasefindError
from casefind.project import SETTINGS, ProjectFileError, find_project_file, load, resolve_rule, shipped_rules

# setting: (flag value, environment text, casefind.toml text, what each gives)
LAYERS = {
    "store": (Path("/f/store"), "e/store", '"t/store"'),
    "identities": (Path("/f/ids"), "e/ids", '"t/ids"'),
    "out": (Path("/f/out"), "e/out", '"t/out"'),
    "history": (Path("/f/h.duckdb"), "e/h.duckdb", '"t/h.duckdb"'),
    "rules": (Path("/f/rules"), "e/rules", '"t/rules"'),
    "engine": ("duckdb", "native", '"duckdb"'),
    "as_of": ("2026-01-31", "latest", '"2025-03-31"'),
    "suppress_below": (3, "4", "6"),
    "round_to": (2, "10", "1"),
}


def expected(name: str, layer: str, root: Path, cwd: Path):
    flag, env, toml = LAYERS[name]
    kind = SETTINGS[name].kind
    if layer == "default":
        return SETTINGS[name].default
    if kind == "path":
        return {"flag": flag, "environment": cwd / env, "casefind.toml": root / toml.strip('"')}[layer]
    if kind == "count":
        return int({"flag": flag, "environment": env, "casefind.toml": toml}[layer])
    return {"flag": flag, "environment": env, "casefind.toml": toml.strip('"')}[layer]


def test_every_setting_has_layers_in_the_table():
    assert set(LAYERS) == set(SETTINGS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_flag_beats_environment_beats_project_file_beats_default(name, tmp_path, monkeypatch):
    setting = SETTINGS[name]
    root = tmp_path / "project"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "casefind.toml").write_text(f"[{setting.section}]\n{name} = {LAYERS[name][2]}\n")
    cwd = root / "sub" / "deeper"  # the file is found from a subfolder
    monkeypatch.chdir(cwd)
    flag, env, _ = LAYERS[name]
    environ = {setting.env: env}
    stacks = [("flag", {name: flag}, environ), ("environment", {}, environ), ("casefind.toml", {}, {})]
    for layer, flags, env_now in stacks:
        project = load(flags, environ=env_now)
        assert project.source(name) == layer, layer
        assert project.get(name) == expected(name, layer, root.resolve(), cwd), layer
    (root / "casefind.toml").unlink()
    project = load({}, environ={})
    assert (project.source(name), project.get(name)) == ("default", setting.default)


def test_an_empty_environment_variable_counts_as_unset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load({}, environ={"CASEFIND_ENGINE": ""}).source("engine") == "default"


def test_the_nearest_project_file_wins(tmp_path):
    (tmp_path / "casefind.toml").write_text("[defaults]\nengine = \"native\"\n")
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "casefind.toml").write_text("[defaults]\nengine = \"duckdb\"\n")
    assert find_project_file(tmp_path / "inner") == (tmp_path / "inner" / "casefind.toml").resolve()
    assert load({}, cwd=tmp_path / "inner", environ={}).get("engine") == "duckdb"
    assert load({}, cwd=tmp_path, environ={}).get("engine") == "native"


def test_casefind_project_names_the_project(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "casefind.toml").write_text("[paths]\nout = \"lists\"\n")
    project = load({}, cwd=tmp_path, environ={"CASEFIND_PROJECT": str(tmp_path / "p")})
    assert project.get("out") == (tmp_path / "p" / "lists").resolve()
    with pytest.raises(ProjectFileError, match=r"no casefind\.toml"):
        load({}, cwd=tmp_path, environ={"CASEFIND_PROJECT": str(tmp_path / "nowhere")})


@pytest.mark.parametrize("body, words", [
    ("[paths\nstore = 1", ["not valid TOML"]),
    ("[path]\nstore = \"x\"", ["unknown section [path]", "did you mean 'paths'"]),
    ("[paths]\nstor = \"x\"", ["has no setting 'stor'", "did you mean 'store'"]),
    ("[paths]\nstore = 3", ["store must be a path"]),
    ("[defaults]\nengine = \"duck\"", ["engine 'duck' is not one of", "did you mean 'duckdb'"]),
    ("[defaults]\nas_of = \"yesterday\"", ["as_of 'yesterday' is not 'rule', 'latest' or a date"]),
    ("[defaults]\nas_of = \"2026-02-30\"", ["is not 'rule', 'latest' or a date"]),
    ("[disclosure]\nsuppress_below = -1", ["suppress_below must be a whole number"]),
    ("[disclosure]\nround_to = \"five\"", ["round_to must be a whole number"]),
    ("[disclosure]\nround_to = true", ["round_to must be a whole number"]),
])
def test_a_bad_project_file_is_one_clear_error(tmp_path, body, words):
    (tmp_path / "casefind.toml").write_text(body)
    with pytest.raises(ProjectFileError) as caught:
        load({}, cwd=tmp_path, environ={})
    text = f"{caught.value.message} {caught.value.hint}"
    assert str(tmp_path) in text
    for w in words:
        assert w in text
    assert caught.value.exit_code == 2


def test_a_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ProjectFileError, match="CASEFIND_ROUND_TO"):
        load({}, cwd=tmp_path, environ={"CASEFIND_ROUND_TO": "x"})


def test_a_toml_date_is_an_as_of(tmp_path):
    (tmp_path / "casefind.toml").write_text("[defaults]\nas_of = 2026-04-30\n")
    assert load({}, cwd=tmp_path, environ={}).get("as_of") == "2026-04-30"


def test_rules_by_name_come_from_the_project_then_the_shipped_rules(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project = load({}, environ={})
    assert resolve_rule("frail", project) == shipped_rules() / "frail.yml"
    assert resolve_rule("triple_aim", project, kind="KPI file") == shipped_rules() / "kpis" / "triple_aim.yml"
    (tmp_path / "casefind.toml").write_text("")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "frail.yml").write_text("rule: frail\n")
    project = load({}, environ={})
    assert resolve_rule("frail", project) == tmp_path.resolve() / "rules" / "frail.yml"
    assert resolve_rule("hfrs", project) == shipped_rules() / "hfrs.yml"  # not in the project: shipped
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.yml").write_text("rule: x\n")
    assert resolve_rule("other/x.yml", project) == Path("other/x.yml")  # a path stays a path
    for missing in ("other/y.yml", "../frail", "y.yml"):  # a path to nothing: a usage error with a hint
        with pytest.raises(CasefindError, match=f"no such rule file: {missing}") as caught:
            resolve_rule(missing, project)
        assert caught.value.exit_code == 2 and "give the path of a .yml file" in caught.value.hint
    with pytest.raises(CasefindError, match="no rule named 'fral'") as caught:
        resolve_rule("fral", project)
    assert "did you mean 'frail'" in caught.value.hint
    with pytest.raises(CasefindError, match="neither a file nor a rule name"):
        resolve_rule("fr ail", project)


def test_the_shipped_rules_are_package_data():
    names = {p.name for p in shipped_rules().glob("*.yml")}
    assert {"frail.yml", "multimorbidity.yml", "segments.yml"} <= names
    assert (shipped_rules() / "kpis" / "triple_aim.yml").is_file()
    assert list((shipped_rules() / "codelists").glob("*.provenance.json"))
