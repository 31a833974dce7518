"""The review app over a sharded store reads it unchanged: every access case of
test_access.py again (a user of practice A reaches nothing of practice B, route by route),
then what only a sharded store can get wrong: a practice's patients sit in every shard, so
their names come from each shard's own identities, and a decision made in the app reaches
the shard of its patient on the next run."""
from __future__ import annotations

import datetime as dt

import pytest
from tests.app.conftest import World, csrf_of, make_world
from tests.app.helpers import decided, handles
from tests.app.test_access import *  # noqa: F403 - the same cases, with this module's world
from tests.casefind_testdata import cli

from casefind.project import shipped_rules
from casefind.reidentify import stores_of
from casefind.store import listings
from casefind.store.identities import open_identities
from casefind.store.shards import is_sharded


@pytest.fixture(scope="module")
def world(built_sharded_store, tmp_path_factory) -> World:
    w = make_world(built_sharded_store, tmp_path_factory.mktemp("app-sharded-world"))
    assert is_sharded(w.store)
    return w


def _names_by_shard(world: World, practice: str) -> list[dict[str, str]]:
    """Per shard: the practice's listed patients it holds → their family names."""
    listed = set(world.listed[practice])
    out = []
    for shard in stores_of(world.store)[1]:
        ids = open_identities(shard.root).to_pylist()
        out.append({r["patient_id"]: r["family_name"] for r in ids if r["patient_id"] in listed})
    return out


def test_a_practices_names_come_from_every_shard_and_no_other_practices(world):
    a, b = world.practices
    per_shard = _names_by_shard(world, a)
    assert all(per_shard), "each shard holds some of the practice's listed patients"
    page = world.client("clin_a").get(f"/practice/{a}").text
    for names in per_shard:
        assert any(name.upper() in page.upper() for name in names.values())
    b_names = {n for shard in _names_by_shard(world, b) for n in shard.values()}
    a_names = {n for shard in per_shard for n in shard.values()}
    assert not any(n.upper() in page.upper() for n in b_names - a_names)


def _run_today(world: World):
    """frail as of today, when the app dates its decisions (already known within 12 months)."""
    r = cli("run", shipped_rules() / "frail.yml", "--store", world.store, "--out", world.out,
            "--as-of", dt.date.today().isoformat(), "--allow-partial")
    assert r.exit_code == 0, r.output
    return listings.runs(world.store)[-1]


def test_a_decision_in_the_app_keeps_its_patient_off_the_next_sharded_run(built_sharded_store, tmp_path):
    world = make_world(built_sharded_store, tmp_path)  # its own copy: this test adds runs
    a = world.practices[0]
    first = _run_today(world)
    c = world.client("clin_a")
    page = c.get(f"/practice/{a}").text
    handle = handles(page)[-1]
    before = decided(world.store)
    patient_page = c.get(f"/patient/{handle}").text
    r = c.post(f"/patient/{handle}/decision", data={"csrf": csrf_of(patient_page), "decision": "already_known"})
    assert r.status_code == 303
    [(pid, practice, decision)] = [d for d in decided(world.store) if d not in before]
    assert (practice, decision) == (a, "already_known") and first.practice_of.get(pid) == a
    assert pid not in _run_today(world).practice_of  # the same data and date: only the decision differs


def test_reidentify_names_a_practices_list_from_every_shard(world, tmp_path):
    import json

    a = world.practices[0]
    run_dir = next(world.out.glob("frail-*"))
    r = cli("reidentify", run_dir, "--store", world.store, "--practice", a, "--output", tmp_path / "named.csv",
            "--role", "clinician", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["rows"] == summary["identified"] == len(world.listed[a]) and summary["without_identity"] == 0
    text = (tmp_path / "named.csv").read_text(encoding="utf-8-sig").upper()
    for names in _names_by_shard(world, a):
        assert all(n.upper() in text for n in names.values())
