"""The review loop from the command line: run a list, a practice fills in decisions,
`casefind review import` records them, the next run leaves declined patients off."""
from __future__ import annotations

import csv
import datetime as dt
import fcntl
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from casefind.lists.practice_file import import_name
from casefind.store import decisions, listings
from casefind_testdata import cli

RULE = Path(__file__).parents[2] / "rules" / "frail.yml"


def registered(run_dir: Path, store: Path) -> Path:
    """The run folder, its run registered in the store's list registry unless `casefind run`
    has registered it already."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if listings.get(store, manifest["run_id"]) is None:
        listings.record(store, run_id=manifest["run_id"], rule=manifest["rule"],
                        as_of=dt.date.fromisoformat(manifest["as_of"]), snapshot_id=manifest["store_snapshot"],
                        listed=pq.read_table(run_dir / "list.parquet", columns=["practice", "patient_id", "rank"]))
    return run_dir


def run_list(root: Path, as_of: str, rule: Path = RULE) -> Path:
    """`casefind run` over root/store into root/lists; the run folder, registered."""
    r = cli("run", rule, "--store", root / "store", "--out", root / "lists", "--as-of", as_of)
    assert r.exit_code == 0, r.output
    return registered(root / "lists" / f"{rule.stem}-{as_of}", root / "store")


@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    assert cli("synth", "--patients", 6000, "--seed", 4, "--out", root / "src").exit_code == 0
    assert cli("ingest", root / "src", "--store", root / "store").exit_code == 0
    return root, run_list(root, "2026-09-30")


def read_rows(path: Path) -> list[dict]:
    """A list file's rows by machine column name. A practice's file (issue 12) has
    instruction lines starting '#' above its header, plain column titles and a BOM."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        lines = [line for line in f if not line.startswith(("#", '"#'))]
    return [{(import_name(k) or k): v for k, v in r.items()} for r in csv.DictReader(lines)]


def _fill(src: Path, dst: Path, decisions_by_row: dict[int, dict]) -> list[dict]:
    rows = read_rows(src)
    for i, values in decisions_by_row.items():
        rows[i].update(values)
    with dst.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def _show(root):
    r = cli("review", "show", "--store", root / "store", "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_list_has_empty_review_columns(listed):
    _, run_dir = listed
    header = next(csv.reader((run_dir / "list.csv").open()))
    assert header[:3] == ["run_id", "rule", "as_of"]
    assert header[-4:] == ["decision", "decided_on", "reviewer", "note"]


def test_bad_rows_record_nothing_and_are_all_named(listed, tmp_path):
    root, run_dir = listed
    practice_csv = next(p for p in sorted((run_dir / "practices").glob("*.csv")) if read_rows(p))
    bad = tmp_path / "bad.csv"
    _fill(practice_csv, bad, {0: {"decision": "maybe"}, 2: {"decision": "declined", "decided_on": "2026-13-01"},
                              3: {"decision": "accepted", "decided_on": "2026-09-01"}})
    before = decisions.batches(root / "store")
    r = cli("review", "import", bad, "--store", root / "store")
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "row 2: decision 'maybe'" in out and "row 4:" in out and "before the list's as_of" in out
    assert decisions.batches(root / "store") == before


def test_import_records_once_and_the_next_run_leaves_declined_patients_off(listed, tmp_path):
    root, run_dir = listed
    practice_csv = next(p for p in sorted((run_dir / "practices").glob("*.csv")) if read_rows(p))
    filled = tmp_path / "reviewed.csv"
    rows = _fill(practice_csv, filled, {0: {"decision": "Declined", "decided_on": "2026-10-05"},
                                        1: {"decision": "accept"}, 2: {"decision": "already known"}})
    r = cli("review", "import", filled, "--store", root / "store", "--on", "2026-10-06", "--reviewer", "Dr Test")
    assert r.exit_code == 0, r.output
    status = [s for s in _show(root) if s["practice"] == rows[0]["practice"]]
    assert status == [{"rule": "frail", "practice": rows[0]["practice"], "listed": len(rows), "reviewed": 3,
                       "accepted": 1, "declined": 1, "already_known": 1}]
    n_rows = decisions.read_log(root / "store").num_rows
    assert cli("review", "import", filled, "--store", root / "store").exit_code == 0  # today's date now
    assert decisions.read_log(root / "store").num_rows == n_rows  # nothing doubled

    again = run_list(root, "2026-10-31")
    manifest = json.loads((again / "manifest.json").read_text())
    assert manifest["excluded"]["declined_recently"] >= 1
    assert manifest["excluded"]["already_known"] >= 2
    assert manifest["review_log"]["rows"] == n_rows
    ids = {row["patient_id"] for row in csv.DictReader((again / "list.csv").open())}
    assert not ids & {rows[0]["patient_id"], rows[1]["patient_id"], rows[2]["patient_id"]}


def test_record_one_decision_and_a_second_writer_is_refused(listed, monkeypatch):
    monkeypatch.setattr(decisions, "PROCESS_WAIT_S", 0.05)  # the writer waits this long for another process
    root, run_dir = listed
    pid = next(csv.DictReader((run_dir / "list.csv").open()))["patient_id"]
    args = ("review", "record", "--store", root / "store", "--rule", "frail", "--patient", pid,
            "--decision", "declined", "--on", "2026-10-20")
    with open(root / "store" / decisions.LOCK, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = cli(*args)
        assert r.exit_code == 5 and "another process is recording" in r.output
    assert "recorded" in cli(*args).output
    assert "already recorded" in cli(*args).output
    r = cli("review", "record", "--store", root / "store", "--rule", "frail", "--patient", "nobody",
            "--decision", "declined")
    assert r.exit_code == 2 and "patient 'nobody' was never listed by rule frail" in r.output
