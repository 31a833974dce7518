"""Sign-in with an OpenID Connect provider, against the local test provider (tests/app/oidc_provider.py)
on real HTTP: the happy path to a practice's list, every refusal (state, code, signature,
claims, subject), local sign-in switched off, the accounts, and settings that stop
``casefind serve`` with a clear error.

What is checked is OpenID Connect Core 1.0, 3.1.3.7 ("ID Token Validation"): "The Issuer
Identifier for the OpenID Provider ... MUST exactly match the value of the iss (issuer)
Claim"; "The Client MUST validate that the aud (audience) Claim contains its client_id value";
"The current time MUST be before the time represented by the exp Claim"; "If a nonce value
was sent in the Authentication Request, a nonce Claim MUST be present and its value checked";
and RFC 7636 4.2 (PKCE): code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier))).
"""
from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner
from markupsafe import escape
from tests.app.conftest import PASSWORD, csrf_of, make_world
from tests.app.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    Provider,
    hs256_with_client_secret,
    new_key,
    served,
    unsigned,
)

from casefind import audit
from casefind.app import oidc_config
from casefind.app.app import create_app
from casefind.app.auth import LocalAuthenticator, Principal, SignInRefused
from casefind.app.oidc import JWKS_REFRESH_S, OidcAuthenticator, OidcError, PendingSignIns, refused_message, s256
from casefind.app.oidc_config import OidcConfigError
from casefind.app.users import UsersError, UserStore
from casefind.cli_serve import oidc_authenticator, users_command

SUBJECT = "cis2-uid-555000111"
NAME = "Test CIS2"


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    with served(p.app()) as p.base:
        yield p


@pytest.fixture(autouse=True)
def _fresh_provider(provider):
    provider.reset()


@pytest.fixture(scope="module")
def world(built_store, tmp_path_factory):
    w = make_world(built_store, tmp_path_factory.mktemp("oidc-world"))
    users = UserStore(w.users_path)
    users.add("dr_oidc", "clinician", [w.practices[0]], oidc_subject=SUBJECT)
    users.add("both_oidc", "clinician", list(w.practices), oidc_subject="cis2-uid-both")
    users.add("ana_oidc", "analyst", [], oidc_subject="cis2-uid-analyst")
    return w


def settings(provider, **over) -> dict:
    raw = {"name": NAME, "issuer": provider.base, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
           "redirect_url": "http://127.0.0.1/oidc/callback", "scopes": ["openid", "profile"]}
    return {k: v for k, v in (raw | over).items() if v is not None}


def authenticator(world, provider, *, local: bool = True, monotonic=None, **over) -> OidcAuthenticator:
    config = oidc_config.parse(settings(provider, **over))
    users = UserStore(world.users_path)
    kw = {"monotonic": monotonic} if monotonic else {}
    return OidcAuthenticator(config, users, local=LocalAuthenticator(users) if local else None, **kw)


def client(world, provider, app=None, **over):
    app = app or create_app(world.store, world.users_path, out_dirs=[world.out],
                            authenticator=authenticator(world, provider, **over))
    return world.client(app=app)


def onward_url(page: str) -> str:
    m = re.search(r'<meta http-equiv="refresh" content="0;url=([^"]+)">', page)
    assert m, "no onward page"
    return html.unescape(m.group(1))


