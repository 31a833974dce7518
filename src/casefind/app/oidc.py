"""Sign-in through an OpenID Connect provider (NHS CIS2, Entra ID): the authorization-code
flow with PKCE, and the ID token checked before anyone is let in.

``start`` sends the browser to the provider with a fresh ``state``, ``nonce`` and PKCE
challenge (S256, RFC 7636), remembered here against the browser's binding secret for 10
minutes and usable once. ``finish`` takes the provider's answer only for a state this
browser started, exchanges the code (with the PKCE verifier), and accepts the ID token only
when it is signed by a key of the provider's JWKS and its ``iss``, ``aud``, ``exp``, ``iat``
and ``nonce`` are right (OpenID Connect Core 1.0, 3.1.3.7). The verified identity (the
``subject_claim``) must be bound to an account of the users file (``oidc_subject``), which
gives the role and practices; CIS2's role claim may narrow the practices (``RbacMapping``).
Every refusal raises ``OidcRefused`` with one generic message; its ``reason`` is a fixed
phrase for the log and the audit trail, never a token or a claim's value.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError

from casefind.app.auth import Authenticator, LocalAuthenticator, Principal, SignInRefused
from casefind.app.oidc_config import OidcConfig, RbacMapping
from casefind.app.oidc_discovery import OidcError, discover, fetch_keys
from casefind.app.users import PRACTICE_ROLES, User, UserStore

PENDING_S = 10 * 60
MAX_PENDING = 10_000
ALGORITHMS = ("RS256", "PS256", "ES256")  # asymmetric only: never "none", never a secret-keyed HS256
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWKS_REFRESH_S = 60.0  # an unknown key id fetches the JWKS again, at most this often (key rotation)
log = logging.getLogger("casefind.app.oidc")


class OidcRefused(SignInRefused):
    """A refused OIDC sign-in; ``reason`` is a fixed phrase (no token or claim value)."""

    def __init__(self, provider: str, reason: str, user: str | None = None, locked: bool = False):
        self.reason = reason
        super().__init__(refused_message(provider), user, locked)


def refused_message(provider: str) -> str:
    return (f"Signing in with {provider} did not succeed, or your account is not set up for casefind. "
            "Try again, or ask your practice's administrator.")


def s256(verifier: str) -> str:
    """RFC 7636 4.2: code_challenge = BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class Pending:
    binding: bytes  # sha256 of the browser's binding secret
    nonce: str
    verifier: str
    expires: float


