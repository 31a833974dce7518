"""The OpenID Connect provider's settings: ``STORE/app/oidc.json`` or ``casefind serve --oidc FILE``.

Read once when the app starts and checked whole, so a typo stops ``casefind serve`` with
the file and the key at fault rather than failing at someone's first sign-in. The client
secret may sit in the file or, better, in an environment variable the file names; it is
never printed, logged or shown (the dataclass leaves it out of its repr).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from casefind.errors import UsageError

CALLBACK_PATH = "/oidc/callback"
TOKEN_AUTH = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_KEYS = {"name", "issuer", "client_id", "client_secret", "client_secret_env", "redirect_url", "scopes",
         "subject_claim", "userinfo", "allow_local", "token_endpoint_auth", "authorize_params", "leeway_s", "rbac",
         "private_key_file", "private_key_id"}
_RBAC_KEYS = {"claim", "org_field", "codes_field", "selected_claim", "id_field", "codes"}


class OidcConfigError(UsageError):
    """The OIDC settings file is missing something or holds a wrong value."""


@dataclass(frozen=True)
class RbacMapping:
    """Which of the provider's role entries (CIS2: ``nhsid_nrbac_roles``) vouch for which
    practices. An entry counts when it is the selected one (``selected_claim`` names the claim
    holding its ``id_field``; None: any entry) and, if ``codes`` lists codes for the
    account's role, carries one of them in ``codes_field``; its ``org_field`` is the practice."""

    claim: str = "nhsid_nrbac_roles"
    org_field: str = "org_code"
    codes_field: str = "activity_codes"
    selected_claim: str | None = "selected_roleid"
    id_field: str = "person_roleid"
    codes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # casefind role → codes that grant it


@dataclass(frozen=True)
class OidcConfig:
    name: str
    issuer: str
    client_id: str
    redirect_url: str
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ("openid",)
    subject_claim: str = "sub"
    userinfo: bool = False
    allow_local: bool = True
    token_endpoint_auth: str = "client_secret_basic"
    authorize_params: dict[str, str] = field(default_factory=dict)
    leeway_s: int = 60
    rbac: RbacMapping | None = None
    private_key: RSAKey | None = field(default=None, repr=False)  # private_key_jwt: signs the client's assertion
    source: str = ""  # the file it came from, for messages


def default_path(store_root: str | Path) -> Path:
    return Path(store_root) / "app" / "oidc.json"


