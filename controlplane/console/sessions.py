"""Console sign-in sessions: opaque random ids in an HttpOnly, SameSite=Strict cookie, a CSRF token per session.

A session is either staff (an admin identity and its role, signed in with its admin token) or self-service
(one virtual key, signed in with that key's secret). Neither secret is kept: the store holds only who
signed in. Sessions live in this process's memory (a restart signs everyone out) and end at sign-out,
after `idle_s` without a request, or `max_s` after sign-in, whichever comes first.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from controlplane.admin_auth import Role

COOKIE = "interlock_console"
LOGIN_CSRF_COOKIE = "interlock_console_login"


@dataclass(frozen=True)
class Session:
    name: str  # admin identity, or the key's name
    role: Role | None  # None: a self-service (virtual key) session
    key_id: str = ""  # self-service: the only key whose data this session sees
    team: str = ""
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    created: float = 0.0
    seen: float = 0.0

    @property
    def staff(self) -> bool:
        return self.role is not None

    def at_least(self, role: Role) -> bool:
        return self.role is not None and self.role >= role

    @property
    def label(self) -> str:
        return self.role.label if self.role is not None else "key"

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf.encode(), (presented or "").encode())


class SessionStore:
    def __init__(self, *, idle_s: float = 3600.0, max_s: float = 12 * 3600.0,
                 clock: Callable[[], float] = time.monotonic, max_sessions: int = 10_000) -> None:
        self._idle_s, self._max_s, self._clock, self._max = idle_s, max_s, clock, max_sessions
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, s: Session) -> str:
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._expire(now)
            if len(self._by_id) >= self._max:  # drop the oldest rather than grow without bound
                self._by_id.pop(min(self._by_id, key=lambda k: self._by_id[k].created))
            self._by_id[sid] = replace(s, created=now, seen=now)
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.seen > self._idle_s or now - s.created > self._max_s:
                del self._by_id[sid]
                return None
            s = self._by_id[sid] = replace(s, seen=now)
            return s

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)

    def _expire(self, now: float) -> None:
        dead = [k for k, s in self._by_id.items() if now - s.seen > self._idle_s or now - s.created > self._max_s]
        for k in dead:
            del self._by_id[k]
