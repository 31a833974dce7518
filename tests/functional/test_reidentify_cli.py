"""`casefind reidentify --practice CODE LIST --output FILE`."""
from __future__ import annotations

import csv
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from casefind.audit import entries, verify
from casefind.cli import CasefindGroup, main
from casefind.cli_reidentify import command
from casefind_testdata import GOOD, cli, synthetic_store, write_source

PREAMBLE = ["# Test list (rule frail 1.0), as of 31/10/2026: 2 patients listed for practice Z00001",
            "# Decision, one of: accepted; declined; already_known."]
HEADER = ["Decision", "Decided on", "Reviewer", "Note", "Rank", "Patient ID (pseudonymised)", "Why listed",
          "Run", "Rule", "List as of", "Practice"]


def _cli(*args):
    group = main if "reidentify" in main.commands else CasefindGroup("casefind", commands={"reidentify": command})
    return CliRunner().invoke(group, ["reidentify", *map(str, args)], catch_exceptions=False)


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    assert cli("ingest", write_source(tmp_path / "src", GOOD), "--store", root).exit_code == 0
    return root


@pytest.fixture
def run(tmp_path):
    """A run folder as `casefind run` lays it out: list.parquet and practices/<CODE>.csv."""
    folder = tmp_path / "out" / "frail-2026-10-31"
    (folder / "practices").mkdir(parents=True)
    pq.write_table(pa.table({"run_id": ["r1"] * 3, "rule": ["frail"] * 3, "practice": ["Z00001", "Z00001", "Z00002"],
                             "patient_id": ["p1", "p3", "p2"], "rank": [1, 2, 1],
                             "reasons": ["frail", "=HYPERLINK(\"x\")", "frail"]}), folder / "list.parquet")
    with open(folder / "practices" / "Z00001.csv", "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        for line in PREAMBLE:
            w.writerow([line])
        w.writerow(HEADER)
        w.writerow(["", "", "", "'=cmd|x", "1", "p1", "frail, severe", "r1", "frail", "2026-10-31", "Z00001"])
        w.writerow(["", "", "", "", "2", "p3", "frail", "r1", "frail", "2026-10-31", "Z00001"])
    return folder


def _read(path):
    text = path.read_bytes()
    assert text.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(text.decode("utf-8-sig").splitlines()))


def test_practice_file_gets_identities_and_is_audited(store, run, tmp_path):
    out = tmp_path / "named.csv"
    r = _cli("--store", store, "--practice", "Z00001", run / "practices" / "Z00001.csv", "--output", out,
             "--user", "dr_a")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("wrote 2 rows of practice Z00001")
    rows = _read(out)
    assert rows[0][0].startswith("# IDENTIFIABLE") and [r[0] for r in rows[1:3]] == PREAMBLE
    header = rows[3]
    assert header[5:9] == ["Patient ID (pseudonymised)", "NHS number", "Name", "Date of birth"]
    assert rows[4][5:9] == ["p1", "943 476 5919", "SMITH, Ann", "1950-03-01"]
    assert rows[4][3] == "'=cmd|x"  # still neutralised
    assert rows[5][5:9] == ["p3", "", "", ""]  # no identity held
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"
    [e] = entries(store)
    assert (e["user"], e["action"], e["practice"], e["patient_ids"], e["run_id"], e["rule"]) == \
        ("dr_a", "reidentify", "Z00001", ["p1"], "r1", "frail")
    assert b"Smith" not in (store / "audit" / "audit.jsonl").read_bytes()
    assert verify(store).ok


def test_run_folder_keeps_only_the_practices_rows(store, run, tmp_path):
    out = tmp_path / "named.csv"
    r = _cli("--store", store, "--practice", "Z00002", run, "--output", out, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert (summary["rows"], summary["identified"], summary["left_out_other_practices"]) == (1, 1, 2)
    rows = _read(out)
    assert rows[1][:9] == ["run_id", "rule", "practice", "patient_id", "nhs_number", "name", "birth_date",
                           "rank", "reasons"]
    assert [r[3] for r in rows[2:]] == ["p2"] and rows[2][5] == "JONES, Bob"
    assert entries(store)[0]["patient_id"] == "p2"


def test_formula_cells_from_parquet_are_neutralised(store, run, tmp_path):
    out = tmp_path / "named.csv"
    assert _cli("--store", store, "--practice", "Z00001", run / "list.parquet", "--output", out).exit_code == 0
    assert _read(out)[3][8] == "'=HYPERLINK(\"x\")"


@pytest.mark.parametrize("args, code, message", [
    (["--practice", "Z00002", "{run}/practices/Z00001.csv", "--output", "{tmp}/x.csv"], 2, "no rows of practice"),
    (["--practice", "Z00001", "{run}", "--output", "{store}/x.csv"], 2, "inside the store"),
    (["--practice", "Z00001", "{run}/practices/Z00001.csv", "--output", "{run}/practices/Z00001.csv"], 2,
     "overwrite the list"),
    (["--practice", "Z00001", "{run}", "--output", "{tmp}/x.xlsx"], 2, ".csv"),
    (["--practice", "Z00001", "{tmp}/missing.csv", "--output", "{tmp}/x.csv"], 2, "no list file"),
    (["--practice", "Z00001", "{run}", "--output", "{tmp}/x.csv", "--role", "analyst"], 2, "analyst"),
])
def test_refusals(store, run, tmp_path, args, code, message):
    args = [a.format(run=run, tmp=tmp_path, store=store) for a in args]
    r = _cli("--store", store, *args)
    assert r.exit_code == code, r.output
    assert message in r.output
    assert not (tmp_path / "x.csv").exists() and not (store / "x.csv").exists()
    assert entries(store, action="reidentify") == []


def test_a_patient_who_moved_practice_is_left_out(store, run, tmp_path):
    with open(run / "practices" / "Z00001.csv", "a", newline="") as f:
        csv.writer(f).writerow(["", "", "", "", "3", "p2", "frail", "r1", "frail", "2026-10-31", "Z00001"])
    r = _cli("--store", store, "--practice", "Z00001", run / "practices" / "Z00001.csv", "--output",
             tmp_path / "x.csv", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["left_out_no_longer_registered"] == 1
    assert "p2" not in [row[5] for row in _read(tmp_path / "x.csv")[3:]]
    assert b"Jones" not in (tmp_path / "x.csv").read_bytes()


def test_without_identities_it_fails_clearly(tmp_path, run):
    root = tmp_path / "bare"
    no_ids = {k: v for k, v in GOOD.items() if k != "identities"}
    assert cli("ingest", write_source(tmp_path / "src", no_ids), "--store", root).exit_code == 0
    r = _cli("--store", root, "--practice", "Z00001", run, "--output", tmp_path / "x.csv")
    assert r.exit_code == 1
    assert "ingested without identities" in r.output and not (tmp_path / "x.csv").exists()


def test_a_real_runs_practice_file(tmp_path):
    store = synthetic_store(tmp_path, 2000, 3)
    r = cli("run", "frail", "--store", store, "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    [folder] = (tmp_path / "out").iterdir()
    [practice_csv] = [p for p in (folder / "practices").glob("*.csv") if p.stat().st_size]
    code = practice_csv.stem
    listed = pq.read_table(folder / "list.parquet").column("practice").to_pylist().count(code)
    r = _cli("--store", store, "--practice", code, practice_csv, "--output", tmp_path / "named.csv", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["rows"] == listed and summary["identified"] == listed
    [e] = entries(store)
    assert len(e["patient_ids"]) == listed and e["rule"] == "frail"
