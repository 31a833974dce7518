"""What the OpenID provider publishes about itself: its discovery document (endpoints) and
its signing keys (JWKS), read and checked when ``casefind serve`` starts.

Anything wrong here stops the app with ``OidcError`` naming the URL, so a wrong issuer or
an unreachable provider shows at start rather than at someone's first sign-in.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from casefind.app.oidc_config import LOOPBACK, OidcConfig
from casefind.errors import CasefindError


class OidcError(CasefindError):
    """The provider cannot be used: its discovery document or keys cannot be read or are wrong."""


@dataclass(frozen=True)
class Endpoints:
    """What the provider's discovery document says, checked."""

    authorization: str
    token: str
    jwks: str
    userinfo: str | None


def discover(http: httpx.Client, config: OidcConfig) -> Endpoints:
    """The provider's endpoints from ``ISSUER/.well-known/openid-configuration``, checked
    (OpenID Connect Discovery 1.0, 4.3: its issuer must be exactly the configured one)."""
    url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc = _fetch_json(http, url, config)
    if doc.get("issuer") != config.issuer:
        raise OidcError(f"the provider at {url} calls itself a different issuer",
                        f"set issuer in {config.source} to exactly its \"issuer\" value")
    found = {key: doc.get(key) for key in ("authorization_endpoint", "token_endpoint", "jwks_uri",
                                           "userinfo_endpoint")}
    needed = ["authorization_endpoint", "token_endpoint", "jwks_uri"] + (["userinfo_endpoint"] if config.userinfo
                                                                         else [])
    for key in needed:
        if not _usable_url(found[key], config.issuer):
            raise OidcError(f"the discovery document at {url} has no usable {key}",
                            "it must be an https:// URL; check the issuer")
    methods = doc.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise OidcError(f"the provider at {url} does not support PKCE with S256", "casefind needs PKCE (S256)")
    return Endpoints(found["authorization_endpoint"], found["token_endpoint"], found["jwks_uri"],
                     found["userinfo_endpoint"] if _usable_url(found["userinfo_endpoint"], config.issuer) else None)


def fetch_keys(http: httpx.Client, url: str) -> KeySet:
    """The provider's signing keys (its JWKS)."""
    doc = _fetch_json(http, url, None)
    try:
        return KeySet.import_key_set({"keys": [k for k in doc.get("keys", []) if k.get("use", "sig") == "sig"]})
    except (JoseError, ValueError, TypeError, AttributeError) as e:
        raise OidcError(f"the provider's keys at {url} cannot be read ({type(e).__name__})",
                        "check the provider's jwks_uri") from None


def _fetch_json(http: httpx.Client, url: str, config: OidcConfig | None) -> dict:
    hint = f"check the issuer in {config.source} and that this machine can reach it" if config else \
        "check that this machine can reach the provider"
    try:
        response = http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as e:
        raise OidcError(f"cannot read {url} ({type(e).__name__})", hint) from None
    if response.status_code != 200:
        raise OidcError(f"{url} answered HTTP {response.status_code}", hint)
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise OidcError(f"{url} did not answer a JSON object", hint)
    return doc


def _usable_url(url: object, issuer: str) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    loopback_issuer = urlsplit(issuer).hostname in LOOPBACK
    return bool(parts.hostname) and (parts.scheme == "https" or (parts.scheme == "http" and loopback_issuer
                                                                  and parts.hostname in LOOPBACK))