class PendingSignIns:
    """Sign-ins started and not yet finished, by state: each taken once, within ``ttl`` seconds,
    and only with the binding secret of the browser that started it."""

    def __init__(self, ttl: float = PENDING_S, clock: Callable[[], float] = time.monotonic, limit: int = MAX_PENDING):
        self.ttl, self.clock, self.limit = ttl, clock, limit
        self._by_state: OrderedDict[str, Pending] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, state: str, binding: str, nonce: str, verifier: str) -> None:
        with self._lock:
            self._by_state[state] = Pending(_digest(binding), nonce, verifier, self.clock() + self.ttl)
            while len(self._by_state) > self.limit:
                self._by_state.popitem(last=False)

    def take(self, state: str, binding: str) -> Pending | None:
        with self._lock:
            pending = self._by_state.pop(state, None)
        if pending is None or self.clock() > pending.expires:
            return None
        return pending if secrets.compare_digest(pending.binding, _digest(binding)) else None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class OidcAuthenticator(Authenticator):
    """Accounts of ``users`` bound to the provider of ``config`` (and, with ``local``, local
    password accounts too). Reads the provider's discovery document and keys when made:
    OidcError if they cannot be read, so ``casefind serve`` stops at once."""

    kind = "oidc"

    def __init__(self, config: OidcConfig, users: UserStore, *, local: LocalAuthenticator | None = None,
                 http: httpx.Client | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.config, self.users, self.local, self.clock = config, users, local, clock
        self.provider = config.name
        self.password_form = local is not None
        self.http = http or httpx.Client(timeout=10.0, follow_redirects=False)
        self.pending = PendingSignIns(clock=monotonic)
        self._monotonic = monotonic
        self.endpoints = discover(self.http, config)
        self._keys, self._keys_at = fetch_keys(self.http, self.endpoints.jwks), monotonic()
        self._keys_lock = threading.Lock()

    # --- the interface ---------------------------------------------------------------------

    def verify_password(self, name: str, password: str, client: str) -> Principal:
        if self.local is None:
            raise OidcRefused(self.provider, "local sign-in is disabled")
        return self.local.verify_password(name, password, client)

    def start(self, binding: str) -> str:
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        self.pending.add(state, binding, nonce, verifier)
        query = {**self.config.authorize_params, "response_type": "code", "client_id": self.config.client_id,
                 "redirect_uri": self.config.redirect_url, "scope": " ".join(self.config.scopes), "state": state,
                 "nonce": nonce, "code_challenge": s256(verifier), "code_challenge_method": "S256"}
        endpoint = self.endpoints.authorization
        return endpoint + ("&" if urlsplit(endpoint).query else "?") + urlencode(query)

    def finish(self, params: dict[str, str], binding: str) -> Principal:
        if params.get("error"):
            raise self._refused("the provider answered an error (the person cancelled, or was refused there)")
        pending = self.pending.take(params.get("state", ""), binding)
        if pending is None:
            raise self._refused("state unknown, used already, expired, or started in another browser")
        if not params.get("code"):
            raise self._refused("no authorization code")
        tokens = self._exchange(params["code"], pending.verifier)
        claims = self._id_claims(tokens.get("id_token"), pending.nonce)
        if self.config.userinfo:
            claims = {**self._userinfo(tokens.get("access_token"), claims["sub"]), **claims}
        return self._principal(claims)

    def current(self, principal: Principal) -> Principal | None:
        """As at sign-in, no more: the account must still exist, unlocked, with the same role;
        an OIDC account keeps the practices the provider vouched for that it still has."""
        user = self.users.get(principal.name)
        if user is None or user.locked or user.role != principal.role:
            return None
        if not user.oidc_subject:
            return self.local.current(principal) if self.local else None
        practices = tuple(p for p in principal.practices if p in user.practices)
        if user.role in PRACTICE_ROLES and not practices:
            return None
        return Principal(user.name, user.role, practices)

    # --- the steps -------------------------------------------------------------------------

    def _refused(self, reason: str, user: User | None = None) -> OidcRefused:
        log.warning("OIDC sign-in refused: %s", reason)
        return OidcRefused(self.provider, reason, user.name if user else None, bool(user and user.locked))

    def _exchange(self, code: str, verifier: str) -> dict:
        """The token endpoint's answer for ``code`` (OpenID Connect Core 3.1.3.1)."""
        cfg = self.config
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": cfg.redirect_url,
                "code_verifier": verifier}
        auth = None
        if cfg.token_endpoint_auth == "client_secret_basic":
            auth = httpx.BasicAuth(_form_encoded(cfg.client_id), _form_encoded(cfg.client_secret or ""))
        else:
            data["client_id"] = cfg.client_id
            if cfg.token_endpoint_auth == "client_secret_post":
                data["client_secret"] = cfg.client_secret or ""
            elif cfg.token_endpoint_auth == "private_key_jwt":
                data |= {"client_assertion_type": ASSERTION_TYPE, "client_assertion": self._assertion()}
        answer = self._json("token endpoint", lambda: self.http.post(
            self.endpoints.token, data=data, auth=auth, headers={"Accept": "application/json"}))
        if not isinstance(answer.get("id_token"), str):
            raise self._refused("the token endpoint gave no ID token")
        return answer

    def _assertion(self) -> str:
        """The client's signed assertion for the token endpoint (OpenID Connect Core 9, private_key_jwt)."""
        now, cid, key = int(self.clock()), self.config.client_id, self.config.private_key
        claims = {"iss": cid, "sub": cid, "aud": self.endpoints.token, "iat": now, "exp": now + 300,
                  "jti": secrets.token_urlsafe(16)}
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    def public_keys(self) -> dict | None:
        """The JWKS to register with the provider for private_key_jwt (public halves only), else None."""
        key = self.config.private_key
        return {"keys": [key.as_dict(private=False)]} if key is not None else None

    def _id_claims(self, id_token: str, nonce: str) -> dict:
        cfg = self.config
        try:
            token = self._decode(id_token)
        except JoseError as e:
            raise self._refused(f"ID token not signed by the provider's keys ({type(e).__name__})") from None
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self.clock()), leeway=cfg.leeway_s, iss={"essential": True, "value": cfg.issuer},
            aud={"essential": True, "value": cfg.client_id}, exp={"essential": True}, iat={"essential": True},
            sub={"essential": True}, nonce={"essential": True, "value": nonce})
        try:
            registry.validate(token.claims)
        except JoseError as e:
            raise self._refused(f"ID token claim rejected ({type(e).__name__}: {getattr(e, 'claim', '?')})") from None
        claims = token.claims
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != cfg.client_id:
            raise self._refused("ID token for several audiences without this client as azp")
        return claims

    def _decode(self, id_token: str):
        try:
            return jwt.decode(id_token, self._keys, algorithms=list(ALGORITHMS))
        except InvalidKeyIdError:
            if not self._refresh_keys():
                raise
            return jwt.decode(id_token, self._keys, algorithms=list(ALGORITHMS))

    def _refresh_keys(self) -> bool:
        """The provider's keys again (they rotate), at most once a JWKS_REFRESH_S."""
        with self._keys_lock:
            if self._monotonic() - self._keys_at < JWKS_REFRESH_S:
                return False
            self._keys_at = self._monotonic()
            try:
                self._keys = fetch_keys(self.http, self.endpoints.jwks)
            except OidcError:
                return False
            return True

    def _userinfo(self, access_token: object, subject: str) -> dict:
        if not isinstance(access_token, str) or not access_token:
            raise self._refused("the token endpoint gave no access token for userinfo")
        answer = self._json("userinfo endpoint", lambda: self.http.get(
            self.endpoints.userinfo, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}))
        if answer.get("sub") != subject:  # OpenID Connect Core 5.3.2: must match, else not used
            raise self._refused("userinfo is for another subject")
        return answer

    def _json(self, what: str, call: Callable[[], httpx.Response]) -> dict:
        try:
            response = call()
        except httpx.HTTPError as e:
            raise self._refused(f"{what} unreachable ({type(e).__name__})") from None
        if response.status_code != 200:
            raise self._refused(f"{what} answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise self._refused(f"{what} answered no JSON object")
        return answer

    def _principal(self, claims: dict) -> Principal:
        subject = claims.get(self.config.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise self._refused(f"no {self.config.subject_claim} claim")
        if self.config.subject_claim == "email" and claims.get("email_verified") is False:
            raise self._refused("the email address is not verified by the provider")
        user = self.users.by_oidc_subject(subject)
        if user is None:
            raise self._refused("no account is bound to this subject")
        if user.locked:
            raise self._refused("the account is locked", user)
        practices = tuple(user.practices)
        if self.config.rbac is not None:
            practices = vouched(self.config.rbac, claims, user)
            if practices is None:
                raise self._refused("the provider's roles grant none of the account's access", user)
        return Principal(user.name, user.role, practices)


def vouched(rbac: RbacMapping, claims: dict, user: User) -> tuple[str, ...] | None:
    """The account's practices that the provider's role entries vouch for (None: none do, or,
    for a role without practices, no entry grants the role)."""
    entries = claims.get(rbac.claim)
    if not isinstance(entries, list):
        return None
    selected = claims.get(rbac.selected_claim) if rbac.selected_claim else None
    wanted = set(rbac.codes.get(user.role, ()))
    orgs = set()
    for entry in entries:
        if not isinstance(entry, dict) or (rbac.selected_claim and entry.get(rbac.id_field) != selected):
            continue
        codes = entry.get(rbac.codes_field)
        codes = set(codes) if isinstance(codes, list) else set(str(codes or "").split(":"))
        if wanted and not wanted & codes:
            continue
        orgs.add(entry.get(rbac.org_field))
    if user.role not in PRACTICE_ROLES:
        return () if orgs else None
    practices = tuple(p for p in user.practices if p in orgs)
    return practices or None


def _form_encoded(text: str) -> str:
    """RFC 6749 2.3.1: the client id and secret are form-urlencoded before HTTP Basic."""
    return urlencode({"": text})[1:]
