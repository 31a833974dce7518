"""Re-identification: only a practice's own patients, only for roles that give care, every
call audited with pseudonymised ids, never with a name or NHS number."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from casefind.audit import entries, verify
from casefind.contract.schema import IDENTIFIER_NAMES
from casefind.reidentify import Identity, ReidentificationRefused, identities_for
from casefind.store import Store
from casefind.store.identities import IdentitiesMismatch
from casefind_testdata import GOOD, cli, write_source

SECRETS = (b"9434765919", b"4010232137", b"Ann", b"Smith", b"Bob", b"Jones")


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    r = cli("ingest", write_source(tmp_path / "src", GOOD), "--store", root)
    assert r.exit_code == 0, r.output
    return root


def _ask(store, **kw):
    args = {"practice": "Z00001", "patient_ids": ["p1"], "user": "dr_a", "role": "clinician",
            "purpose": "MDT review", **kw}
    return identities_for(store, **args)


def test_own_patient_is_identified_and_audited(store):
    got = _ask(store, run_id="r1", rule="frail", action="view_patient")
    assert list(got) == ["p1"]
    who = got["p1"]
    assert (who.nhs_number, who.given_name, who.family_name) == ("9434765919", "Ann", "Smith")
    assert who.birth_date == dt.date(1950, 3, 1) and who.practice == "Z00001"
    assert who.display_name == "SMITH, Ann"
    assert who.nhs_number_formatted == "943 476 5919"
    assert who.age_on(dt.date(2025, 3, 1)) == 75 and who.age_on(dt.date(2025, 2, 28)) == 74
    assert "Smith" not in repr(who) and "9434765919" not in repr(who)
    [e] = entries(store)
    assert (e["user"], e["role"], e["action"], e["practice"], e["patient_id"], e["run_id"], e["rule"]) == \
        ("dr_a", "clinician", "view_patient", "Z00001", "p1", "r1", "frail")
    assert e["detail"]["purpose"] == "MDT review" and e["detail"]["revealed"] == 1


def test_a_list_is_audited_with_its_ids(store):
    got = _ask(store, patient_ids=["p1", "p3", "p1"], action="view_list")
    assert list(got) == ["p1"]  # p3 is registered here but has no identity held
    [e] = entries(store)
    assert e["patient_ids"] == ["p1"] and e["patient_id"] is None
    assert e["detail"]["requested"] == 2 and e["detail"]["revealed"] == 1


@pytest.mark.parametrize("kw", [
    {"patient_ids": ["p2"]},                    # registered at Z00002
    {"patient_ids": ["p1", "p2"]},              # one of another practice refuses the lot
    {"patient_ids": ["nobody"]},
    {"practice": "Z00002", "patient_ids": ["p1"]},
    {"practice": "Q99999"},
])
def test_another_practices_patient_is_refused_and_nothing_revealed(store, kw):
    with pytest.raises(ReidentificationRefused, match="not registered at practice") as e:
        _ask(store, **kw)
    assert e.value.exit_code == 1 and "nothing was revealed" in e.value.message
    [entry] = entries(store)
    assert entry["action"] == "reidentify_refused"
    assert entries(store, action="reidentify") == []


@pytest.mark.parametrize("kw, match", [
    ({"role": "analyst"}, "may not see patients by name"),
    ({"role": "auditor"}, "may not see patients by name"),
    ({"role": "root"}, "may not see patients by name"),
    ({"action": "decide"}, "is not one of"),
    ({"purpose": " "}, "purpose"),
])
def test_roles_that_give_no_care_are_refused(store, kw, match):
    with pytest.raises(ReidentificationRefused, match=match):
        _ask(store, **kw)
    [entry] = entries(store)
    assert entry["action"] == "reidentify_refused" and entry["patient_ids"] == ["p1"]


@pytest.mark.parametrize("role", ["clinician", "practice_admin"])
def test_practice_roles_may(store, role):
    assert list(_ask(store, role=role)) == ["p1"]


def test_every_call_is_audited_and_the_log_never_holds_identities(store):
    _ask(store)
    _ask(store, practice="Z00002", patient_ids=["p2"], user="dr_b", action="print_list")
    with pytest.raises(ReidentificationRefused):
        _ask(store, patient_ids=["p2"])
    with pytest.raises(ReidentificationRefused):
        _ask(store, role="analyst")
    assert [e["action"] for e in entries(store)] == ["reidentify", "print_list", "reidentify_refused",
                                                     "reidentify_refused"]
    assert verify(store).ok
    for path in store.rglob("*"):  # the audit log, the snapshot, everything in the analysis store
        if path.is_file():
            data = path.read_bytes()
            assert not any(s in data for s in SECRETS), path


def test_the_analysis_store_has_no_identity_columns(store):
    s = Store.open(store)
    for name in s.manifest["tables"]:
        columns = {c.lower() for c in s.table(name).columns}
        assert not columns & set(IDENTIFIER_NAMES), name
    assert not (s.dir / "identities.arrow").exists()


def test_identities_of_another_snapshot_are_refused(store, tmp_path):
    aside = tmp_path / "old-identities"
    shutil.copytree(tmp_path / "store-identities", aside, symlinks=True)
    changed = {**GOOD, "diagnoses": GOOD["diagnoses"][:2]}
    assert cli("ingest", write_source(tmp_path / "src2", changed), "--store", store).exit_code == 0
    shutil.rmtree(tmp_path / "store-identities")
    shutil.copytree(aside, tmp_path / "store-identities", symlinks=True)  # last month's identities
    with pytest.raises(IdentitiesMismatch, match=r"belong to snapshot .*, the store is at .*re-ingest") as e:
        _ask(store)
    assert e.value.exit_code == 1
    assert entries(store, action="reidentify") == []  # nothing revealed, so nothing to audit


def test_a_store_ingested_without_identities_is_refused(tmp_path):
    no_ids = {k: v for k, v in GOOD.items() if k != "identities"}
    root = tmp_path / "store"
    assert cli("ingest", write_source(tmp_path / "src", no_ids), "--store", root).exit_code == 0
    with pytest.raises(IdentitiesMismatch, match="ingested without identities"):
        _ask(root)


def test_no_ids_asked_reveals_nothing(store):
    assert _ask(store, patient_ids=[]) == {}
    assert entries(store) == []


def test_identity_is_frozen():
    who = Identity("p1", "Z00001", "9434765919", "Ann", "Smith", None)
    with pytest.raises(AttributeError):
        who.nhs_number = "x"
    assert who.age is None and who.date_of_birth is None


def test_names_are_not_held_in_memory_after_a_new_ingest_removes_them(store, tmp_path, monkeypatch):
    """The identities cache keeps one file per store or shard; a new ingest withdraws the
    last snapshot's identities, and the next read forgets them in memory too."""
    from casefind import reidentify

    monkeypatch.setattr(reidentify, "_CACHE", reidentify._Cache())  # not the other tests' stores
    _ask(store)
    before = set(reidentify._CACHE._held)
    changed = {**GOOD, "diagnoses": GOOD["diagnoses"][:2]}
    assert cli("ingest", write_source(tmp_path / "src2", changed), "--store", store).exit_code == 0
    _ask(store)
    after = set(reidentify._CACHE._held)
    assert len(after - before) == 1 and not any(Path(name).exists() for name in before)  # withdrawn
    assert all(Path(name).exists() for name in after)  # ... and forgotten
