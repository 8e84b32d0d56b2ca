"""The console's core, what every page uses: sessions, CSRF, rendering (the app itself: site.py).

Server-rendered HTML (Jinja2, autoescaped) plus one static script that draws Chart.js charts from JSON
embedded in the page. No build step and no Node at run time: the pinned Chart.js bundle ships as
package data (static/vendor). Every state-changing request is a POST carrying the session's CSRF token
and a same-origin Origin header when the browser sends one; the session cookie is HttpOnly and
SameSite=Strict. A strict Content-Security-Policy allows only our own scripts and styles.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from controlplane.admin_auth import AdminAuth, Role
from controlplane.budget.visibility import BudgetRow
from controlplane.service_types import PolicyService
from interlock_contracts.keys import KEY_PREFIX, hash_key

from . import fmt
from .data import ConsoleData
from .sessions import COOKIE, Session, SessionStore

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


@dataclass
class Console:
    service: PolicyService
    data: ConsoleData | None
    auth: AdminAuth
    pepper: bytes
    budgets: Callable[[], Awaitable[list[BudgetRow]]]
    minter: Any  # RunKeyMinter: mint_run_key(spec, actor=)
    sessions: SessionStore
    env: Environment

    # -- sessions -------------------------------------------------------------------------
    def session(self, request: Request) -> Session:
        s = self.sessions.get(request.cookies.get(COOKIE))
        if s is None:
            raise Redirect("/ui/login?" + urlencode({"next": safe_next(request.url.path)}))
        return s

    def staff(self, request: Request, role: Role = Role.VIEWER) -> Session:
        s = self.session(request)
        if not s.staff:
            raise Redirect("/ui/me")
        if not s.at_least(role):
            raise Refused(403, f"this needs role '{role.label}'; '{s.name}' has role '{s.label}'")
        return s

    async def form(self, request: Request, s: Session) -> dict[str, str]:
        """The POSTed form, after the CSRF and same-origin checks."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise Refused(403, "cross-origin form post refused")
        body = await request.body()
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace"), keep_blank_values=True).items()}
        if not s.csrf_ok(form.get("csrf")):
            log.warning("console: CSRF check failed for %r on %s", s.name, request.url.path)
            raise Refused(403, "the form expired or did not come from this console: reload the page and try again")
        return form

    async def sign_in(self, secret: str) -> Session | None:
        """An admin token -> staff session with its identity's role; a virtual key -> self-service session."""
        if secret.startswith(KEY_PREFIX):
            digest = hash_key(self.pepper, secret).hex()
            found = None
            for k in await self.service.list_keys():  # compare with every key: timing says nothing
                if hmac.compare_digest(k.key_hash, digest) and found is None:
                    found = k
            if found is None or found.revoked:
                return None
            return Session(name=found.name or found.id, role=None, key_id=found.id, team=found.team)
        p = self.auth.authenticate(secret)
        return Session(name=p.name, role=p.role) if p is not None else None

    # -- rendering ------------------------------------------------------------------------
    def page(self, template: str, s: Session | None, status: int = 200, **ctx: Any) -> Response:
        html = self.env.get_template(template).render(s=s, usage=self.data is not None, **ctx)
        return secure(HTMLResponse(html, status_code=status))


def secure(r: Response) -> Response:
    r.headers["Content-Security-Policy"] = CSP
    r.headers["X-Content-Type-Options"] = "nosniff"
    r.headers["Referrer-Policy"] = "same-origin"
    r.headers["Cache-Control"] = "no-store"
    r.headers["X-Frame-Options"] = "DENY"
    return r


def safe_next(path: str) -> str:
    return path if path.startswith("/ui/") and "//" not in path else "/ui/"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.globals["qs"] = lambda **kw: urlencode({k: v for k, v in kw.items() if v not in (None, "")}, doseq=True)
    env.globals.update(drill=drill, fmt=fmt, Role=Role)  # globals: imported macros see them too
    return env


def drill(by: str, value: str, since: str, where: list[str]) -> str:
    """Where a spend row leads: a key to its request trail, anything else to spend by key within that group."""
    if by == "key":
        return "/ui/requests?" + urlencode({"key": value, "since": since if since != "30m" else "1h"})
    kept = [w for w in where if not w.startswith(f"{by}=")]
    return "/ui/spend?" + urlencode({"by": "key", "since": since, "where": [*kept, f"{by}={value}"]}, doseq=True)
