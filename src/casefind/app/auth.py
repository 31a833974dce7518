"""Who is signing in: the ``Authenticator`` interface, local accounts behind it, and throttling.

The app asks an ``Authenticator`` for a ``Principal`` (name, role, practices) and never
looks at passwords itself, so an OpenID Connect provider (NHS CIS2, Entra ID; ``app.oidc``)
can stand beside or replace ``LocalAuthenticator``: it sends the browser to the provider
(``start``) and turns the provider's answer into a Principal (``finish``), mapped to an
account of the users file (docs/app.md). Local sign-in is throttled per user name and per client address, and an
account is locked after ``users.LOCK_AFTER`` failures in a row until ``casefind users reset``.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from casefind.app.users import User, UserStore, password_matches
from casefind.errors import CasefindError

REFUSED = "The user name or password is wrong, or the account is locked. Ask your practice's administrator."
THROTTLED = "Too many attempts. Wait a few minutes and try again."


@dataclass(frozen=True)
class Principal:
    """A signed-in person as the app sees them."""

    name: str
    role: str
    practices: tuple[str, ...]

    @property
    def sees_names(self) -> bool:
        return self.role in ("clinician", "practice_admin")


class SignInRefused(CasefindError):
    """Sign-in failed; ``message`` is safe to show (it never says which part was wrong)."""

    def __init__(self, message: str, user: str | None = None, locked: bool = False):
        self.user, self.locked = user, locked  # user: an account's name, if one
        super().__init__(message)


class Authenticator:
    """Turns a sign-in into a Principal. ``password_form``: the sign-in page asks for a user
    name and password (local accounts). ``provider``: the name of an external provider the
    page offers a button for (None: none); it redirects (``start``) and is called back
    (``finish``). ``binding`` is a secret the browser holds from ``start`` to ``finish``
    (a cookie), so a callback works only in the browser that started it."""

    password_form = True
    provider: str | None = None
    kind = "abstract"

    def verify_password(self, name: str, password: str, client: str) -> Principal:  # pragma: no cover
        raise NotImplementedError

    def start(self, binding: str) -> str:  # pragma: no cover - the URL to send the browser to
        raise NotImplementedError

    def finish(self, params: dict[str, str], binding: str) -> Principal:  # pragma: no cover
        raise NotImplementedError

    def current(self, principal: Principal) -> Principal | None:
        """The principal as it stands now (None: removed or locked since signing in)."""
        return principal


class Throttle:
    """At most ``limit`` failures per key within ``window`` seconds; beyond that, refused.
    Password checks run in worker threads, so the counts are kept under a lock."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str) -> deque[float]:
        q, now = self._failures[key], self.clock()
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key)) >= self.limit

    def failed(self, key: str) -> None:
        with self._lock:
            self._recent(key).append(self.clock())


class LocalAuthenticator(Authenticator):
    """Accounts in the users file (argon2id hashes), throttled per user and per client address."""

    kind = "local"

    def __init__(self, users: UserStore, clock: Callable[[], float] = time.monotonic,
                 per_user: int = 10, per_client: int = 30, window: float = 300.0):
        self.users = users
        self.by_user = Throttle(per_user, window, clock)
        self.by_client = Throttle(per_client, window, clock)

    def verify_password(self, name: str, password: str, client: str) -> Principal:
        name = name.strip()
        if self.by_user.blocked(name) or self.by_client.blocked(client):
            raise SignInRefused(THROTTLED)
        user = self.users.get(name)
        if user is not None and user.oidc_subject:
            user = None  # signed in by the provider only: no password to guess, nothing to lock
        ok = user is not None and not user.locked and password_matches(user, password)
        if user is not None:
            user = self.users.note_attempt(name, ok)
        if not ok:
            self.by_user.failed(name)
            self.by_client.failed(client)
            raise SignInRefused(REFUSED, user.name if user else None, bool(user and user.locked))
        return principal_of(user)

    def current(self, principal: Principal) -> Principal | None:
        user = self.users.get(principal.name)
        if user is None or user.locked:
            return None
        return principal_of(user)


def principal_of(user: User) -> Principal:
    return Principal(user.name, user.role, tuple(user.practices))
