"""What every view shares: the signed-in session, the access check, rendering.

``guarded`` wraps each endpoint so that no route can skip the checks: no session → sign-in
page (pages) or 401 (actions, downloads); a role the route is not for → 404, as for another
practice's objects, so nothing says that an object exists.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from casefind.app.auth import Principal
from casefind.app.sessions import Session

COOKIE = "casefind_session"
NAMED = ("clinician", "practice_admin")
PRACTICE_VIEWERS = NAMED + ("analyst",)


def cookie_name(request: Request) -> str:
    return "__Host-" + COOKIE if request.app.state.secure_cookies else COOKIE


def session_of(request: Request) -> Session | None:
    return request.app.state.sessions.get(request.cookies.get(cookie_name(request)))


def not_found() -> HTTPException:
    return HTTPException(404, "There is nothing here, or it is not yours to see.")


def guarded(roles: Iterable[str], *, page: bool = True):
    """The endpoint runs only for a signed-in principal whose role is in ``roles``; it gets
    (request, session, principal). A plain (not async) endpoint does blocking work (files,
    the audit log, names) and runs in the thread pool, so one slow request never holds up
    the others on the event loop."""
    roles = tuple(roles)

    def wrap(endpoint):
        threaded = not inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            s = session_of(request)
            principal = s.principal if s else None
            if principal is not None:  # removed or locked since (reads the users file)
                principal = await run_in_threadpool(request.app.state.authenticator.current, principal)
                if principal is None:
                    request.app.state.sessions.end(s.token)
            if principal is None:
                if page and request.method == "GET":
                    return RedirectResponse("/login", status_code=303)
                raise HTTPException(401, "Sign in first.")
            if principal.role not in roles:
                raise not_found()
            s.principal = principal
            if threaded:
                return await run_in_threadpool(endpoint, request, s, principal)
            return await endpoint(request, s, principal)
        checked.roles = roles
        return checked
    return wrap


def practices_for(request: Request, principal: Principal) -> list[str]:
    """The practices this person may open: their own (clinicians, administrators), or every
    practice a run listed (analysts)."""
    if principal.role == "analyst":
        return request.app.state.work.practices()
    if principal.role in NAMED:
        return sorted(principal.practices)
    return []


def render(request: Request, template: str, session: Session | None, code: int = 200, **context) -> Response:
    env = request.app.state.templates
    html = env.get_template(template).render(
        request=request, session=session, principal=session.principal if session else None,
        csrf=session.csrf if session else "", **context)
    return Response(html, status_code=code, media_type="text/html")
