"""A small synthetic store with identities (two practices), one run of the shipped frail
rule, and an account of each kind, for the review app's tests."""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from starlette.testclient import TestClient
from tests.casefind_testdata import cli, synthetic_store

from casefind.app.app import create_app
from casefind.app.users import UserStore
from casefind.project import shipped_rules
from casefind.reidentify import stores_of
from casefind.store import listings
from casefind.store.identities import open_identities

PASSWORD = "correct horse battery staple"
PATIENTS = 12_000  # the synthetic population's practices hold about 8,000 each: two practices


@dataclass
class World:
    root: Path
    store: Path
    out: Path
    users_path: Path
    practices: list[str]  # [A, B]
    listed: dict[str, list[str]]  # practice → the latest run's patient ids
    run_id: str
    nhs_numbers: set[str]
    names: set[str]

    def app(self, **kw):
        kw.setdefault("out_dirs", [self.out])
        return create_app(self.store, self.users_path, **kw)

    def client(self, user: str | None = None, app=None, **kw) -> TestClient:
        c = TestClient(app or self.app(**kw), base_url="http://127.0.0.1", follow_redirects=False)
        if user:
            sign_in(c, user)
        return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def sign_in(c: TestClient, user: str, password: str = PASSWORD):
    page = c.get("/login")
    r = c.post("/login", data={"username": user, "password": password, "csrf": csrf_of(page.text)})
    assert r.status_code == 303, r.text
    return r


@pytest.fixture(scope="session")
def built_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("app-store")
    store = synthetic_store(root, PATIENTS, 1)
    r = cli("run", shipped_rules() / "frail.yml", "--store", store, "--out", root / "out")
    assert r.exit_code == 0, r.output
    return root


@pytest.fixture(scope="session")
def built_sharded_store(tmp_path_factory) -> Path:
    """The same population ingested as 2 shards (each with its own identities), then run."""
    root = tmp_path_factory.mktemp("app-sharded-store")
    assert cli("synth", "--patients", PATIENTS, "--seed", 1, "--out", root / "src").exit_code == 0
    r = cli("ingest", root / "src", "--store", root / "store", "--shards", 2)
    assert r.exit_code == 0, r.output
    r = cli("run", shipped_rules() / "frail.yml", "--store", root / "store", "--out", root / "out")
    assert r.exit_code == 0, r.output
    return root


def make_world(built: Path, dest: Path) -> World:
    """A copy of the built store (each test module decides on its own copy) and its users."""
    for name in ("store", "store-identities", "out"):
        shutil.copytree(built / name, dest / name, symlinks=True)
    store = dest / "store"
    run = listings.runs(store)[-1]
    practices = sorted(run.practices)
    assert len(practices) == 2, practices
    listed = {p: sorted(pid for pid, q in run.practice_of.items() if q == p) for p in practices}
    ids = pa.concat_tables([open_identities(s.root) for s in stores_of(store)[1]])  # a sharded store's: per shard
    users = UserStore(dest / "users.json")
    a, b = practices
    users.add("clin_a", "clinician", [a], PASSWORD)
    users.add("admin_a", "practice_admin", [a], PASSWORD)
    users.add("clin_b", "clinician", [b], PASSWORD)
    users.add("analyst", "analyst", [], PASSWORD)
    users.add("auditor", "auditor", [], PASSWORD)
    return World(dest, store, dest / "out", dest / "users.json", practices, listed, run.run_id,
                 set(ids.column("nhs_number").to_pylist()),
                 set(ids.column("family_name").to_pylist()))


@pytest.fixture(scope="module")
def world(built_store, tmp_path_factory) -> World:
    return make_world(built_store, tmp_path_factory.mktemp("app-world"))
