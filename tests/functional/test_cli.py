"""The casefind CLI end to end, as an analyst (or a scheduler reading exit codes) meets it."""
from __future__ import annotations

from casefind.store import Store
from casefind_testdata import cli as run


def test_help_teaches():
    r = run("--help")
    assert r.exit_code == 0
    for word in ("synth", "ingest", "info", "Exit codes"):
        assert word in r.output
    r = run("ingest", "--help")
    assert "quarantined" in r.output and "--strict" in r.output


def test_ingest_then_info(tmp_path, bad_source):
    r = run("ingest", bad_source, "--store", tmp_path / "store")
    assert r.exit_code == 0, r.output
    assert "Quarantined rows by reason" in r.output and "unknown_setting" in r.output
    assert (tmp_path / "store-identities" / "current").exists()
    r = run("info", "--store", tmp_path / "store")
    assert r.exit_code == 0
    assert "3 patients in 2 practices, 1 localities, 1 systems" in r.output
    assert "event_after_death" in r.output
    r = run("info", "--store", tmp_path / "store", "--json")
    assert '"snapshot_id"' in r.output


def test_strict_exit_code_and_store_unchanged(tmp_path, tiny_source, bad_source):
    store = tmp_path / "store"
    assert run("ingest", tiny_source, "--store", store).exit_code == 0
    before = Store.open(store).snapshot_id
    r = run("ingest", bad_source, "--store", store, "--strict")
    assert r.exit_code == 3
    assert "left unchanged" in r.output
    assert Store.open(store).snapshot_id == before


def test_failures_exit_1_with_a_message(tmp_path):
    r = run("ingest", tmp_path / "nowhere", "--store", tmp_path / "s")
    assert r.exit_code == 1 and "does not exist" in r.output
    r = run("info", "--store", tmp_path / "nothing-here")
    assert r.exit_code == 1 and "casefind ingest" in r.output


def test_usage_errors_exit_2():
    assert run("ingest").exit_code == 2
    assert run("synth", "--patients", "5", "--out", "x").exit_code == 2
