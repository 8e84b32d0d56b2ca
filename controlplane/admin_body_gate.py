"""Authenticate before a request body is read.

FastAPI reads and parses a body before it runs the route's dependencies (where the role check lives), so
without this an unauthenticated client could make the control plane buffer a 200 MB body before hearing 401.
This ASGI middleware checks only that the bearer token is valid, from the headers, and answers 401 without
touching the body; the role requirement is still enforced by admin_auth.RoleRequirement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .admin_auth import PUBLIC_PATHS, AdminAuth

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# message -> an ASGI response app (the admin API's own 401 shape)
Refusal = Callable[[str], ASGIApp]


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        n = name.lower()
        if n == b"transfer-encoding" or (n == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False


# The web console (/ui, controlplane/console/) authenticates by session cookie + CSRF token, not a bearer
# token, and its sign-in form carries the credential in the body. Its forms are small, so instead of a token
# its bodies are bounded by declared length before anything reads them.
CONSOLE_PREFIX = "/ui"
CONSOLE_MAX_BODY = 64 * 1024


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    body = (b"console form bodies are limited to %d bytes and must declare Content-Length" % CONSOLE_MAX_BODY)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class AuthBeforeBody:
    def __init__(self, app: ASGIApp, *, auth: AdminAuth, refuse: Refusal):
        self.app = app
        self.auth = auth
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if (path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")) and _has_body(scope["headers"]):
            length = _content_length(scope["headers"])
            if length is None or length > CONSOLE_MAX_BODY:
                await _too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS and _has_body(scope["headers"]):
            token = _bearer(scope["headers"])
            if token is None:
                await self.refuse("missing admin token: send 'Authorization: Bearer <token>'")(scope, receive, send)
                return
            if self.auth.authenticate(token) is None:
                await self.refuse("invalid admin token: it matches none of the control plane's admin "
                                  "credentials")(scope, receive, send)
                return
        await self.app(scope, receive, send)
