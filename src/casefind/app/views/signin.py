"""Sign-in and sign-out. The sign-in form has a CSRF token of a pre-sign-in session; signing
in replaces that session with a new one (new token, new CSRF token).

With an OpenID Connect provider (``app.oidc``), the page's button posts (with the CSRF
token) to ``/login/oidc``, which gives the browser a binding secret in a cookie of its own
and sends it to the provider; the provider sends it back to ``/oidc/callback``. That cookie
is SameSite=Lax because the session cookie (Strict) is not sent on a navigation that comes
from the provider's site; for the same reason both hops go through a page that moves on by
itself (a meta refresh), not a redirect: a redirect after a form post to another site is
blocked by the CSP's ``form-action 'self'``, and a redirect out of the callback would still
count as coming from the provider's site, so the new Strict session cookie would not be sent.
"""
from __future__ import annotations

import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from casefind.app import bridge
from casefind.app.auth import SignInRefused
from casefind.app.security import check_csrf
from casefind.app.threads import cpu_bound
from casefind.app.views.common import cookie_name, guarded, not_found, render, session_of

MAX_FIELD = 200
MAX_PARAM = 4096  # a query parameter of the provider's callback
BINDING_COOKIE = "casefind_oidc"
BINDING_S = 10 * 60


def _client(request: Request) -> str:
    """The client address: the proxy's X-Forwarded-For only when the proxy is trusted."""
    if request.app.state.trust_proxy:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.client.host if request.client else "unknown"


def _set_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(cookie_name(request), token, httponly=True, samesite="strict", path="/",
                        secure=request.app.state.secure_cookies)


def _binding_cookie(request: Request) -> str:
    return "__Host-" + BINDING_COOKIE if request.app.state.secure_cookies else BINDING_COOKIE


def _login_form(request: Request, s, code: int = 200, error: str | None = None) -> Response:
    """The sign-in page: the password form and/or the provider's button, as configured."""
    auth = request.app.state.authenticator
    return render(request, "login.html", s, code=code, error=error, password_form=auth.password_form,
                  provider=auth.provider)


def _audit_refusal(request: Request, refused: SignInRefused) -> None:
    """A failed sign-in, under the account's name when there is such an account (a name typed
    that is no account's may be anything, a password included, so it is not written)."""
    role = "unknown"
    users = getattr(request.app.state.authenticator, "users", None)
    if refused.user and users is not None:
        user = users.get(refused.user)
        role = user.role if user else "unknown"
    detail = {"client": _client(request), "locked": refused.locked}
    if getattr(refused, "reason", None):
        detail |= {"method": "oidc", "reason": refused.reason}  # a fixed phrase: never a token or claim value
    bridge.record(request.app.state.store_root, user=refused.user or "unknown", role=role,
                  action="sign_in_failed", detail=detail)


async def login_page(request: Request) -> Response:
    s = session_of(request)
    if s is not None and s.principal is not None:
        return RedirectResponse("/", status_code=303)
    if s is None:
        s = request.app.state.sessions.new()
    response = _login_form(request, s)
    _set_cookie(request, response, s.token)
    return response


def _expired(request: Request) -> Response:
    """A fresh form for a post without a live pre-sign-in session: nothing checked."""
    s = request.app.state.sessions.new()
    response = _login_form(request, s, code=400, error="The page had expired. Sign in again.")
    _set_cookie(request, response, s.token)
    return response


async def login_submit(request: Request) -> Response:
    s = session_of(request)
    form = await request.form()
    if s is None:  # expired or never had the form: a fresh form, nothing checked
        return _expired(request)
    check_csrf(s.csrf, form.get("csrf"))
    if not request.app.state.authenticator.password_form:
        raise not_found()
    name, password = str(form.get("username", ""))[:MAX_FIELD], str(form.get("password", ""))[:MAX_FIELD]
    try:
        principal = await cpu_bound(request.app.state.authenticator.verify_password, name, password, _client(request))
    except SignInRefused as e:
        await run_in_threadpool(_audit_refusal, request, e)
        return _login_form(request, s, code=401, error=e.message)
    response = RedirectResponse("/", status_code=303)
    await _signed_in(request, response, principal, s.token)
    return response


async def _signed_in(request: Request, response: Response, principal, old_token: str | None, **detail) -> None:
    """The pre-sign-in session replaced by a new one for ``principal`` (no fixation), audited."""
    sessions = request.app.state.sessions
    sessions.end(old_token)
    signed_in = sessions.new(principal)
    await run_in_threadpool(bridge.record, request.app.state.store_root, user=principal.name, role=principal.role,
                            action="sign_in", detail=detail or None)
    _set_cookie(request, response, signed_in.token)


def _onward(request: Request, url: str, message: str) -> Response:
    """A page that moves the browser on to ``url`` by itself (see the module's docstring)."""
    return render(request, "onward.html", None, url=url, message=message)


async def oidc_start(request: Request) -> Response:
    """The provider's button: the browser gets its binding secret and goes to the provider."""
    auth = request.app.state.authenticator
    if auth.provider is None:
        raise not_found()
    s = session_of(request)
    form = await request.form()
    if s is None:
        return _expired(request)
    check_csrf(s.csrf, form.get("csrf"))
    binding = request.cookies.get(_binding_cookie(request)) or secrets.token_urlsafe(32)  # one per browser: tabs
    response = _onward(request, auth.start(binding), f"Going to {auth.provider} to sign in.")
    response.set_cookie(_binding_cookie(request), binding, max_age=BINDING_S, httponly=True, samesite="lax",
                        path="/", secure=request.app.state.secure_cookies)
    return response


async def oidc_callback(request: Request) -> Response:
    """The provider's answer: a new session for the account it vouches for, or the sign-in page
    with the generic message (and a failed sign-in in the audit log)."""
    auth = request.app.state.authenticator
    if auth.provider is None:
        raise not_found()
    params = {k: v[:MAX_PARAM] for k, v in request.query_params.items()}
    binding = request.cookies.get(_binding_cookie(request), "")
    old = session_of(request)
    try:
        principal = await run_in_threadpool(auth.finish, params, binding)
    except SignInRefused as e:
        await run_in_threadpool(_audit_refusal, request, e)
        s = old or request.app.state.sessions.new()
        response = _login_form(request, s, code=401, error=e.message)
        _set_cookie(request, response, s.token)
        return response  # the binding cookie stays: a stray callback must not end a sign-in under way
    response = _onward(request, "/", "Signed in.")
    await _signed_in(request, response, principal, old.token if old else None, method="oidc")
    response.delete_cookie(_binding_cookie(request), path="/", secure=request.app.state.secure_cookies,
                           httponly=True, samesite="lax")
    return response


async def oidc_keys(request: Request) -> Response:
    """The public key the provider checks this app's token requests against (private_key_jwt)."""
    keys = getattr(request.app.state.authenticator, "public_keys", lambda: None)()
    if keys is None:
        raise not_found()
    return JSONResponse(keys)


@guarded(("clinician", "practice_admin", "analyst", "auditor"), page=False)
async def logout(request: Request, s, principal) -> Response:
    check_csrf(s.csrf, (await request.form()).get("csrf"))
    request.app.state.sessions.end(s.token)
    await run_in_threadpool(bridge.record, request.app.state.store_root, user=principal.name, role=principal.role,
                            action="sign_out")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(cookie_name(request), path="/")
    return response
