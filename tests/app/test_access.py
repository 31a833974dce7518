"""Access control, route by route: a user of practice A reaches nothing of practice B (by id in
the URL, by form field, by export); unauthenticated requests are refused; roles are kept to
their pages. Table-driven over app.ROUTES: a route without a case here fails the first test."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from tests.app.conftest import PASSWORD, World, csrf_of
from tests.app.helpers import decided, handles

from casefind.app.app import ROUTES


def _b_handle(world: World) -> str:
    """A handle minted in practice B's clinician's own session."""
    c = world.client("clin_b")
    return handles(c.get(f"/practice/{world.practices[1]}").text)[0]


def _a_page(world: World, c) -> tuple[str, str]:
    """(CSRF token, a handle of one of A's patients) from A's list page."""
    page = c.get(f"/practice/{world.practices[0]}").text
    return csrf_of(page), handles(page)[0]


def cross_login(world, c):
    # signing in as A's clinician opens A's list, never B's
    r = c.get("/")
    assert r.headers["location"] == f"/practice/{world.practices[0]}"


def cross_home(world, c):
    body = c.get(c.get("/").headers["location"]).text
    assert world.practices[1] not in body
    assert not any(pid in body for pid in world.listed[world.practices[1]])


def cross_practice(world, c):
    assert c.get(f"/practice/{world.practices[1]}").status_code == 404
    assert c.get(f"/practice/{world.practices[1]}?rule=frail&status=all").status_code == 404


def cross_print(world, c):
    assert c.get(f"/practice/{world.practices[1]}/print").status_code == 404


def cross_xlsx(world, c):
    assert c.get(f"/practice/{world.practices[1]}/frail.xlsx").status_code == 404


def cross_patient(world, c):
    r = c.get(f"/patient/{_b_handle(world)}")
    assert r.status_code == 404
    assert not any(pid in r.text for pid in world.listed[world.practices[1]])
    # nor by a pseudonym, a run id or a practice code where the handle goes
    for wrong in (world.listed[world.practices[1]][0], world.run_id, world.practices[1]):
        assert c.get(f"/patient/{wrong}").status_code == 404


def _post_cross(world, c, action: str, data: dict):
    before = decided(world.store)
    token, mine = _a_page(world, c)
    r = c.post(f"/patient/{_b_handle(world)}/{action}", data={"csrf": token, **data})
    assert r.status_code == 404
    # A's own handle, with form fields naming B's patient, practice and run: only A's patient is touched
    b_patient = world.listed[world.practices[1]][0]
    c.post(f"/patient/{mine}/{action}", data={"csrf": token, "patient_id": b_patient, "practice": world.practices[1],
                                              "run_id": world.run_id, "handle": _b_handle(world), **data})
    changed = [d for d in decided(world.store) if d not in before]
    assert all(practice == world.practices[0] for _, practice, _ in changed), changed
    assert all(pid != b_patient for pid, _, _ in decided(world.store))


def cross_decide(world, c):
    _post_cross(world, c, "decision", {"decision": "declined", "reason": "patient declined"})


def cross_withdraw(world, c):
    _post_cross(world, c, "withdraw", {})


def cross_logout(world, c):
    # signing out ends A's session only: B's clinician stays signed in
    b = world.client("clin_b")
    token, _ = _a_page(world, c)
    assert c.post("/logout", data={"csrf": token}).status_code == 303
    assert b.get(f"/practice/{world.practices[1]}").status_code == 200


def cross_audit(world, c):
    assert c.get("/audit").status_code == 404
    assert c.get(f"/audit?practice={world.practices[1]}").status_code == 404


def cross_audit_csv(world, c):
    assert c.get(f"/audit.csv?practice={world.practices[1]}").status_code == 404


@dataclass(frozen=True)
class Case:
    unauthenticated: int  # the status an unauthenticated request gets
    cross: Callable  # (world, A's signed-in client): checks nothing of B's is reachable
    path: str = ""  # the path with placeholders filled (default: the route's own)


CASES = {
    "login": Case(200, cross_login),
    "login_submit": Case(400, cross_login),  # no sign-in form was loaded (no session): a fresh form, nothing checked
    "oidc_start": Case(404, cross_login),  # no OIDC provider set up here: not there (test_oidc.py tests it with one)
    "oidc_callback": Case(404, cross_login, "/oidc/callback?code=x&state=y"),
    "oidc_keys": Case(404, cross_login),  # published only with private_key_jwt (test_oidc.py)
    "logout": Case(401, cross_logout),
    "home": Case(303, cross_home),
    "practice": Case(303, cross_practice, "/practice/Z00001"),
    "print": Case(303, cross_print, "/practice/Z00001/print"),
    "xlsx": Case(401, cross_xlsx, "/practice/Z00001/frail.xlsx"),
    "patient": Case(303, cross_patient, "/patient/abc"),
    "decide": Case(401, cross_decide, "/patient/abc/decision"),
    "withdraw": Case(401, cross_withdraw, "/patient/abc/withdraw"),
    "audit": Case(303, cross_audit),
    "audit_csv": Case(401, cross_audit_csv),
}


def test_every_route_has_an_access_case():
    assert sorted(r.name for r in ROUTES) == sorted(CASES)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_unauthenticated_refused(world, route):
    c = world.client()
    path = CASES[route.name].path or route.path
    r = c.request(route.methods[0], path, data={} if "POST" in route.methods else None)
    assert r.status_code == CASES[route.name].unauthenticated
    if r.status_code == 303:
        assert r.headers["location"] == "/login"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_practice_a_reaches_nothing_of_practice_b(world, route):
    CASES[route.name].cross(world, world.client("clin_a"))


ROLE_PAGES = [  # (user, path, expected status): a role is kept to its own pages
    ("auditor", "/practice/{A}", 404), ("auditor", "/practice/{A}/print", 404), ("auditor", "/", 303),
    ("analyst", "/audit", 404), ("analyst", "/audit.csv", 404), ("analyst", "/practice/{A}/frail.xlsx", 404),
    ("clin_a", "/audit", 404), ("admin_a", "/practice/{B}", 404), ("admin_a", "/practice/{A}", 200),
    ("analyst", "/practice/{B}", 200), ("analyst", "/practice/{A}", 200), ("auditor", "/audit", 200),
]


@pytest.mark.parametrize(("user", "path", "status"), ROLE_PAGES)
def test_roles_kept_to_their_pages(world, user, path, status):
    c = world.client(user)
    assert c.get(path.format(A=world.practices[0], B=world.practices[1])).status_code == status


def test_analyst_decides_nothing(world):
    c = world.client("analyst")
    page = c.get(f"/practice/{world.practices[0]}").text
    before = decided(world.store)
    r = c.post(f"/patient/{handles(page)[0]}/decision", data={"csrf": csrf_of(page), "decision": "accepted"})
    assert r.status_code == 404
    assert decided(world.store) == before


def test_a_removed_user_is_signed_out(world):
    from casefind.app.users import UserStore

    users = UserStore(world.users_path)
    users.add("leaver", "clinician", [world.practices[0]], PASSWORD)
    c = world.client("leaver")
    assert c.get(f"/practice/{world.practices[0]}").status_code == 200
    users.remove("leaver")
    assert c.get(f"/practice/{world.practices[0]}").headers["location"] == "/login"
