"""Sign-in, sessions, CSRF, lockout, throttling, headers, and what the analyst and the
auditor receive."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from markupsafe import escape
from tests.app.conftest import PASSWORD, csrf_of, sign_in
from tests.app.helpers import decided, handles

from casefind import audit
from casefind.app import auth
from casefind.app.users import LOCK_AFTER, UserStore
from casefind.cli_serve import users_command
from casefind.errors import UsageError


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _login(c, user, password):
    page = c.get("/login")
    return c.post("/login", data={"username": user, "password": password, "csrf": csrf_of(page.text)})


def _users_cli(world, *args, stdin=None):
    r = CliRunner().invoke(users_command, [*map(str, args), "--users", str(world.users_path), "--store",
                                           str(world.store)], input=stdin, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


@pytest.mark.parametrize("token", [None, "", "wrong-token"], ids=["missing", "empty", "wrong"])
@pytest.mark.parametrize("action", ["decision", "withdraw"])
def test_csrf_refused_on_decisions(world, token, action):
    c = world.client("clin_a")
    page = c.get(f"/practice/{world.practices[0]}").text
    data = {"decision": "accepted"} | ({} if token is None else {"csrf": token})
    before = decided(world.store)
    r = c.post(f"/patient/{handles(page)[0]}/{action}", data=data)
    assert r.status_code == 403
    assert decided(world.store) == before


@pytest.mark.parametrize("path", ["/login", "/logout"])
def test_csrf_refused_on_sign_in_and_out(world, path):
    c = world.client("clin_a")
    c.get("/login")
    r = c.post(path, data={"username": "clin_a", "password": PASSWORD, "csrf": "forged"})
    assert r.status_code == 403
    assert c.get(f"/practice/{world.practices[0]}").status_code == 200  # still signed in: logout refused


def test_a_csrf_token_of_another_session_is_refused(world):
    a, b = world.client("clin_a"), world.client("admin_a")
    other = csrf_of(b.get(f"/practice/{world.practices[0]}").text)
    page = a.get(f"/practice/{world.practices[0]}").text
    assert a.post(f"/patient/{handles(page)[0]}/decision", data={"decision": "accepted", "csrf": other}).status_code \
        == 403


def test_a_locked_account_stays_locked_until_reset(world):
    UserStore(world.users_path).add("locky", "clinician", [world.practices[0]], PASSWORD)
    c = world.client()
    for _ in range(LOCK_AFTER):
        assert _login(c, "locky", "not the password").status_code == 401
    assert UserStore(world.users_path).get("locky").locked
    r = _login(c, "locky", PASSWORD)
    assert r.status_code == 401 and str(escape(auth.REFUSED)) in r.text  # the right password, refused: locked
    assert world.client().get("/").headers["location"] == "/login"
    _users_cli(world, "reset", "locky", "--password-stdin", stdin="a brand new passphrase\n")
    assert not UserStore(world.users_path).get("locky").locked
    assert _login(world.client(), "locky", PASSWORD).status_code == 401  # the old password is gone
    assert _login(world.client(), "locky", "a brand new passphrase").status_code == 303
    actions = [e["action"] for e in audit.entries(world.store) if (e.get("detail") or {}).get("account") == "locky"
               or e["user"] == "locky"]
    assert {"sign_in_failed", "password_reset", "account_unlocked", "sign_in"} <= set(actions)


def test_sign_in_is_throttled_per_user_name_then_allowed_again(world):
    clock = Clock()
    app = world.app(clock=clock)
    c = world.client(app=app)
    for _ in range(10):
        assert _login(c, "nobody-here", "guess").status_code == 401
    r = _login(c, "nobody-here", "guess")
    assert str(escape(auth.THROTTLED)) in r.text
    clock.now += 301
    assert str(escape(auth.REFUSED)) in _login(c, "nobody-here", "guess").text


def test_throttle_counts_per_client_address():
    clock = Clock()
    t = auth.Throttle(3, 60, clock)
    for _ in range(3):
        t.failed("10.0.0.1")
    assert t.blocked("10.0.0.1") and not t.blocked("10.0.0.2")
    clock.now += 61
    assert not t.blocked("10.0.0.1")


@pytest.mark.parametrize(("steps", "signed_in"), [
    ([14 * 60], True),                 # within the idle timeout
    ([16 * 60], False),                # idle too long
    ([14 * 60] * 40, False),           # active, but past the absolute timeout (8 h)
], ids=["active", "idle", "absolute"])
def test_session_timeouts(world, steps, signed_in):
    clock = Clock()
    c = world.client("clin_a", app=world.app(clock=clock))
    path = f"/practice/{world.practices[0]}"
    ok = True
    for step in steps:
        clock.now += step
        ok = c.get(path).status_code == 200
    assert ok is signed_in


def test_sign_out_ends_the_session(world):
    c = world.client("clin_a")
    page = c.get(f"/practice/{world.practices[0]}").text
    assert c.post("/logout", data={"csrf": csrf_of(page)}).status_code == 303
    assert c.get(f"/practice/{world.practices[0]}").headers["location"] == "/login"


def test_signing_in_gives_a_new_session_token(world):
    c = world.client()
    c.get("/login")
    before = c.cookies.get("casefind_session")
    sign_in(c, "clin_a")
    assert c.cookies.get("casefind_session") not in (None, before)


def test_session_cookie_flags(world):
    for secure, name in ((False, "casefind_session"), (True, "__Host-casefind_session")):
        c = world.client(app=world.app(secure_cookies=secure))
        cookie = c.get("/login").headers["set-cookie"]
        assert cookie.startswith(name + "=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert ("Secure" in cookie) is secure


def _every_response(world):
    """A response of every kind: each route signed in and not, static, not found, refused."""
    c = world.client("clin_a")
    page = c.get(f"/practice/{world.practices[0]}")
    h = handles(page.text)[0]
    out = [page, c.get("/"), c.get(f"/patient/{h}"), c.get(f"/practice/{world.practices[0]}/print"),
           c.get(f"/practice/{world.practices[0]}/frail.xlsx"), c.get("/nowhere"), c.get("/audit"),
           c.post(f"/patient/{h}/decision", data={}), world.client().get("/login"), world.client().get("/"),
           world.client().post("/logout"), world.client("auditor").get("/audit"),
           world.client("auditor").get("/audit.csv")]
    return out


def test_security_headers_on_every_response(world):
    responses = _every_response(world)
    assert {r.status_code for r in responses} >= {200, 303, 401, 403, 404}
    for r in responses:
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "no-store" in r.headers["cache-control"]
    static = world.client().get("/static/app.css")
    assert static.status_code == 200 and static.headers["x-content-type-options"] == "nosniff"


def test_pages_have_no_inline_script_or_style(world):
    for r in _every_response(world):
        if r.headers.get("content-type", "").startswith("text/html"):
            assert "<script" not in r.text and "style=" not in r.text and "<style" not in r.text


def _full_names(world) -> set[str]:
    from casefind.store.identities import open_identities

    ids = open_identities(world.store).to_pylist()
    return {f"{r['family_name'].upper()}, {r['given_name']}" for r in ids} | \
        {f"{r['given_name']} {r['family_name']}" for r in ids}


def _identifiers(world) -> list[str]:
    numbers = [n for n in world.nhs_numbers if n]
    return numbers + [f"{n[:3]} {n[3:6]} {n[6:]}" for n in numbers] + sorted(_full_names(world))


def test_clinicians_see_names_and_nhs_numbers_of_their_own_practice(world):
    """The control for the analyst's test below: the scan finds identities where they are."""
    c = world.client("clin_a")
    page = c.get(f"/practice/{world.practices[0]}").text
    found = [x for x in _identifiers(world) if x in page]
    assert len([x for x in found if re.fullmatch(r"\d{3} \d{3} \d{4}", x)]) == len(world.listed[world.practices[0]])


