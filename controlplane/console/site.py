"""The console app mounted at /ui on the admin port: sign-in and sign-out, error pages, and the page routers
(pages.py, keys_pages.py) over the core in app.py, which they import; this module is the one that gathers them."""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from . import keys_pages, pages
from .app import HERE, Console, Redirect, Refused, safe_next, secure
from .sessions import COOKIE, LOGIN_CSRF_COOKIE

log = logging.getLogger(__name__)


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", path="/ui",
                        secure=request.url.scheme == "https", max_age=max_age)


def create_console_app(c: Console) -> FastAPI:
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
        r = c.page("login.html", None, next=safe_next(next), csrf=token, error=error)
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
        r = RedirectResponse(safe_next(form.get("next", "/ui/")) if s.staff else "/ui/me", status_code=303)
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
