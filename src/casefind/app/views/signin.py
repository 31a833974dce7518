"""Sign-in and sign-out. The sign-in form has a CSRF token of a pre-sign-in session; signing
in replaces that session with a new one (new token, new CSRF token)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from casefind.app import bridge
from casefind.app.auth import SignInRefused
from casefind.app.security import check_csrf
from casefind.app.views.common import cookie_name, guarded, render, session_of

MAX_FIELD = 200


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


def _audit_refusal(request: Request, refused: SignInRefused) -> None:
    """A failed sign-in, under the account's name when there is such an account (a name typed
    that is no account's may be anything, a password included, so it is not written)."""
    role = "unknown"
    users = getattr(request.app.state.authenticator, "users", None)
    if refused.user and users is not None:
        user = users.get(refused.user)
        role = user.role if user else "unknown"
    bridge.record(request.app.state.store_root, user=refused.user or "unknown", role=role,
                  action="sign_in_failed", detail={"client": _client(request), "locked": refused.locked})


async def login_page(request: Request) -> Response:
    s = session_of(request)
    if s is not None and s.principal is not None:
        return RedirectResponse("/", status_code=303)
    if s is None:
        s = request.app.state.sessions.new()
    response = render(request, "login.html", s, error=None)
    _set_cookie(request, response, s.token)
    return response


async def login_submit(request: Request) -> Response:
    sessions = request.app.state.sessions
    s = session_of(request)
    form = await request.form()
    if s is None:  # expired or never had the form: a fresh form, nothing checked
        s = sessions.new()
        response = render(request, "login.html", s, code=400, error="The page had expired. Sign in again.")
        _set_cookie(request, response, s.token)
        return response
    check_csrf(s.csrf, form.get("csrf"))
    name, password = str(form.get("username", ""))[:MAX_FIELD], str(form.get("password", ""))[:MAX_FIELD]
    try:
        principal = request.app.state.authenticator.verify_password(name, password, _client(request))
    except SignInRefused as e:
        _audit_refusal(request, e)
        return render(request, "login.html", s, code=401, error=e.message)
    sessions.end(s.token)
    signed_in = sessions.new(principal)
    bridge.record(request.app.state.store_root, user=principal.name, role=principal.role, action="sign_in")
    response = RedirectResponse("/", status_code=303)
    _set_cookie(request, response, signed_in.token)
    return response


@guarded(("clinician", "practice_admin", "analyst", "auditor"), page=False)
async def logout(request: Request, s, principal) -> Response:
    check_csrf(s.csrf, (await request.form()).get("csrf"))
    request.app.state.sessions.end(s.token)
    bridge.record(request.app.state.store_root, user=principal.name, role=principal.role, action="sign_out")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(cookie_name(request), path="/")
    return response
