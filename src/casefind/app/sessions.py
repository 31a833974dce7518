"""Server-side sessions: a random token in the cookie, everything else in memory here.

A session carries its CSRF token and the opaque handles that stand for patients in URLs
(never an NHS number, name or pseudonym), so a handle from one session means nothing in
another. Sessions end after ``idle`` seconds without a request or ``absolute`` seconds
after sign-in, whichever comes first; signing in replaces the pre-sign-in session (no
fixation). The store is bounded: the oldest sessions go first.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from casefind.app.auth import Principal

IDLE_S = 15 * 60
ABSOLUTE_S = 8 * 60 * 60
MAX_SESSIONS = 10_000


@dataclass
class Session:
    token: str
    csrf: str
    created: float
    seen: float
    principal: Principal | None = None
    handles: dict[str, tuple[str, str]] = field(default_factory=dict)  # handle → (run_id, patient_id)
    _by_target: dict[tuple[str, str], str] = field(default_factory=dict)

    def handle_for(self, run_id: str, patient_id: str) -> str:
        """The opaque handle for a listed patient, the same one each time in this session."""
        key = (run_id, patient_id)
        if key not in self._by_target:
            h = secrets.token_urlsafe(9)
            self.handles[h], self._by_target[key] = key, h
        return self._by_target[key]


class SessionStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic, idle: float = IDLE_S,
                 absolute: float = ABSOLUTE_S, limit: int = MAX_SESSIONS):
        self.clock, self.idle, self.absolute, self.limit = clock, idle, absolute, limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def new(self, principal: Principal | None = None) -> Session:
        now = self.clock()
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now, principal)
        with self._lock:
            self._sessions[s.token] = s
            while len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)
        return s

    def get(self, token: str | None) -> Session | None:
        """The live session for ``token`` (its idle clock restarted), or None."""
        if not token:
            return None
        now = self.clock()
        with self._lock:
            s = self._sessions.get(token)
            if s is None:
                return None
            if now - s.seen > self.idle or now - s.created > self.absolute:
                del self._sessions[token]
                return None
            s.seen = now
            self._sessions.move_to_end(token)
            return s

    def end(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)
