"""`casefind review undo` / withdraw_decision: a decision is withdrawn by a row in the review
log (the history is kept), the next run's reviewed() no longer counts it, and a new decision
may follow; `review record` and `undo` refuse a rule no run has listed patients for."""
from __future__ import annotations

import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from casefind.cli_review_undo import command as undo
from casefind.errors import UsageError
from casefind.lists.review import record_decision, review_status, withdraw_decision
from casefind.store import decisions
from casefind_testdata import cli, synthetic_store

RULE = Path(__file__).parents[2] / "rules" / "frail.yml"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("undo")
    store = synthetic_store(root, 4000, 5)
    assert cli("run", RULE, "--store", store, "--out", root / "lists", "--as-of", "2026-09-30").exit_code == 0
    with (root / "lists" / "frail-2026-09-30" / "list.csv").open() as f:
        return store, [r["patient_id"] for r in csv.DictReader(f)]


@pytest.fixture
def store(world, tmp_path):
    shutil.copytree(world[0], tmp_path / "store", symlinks=True)
    return tmp_path / "store"


def _undo(store: Path, *args: str):
    return CliRunner().invoke(undo, ["--store", str(store), *args], catch_exceptions=False)


def _listed(store: Path, tmp_path: Path) -> set[str]:
    r = cli("run", RULE, "--store", store, "--out", tmp_path / "next", "--as-of", "2026-10-31")
    assert r.exit_code == 0, r.output
    with (tmp_path / "next" / "frail-2026-10-31" / "list.csv").open() as f:
        return {row["patient_id"] for row in csv.DictReader(f)}


def test_undo_is_recorded_and_the_next_run_lists_the_patient_again(world, store, tmp_path):
    pid = world[1][0]
    assert record_decision(store, rule="frail", patient_id=pid, decision="declined", on=dt.date(2026, 10, 5))
    assert pid not in _listed(store, tmp_path)  # declined: kept off
    r = _undo(store, "--rule", "frail", "--patient", pid, "--reviewer", "Dr A", "--note", "wrong patient", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"command": "review undo", "rule": "frail", "withdrawn": True}
    log = [row for row in decisions.read_log(store).to_pylist() if row["patient_id"] == pid]
    assert [(row["decision"], row["reviewer"], row["note"]) for row in log] == [
        ("declined", None, None), ("withdrawn", "Dr A", "wrong patient")]  # the history is kept
    shutil.rmtree(tmp_path / "next")
    assert pid in _listed(store, tmp_path)  # reviewed() no longer counts the withdrawn decision
    assert sum(r["reviewed"] for r in review_status(store, "frail").to_pylist()) == 0


def test_undo_with_nothing_in_force_records_nothing(world, store):
    pid = world[1][1]
    assert not withdraw_decision(store, rule="frail", patient_id=pid)
    assert decisions.batches(store) == []
    assert "nothing recorded" in _undo(store, "--rule", "frail", "--patient", pid).output


def test_a_new_decision_after_an_undo_counts_even_the_same_day(world, store):
    pid, day = world[1][2], dt.date(2026, 10, 6)
    assert record_decision(store, rule="frail", patient_id=pid, decision="declined", on=day)
    assert withdraw_decision(store, rule="frail", patient_id=pid, on=day)
    assert not withdraw_decision(store, rule="frail", patient_id=pid, on=day)  # once
    assert record_decision(store, rule="frail", patient_id=pid, decision="accepted", on=day)  # no conflict now
    assert record_decision(store, rule="frail", patient_id=pid, decision="declined", on=dt.date(2026, 10, 7))
    assert withdraw_decision(store, rule="frail", patient_id=pid, on=dt.date(2026, 10, 7))
    latest = decisions.latest(decisions.read_log(store)).to_pylist()
    assert latest == []  # a withdrawal withdraws every decision before it
    assert record_decision(store, rule="frail", patient_id=pid, decision="declined", on=day)  # again, after it
    assert [r["decision"] for r in decisions.latest(decisions.read_log(store)).to_pylist()] == ["declined"]


@pytest.mark.parametrize("call", [
    lambda store, pid: record_decision(store, rule="fral", patient_id=pid, decision="declined"),
    lambda store, pid: withdraw_decision(store, rule="fral", patient_id=pid),
])
def test_a_rule_with_no_runs_is_refused_with_a_suggestion(world, store, call):
    with pytest.raises(UsageError) as e:
        call(store, world[1][0])
    assert "rule 'fral'" in e.value.message and "did you mean 'frail'?" in e.value.message
    assert decisions.batches(store) == []


def test_the_cli_refuses_an_unknown_rule_and_a_future_date(world, store):
    r = cli("review", "record", "--store", store, "--rule", "fral", "--patient", world[1][0], "--decision", "declined")
    assert r.exit_code != 0 and "did you mean 'frail'?" in r.output
    with pytest.raises(UsageError, match="in the future"):  # main() prints it as an error once registered
        _undo(store, "--rule", "frail", "--patient", world[1][0], "--on", "2999-01-01")
