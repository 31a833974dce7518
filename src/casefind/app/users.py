"""The app's local accounts: a JSON file of users with argon2id password hashes.

Kept at ``STORE/app/users.json`` by default (mode 0600), rewritten whole under a temporary
name and renamed, so a crash never leaves half a file. A user has a role, the practices
they act for, an argon2id hash, a count of failed sign-ins and a locked flag; a locked
account stays locked, even for the right password, until ``casefind users reset``. An
account bound to an OpenID Connect provider (``oidc_subject``, docs/app.md) has no password:
only the provider signs it in.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from casefind.errors import DataError, UsageError
from casefind.outputs import tmp_path_for

ROLES = ("clinician", "practice_admin", "analyst", "auditor")
NAMED_ROLES = ("clinician", "practice_admin")  # the roles that see patients by name
PRACTICE_ROLES = NAMED_ROLES  # the roles that belong to practices
LOCK_AFTER = 5  # failed sign-ins in a row before the account is locked
MIN_PASSWORD = 12
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_PRACTICE = re.compile(r"[A-Za-z0-9]{3,10}")
_HASHER = PasswordHasher()  # argon2id, the library's (RFC 9106 low-memory) parameters


class UsersError(UsageError):
    """A users-file command used wrongly (unknown user, bad role, weak password)."""


@dataclass
class User:
    name: str
    role: str
    practices: list[str] = field(default_factory=list)
    password_hash: str = ""
    failed: int = 0
    locked: bool = False
    oidc_subject: str = ""  # the provider's identifier for this person; no password is usable then

    @property
    def sees_names(self) -> bool:
        return self.role in NAMED_ROLES


def default_path(store_root: str | Path) -> Path:
    return Path(store_root) / "app" / "users.json"


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UsersError(f"the password has {len(password)} characters; give at least {MIN_PASSWORD}",
                         "a passphrase of three or four words is easy to remember and hard to guess")
    return _HASHER.hash(password)


def password_matches(user: User, password: str) -> bool:
    if user.oidc_subject or not user.password_hash:
        return False
    try:
        return _HASHER.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    """A random password for demo accounts and resets (about 96 bits)."""
    return secrets.token_urlsafe(12)


def _checked(user: User) -> User:
    if not _NAME.fullmatch(user.name):
        raise UsersError(f"user name {user.name!r} is not letters, digits and . _ @ - (at most 64)")
    if user.role not in ROLES:
        raise UsersError(f"role {user.role!r} is not one of {', '.join(ROLES)}", option="--role")
    bad = [p for p in user.practices if not _PRACTICE.fullmatch(p)]
    if bad:
        raise UsersError(f"practice code {bad[0]!r} is not 3-10 letters and digits", option="--practice")
    if user.role in PRACTICE_ROLES and not user.practices:
        raise UsersError(f"a {user.role} belongs to at least one practice: give --practice CODE", option="--practice")
    if user.role not in PRACTICE_ROLES and user.practices:
        raise UsersError(f"an {user.role} sees no practice's patients by name; give no --practice",
                         option="--practice")
    return user


class UserStore:
    """The users file. Every change re-reads the file under a lock and rewrites it whole."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict[str, User]:
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text())
            return {u["name"]: User(**u) for u in raw["users"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{self.path} is not a users file casefind wrote ({e.__class__.__name__})",
                            "restore it from a backup, or move it away and add the users again") from None

    def get(self, name: str) -> User | None:
        return self.load().get(name)

    def _save(self, users: dict[str, User]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = tmp_path_for(self.path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"users": [asdict(u) for u in sorted(users.values(), key=lambda u: u.name)]}, fh, indent=1)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    @contextmanager
    def _editing(self):
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_name(f".{self.path.name}.lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                users = self.load()
                yield users
                self._save(users)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def add(self, name: str, role: str, practices: list[str], password: str | None = None, *,
            oidc_subject: str | None = None) -> User:
        """A new account: with a password, or (``oidc_subject``) signed in by the OIDC provider only."""
        user = _checked(User(name, role, sorted(set(practices)), oidc_subject=(oidc_subject or "").strip()))
        if oidc_subject is None:
            user.password_hash = hash_password(password or "")
        elif not user.oidc_subject or len(user.oidc_subject) > 255:
            raise UsersError("the OIDC subject is empty or longer than 255 characters", option="--oidc-subject")
        with self._editing() as users:
            if name in users:
                raise UsersError(f"user {name!r} exists", "`casefind users reset NAME` gives a new password")
            other = self._bound(users, user.oidc_subject) if user.oidc_subject else None
            if other is not None:
                raise UsersError(f"account {other.name!r} is bound to that OIDC subject already",
                                 option="--oidc-subject")
            users[name] = user
        return user

    def by_oidc_subject(self, subject: str) -> User | None:
        """The account bound to the provider's identifier ``subject``, if any."""
        return self._bound(self.load(), subject) if subject else None

    @staticmethod
    def _bound(users: dict[str, User], subject: str) -> User | None:
        return next((u for u in users.values() if u.oidc_subject == subject), None)

    def remove(self, name: str) -> None:
        with self._editing() as users:
            self._existing(users, name)
            del users[name]

    def reset(self, name: str, password: str) -> User:
        """A new password; unlocks the account and clears its failed sign-ins."""
        hashed = hash_password(password)
        with self._editing() as users:
            user = self._existing(users, name)
            if user.oidc_subject:
                raise UsersError(f"{name} signs in with the OIDC provider and has no password",
                                 "remove the account and add it again to change how it signs in")
            user.password_hash, user.failed, user.locked = hashed, 0, False
        return user

    def note_attempt(self, name: str, ok: bool) -> User | None:
        """Count a sign-in: a success clears the count, the LOCK_AFTER-th failure in a row locks."""
        with self._editing() as users:
            user = users.get(name)
            if user is None:
                return None
            user.failed = 0 if ok else user.failed + 1
            user.locked = user.locked or user.failed >= LOCK_AFTER
        return user

    @staticmethod
    def _existing(users: dict[str, User], name: str) -> User:
        if name not in users:
            raise UsersError(f"no user {name!r}", "`casefind users list` shows who there is")
        return users[name]
