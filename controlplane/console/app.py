"""The console app mounted at /ui on the admin port: sign-in, sessions, CSRF, rendering.

Server-rendered HTML (Jinja2, autoescaped) plus one static script that draws Chart.js charts from JSON
embedded in the page. No build step and no Node at run time: the pinned Chart.js bundle ships as
package data (static/vendor). Every state-changing request is a POST carrying the session's CSRF token
and a same-origin Origin header when the browser sends one; the session cookie is HttpOnly and
SameSite=Strict. A strict Content-Security-Policy allows only our own scripts and styles.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from controlplane.admin_auth import AdminAuth, Role
from controlplane.budget.visibility import BudgetRow
from controlplane.service_types import PolicyService
from interlock_contracts.keys import KEY_PREFIX, hash_key

from . import fmt
from .data import ConsoleData
from .sessions import COOKIE, LOGIN_CSRF_COOKIE, Session, SessionStore

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
            raise Redirect("/ui/login?" + urlencode({"next": _safe_next(request.url.path)}))
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


def _safe_next(path: str) -> str:
    return path if path.startswith("/ui/") and "//" not in path else "/ui/"


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", path="/ui",
                        secure=request.url.scheme == "https", max_age=max_age)


def create_console_app(c: Console) -> FastAPI:
    from . import keys_pages, pages

    app = FastAPI(title="Interlock console", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(Redirect)
    async def on_redirect(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Redirect)
        return secure(RedirectResponse(exc.to, status_code=303))

    @app.exception_handler(Refused)
    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        s = c.sessions.get(request.cookies.get(COOKIE))
        return c.page("error.html", s, status=exc.status, message=exc.message)

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/ui/", error: str = "") -> Response:
        token = secrets.token_urlsafe(24)
        r = c.page("login.html", None, next=_safe_next(next), csrf=token, error=error)
        _cookie(r, request, LOGIN_CSRF_COOKIE, token, max_age=600)
        return r

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(expected.encode(), form.get("csrf", "").encode()):
            return secure(RedirectResponse("/ui/login?error=expired", status_code=303))
        s = await c.sign_in(form.get("secret", "").strip())
        if s is None:
            log.warning("console: failed sign-in from %s", request.client.host if request.client else "?")
            return secure(RedirectResponse("/ui/login?error=invalid", status_code=303))
        log.info("console: %r signed in (%s)", s.name, s.label)
        r = RedirectResponse(_safe_next(form.get("next", "/ui/")) if s.staff else "/ui/me", status_code=303)
        _cookie(r, request, COOKIE, c.sessions.create(s))
        r.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui")
        return secure(r)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        s = c.session(request)
        await c.form(request, s)
        c.sessions.end(request.cookies.get(COOKIE))
        r = RedirectResponse("/ui/login", status_code=303)
        r.delete_cookie(COOKIE, path="/ui")
        return secure(r)

    app.include_router(pages.router(c))
    app.include_router(keys_pages.router(c))
    return app


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