def to_provider(c) -> str:
    """Press the provider's button: the authorization URL the browser is sent on to."""
    page = c.get("/login")
    assert f"Sign in with {NAME}" in page.text
    r = c.post("/login/oidc", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 200
    return onward_url(r.text)


def at_provider(url: str) -> str:
    """The provider signs the person in (real HTTP) and redirects back: the callback's path and query."""
    r = httpx.get(url, follow_redirects=False)
    assert r.status_code == 302, r.text
    back = urlsplit(r.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://127.0.0.1/oidc/callback"
    return f"{back.path}?{back.query}"


def sign_in(c) -> httpx.Response:
    return c.get(at_provider(to_provider(c)))


def refused(world, c, r, provider) -> None:
    """The generic page, nothing of the tokens or claims in it, and nobody signed in."""
    assert r.status_code == 401
    assert str(escape(refused_message(NAME))) in r.text
    for secret in provider.issued[-2:] + [SUBJECT, CLIENT_SECRET]:
        assert secret not in r.text
    assert "Traceback" not in r.text
    assert c.get("/").headers["location"] == "/login"


def app_log(caplog, provider) -> str:
    """What the app logged, and its HTTP client's requests to the provider (not the test's own
    requests as the browser: to /authorize, and to the app)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("casefind") or (
        r.name == "httpx" and provider.base in r.getMessage() and "/authorize?" not in r.getMessage()))


def last_failure(world) -> dict:
    return [e for e in audit.entries(world.store) if e["action"] == "sign_in_failed"][-1]


# --- the happy path ----------------------------------------------------------------------------

def test_signs_in_through_the_provider_to_the_practice_list(world, provider, caplog):
    caplog.set_level(logging.DEBUG)
    c = client(world, provider)
    url = to_provider(c)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{provider.base}/authorize?")
    assert query["code_challenge_method"] == ["S256"] and query["response_type"] == ["code"]
    assert query["scope"] == ["openid profile"] and query["redirect_uri"] == ["http://127.0.0.1/oidc/callback"]
    assert len(query["state"][0]) >= 43 and len(query["nonce"][0]) >= 43
    assert CLIENT_SECRET not in url
    binding = c.cookies.get("casefind_oidc")
    assert binding and binding not in url
    r = c.get(at_provider(url))
    assert r.status_code == 200 and onward_url(r.text) == "/" and 'href="/"' in r.text
    # the token request carried the PKCE verifier whose S256 is the challenge sent
    assert s256(provider.token_requests[-1]["code_verifier"]) == query["code_challenge"][0]
    cookie = r.headers.get_list("set-cookie")
    session = next(h for h in cookie if h.startswith("casefind_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
    assert any(h.startswith('casefind_oidc=""') for h in cookie)  # the binding cookie is dropped
    home = c.get("/")
    assert home.headers["location"] == f"/practice/{world.practices[0]}"
    page = c.get(home.headers["location"])
    assert page.status_code == 200 and "dr_oidc" in page.text
    assert re.search(r"\d{3} \d{3} \d{4}", page.text)  # a clinician sees NHS numbers: signed in as one
    entry = [e for e in audit.entries(world.store, user="dr_oidc") if e["action"] == "sign_in"][-1]
    assert entry["detail"] == {"method": "oidc"} and entry["role"] == "clinician"
    logged = app_log(caplog, provider)
    for secret in provider.issued[-2:] + [CLIENT_SECRET, query["state"][0], query["nonce"][0]]:
        assert secret not in logged


def test_the_session_is_the_local_one_csrf_and_timeouts(world, provider):
    clock = Clock()
    app = create_app(world.store, world.users_path, out_dirs=[world.out], clock=clock,
                     authenticator=authenticator(world, provider))
    c = client(world, provider, app=app)
    sign_in(c)
    practice = f"/practice/{world.practices[0]}"
    assert c.post("/logout", data={"csrf": "forged"}).status_code == 403
    clock.now += 14 * 60
    assert c.get(practice).status_code == 200
    clock.now += 16 * 60
    assert c.get(practice).headers["location"] == "/login"


def test_token_endpoint_client_secret_post(world, provider):
    provider.token_auth = "client_secret_post"
    c = client(world, provider, token_endpoint_auth="client_secret_post")
    assert sign_in(c).status_code == 200
    assert provider.token_requests[-1]["client_secret"] == CLIENT_SECRET
    assert c.get("/").status_code == 303 and c.get("/").headers["location"].startswith("/practice/")


def test_analyst_signs_in_with_the_provider(world, provider):
    provider.subject = "cis2-uid-analyst"
    c = client(world, provider)
    sign_in(c)
    assert c.get(f"/practice/{world.practices[1]}").status_code == 200


# --- refusals ----------------------------------------------------------------------------------

TAMPERED = {  # name → how the provider misbehaves
    "wrong_aud": {"tamper": {"aud": "another-client"}},
    "wrong_iss": {"tamper": {"iss": "https://evil.example"}},
    "expired": {"tamper": {"exp": lambda now: now - 3600, "iat": lambda now: now - 7200}},
    "no_exp": {"tamper": {"exp": None}},
    "wrong_nonce": {"tamper": {"nonce": "not-the-nonce-sent"}},
    "no_nonce": {"tamper": {"nonce": None}},
    "bad_signature": {"sign_with": "other key, same kid"},
    "alg_none": {"forge": unsigned},
    "hs256_client_secret": {"forge": hs256_with_client_secret},
    "several_aud_no_azp": {"tamper": {"aud": [CLIENT_ID, "another-client"]}},
    "not_a_jwt": {"forge": lambda claims: "not.a.jwt"},
}


@pytest.mark.parametrize("case", sorted(TAMPERED), ids=str)
def test_a_bad_id_token_is_refused(world, provider, case, caplog):
    caplog.set_level(logging.DEBUG)
    how = TAMPERED[case]
    provider.tamper = how.get("tamper", {})
    provider.forge = how.get("forge")
    if "sign_with" in how:
        provider.sign_with = new_key(provider.key.kid)
    c = client(world, provider)
    r = sign_in(c)
    refused(world, c, r, provider)
    entry = last_failure(world)
    assert entry["user"] == "unknown" and entry["detail"]["method"] == "oidc"
    assert "ID token" in entry["detail"]["reason"]
    for secret in provider.issued[-2:] + [SUBJECT]:
        assert secret not in app_log(caplog, provider) and secret not in json.dumps(entry)
    assert "OIDC sign-in refused" in app_log(caplog, provider)


def test_expiry_within_the_leeway_is_accepted(world, provider):
    provider.tamper = {"exp": lambda now: now - 30}  # leeway_s: 60 by default
    c = client(world, provider)
    assert sign_in(c).status_code == 200


def test_the_callback_needs_the_state_of_this_browser_once(world, provider):
    c = client(world, provider)
    callback = at_provider(to_provider(c))
    path, query = callback.split("?")
    params = parse_qs(query)
    code, state = params["code"][0], params["state"][0]
    cases = [
        ("missing state", f"{path}?code={code}"),
        ("wrong state", f"{path}?code={code}&state=abc{state}"),
    ]
    for _, url in cases:
        refused(world, c, c.get(url), provider)
    binding = c.cookies.get("casefind_oidc")
    assert c.get(callback).status_code == 200  # a wrong or missing state spent nothing: the right one works, once
    replay = client(world, provider, app=c.app)
    replay.cookies.set("casefind_oidc", binding)
    refused(world, replay, replay.get(callback), provider)  # replayed: the state is spent


def test_a_callback_from_another_browser_is_refused(world, provider):
    """Login CSRF: an attacker's callback URL opened in the victim's browser signs nobody in."""
    app = create_app(world.store, world.users_path, out_dirs=[world.out], authenticator=authenticator(world, provider))
    attacker, victim = client(world, provider, app=app), client(world, provider, app=app)
    callback = at_provider(to_provider(attacker))
    victim.get("/login")
    refused(world, victim, victim.get(callback), provider)
    assert "state" in last_failure(world)["detail"]["reason"]
    assert attacker.get(callback).status_code == 401  # and the state is spent: single use


def test_a_state_expires_after_ten_minutes(world, provider):
    monotonic = Clock()
    c = client(world, provider, app=create_app(world.store, world.users_path, out_dirs=[world.out],
                                               authenticator=authenticator(world, provider, monotonic=monotonic)))
    callback = at_provider(to_provider(c))
    monotonic.now += 10 * 60 + 1
    refused(world, c, c.get(callback), provider)


def test_a_replayed_code_is_refused(world, provider):
    """The same code under a new state: the provider refuses it (RFC 6749 4.1.2), so does the app."""
    c = client(world, provider)
    first = at_provider(to_provider(c))
    assert c.get(first).status_code == 200
    c2 = client(world, provider, app=c.app)
    second = at_provider(to_provider(c2))
    code = parse_qs(urlsplit(first).query)["code"][0]
    state = parse_qs(urlsplit(second).query)["state"][0]
    refused(world, c2, c2.get(f"/oidc/callback?code={code}&state={state}"), provider)
    assert "token endpoint answered HTTP 400" in last_failure(world)["detail"]["reason"]


def test_the_person_cancelled_at_the_provider(world, provider):
    c = client(world, provider)
    state = parse_qs(urlsplit(to_provider(c)).query)["state"][0]
    refused(world, c, c.get(f"/oidc/callback?error=access_denied&state={state}"), provider)


def test_no_code_is_refused(world, provider):
    c = client(world, provider)
    state = parse_qs(urlsplit(to_provider(c)).query)["state"][0]
    refused(world, c, c.get(f"/oidc/callback?state={state}"), provider)


def test_an_unknown_subject_is_refused_and_audited_like_a_local_failure(world, provider):
    provider.subject = "cis2-uid-nobody-here"
    c = client(world, provider)
    refused(world, c, sign_in(c), provider)
    entry = last_failure(world)
    assert entry["user"] == "unknown" and entry["role"] == "unknown"
    assert "cis2-uid-nobody-here" not in json.dumps(entry)


def test_a_locked_account_is_refused(world, provider):
    users = UserStore(world.users_path)
    users.add("locked_oidc", "clinician", [world.practices[0]], oidc_subject="cis2-uid-locked")
    with users._editing() as all_users:
        all_users["locked_oidc"].locked = True
    provider.subject = "cis2-uid-locked"
    c = client(world, provider)
    refused(world, c, sign_in(c), provider)
    entry = last_failure(world)
    assert entry["user"] == "locked_oidc" and entry["detail"]["locked"] is True and entry["role"] == "clinician"


def test_a_removed_account_is_signed_out(world, provider):
    users = UserStore(world.users_path)
    users.add("leaver_oidc", "clinician", [world.practices[0]], oidc_subject="cis2-uid-leaver")
    provider.subject = "cis2-uid-leaver"
    c = client(world, provider)
    sign_in(c)
    assert c.get(f"/practice/{world.practices[0]}").status_code == 200
    users.remove("leaver_oidc")
    assert c.get(f"/practice/{world.practices[0]}").headers["location"] == "/login"


# --- userinfo, the subject claim, CIS2 roles ---------------------------------------------------

def test_userinfo_and_the_email_claim(world, provider):
    users = UserStore(world.users_path)
    users.add("mail_oidc", "clinician", [world.practices[0]], oidc_subject="dr.mail@nhs.net")
    provider.subject = "opaque-sub-77"
    provider.userinfo_claims = {"email": "dr.mail@nhs.net"}
    c = client(world, provider, userinfo=True, subject_claim="email")
    assert sign_in(c).status_code == 200
    assert c.get("/").headers["location"] == f"/practice/{world.practices[0]}"
    provider.userinfo_claims = {"email": "dr.mail@nhs.net", "email_verified": False}
    c = client(world, provider, userinfo=True, subject_claim="email")
    refused(world, c, sign_in(c), provider)


def test_userinfo_for_another_subject_is_refused(world, provider):
    provider.userinfo_claims = {"sub": "someone-else"}
    c = client(world, provider, userinfo=True)
    refused(world, c, sign_in(c), provider)
    assert last_failure(world)["detail"]["reason"] == "userinfo is for another subject"


def _nrbac(org: str, role_id: str, codes: list[str]) -> dict:
    return {"person_orgid": "5550001", "person_roleid": role_id, "org_code": org,
            "role_name": '"Clinical":"Clinical Provision":"General Medical Practitioner"',
            "role_code": "S8000:G8000:R8000", "activity_codes": codes}


RBAC = {"codes": {"clinician": ["B0360"], "analyst": ["B0069"]}}


def test_cis2_roles_narrow_the_practices_to_the_selected_role(world, provider):
    a, b = world.practices
    provider.subject = "cis2-uid-both"
    provider.userinfo_claims = {"selected_roleid": "role-at-a",
                                "nhsid_nrbac_roles": [_nrbac(a, "role-at-a", ["B0360"]),
                                                      _nrbac(b, "role-at-b", ["B0360"])]}
    c = client(world, provider, userinfo=True, rbac=RBAC)
    sign_in(c)
    assert c.get(f"/practice/{a}").status_code == 200
    assert c.get(f"/practice/{b}").status_code == 404  # the account has B, but the selected role is at A


@pytest.mark.parametrize(("selected", "codes", "org"), [
    ("role-at-a", ["B0069"], 0),        # the role's activities do not grant clinician
    ("role-elsewhere", ["B0360"], 0),   # the selected role is none of the entries
    ("role-at-a", ["B0360"], None),     # an organisation that is not one of the account's practices
], ids=["wrong-activity", "not-selected", "other-org"])
def test_cis2_roles_that_grant_nothing_are_refused(world, provider, selected, codes, org):
    provider.userinfo_claims = {"selected_roleid": selected,
                                "nhsid_nrbac_roles": [_nrbac(world.practices[org] if org is not None else "Y99999",
                                                             "role-at-a", codes)]}
    c = client(world, provider, userinfo=True, rbac=RBAC)
    refused(world, c, sign_in(c), provider)
    assert "roles grant none" in last_failure(world)["detail"]["reason"]


def test_cis2_roles_for_an_analyst_and_a_missing_claim(world, provider):
    provider.subject = "cis2-uid-analyst"
    provider.userinfo_claims = {"nhsid_nrbac_roles": [_nrbac("X26", "r1", ["B0069"])]}
    rbac = {**RBAC, "selected_claim": None}
    c = client(world, provider, userinfo=True, rbac=rbac)
    sign_in(c)
    assert c.get(f"/practice/{world.practices[0]}").status_code == 200
    provider.userinfo_claims = {}
    c = client(world, provider, userinfo=True, rbac=rbac)
    refused(world, c, sign_in(c), provider)


# --- local sign-in beside the provider, or off --------------------------------------------------

def test_local_sign_in_beside_the_provider(world, provider):
    c = client(world, provider)
    page = c.get("/login").text
    assert 'action="/login/oidc"' in page and 'name="password"' in page
    r = c.post("/login", data={"username": "clin_a", "password": PASSWORD, "csrf": csrf_of(page)})
    assert r.status_code == 303 and c.get(f"/practice/{world.practices[0]}").status_code == 200


def test_local_sign_in_disabled(world, provider):
    c = client(world, provider, local=False)
    page = c.get("/login").text
    assert 'action="/login/oidc"' in page and 'name="password"' not in page
    r = c.post("/login", data={"username": "clin_a", "password": PASSWORD, "csrf": csrf_of(page)})
    assert r.status_code == 404
    assert c.get("/").headers["location"] == "/login"
    assert sign_in(c).status_code == 200  # the provider still signs people in
    with pytest.raises(SignInRefused, match="did not succeed"):
        c.app.state.authenticator.verify_password("clin_a", PASSWORD, "127.0.0.1")


def test_an_oidc_account_has_no_password_and_cannot_be_locked_by_guessing(world, provider):
    c = client(world, provider)
    for _ in range(6):
        page = c.get("/login").text
        r = c.post("/login", data={"username": "dr_oidc", "password": "", "csrf": csrf_of(page)})
        assert r.status_code == 401
    user = UserStore(world.users_path).get("dr_oidc")
    assert user.password_hash == "" and not user.locked and user.failed == 0
    assert sign_in(c).status_code == 200


def test_without_a_provider_the_oidc_routes_are_not_there(world):
    c = world.client()
    page = c.get("/login")
    assert "/login/oidc" not in page.text
    assert c.post("/login/oidc", data={"csrf": csrf_of(page.text)}).status_code == 404
    assert c.get("/oidc/callback?code=x&state=y").status_code == 404


def test_the_button_needs_the_csrf_token_and_a_session(world, provider):
    c = client(world, provider)
    c.get("/login")
    assert c.post("/login/oidc", data={"csrf": "forged"}).status_code == 403
    fresh = client(world, provider, app=c.app)
    r = fresh.post("/login/oidc", data={})
    assert r.status_code == 400 and "expired" in r.text


def test_a_signed_in_session_reflects_account_changes(world, provider):
    auth = authenticator(world, provider)
    a, b = world.practices
    assert auth.current(Principal("dr_oidc", "clinician", (a, b))) == Principal("dr_oidc", "clinician", (a,))
    assert auth.current(Principal("dr_oidc", "analyst", ())) is None  # the role changed since
    assert auth.current(Principal("dr_oidc", "clinician", (b,))) is None  # vouched for B only; the account has A
    assert auth.current(Principal("clin_a", "clinician", (a,))) == Principal("clin_a", "clinician", (a,))
    assert authenticator(world, provider, local=False).current(Principal("clin_a", "clinician", (a,))) is None


def test_keys_rotated_at_the_provider_are_fetched_again(world, provider):
    monotonic = Clock()
    auth = authenticator(world, provider, monotonic=monotonic)
    old = provider.key
    try:
        provider.key = new_key("key-2")
        c = client(world, provider, app=create_app(world.store, world.users_path, out_dirs=[world.out],
                                                   authenticator=auth))
        refused(world, c, sign_in(c), provider)  # an unknown key id, but the keys were fetched just now
        monotonic.now += JWKS_REFRESH_S + 1
        assert sign_in(c).status_code == 200
    finally:
        provider.key = old


def test_pending_sign_ins_are_bounded():
    pending = PendingSignIns(limit=2)
    for i in range(3):
        pending.add(f"s{i}", "b", "n", "v")
    assert pending.take("s0", "b") is None and pending.take("s2", "b") is not None


# --- accounts ----------------------------------------------------------------------------------

def test_users_add_with_an_oidc_subject(tmp_path):
    path = tmp_path / "users.json"
    run = CliRunner().invoke
    r = run(users_command, ["add", "dr_x", "--role", "clinician", "--practice", "Z00001", "--oidc-subject",
                            "cis2-uid-x", "--users", str(path)], catch_exceptions=False)
    assert r.exit_code == 0 and "Password" not in r.output and "OIDC provider" in r.output
    assert "$argon2" not in path.read_text()
    listed = json.loads(run(users_command, ["list", "--json", "--users", str(path)]).output)
    assert listed[0]["sign_in"] == "oidc" and listed[0]["oidc_subject"] == "cis2-uid-x"
    assert "oidc" in run(users_command, ["list", "--users", str(path)]).output
    both = run(users_command, ["add", "dr_y", "--role", "clinician", "--practice", "Z00001", "--oidc-subject", "s",
                               "--password-stdin", "--users", str(path)])
    assert "--password-stdin" in str(both.exception)
    again = run(users_command, ["add", "dr_z", "--role", "clinician", "--practice", "Z00001", "--oidc-subject",
                                "cis2-uid-x", "--users", str(path)])
    assert isinstance(again.exception, UsersError) and "dr_x" in str(again.exception)
    with pytest.raises(UsersError, match="no password"):
        UserStore(path).reset("dr_x", "a long enough passphrase")
    with pytest.raises(UsersError, match="empty"):
        UserStore(path).add("dr_w", "clinician", ["Z00001"], oidc_subject="  ")
    assert UserStore(path).by_oidc_subject("") is None


# --- settings ----------------------------------------------------------------------------------

BAD_SETTINGS = [  # (change, what the message says)
    ({"issuer": None}, "has no 'issuer'"),
    ({"client_id": None}, "has no 'client_id'"),
    ({"issuer": "http://idp.example.com"}, "issuer must be an https:// URL"),
    ({"redirect_url": "http://127.0.0.1/elsewhere"}, "must end in /oidc/callback"),
    ({"scopes": ["profile"]}, "must include 'openid'"),
    ({"scopes": "openid"}, "scopes must be a list"),
    ({"token_endpoint_auth": "tls_client_auth"}, "is not one of"),
    ({"client_secret": None}, "needs client_secret_env"),
    ({"client_secret": ""}, "client_secret must be text"),
    ({"client_secret_env": "CASEFIND_TEST_NO_SUCH_VAR"}, "give client_secret_env or client_secret, not both"),
    ({"allow_local": "no"}, "allow_local must be true or false"),
    ({"leeway_s": 3600}, "leeway_s must be"),
    ({"authorize_params": {"acr_values": 3}}, "authorize_params"),
    ({"clientid": "x"}, "unknown key 'clientid'"),
    ({"name": " "}, "name must be non-empty text"),
    ({"rbac": []}, "rbac must be an object"),
    ({"rbac": {"claims": "x"}}, "rbac has an unknown key"),
    ({"rbac": {"codes": {"doctor": ["B0360"]}}}, "'doctor'"),
    ({"rbac": {"codes": {"clinician": "B0360"}}}, "rbac.codes must map"),
    ({"rbac": {"selected_claim": 3}}, "selected_claim"),
]


@pytest.mark.parametrize(("change", "says"), BAD_SETTINGS, ids=[s for _, s in BAD_SETTINGS])
def test_bad_settings_are_refused_with_the_key_at_fault(provider, change, says):
    with pytest.raises(OidcConfigError, match=re.escape(says)):
        oidc_config.parse(settings(provider, **change), "oidc.json")


def test_the_secret_from_the_environment_never_shows(provider, monkeypatch):
    monkeypatch.setenv("CASEFIND_TEST_OIDC_SECRET", CLIENT_SECRET)
    config = oidc_config.parse(settings(provider, client_secret=None, client_secret_env="CASEFIND_TEST_OIDC_SECRET"))
    assert config.client_secret == CLIENT_SECRET and CLIENT_SECRET not in repr(config)
    monkeypatch.delenv("CASEFIND_TEST_OIDC_SECRET")
    with pytest.raises(OidcConfigError, match=r"CASEFIND_TEST_OIDC_SECRET .* is not set"):
        oidc_config.parse(settings(provider, client_secret=None, client_secret_env="CASEFIND_TEST_OIDC_SECRET"))


def test_a_public_client_sends_no_secret(world, provider):
    provider.token_auth = "client_secret_post"
    c = client(world, provider, client_secret=None, token_endpoint_auth="none")
    refused(world, c, sign_in(c), provider)  # the test provider wants its secret: invalid_client
    assert "client_secret" not in provider.token_requests[-1] and provider.token_requests[-1]["client_id"] == CLIENT_ID


@pytest.mark.parametrize(("content", "says"), [
    (None, "cannot be read"), ("{", "is not JSON"), ("[]", "must hold one JSON object")])
def test_a_settings_file_that_cannot_be_used(tmp_path, content, says):
    path = tmp_path / "oidc.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(OidcConfigError, match=says):
        oidc_config.load(path)


def test_serve_stops_with_a_clear_error(world, provider, tmp_path):
    """`casefind serve` reads the settings and the provider's discovery before it listens."""
    from tests.casefind_testdata import cli

    cases = [
        (settings(provider, issuer=None), "has no 'issuer'"),
        (settings(provider, issuer="http://127.0.0.1:9/"), "cannot read http://127.0.0.1:9/.well-known"),
        (settings(provider, issuer=provider.base + "/other"), "answered HTTP 404"),
    ]
    for raw, says in cases:
        path = tmp_path / "oidc.json"
        path.write_text(json.dumps(raw))
        r = cli("serve", "--store", world.store, "--users", world.users_path, "--out", world.out, "--oidc", path)
        assert r.exit_code in (1, 2) and says in r.output, r.output
        assert "Traceback" not in r.output


def test_serve_uses_the_store_s_oidc_json(world, provider, tmp_path):
    assert oidc_authenticator(world.store, world.users_path, None) is None  # no STORE/app/oidc.json: local
    path = oidc_config.default_path(world.store)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings(provider, allow_local=False)))
    try:
        auth = oidc_authenticator(world.store, world.users_path, None)
        assert auth.provider == NAME and not auth.password_form
    finally:
        path.unlink()


