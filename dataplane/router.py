"""Maps (method, path) to what serves it, at the clients' native paths so only the base URL changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import orjson

from dataplane.admission import authenticate, presented_key
from dataplane.dialects import listing
from dataplane.dialects.base import Dialect, ErrorKind
from dataplane.dialects.gemini import MODEL_PREFIXES, STREAM_METHOD, split_target
from dataplane.gateway_errors import GatewayError
from dataplane.http.messages import Request, Responder
from dataplane.policy import CompiledPolicy
from dataplane.proxy import Endpoint, Proxy

# Protocol-level refusals from dataplane/http/server.py that are not plain invalid requests.
_REFUSAL_KINDS = {413: ErrorKind.TOO_LARGE, 414: ErrorKind.TOO_LARGE, 431: ErrorKind.TOO_LARGE,
                  408: ErrorKind.TIMEOUT, 503: ErrorKind.OVERLOADED}
_GEMINI_METHODS = (":generateContent", f":{STREAM_METHOD}", ":countTokens")


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
        openai, anthropic, gemini = dialects["openai"], dialects["anthropic"], dialects["gemini"]
        self._endpoints = {
            ("POST", "/v1/chat/completions"): Endpoint(openai, "chat", "/v1/chat/completions"),
            ("POST", "/v1/responses"): Endpoint(dialects["openai_responses"], "responses", "/v1/responses"),
            ("POST", "/v1/embeddings"): Endpoint(openai, "embeddings", "/v1/embeddings"),
            ("POST", "/v1/messages"): Endpoint(anthropic, "messages", "/v1/messages"),
            ("POST", "/v1/messages/count_tokens"): Endpoint(anthropic, "count_tokens", "/v1/messages/count_tokens"),
            ("POST", "/v1/responses/input_tokens"): Endpoint(dialects["openai_responses"], "count_tokens",
                                                             "/v1/responses/input_tokens"),
        }
        # Gemini names the model in the path: /v1beta/models/{model}:{method}. ep.path is the template.
        self._gemini = {
            (prefix, m): Endpoint(gemini, op, f"{prefix}{{model}}:{m}")
            for prefix in MODEL_PREFIXES
            for m, op in (("generateContent", "generate"), (STREAM_METHOD, "generate"), ("countTokens", "count_tokens"))
        }
        self._paths = {p for _, p in self._endpoints} | {"/v1/models", "/v1beta/models"}
        self.metrics: Callable[[], bytes] | None = None  # GET /metrics (Prometheus text), set by the node
        self.in_flight = 0  # proxied requests not yet finished (graceful drain waits for 0)
        self.draining = False
        self.idle = asyncio.Event()  # set whenever in_flight drops to 0
        self.idle.set()

    def dialect_for(self, path: str, headers: Mapping[str, str] | None = None, query: str = "") -> Dialect:
        if path.startswith("/v1beta/") or (path.startswith("/v1/models/") and path.endswith(_GEMINI_METHODS)) or (
                headers is not None and "authorization" not in headers
                and ("x-goog-api-key" in headers or "key=" in query)):
            return self._dialects["gemini"]
        if path.startswith("/v1/messages") or (headers is not None and "anthropic-version" in headers):
            return self._dialects["anthropic"]
        return self._dialects["openai"]

    def _endpoint(self, req: Request) -> Endpoint | None:
        ep = self._endpoints.get((req.method, req.path))
        if ep is None and req.method == "POST":
            for prefix in MODEL_PREFIXES:
                if req.path.startswith(prefix):
                    return self._gemini.get((prefix, split_target(req.path)[1]))
        return ep

    def render_error(self, path: str, status: int, message: str) -> bytes:
        kind = _REFUSAL_KINDS.get(status, ErrorKind.INVALID_REQUEST)
        return self.dialect_for(path).error_body(status, kind, message)

    async def __call__(self, req: Request, resp: Responder) -> None:
        ep = self._endpoint(req)
        if ep is not None and ep.dialect.name == "gemini" and ep.dialect.wants_stream(req.path, {}) \
                and "alt=sse" not in req.query.split("&"):
            # Without alt=sse Google streams one JSON array; the gateway relays and meters SSE only.
            msg = "streamGenerateContent is served as server-sent events only: add ?alt=sse (the Google SDKs do)"
            resp.send(400, "application/json", ep.dialect.error_body(400, ErrorKind.INVALID_REQUEST, msg))
            return
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
        if req.method == "GET" and (req.path in ("/v1/models", "/v1beta/models") or req.path.startswith(
                ("/v1/models/", "/v1beta/models/"))):
            self._models(req, resp)
        elif req.path == "/metrics" and self.metrics is not None:
            resp.send(200, "text/plain; version=0.0.4", self.metrics())
        elif req.path in ("/healthz", "/livez"):
            resp.send(200, "application/json", b'{"status":"ok"}')
        elif req.path == "/readyz":
            ok = self._ready() and not self.draining
            resp.send(200 if ok else 503, "application/json", b'{"ready":%s}' % (b"true" if ok else b"false"))
        elif req.path == "/" and req.method in ("HEAD", "GET"):
            resp.send(200, "application/json", b'{"service":"interlock"}')  # clients probe the base URL
        else:
            d = self.dialect_for(req.path, req.headers, req.query)
            status = 405 if req.path in self._paths else 404
            msg = f"{req.method} {req.path} is not served here" + ("" if status == 405 else "; check the client's base URL")
            if req.method == "POST" and (method := split_target(req.path)[1]):
                msg = (f"the Gemini method {method!r} is not served by this gateway "
                       f"(served: generateContent, {STREAM_METHOD}, countTokens)")
            resp.send(status, "application/json", d.error_body(status, ErrorKind.NOT_FOUND, msg))

    def _models(self, req: Request, resp: Responder) -> None:
        """GET /v1/models (OpenAI or Anthropic by header), /v1/models/{id}, /v1beta/models[/{id}] (Gemini)."""
        dialect = self.dialect_for(req.path, req.headers, req.query)
        try:
            policy = self._policy()
            if policy is None:
                raise GatewayError(503, ErrorKind.UNAVAILABLE, "this gateway node has no valid policy yet; retry shortly")
            key = authenticate(policy, self._pepper, presented_key(req.headers, req.query), int(self._clock() * 1000))
            one = req.path.partition("/models/")[2]
            if one.startswith("models/"):
                one = one[len("models/"):]
            if one:
                route = policy.routes.get(one)
                if route is None or (key.allowed is not None and one not in key.allowed):
                    raise GatewayError(404, ErrorKind.NOT_FOUND, f"model {one!r} does not exist on this gateway")
                body = orjson.dumps(listing.ONE[dialect.name](one, route.model.provider.name))
                resp.send(200, "application/json", body)
                return
        except GatewayError as exc:
            resp.send(exc.status, "application/json", dialect.error_body(exc.status, exc.kind, exc.message))
            return
        if dialect.name == "openai":
            resp.send(200, "application/json", policy.models_json(key.allowed))
            return
        names = [(n, policy.routes[n].model.provider.name) for n in sorted(policy.routes)
                 if key.allowed is None or n in key.allowed]
        render = listing.anthropic_list if dialect.name == "anthropic" else listing.gemini_list
        resp.send(200, "application/json", render(names))
