"""Headers on every response, and the CSRF check on every form.

The policy allows scripts, styles and images from the app itself only (no inline script or
style, no other site), no framing, no referrer, and nothing cached: every page may carry
identifiable data, so only the static files (CSS) may be cached.
"""
from __future__ import annotations

import secrets

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
NO_STORE = "no-store, max-age=0"


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response (Strict-Transport-Security
    too when the app is served over TLS)."""

    def __init__(self, app, *, tls: bool = False):
        self.app, self.tls = app, tls

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in HEADERS.items():
                    headers[k] = v
                headers["Cache-Control"] = "private, max-age=300" if static else NO_STORE
                if not static:
                    headers["Pragma"] = "no-cache"
                if self.tls:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, with_headers)


def check_csrf(expected: str, given: object) -> None:
    """403 unless the form's token is the session's (compared in constant time)."""
    if not isinstance(given, str) or not given or not secrets.compare_digest(expected, given):
        raise HTTPException(403, "The form has expired. Go back, reload the page and try again.")
