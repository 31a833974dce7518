"""The app's Work reads each run's registry entry, list table and manifest once per process:
one practice's cached rows are never another's, a new run shows at once, and rows are fresh
objects each time (decisions are added to them per request)."""
from __future__ import annotations

import pytest
from tests.app.conftest import make_world
from tests.casefind_testdata import cli

from casefind.app.work import Work
from casefind.project import shipped_rules


@pytest.fixture(scope="module")
def world(built_store, tmp_path_factory):
    return make_world(built_store, tmp_path_factory.mktemp("work-cache"))


def test_rows_are_per_practice_and_fresh_each_time(world):
    work = Work(world.store, [world.out])
    a, b = world.practices
    listing = work.latest_runs()[0]
    rows_a, rows_b = work.rows(listing, a), work.rows(listing, b)
    assert sorted(r.patient_id for r in rows_a) == world.listed[a]
    assert sorted(r.patient_id for r in rows_b) == world.listed[b]
    assert [r.rank for r in rows_a] == sorted(r.rank for r in rows_a) and rows_a[0].reasons
    again = work.rows(listing, a)
    assert again[0] is not rows_a[0] and again[0].reasons is not rows_a[0].reasons
    again[0].decision = {"decision": "accepted"}
    assert work.rows(listing, a)[0].decision is None  # what one request adds stays its own
    assert work.run(listing.run_id) is listing and work.run("not-a-run") is None
    assert work.practices() == [a, b]


def test_a_new_run_shows_at_once(world, tmp_path):
    work = Work(world.store, [world.out])
    before = work.latest_runs()[0]
    work.rows(before, world.practices[0])
    out2 = tmp_path / "out2"
    r = cli("run", shipped_rules() / "frail.yml", "--store", world.store, "--out", out2)
    assert r.exit_code == 0, r.output
    latest = work.latest_runs()[0]
    assert latest.run_id != before.run_id
    assert work.run_folder(latest) is None  # its folder is not one the app serves: pseudonyms and ranks only
    bare = work.rows(latest, world.practices[0])
    assert bare and all(not r.reasons for r in bare)
    assert Work(world.store, [world.out, out2]).run_folder(latest).parent == out2
