"""synth → ingest → info, as the README runs it, including injected contract breaks and the
embedded demo workspace."""
from __future__ import annotations

import json

import pytest

from casefind.store import Store
from casefind_testdata import cli as run


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    r = run("synth", "--patients", 3000, "--seed", 5, "--out", root / "src", "--inject-errors", 0.01)
    assert r.exit_code == 0, r.output
    return root


def test_every_injected_error_is_quarantined_with_its_reason(injected):
    r = run("ingest", injected / "src", "--store", injected / "store")
    assert r.exit_code == 0, r.output
    expected = json.loads((injected / "src" / "_truth" / "injected.json").read_text())
    st = Store.open(injected / "store")
    got = {f"{t}.{reason}": n for t, ing in st.manifest["ingest"].items()
           for reason, n in ing["quarantined"].items()}
    ids = Store.open(injected / "store-identities").manifest["ingest"]["identities"]["quarantined"]
    got.update({f"identities.{reason}": n for reason, n in ids.items()})
    # events of a quarantined patient are quarantined too (as unknown_patient), so counts of
    # unknown_patient can exceed what was injected directly; every other count is exact
    for key, n in expected.items():
        if key.endswith(".unknown_patient"):
            assert got.get(key, 0) >= n, key
        else:
            assert got.get(key, 0) == n, key
    assert {k for k in got if not k.endswith(".unknown_patient")} <= set(expected)


def test_strict_refuses_injected_errors(injected):
    r = run("ingest", injected / "src", "--store", injected / "strict-store", "--strict")
    assert r.exit_code == 3
    assert not (injected / "strict-store").exists()


def test_clean_population_ingests_without_quarantine(tmp_path):
    assert run("synth", "--patients", 2000, "--seed", 2, "--out", tmp_path / "src").exit_code == 0
    r = run("ingest", tmp_path / "src", "--store", tmp_path / "store", "--strict")
    assert r.exit_code == 0, r.output
    r = run("info", "--store", tmp_path / "store")
    assert r.exit_code == 0 and "patients in" in r.output


def test_demo_workspace_is_created_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("CASEFIND_HOME", str(tmp_path / "home"))
    r = run("info")
    assert r.exit_code == 0, r.output
    assert "demo workspace" in r.output.lower()
    assert "50,000 patients" in r.output or "50,000" in r.output
    r = run("info")  # second time: no regeneration
    assert "creating" not in r.output