def load(path: str | Path) -> OidcConfig:
    """The settings in ``path``, checked; OidcConfigError names the file and what is wrong."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise _error(path, f"cannot be read ({e.__class__.__name__})") from None
    except ValueError as e:
        raise _error(path, f"is not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise _error(path, "must hold one JSON object")
    return parse(raw, str(path))


def parse(raw: dict, source: str = "the OIDC settings") -> OidcConfig:
    _known_keys(raw, _KEYS, "", source)
    issuer = _text(raw, "issuer", source)
    _check_url(issuer, "issuer", source)
    redirect = _text(raw, "redirect_url", source)
    _check_url(redirect, "redirect_url", source)
    if urlsplit(redirect).path != CALLBACK_PATH:
        raise _error(source, f"redirect_url must end in {CALLBACK_PATH} (the app's callback)",
                     f"register the same URL with the provider, e.g. https://casefind.example.nhs.uk{CALLBACK_PATH}")
    scopes = tuple(_list(raw, "scopes", source, ["openid"]))
    if "openid" not in scopes:
        raise _error(source, "scopes must include 'openid'")
    auth = raw.get("token_endpoint_auth", "client_secret_basic")
    if auth not in TOKEN_AUTH:
        raise _error(source, f"token_endpoint_auth {auth!r} is not one of {', '.join(TOKEN_AUTH)}")
    secret = _secret(raw, source)
    key = _private_key(raw, source) if auth == "private_key_jwt" else None
    if auth.startswith("client_secret") and not secret:
        raise _error(source, f"token_endpoint_auth {auth} needs client_secret_env (or client_secret)")
    params = raw.get("authorize_params", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise _error(source, "authorize_params must be an object of text values")
    leeway = raw.get("leeway_s", 60)
    if not isinstance(leeway, int) or isinstance(leeway, bool) or not 0 <= leeway <= 300:
        raise _error(source, "leeway_s must be a whole number of seconds from 0 to 300")
    return OidcConfig(
        name=_text(raw, "name", source, "the identity provider"), issuer=issuer,
        client_id=_text(raw, "client_id", source), redirect_url=redirect, client_secret=secret, scopes=scopes,
        subject_claim=_text(raw, "subject_claim", source, "sub"), userinfo=_flag(raw, "userinfo", source, False),
        allow_local=_flag(raw, "allow_local", source, True), token_endpoint_auth=auth, authorize_params=params,
        leeway_s=leeway, rbac=_rbac(raw.get("rbac"), source), private_key=key, source=source)


def _rbac(raw: object, source: str) -> RbacMapping | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _error(source, "rbac must be an object")
    _known_keys(raw, _RBAC_KEYS, "rbac ", source)
    codes = raw.get("codes", {})
    if not isinstance(codes, dict) or not all(isinstance(v, list) and all(isinstance(c, str) for c in v)
                                              for v in codes.values()):
        raise _error(source, "rbac.codes must map a casefind role to a list of codes")
    from casefind.app.users import ROLES

    bad = sorted(set(codes) - set(ROLES))
    if bad:
        raise _error(source, f"rbac.codes names {bad[0]!r}, which is not one of {', '.join(ROLES)}")
    default = RbacMapping()
    texts = {k: _text(raw, k, f"{source} (rbac)", getattr(default, k)) for k in ("claim", "org_field", "codes_field",
                                                                                 "id_field")}
    selected = raw.get("selected_claim", default.selected_claim)
    if selected is not None and not isinstance(selected, str):
        raise _error(source, "rbac.selected_claim must be a claim name or null")
    return RbacMapping(**texts, selected_claim=selected, codes={k: tuple(v) for k, v in codes.items()})


def _known_keys(raw: dict, keys: set[str], what: str, source: str) -> None:
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise _error(source, f"{what}has an unknown key {unknown[0]!r}", f"the keys are: {', '.join(sorted(keys))}")


def _private_key(raw: dict, source: str) -> RSAKey:
    """The RSA private key (PEM) for private_key_jwt; a relative path is from the settings file's folder."""
    name = _text(raw, "private_key_file", source)
    path = Path(source).parent / name if source.endswith(".json") else Path(name)
    try:
        key = RSAKey.import_key(path.read_bytes())
    except OSError as e:
        raise _error(source, f"private_key_file {name} cannot be read ({e.__class__.__name__})") from None
    except (JoseError, ValueError, TypeError) as e:
        raise _error(source, f"private_key_file {name} is not an RSA private key in PEM ({e.__class__.__name__})",
                     "make one with: openssl genrsa -out casefind-oidc.pem 3072") from None
    if not key.is_private:
        raise _error(source, f"private_key_file {name} holds a public key; give the private key")
    kid = raw.get("private_key_id") or key.thumbprint()
    if not isinstance(kid, str):
        raise _error(source, "private_key_id must be text")
    return RSAKey.import_key(key.as_dict(private=True) | {"kid": kid, "use": "sig", "alg": "RS256"})


def _secret(raw: dict, source: str) -> str | None:
    if "client_secret" in raw and "client_secret_env" in raw:
        raise _error(source, "give client_secret_env or client_secret, not both")
    if "client_secret_env" in raw:
        var = _text(raw, "client_secret_env", source)
        value = os.environ.get(var, "")
        if not value:
            raise _error(source, f"the environment variable {var} (client_secret_env) is not set",
                         f"set {var} to the client secret the provider gave, in the environment of casefind serve")
        return value
    value = raw.get("client_secret")
    if value is not None and (not isinstance(value, str) or not value):
        raise _error(source, "client_secret must be text")
    return value


def _text(raw: dict, key: str, source: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None:
        raise _error(source, f"has no {key!r}", f"add \"{key}\": ... (docs/app.md shows CIS2 and Entra ID examples)")
    if not isinstance(value, str) or not value.strip():
        raise _error(source, f"{key} must be non-empty text")
    return value.strip()


def _flag(raw: dict, key: str, source: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise _error(source, f"{key} must be true or false")
    return value


def _list(raw: dict, key: str, source: str, default: list[str]) -> list[str]:
    value = raw.get(key, default)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _error(source, f"{key} must be a list of text")
    return value


def _check_url(url: str, key: str, source: str) -> None:
    """https, or http to this machine only (a test provider)."""
    parts = urlsplit(url)
    local = parts.scheme == "http" and parts.hostname in LOOPBACK
    if not parts.hostname or not (parts.scheme == "https" or local):
        raise _error(source, f"{key} must be an https:// URL (http:// only to this machine)")


def _error(source: str | Path, problem: str, hint: str | None = None) -> OidcConfigError:
    return OidcConfigError(f"{source}: {problem}", hint or "docs/app.md shows the OIDC settings, with examples")