@pytest.mark.parametrize(("doc", "says"), [
    ({"issuer": "http://127.0.0.1:1"}, "calls itself a different issuer"),
    ({"token_endpoint": "ftp://x/token"}, "no usable token_endpoint"),
    ({"code_challenge_methods_supported": ["plain"]}, "does not support PKCE"),
    ("[]", "did not answer a JSON object"),
    ("{", "did not answer a JSON object"),
    ({"userinfo_endpoint": None}, "no usable userinfo_endpoint"),
    ({"jwks_uri": "http://127.0.0.1:9/jwks"}, "cannot read http://127.0.0.1:9/jwks"),
])
def test_a_discovery_document_that_cannot_be_used(provider, doc, says):
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            if isinstance(doc, str):
                return httpx.Response(200, text=doc)
            real = httpx.get(f"{provider.base}/.well-known/openid-configuration").json()
            return httpx.Response(200, json=real | doc)
        if request.url.host == "127.0.0.1" and request.url.port == 9:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json={"keys": "not a list"})

    config = oidc_config.parse(settings(provider, userinfo=True))
    with pytest.raises(OidcError, match=re.escape(says)):
        OidcAuthenticator(config, UserStore("/nonexistent/users.json"), http=httpx.Client(
            transport=httpx.MockTransport(answer)))


