"""The app factory: routes (each behind ``views.common.guarded``), templates, headers.

``ROUTES`` is the one table of what the app serves and who may use it; the access tests walk
it, so a route added here without a test fails them.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from casefind.app.auth import Authenticator, LocalAuthenticator
from casefind.app.security import SecurityHeaders
from casefind.app.sessions import SessionStore
from casefind.app.users import UserStore
from casefind.app.views import audit_trail, decide, pages, signin
from casefind.app.views.common import render, session_of
from casefind.app.work import Work

HERE = Path(__file__).parent
log = logging.getLogger("casefind.app")


@dataclass(frozen=True)
class AppRoute:
    name: str
    path: str
    endpoint: Callable
    methods: tuple[str, ...] = ("GET",)


ROUTES = (
    AppRoute("login", "/login", signin.login_page),
    AppRoute("login_submit", "/login", signin.login_submit, ("POST",)),
    AppRoute("oidc_start", "/login/oidc", signin.oidc_start, ("POST",)),
    AppRoute("oidc_callback", "/oidc/callback", signin.oidc_callback),
    AppRoute("oidc_keys", "/oidc/jwks.json", signin.oidc_keys),
    AppRoute("logout", "/logout", signin.logout, ("POST",)),
    AppRoute("home", "/", pages.home),
    AppRoute("practice", "/practice/{code}", pages.practice),
    AppRoute("print", "/practice/{code}/print", pages.print_view),
    AppRoute("xlsx", "/practice/{code}/{rule}.xlsx", pages.xlsx_download),
    AppRoute("patient", "/patient/{handle}", pages.patient),
    AppRoute("decide", "/patient/{handle}/decision", decide.decide, ("POST",)),
    AppRoute("withdraw", "/patient/{handle}/withdraw", decide.withdraw, ("POST",)),
    AppRoute("audit", "/audit", audit_trail.audit_page),
    AppRoute("audit_csv", "/audit.csv", audit_trail.audit_csv),
)


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["uk_date"] = lambda d: d.strftime("%d %b %Y") if hasattr(d, "strftime") else (d or "")
    return env


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """A plain page (or JSON for actions) that says what went wrong and shows no data."""
    if request.method != "GET" or exc.status_code == 401:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return render(request, "problem.html", session_of(request), code=exc.status_code, message=exc.detail,
                  back="/")


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return Response("Something went wrong on the server. The error has been logged; try again.",
                    status_code=500, media_type="text/plain")


def create_app(store_root: str | Path, users_path: str | Path | None = None, *, secure_cookies: bool = False,
               out_dirs: list[Path] | None = None, authenticator: Authenticator | None = None,
               trust_proxy: bool = False, clock: Callable[[], float] = time.monotonic) -> Starlette:
    """The review app for ``store_root``: local accounts from ``users_path`` (default
    STORE/app/users.json) unless another ``authenticator`` is given; lists read from the
    run folders under ``out_dirs`` (default ./out). ``secure_cookies``: served over TLS (the
    cookie is Secure and __Host- prefixed, and HSTS is sent)."""
    from casefind.app.users import default_path

    routes = [Route(r.path, r.endpoint, methods=list(r.methods), name=r.name) for r in ROUTES]
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error})
    st = app.state
    st.store_root = Path(store_root)
    users = UserStore(users_path or default_path(store_root))
    st.authenticator = authenticator or LocalAuthenticator(users, clock=clock)
    st.sessions = SessionStore(clock=clock)
    st.work = Work(store_root, out_dirs if out_dirs is not None else [Path("out")])
    st.templates = _templates()
    st.secure_cookies = secure_cookies
    st.trust_proxy = trust_proxy
    app.add_middleware(SecurityHeaders, tls=secure_cookies)
    return app
