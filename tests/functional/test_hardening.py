"""Hardening (issue 8), as the hostile tests found it: one error base and its exit codes,
options blamed for their own mistakes, dates outside the data refused, names that cannot
escape their folder, cells a spreadsheet will not evaluate, and synth that never deletes
what it did not write. Each test is the reproduction of a finding."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from casefind import errors
from casefind.ingest import IngestError, StrictModeError
from casefind.kpis.history import HistoryError, HistoryLocked
from casefind.kpis.periods import PeriodError
from casefind.lists.review import ReviewImportError
from casefind.lists.run import ValidationError, _practice_files
from casefind.outputs import FORMULA_TRIGGERS, UnsafePathError, restore, safe_child, write_csv
from casefind.rules.errors import RuleError
from casefind.store import StoreBusy, StoreError
from casefind.store.coverage import CoverageError
from casefind_testdata import cli, synthetic_store

ROOT = Path(__file__).parents[2]
FRAIL = ROOT / "rules" / "frail.yml"
TRIPLE_AIM = ROOT / "rules" / "kpis" / "triple_aim.yml"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return synthetic_store(tmp_path_factory.mktemp("hardening"), 2000, 3)


# --- one error base, one exit code each ---------------------------------------------------------

@pytest.mark.parametrize("cls, code", [
    (StoreError, 1), (IngestError, 1), (ValidationError, 1), (HistoryError, 1), (StrictModeError, 3),
    (RuleError, 4), (HistoryLocked, 5), (StoreBusy, 5), (PeriodError, 2), (CoverageError, 2),
    (ReviewImportError, 1), (errors.UsageError, 2), (UnsafePathError, 1)])
def test_every_user_error_is_a_casefind_error_with_its_exit_code(cls, code):
    assert issubclass(cls, errors.CasefindError)
    assert cls.exit_code == code


def test_a_bug_is_reported_as_one_without_a_traceback_unless_debug(store, tmp_path, monkeypatch):
    import casefind.lists.run as lists_run

    def broken(*a, **k):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(lists_run, "run", broken)
    r = cli("run", FRAIL, "--store", store, "--out", tmp_path)
    assert r.exit_code == 1
    assert "failed unexpectedly" in r.output and "ZeroDivisionError: planted" in r.output
    assert "Traceback" not in r.output and "--debug" in r.output
    r = cli("--debug", "run", FRAIL, "--store", store, "--out", tmp_path)
    assert r.exit_code == 1 and "Traceback" in r.output


def test_errors_name_the_step_that_failed(tmp_path):
    r = cli("run", FRAIL, "--store", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert r.exit_code == 1
    assert "error: no store at" in r.output and "opening the store" in r.output


@pytest.mark.parametrize("args, option", [
    (("kpi", TRIPLE_AIM, "--period", "0000-01"), "--period"),
    (("kpi", TRIPLE_AIM, "--from", "2026-01", "--to", "2025-01"), "--from/--to"),
    (("kpi", TRIPLE_AIM, "--from", "1900-01", "--to", "2099-12"), "--from/--to"),
    (("report", "--period", "2026-13"), "--period"),
    (("kpi", "--kpis", "triple_aim", "--drop-period", "soon"), "--drop-period"),
    (("run", FRAIL, "--param", "=3"), "--param"),
])
def test_option_errors_point_at_the_option(store, args, option):
    r = cli(*args[:1], *args[1:], "--store", store)
    assert r.exit_code == 2, r.output
    assert option in r.output and "Traceback" not in r.output


def test_run_out_that_is_a_file_is_refused(store, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("keep me")
    r = cli("run", FRAIL, "--store", store, "--out", f)
    assert r.exit_code == 2 and f.read_text() == "keep me"


def test_a_store_path_that_is_missing_is_a_clean_error_for_every_command(tmp_path):
    for args in (("run", FRAIL), ("explain", FRAIL), ("kpi", TRIPLE_AIM, "--period", "2026-10"), ("info",),
                 ("review", "show")):
        r = cli(*args, "--store", tmp_path / "missing")
        assert r.exit_code in (1, 2), (args, r.output)
        assert "Traceback" not in r.output and "failed unexpectedly" not in r.output, (args, r.output)


# --- dates inside the data ----------------------------------------------------------------------

def test_run_after_the_data_is_refused_with_the_coverage(store, tmp_path):
    r = cli("run", FRAIL, "--store", store, "--out", tmp_path, "--as-of", "2030-01-31")
    assert r.exit_code == 2
    assert "outside the store's data" in r.output and "2026-10-31" in r.output
    assert not (tmp_path / "frail-2030-01-31").exists()


def test_run_partly_covered_needs_allow_partial_and_says_so(store, tmp_path):
    r = cli("run", FRAIL, "--store", store, "--out", tmp_path, "--as-of", "2026-11-30")
    assert r.exit_code == 2 and "--allow-partial" in r.output
    r = cli("run", FRAIL, "--store", store, "--out", tmp_path, "--as-of", "2026-11-30", "--allow-partial")
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "partly covered" in r.output
    manifest = json.loads((tmp_path / "frail-2026-11-30" / "manifest.json").read_text())
    assert "partly covered" in manifest["coverage"]["partial"]


def test_kpi_before_the_data_writes_nothing_and_a_period_can_be_dropped(store, tmp_path):
    hist = tmp_path / "h.duckdb"
    r = cli("kpi", TRIPLE_AIM, "--store", store, "--period", "2019-01", "--history", hist)
    assert r.exit_code == 2 and "outside the store's data" in r.output
    assert not hist.exists()
    assert cli("kpi", TRIPLE_AIM, "--store", store, "--period", "2026-10", "--history", hist).exit_code == 0
    r = cli("kpi", "--store", store, "--history", hist, "--kpis", "triple_aim", "--drop-period", "2026-10")
    assert r.exit_code == 0, r.output
    con = duckdb.connect(str(hist), read_only=True)
    assert con.execute("select count(*) from kpi_results").fetchone()[0] == 0
    assert con.execute("select status from kpi_runs order by started desc limit 1").fetchone()[0] == "dropped"
    con.close()


# --- names that become paths ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../../evil_out/pwn", "/etc/x", "./Z00002", ".", "..", "", ".hidden",
                                  "a/b", "a\\b", "x" * 65, "Z0 01", "=cmd"])
def test_unsafe_names_never_become_paths(tmp_path, name):
    with pytest.raises(UnsafePathError):
        safe_child(tmp_path, name, ".csv")


def test_two_practices_never_share_one_file(tmp_path):
    with pytest.raises(ValidationError, match="share one file"):
        _practice_files(tmp_path, ["Z00002", "z00002"])
    with pytest.raises(ValidationError, match="cannot name a file"):
        _practice_files(tmp_path, ["Z00001", "../../x"])
    assert set(_practice_files(tmp_path, ["Z00001", "Z00002"])) == {"Z00001", "Z00002"}


def test_a_symlinked_name_cannot_lead_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "Z00001.csv").symlink_to(outside / "x.csv")
    with pytest.raises(UnsafePathError):
        safe_child(tmp_path / "out", "Z00001", ".csv")


# --- spreadsheet safety ----------------------------------------------------------------------------

@pytest.mark.parametrize("lead", FORMULA_TRIGGERS)
def test_csv_cells_a_spreadsheet_would_evaluate_are_neutralised(tmp_path, lead):
    cell = f"{lead}HYPERLINK(\"http://x\",\"y\")"
    path = write_csv(pa.table({"note": [cell, "plain", "-5", "+44.1", None]}), tmp_path / "t.csv")
    rows = [r["note"] for r in csv.DictReader(path.open(newline=""))]
    assert rows[0] == "'" + cell
    assert rows[1:4] == ["plain", "-5", "+44.1"]  # text and plain numbers untouched
    assert restore(rows[0]) == cell


def test_kpi_export_neutralises_a_hostile_practice_name(tmp_path):
    from casefind_testdata import GOOD, write_source

    hostile = {k: list(v) for k, v in GOOD.items()}
    hostile["practices"] = [("Z00001", "=cmd|' /C calc'!A0", "LOC001", "@North", "SYS01", "+Demo ICB"),
                            ("Z00002", "-2+3", "LOC001", "@North", "SYS01", "+Demo ICB")]
    src = write_source(tmp_path / "src", hostile)
    assert cli("ingest", src, "--store", tmp_path / "store").exit_code == 0
    hist = tmp_path / "h.duckdb"
    r = cli("kpi", TRIPLE_AIM, "--store", tmp_path / "store", "--period", "2024-12", "--history", hist,
            "--export", tmp_path / "k.csv", "--allow-partial")
    assert r.exit_code == 0, r.output
    names = {row["unit_name"] for row in csv.DictReader((tmp_path / "k.csv").open(newline=""))}
    assert {"'=cmd|' /C calc'!A0", "'-2+3", "'@North", "'+Demo ICB"} <= names
    assert not any(n and n[0] in "=+@" for n in names)


# --- synth never deletes what it did not write -----------------------------------------------------

def test_synth_refuses_more_patients_than_it_can_number_at_once(tmp_path):
    t = time.perf_counter()
    r = cli("synth", "--patients", 3_000_000, "--out", tmp_path / "big")
    assert r.exit_code == 2 and "1,818,182" in r.output
    assert time.perf_counter() - t < 5 and not (tmp_path / "big").exists()


def test_synth_refuses_a_folder_it_did_not_write(tmp_path, monkeypatch):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "precious.txt").write_text("mine")
    r = cli("synth", "--patients", 50, "--out", folder)
    assert r.exit_code == 2 and (folder / "precious.txt").read_text() == "mine"
    monkeypatch.chdir(folder)
    r = cli("synth", "--patients", 50, "--out", ".")
    assert r.exit_code == 2
    assert sorted(p.name for p in folder.iterdir()) == ["precious.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_synth_replaces_its_own_output(tmp_path):
    out = tmp_path / "pop"
    assert cli("synth", "--patients", 50, "--out", out).exit_code == 0
    assert cli("synth", "--patients", 60, "--seed", 2, "--out", out).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pop"]  # no build left beside it