def test_the_analyst_never_receives_an_nhs_number_or_name(world):
    c = world.client("analyst")
    bodies = [c.get("/"), c.get("/audit")]
    for p in world.practices:
        page = c.get(f"/practice/{p}")
        bodies += [page, c.get(f"/practice/{p}/print"), c.get(f"/practice/{p}/frail.xlsx"),
                   c.get(f"/practice/{p}?status=undecided")]
        bodies += [c.get(f"/patient/{h}") for h in handles(page.text)]
    assert sum(r.status_code == 200 for r in bodies) >= 2 + 2 * 2 + 50
    identifiers = _identifiers(world)
    for r in bodies:
        leaked = [x for x in identifiers if x in r.text]
        assert not leaked, (r.url, leaked[:3])
    shown = [e for e in audit.entries(world.store, user="analyst") if e["action"] in ("view_list", "view_patient")]
    assert shown == []  # identities_for was never called for the analyst


def test_the_auditor_sees_the_trail_and_nothing_identifiable(world):
    world.client("clin_a").get(f"/practice/{world.practices[0]}")
    c = world.client("auditor")
    page = c.get(f"/audit?action=view_list&practice={world.practices[0]}")
    assert page.status_code == 200 and "view_list" in page.text
    export = c.get(f"/audit.csv?action=view_list&practice={world.practices[0]}")
    assert export.status_code == 200 and export.text.count("view_list") >= 1
    for r in (page, export):
        assert not [x for x in _identifiers(world) if x in r.text]
    assert [e["action"] for e in audit.entries(world.store, user="auditor")][-2:] == ["audit_view", "audit_export"]


def test_data_is_escaped(world):
    c = world.client("clin_a")
    page = c.get(f"/practice/{world.practices[0]}").text
    h = handles(page)[-1]
    c.post(f"/patient/{h}/decision", data={"csrf": csrf_of(page), "decision": "accepted",
                                          "note": "<script>alert(1)</script>"})
    body = c.get(f"/patient/{h}").text
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)" in body


def test_users_commands(world, tmp_path):
    path = tmp_path / "users.json"
    r = CliRunner().invoke(users_command, ["add", "dr_x", "--role", "clinician", "--practice", "Z00001",
                                           "--users", str(path)], catch_exceptions=False)
    assert r.exit_code == 0 and "Password (shown once): " in r.output
    stored = path.read_text()
    assert stored.count("$argon2id$") == 1
    assert re.search(r"Password \(shown once\): (\S+)", r.output).group(1) not in stored
    bad = CliRunner().invoke(users_command, ["add", "dr_y", "--role", "clinician", "--users", str(path)])
    # main (cli.py) turns a UsageError into exit 2 with the message; called directly here, it is raised
    assert isinstance(bad.exception, UsageError) and "--practice" in str(bad.exception)
    assert "dr_y" not in path.read_text()
    listed = CliRunner().invoke(users_command, ["list", "--json", "--users", str(path)])
    assert '"dr_x"' in listed.output and "argon2" not in listed.output
    assert CliRunner().invoke(users_command, ["remove", "dr_x", "--users", str(path)]).exit_code == 0
    assert "dr_x" not in path.read_text()
