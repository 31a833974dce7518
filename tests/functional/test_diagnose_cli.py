"""``casefind diagnose`` end to end: the command, its JSON summary, its files and exit codes."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from casefind.cli import main
from casefind.cli_diagnose import diagnose_command
from casefind_testdata import cli, synthetic_store

if "diagnose" not in main.commands:  # until cli.py registers it
    main.add_command(diagnose_command)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("diagnose-cli"), 3000, 8)


def test_diagnose_json_and_files(store, tmp_path):
    r = cli("diagnose", "frail", "multimorbidity", "high_utilisers", "--store", store, "--out", tmp_path,
            "--as-of", "2026-10-31", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["command"] == "diagnose" and got["as_of"] == "2026-10-31"
    assert set(got["sizes"]) == {"frail", "multimorbidity", "high_utilisers"}
    assert {t["rule"] for t in got["turnover"]} == set(got["sizes"])
    for t in got["turnover"]:
        assert t["joined"] + t["stayed"] == t["now_size"]
        assert t["stayed"] + t["left"] == t["earlier_size"]
        assert t["left"] == t["left_died"] + t["left_moved"] + t["left_no_longer_qualifies"]
    folder = tmp_path / "diagnose-2026-10-31"
    sizes = pq.read_table(folder / "sizes.parquet").to_pylist()
    for rule, total in got["sizes"].items():
        assert sum(r["people"] for r in sizes if r["rule"] == rule) == total
    upset = pq.read_table(folder / "upset.parquet").to_pylist()
    crisis = pq.read_table(folder / "crisis.parquet")
    assert crisis.num_rows == 3 * 3 * 25  # rules x groups x months -12..12
    assert sum(u["people"] for u in upset if "frail" in u["rules"].split(" & ")) == got["sizes"]["frail"]
    assert json.loads((folder / "manifest.json").read_text())["crisis"] == {"window_months": 6, "washout_months": 6}


def test_diagnose_table_and_no_curve(store, tmp_path):
    r = cli("diagnose", "frail", "--store", store, "--out", tmp_path, "--as-of", "2026-10-31", "--window", "0")
    assert r.exit_code == 0, r.output
    assert "Rule diagnostics as of 2026-10-31" in r.stdout and "frail" in r.stdout
    assert pq.read_table(tmp_path / "diagnose-2026-10-31" / "crisis.parquet").num_rows == 0


@pytest.mark.parametrize("args, code, words", [
    (["frail", "--as-of", "2031-01-31", "--window", "0"], 2, "outside the store's data"),
    (["frail", "--as-of", "31/10/2026"], 2, "is not 'rule', 'latest' or a date"),
    (["frail", "--against", "0123456789ab"], 2, "no registered run"),
    (["frail", "frail", "--window", "0"], 2, "named twice"),
    (["frail", "--as-of", "rule", "--window", "0", "--param", "nonsense"], 2, "NAME=VALUE"),
    (["frail", "--as-of", "2026-10-31", "--window", "18", "--washout", "12"], 2, "crisis curve"),
])
def test_diagnose_usage_errors(store, tmp_path, args, code, words):
    r = cli("diagnose", *args, "--store", store, "--out", tmp_path)
    assert r.exit_code == code, r.output
    assert words in r.output


def test_turnover_against_a_run_dated_after_as_of_is_refused(store, tmp_path):
    """Turnover runs forward: against a run as of 2026-10-31, an --as-of before it is a mistake."""
    ran = cli("run", "frail", "--store", store, "--out", tmp_path, "--as-of", "2026-10-31", "--json")
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(ran.stdout)["run_id"]
    r = cli("diagnose", "frail", "--against", run_id, "--as-of", "2026-06-30", "--window", "0",
            "--store", store, "--out", tmp_path)
    assert r.exit_code == 2 and "not before --as-of 2026-06-30" in r.output, r.output
    assert not (tmp_path / "diagnose-2026-06-30").exists()


def test_a_look_back_before_the_data_has_a_hint_diagnose_can_follow(store, tmp_path):
    r = cli("diagnose", "frail", "--as-of", "2024-01-31", "--window", "0", "--store", store, "--out", tmp_path)
    assert r.exit_code == 2 and "give a later --as-of" in r.output and "--allow-partial" not in r.output, r.output


def test_diagnose_rule_error_exits_4(store, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("rule: bad\npopulation: registered and\n")
    r = cli("diagnose", bad, "--store", store, "--out", tmp_path)
    assert r.exit_code == 4, r.output


@pytest.mark.parametrize("as_of", [["--as-of", "rule"], ["--as-of", "latest"], []])
def test_diagnose_default_dates(store, tmp_path, as_of):
    """'rule': the first rule's own as_of (2026-10-31); 'latest' or none: the end of the data."""
    r = cli("diagnose", "frail", *as_of, "--window", "0", "--store", store, "--out", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["as_of"] == "2026-10-31"
