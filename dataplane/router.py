"""Maps (method, path) to what serves it, at the clients' native paths so only the base URL changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import orjson

from dataplane.admission import authenticate, presented_key
from dataplane.dialects.base import Dialect, ErrorKind
from dataplane.gateway_errors import GatewayError
from dataplane.http.messages import Request, Responder
from dataplane.policy import CompiledPolicy
from dataplane.proxy import Endpoint, Proxy


class Router:
    def __init__(
        self, *, proxy: Proxy, dialects: Mapping[str, Dialect], policy: Callable[[], CompiledPolicy | None],
        pepper: bytes, clock: Callable[[], float], ready: Callable[[], bool],
    ):
        self._proxy = proxy
        self._dialects = dialects
        self._policy = policy
        self._pepper = pepper
        self._clock = clock
        self._ready = ready
        openai, anthropic = dialects["openai"], dialects["anthropic"]
        self._endpoints = {
            ("POST", "/v1/chat/completions"): Endpoint(openai, "chat", "/v1/chat/completions"),
            ("POST", "/v1/messages"): Endpoint(anthropic, "messages", "/v1/messages"),
        }
        self._paths = {p for _, p in self._endpoints} | {"/v1/models"}
        self.in_flight = 0  # proxied requests not yet finished (graceful drain waits for 0)
        self.draining = False
        self.idle = asyncio.Event()  # set whenever in_flight drops to 0
        self.idle.set()

    def dialect_for(self, path: str, headers: Mapping[str, str] | None = None) -> Dialect:
        if path.startswith("/v1/messages") or (headers is not None and "anthropic-version" in headers):
            return self._dialects["anthropic"]
        return self._dialects["openai"]

    def render_error(self, path: str, status: int, message: str) -> bytes:
        kind = ErrorKind.TOO_LARGE if status == 413 else ErrorKind.INVALID_REQUEST
        return self.dialect_for(path).error_body(status, kind, message)

    async def __call__(self, req: Request, resp: Responder) -> None:
        ep = self._endpoints.get((req.method, req.path))
        if ep is not None:
            self.in_flight += 1
            self.idle.clear()
            try:
                await self._proxy.handle(req, resp, ep)
            finally:
                self.in_flight -= 1
                if not self.in_flight:
                    self.idle.set()
            return
        if req.method == "GET" and req.path == "/v1/models":
            self._models(req, resp)
        elif req.path in ("/healthz", "/livez"):
            resp.send(200, "application/json", b'{"status":"ok"}')
        elif req.path == "/readyz":
            ok = self._ready() and not self.draining
            resp.send(200 if ok else 503, "application/json", b'{"ready":%s}' % (b"true" if ok else b"false"))
        elif req.path == "/" and req.method in ("HEAD", "GET"):
            resp.send(200, "application/json", b'{"service":"interlock"}')  # clients probe the base URL
        else:
            d = self.dialect_for(req.path, req.headers)
            status = 405 if req.path in self._paths else 404
            msg = f"{req.method} {req.path} is not served here" + ("" if status == 405 else "; check the client's base URL")
            resp.send(status, "application/json", d.error_body(status, ErrorKind.NOT_FOUND, msg))

    def _models(self, req: Request, resp: Responder) -> None:
        dialect = self.dialect_for(req.path, req.headers)
        try:
            policy = self._policy()
            if policy is None:
                raise GatewayError(503, ErrorKind.UNAVAILABLE, "this gateway node has no valid policy yet; retry shortly")
            key = authenticate(policy, self._pepper, presented_key(req.headers), int(self._clock() * 1000))
        except GatewayError as exc:
            resp.send(exc.status, "application/json", dialect.error_body(exc.status, exc.kind, exc.message))
            return
        if dialect.name == "anthropic":
            names = sorted(n for n in policy.routes if key.allowed is None or n in key.allowed)
            data = [{"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"} for n in names]
            body = orjson.dumps({"data": data, "has_more": False, "first_id": names[0] if names else None,
                                 "last_id": names[-1] if names else None})
            resp.send(200, "application/json", body)
        else:
            resp.send(200, "application/json", policy.models_json(key.allowed))
