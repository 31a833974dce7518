"""A small OpenID provider for the OIDC sign-in tests, served by uvicorn on 127.0.0.1.

It does what a real provider does for the authorization-code flow with PKCE (OpenID Connect
Core 1.0, 3.1; RFC 7636): a discovery document, a JWKS with one RSA key, ``/authorize`` that
"signs in" ``subject`` at once and redirects back with a one-time code, ``/token`` that
checks the client, the redirect URI and the PKCE verifier and returns a signed ID token,
and ``/userinfo``. A test makes it misbehave through ``tamper`` (claims of the next ID
tokens), ``sign_with`` (a key not in its JWKS) or ``forge`` (a token it builds itself, e.g.
``alg: none``), to check that the app refuses.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "casefind-test-client"
CLIENT_SECRET = "provider-test-secret-4f1d9a7c3e5b8d20x"  # the tests check it never shows


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class Provider:
    def __init__(self):
        self.base = ""  # http://127.0.0.1:PORT once served
        self.key = new_key("key-1")
        self.subject = "cis2-uid-555000111"
        self.tamper: dict = {}  # claim → value in the next ID tokens (None: left out)
        self.sign_with: RSAKey | None = None
        self.forge: Callable[[dict], str] | None = None  # claims → the id_token string to return
        self.userinfo_claims: dict = {}
        self.token_auth = "client_secret_basic"
        self.interactive = False
        self.client_keys: dict = {"keys": []}  # private_key_jwt: the client's registered public keys
        self.assertions_seen: set[str] = set()
        self.codes: dict[str, dict] = {}
        self.authorize_requests: list[dict] = []
        self.token_requests: list[dict] = []
        self.issued: list[str] = []  # every id_token and access token given out

    def reset(self) -> None:
        self.subject, self.tamper, self.sign_with, self.forge = "cis2-uid-555000111", {}, None, None
        self.userinfo_claims, self.token_auth = {}, "client_secret_basic"

    def claims_for(self, grant: dict) -> dict:
        now = int(time.time())
        claims = {"iss": self.base, "sub": grant["subject"], "aud": CLIENT_ID, "exp": now + 300, "iat": now,
                  "auth_time": now, "nonce": grant["nonce"]}
        for k, v in self.tamper.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v(now) if callable(v) else v
        return claims

    def id_token(self, grant: dict) -> str:
        claims = self.claims_for(grant)
        if self.forge is not None:
            return self.forge(claims)
        key = self.sign_with or self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    # --- the endpoints ---------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        b = self.base
        return JSONResponse({"issuer": b, "authorization_endpoint": f"{b}/authorize", "token_endpoint": f"{b}/token",
                             "userinfo_endpoint": f"{b}/userinfo", "jwks_uri": f"{b}/jwks",
                             "response_types_supported": ["code"], "subject_types_supported": ["public"],
                             "id_token_signing_alg_values_supported": ["RS256"],
                             "code_challenge_methods_supported": ["S256"],
                             "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    async def authorize(self, request: Request) -> Response:
        """Signs ``subject`` in at once; ``interactive``: first a page whose button does (as a
        real provider's sign-in page, the browser's way back is then a navigation this site starts)."""
        q = dict(request.query_params)
        if self.interactive and request.method == "GET":
            fields = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                             for k, v in q.items())
            return HTMLResponse(f'<form method="post" action="/authorize">{fields}<button>Approve</button></form>')
        if request.method == "POST":
            q = dict(await request.form())
        self.authorize_requests.append(q)
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code" or \
                q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"redirect_uri": q["redirect_uri"], "nonce": q.get("nonce"), "subject": self.subject,
                            "challenge": q["code_challenge"], "used": False}
        return RedirectResponse(q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")}),
                                status_code=302)

    def _client_ok(self, request: Request, form: dict) -> bool:
        if self.token_auth == "private_key_jwt":
            return self._assertion_ok(form)
        if self.token_auth == "client_secret_basic":
            given = request.headers.get("authorization", "")
            expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            return secrets.compare_digest(given, expected)
        return form.get("client_id") == CLIENT_ID and form.get("client_secret") == CLIENT_SECRET

    def _assertion_ok(self, form: dict) -> bool:
        """private_key_jwt (OpenID Connect Core 9): a JWT signed by a key the client registered,
        iss and sub the client, aud this token endpoint, not expired, its jti used once."""
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return False
        try:
            token = jwt.decode(form.get("client_assertion", ""), KeySet.import_key_set(self.client_keys),
                               algorithms=["RS256"])
            me = {"essential": True, "value": CLIENT_ID}
            jwt.JWTClaimsRegistry(iss=me, sub=me, aud={"essential": True, "value": f"{self.base}/token"},
                                  exp={"essential": True}, jti={"essential": True}).validate(token.claims)
        except JoseError:
            return False
        if token.claims["jti"] in self.assertions_seen:
            return False
        self.assertions_seen.add(token.claims["jti"])
        return True

    async def token(self, request: Request) -> Response:
        form = dict(await request.form())
        self.token_requests.append(form)
        if not self._client_ok(request, form):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.get(form.get("code", ""))
        if grant is None or grant["used"]:  # RFC 6749 4.1.2: a code is used once
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        grant["used"] = True
        verifier = form.get("code_verifier", "")
        if form.get("redirect_uri") != grant["redirect_uri"] or s256(verifier) != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access = secrets.token_urlsafe(24)
        grant["access_token"] = access
        id_token = self.id_token(grant)
        self.issued += [id_token, access]
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": id_token})

    async def userinfo(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        grant = next((g for g in self.codes.values() if g.get("access_token") == token), None)
        if grant is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"sub": grant["subject"], **self.userinfo_claims})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery), Route("/jwks", self.jwks),
            Route("/authorize", self.authorize, methods=["GET", "POST"]), Route("/token", self.token, methods=["POST"]),
            Route("/userinfo", self.userinfo)])


def unsigned(claims: dict) -> str:
    """An ``alg: none`` token (RFC 7519 6.1): no signature at all."""
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def hs256_with_client_secret(claims: dict) -> str:
    """An HS256 token keyed with the client secret (the 'algorithm confusion' attack)."""
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(CLIENT_SECRET.encode()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(app, name: str = "127.0.0.1") -> Iterator[str]:
    """``app`` on real HTTP at 127.0.0.1 on a free port, in a thread, for the block: its base
    URL, with ``name`` for the host (``localhost`` makes it another site than 127.0.0.1)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://{name}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