def test_keys_that_cannot_be_read(provider):
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json=httpx.get(f"{provider.base}/.well-known/openid-configuration").json())
        return httpx.Response(200, json={"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]})

    with pytest.raises(OidcError, match=r"keys .* cannot be read"):
        OidcAuthenticator(oidc_config.parse(settings(provider)), UserStore("/nonexistent/users.json"),
                          http=httpx.Client(transport=httpx.MockTransport(answer)))


def _nonce_and_state(url: str) -> tuple[str, str]:
    q = parse_qs(urlsplit(url).query)
    return q["nonce"][0], q["state"][0]


BAD_ANSWERS = {  # what the token or userinfo endpoint answers → the reason given
    "no_id_token": ({"token": lambda t: httpx.Response(200, json={"access_token": "a"})}, "gave no ID token"),
    "token_unreachable": ({"token": lambda t: httpx.ConnectError("down")}, "token endpoint unreachable"),
    "token_not_json": ({"token": lambda t: httpx.Response(200, text="<html>")}, "answered no JSON object"),
    "no_access_token": ({"token": lambda t: httpx.Response(200, json={"id_token": t})}, "no access token"),
    "userinfo_refused": ({"userinfo": lambda t: httpx.Response(401, json={})}, "userinfo endpoint answered HTTP 401"),
    "no_subject_claim": ({"userinfo": lambda t: httpx.Response(200, json={"sub": SUBJECT})}, "no email claim"),
    "unknown_key_and_jwks_down": ({"key": "key-9", "jwks": lambda t: httpx.ConnectError("down")},
                                  "not signed by the provider's keys (InvalidKeyIdError)"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANSWERS), ids=str)
def test_a_provider_that_answers_wrongly_is_refused(world, provider, case):
    """The token and userinfo endpoints misbehaving (through an injected transport; the rest is the real provider)."""
    how, reason = BAD_ANSWERS[case]
    monotonic, grant = Clock(), {}
    signer = new_key(how["key"]) if "key" in how else provider.key

    def answer(request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/").split("/")[-1]
        if name in how and grant:  # (before the sign-in starts: discovery and keys as the provider has them)
            made = how[name](jwt_for(grant, signer, provider))
            if isinstance(made, Exception):
                raise made
            return made
        if name == "token":
            return httpx.Response(200, json={"access_token": "a", "id_token": jwt_for(grant, signer, provider)})
        if name == "userinfo":
            return httpx.Response(200, json={"sub": SUBJECT, "email": "x@nhs.net"})
        return httpx.get(str(request.url))

    config = oidc_config.parse(settings(provider, userinfo=True, subject_claim="email" if "subject" in case else "sub"))
    auth = OidcAuthenticator(config, UserStore(world.users_path), http=httpx.Client(
        transport=httpx.MockTransport(answer)), monotonic=monotonic)
    grant["nonce"], state = _nonce_and_state(auth.start("binding-1"))
    grant["subject"] = SUBJECT
    monotonic.now += JWKS_REFRESH_S + 1
    with pytest.raises(SignInRefused) as refusal:
        auth.finish({"code": "c", "state": state}, "binding-1")
    assert reason in refusal.value.reason


def jwt_for(grant: dict, key, provider) -> str:
    from joserfc import jwt

    return jwt.encode({"alg": "RS256", "kid": key.kid}, provider.claims_for(grant), key) if grant else ""


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium (/usr/bin/chromium) is not installed")
def test_sign_in_with_the_provider_in_a_browser(world):
    """In Chromium, with the provider on another site (localhost) than the app (127.0.0.1): the
    session cookie (SameSite=Strict) and the CSP (form-action 'self') are what a browser enforces,
    which the test client does not."""
    from playwright.sync_api import sync_playwright

    idp = Provider()
    idp.interactive = True  # the way back to the app is then a navigation from the provider's site
    with served(idp.app(), "localhost") as idp.base, served(_lazy_app(world, idp)) as base, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        failed = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and "favicon" not in r.url else None)
        page.goto(base + "/login")
        page.click(f"text=Sign in with {NAME}")
        page.wait_for_url(f"{idp.base}/authorize?**")
        page.click("text=Approve")
        page.wait_for_url(f"**/practice/{world.practices[0]}", timeout=10_000)
        assert "dr_oidc" in page.locator("header .who").inner_text()
        assert page.locator("td.nhs").count() == len(world.listed[world.practices[0]])
        browser.close()
    assert len(idp.token_requests) == 1 and not failed, failed


def _lazy_app(world, idp):
    """The app, made at its first request: its redirect URL needs the port it is served on."""
    made = {}

    async def app(scope, receive, send):
        if "app" not in made:
            host, port = scope["server"]
            auth = authenticator(world, idp, redirect_url=f"http://{host}:{port}/oidc/callback")
            made["app"] = create_app(world.store, world.users_path, out_dirs=[world.out], authenticator=auth)
        await made["app"](scope, receive, send)
    return app


# --- private_key_jwt (CIS2's integration environments ask for it) -------------------------------

def _pem(tmp_path, private: bool = True):
    from joserfc.jwk import RSAKey

    path = tmp_path / "casefind-oidc.pem"
    path.write_bytes(RSAKey.generate_key(2048).as_pem(private=private))
    return path


def test_private_key_jwt(world, provider, tmp_path):
    _pem(tmp_path)
    path = tmp_path / "oidc.json"
    path.write_text(json.dumps(settings(provider, client_secret=None, token_endpoint_auth="private_key_jwt",
                                        private_key_file="casefind-oidc.pem", private_key_id="casefind-1")))
    config = oidc_config.load(path)  # the key file is found beside the settings file
    users = UserStore(world.users_path)
    app = create_app(world.store, world.users_path, out_dirs=[world.out],
                     authenticator=OidcAuthenticator(config, users))
    c = world.client(app=app)
    published = c.get("/oidc/jwks.json").json()
    assert [k["kid"] for k in published["keys"]] == ["casefind-1"] and "d" not in published["keys"][0]
    provider.token_auth = "private_key_jwt"
    refused(world, c, sign_in(c), provider)  # not registered with the provider yet: invalid_client
    assert "HTTP 401" in last_failure(world)["detail"]["reason"]
    provider.client_keys = published
    assert sign_in(c).status_code == 200
    sent = provider.token_requests[-1]
    assert "client_secret" not in sent and sent["client_id"] == CLIENT_ID


@pytest.mark.parametrize(("key", "says"), [
    (None, "has no 'private_key_file'"), ("missing", "cannot be read"), ("garbage", "is not an RSA private key"),
    ("public", "holds a public key"), ("bad-id", "private_key_id must be text")])
def test_private_key_jwt_settings(provider, tmp_path, key, says):
    raw = settings(provider, client_secret=None, token_endpoint_auth="private_key_jwt")
    if key == "garbage":
        (tmp_path / "k.pem").write_text("not a key")
    elif key == "public":
        _pem(tmp_path, private=False).rename(tmp_path / "k.pem")
    elif key == "bad-id":
        _pem(tmp_path).rename(tmp_path / "k.pem")
        raw["private_key_id"] = 7
    if key is not None:
        raw["private_key_file"] = str(tmp_path / "k.pem")
    with pytest.raises(OidcConfigError, match=re.escape(says)):
        oidc_config.parse(raw, "oidc.json")


def test_no_keys_published_without_private_key_jwt(world, provider):
    assert client(world, provider).get("/oidc/jwks.json").status_code == 404
    assert world.client().get("/oidc/jwks.json").status_code == 404


def test_the_documented_examples_are_valid_settings(tmp_path, monkeypatch):
    """docs/app.md's CIS2 and Entra ID examples parse as they stand (with the key file and the
    secret's variable they name)."""
    doc = (Path(__file__).parents[2] / "docs" / "app.md").read_text()
    section = doc[doc.index("## OpenID Connect"):doc.index("## Decisions and the next run")]
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]
    assert [e["name"] for e in examples] == ["NHS Care Identity Service", "Microsoft Entra ID"]
    _pem(tmp_path).rename(tmp_path / examples[0]["private_key_file"])
    monkeypatch.setenv(examples[1]["client_secret_env"], "a-secret")
    for example in examples:
        path = tmp_path / "oidc.json"
        path.write_text(json.dumps(example))
        config = oidc_config.load(path)
        assert config.issuer == example["issuer"] and config.redirect_url.endswith("/oidc/callback")
    assert config.subject_claim == "oid"


def test_behind_tls_the_cookies_are_secure_and_host_prefixed(world, provider):
    from starlette.testclient import TestClient

    app = create_app(world.store, world.users_path, out_dirs=[world.out], secure_cookies=True,
                     authenticator=authenticator(world, provider))
    c = TestClient(app, base_url="https://127.0.0.1", follow_redirects=False)
    page = c.get("/login")
    started = c.post("/login/oidc", data={"csrf": csrf_of(page.text)})
    binding = started.headers["set-cookie"]
    assert binding.startswith("__Host-casefind_oidc=") and "Secure" in binding and "HttpOnly" in binding
    assert "SameSite=lax" in binding and "Path=/" in binding and "Max-Age=600" in binding
    back = c.get(at_provider(onward_url(started.text)))
    session = next(h for h in back.headers.get_list("set-cookie") if h.startswith("__Host-casefind_session="))
    assert "Secure" in session and "SameSite=strict" in session
    assert back.headers["strict-transport-security"] and c.get("/").headers["location"].startswith("/practice/")
