"""Maps (method, path) to what serves it, at the clients' native paths so only the base URL changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import orjson

from dataplane.dialects.base import Dialect, ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.http.messages import Request, Responder
from dataplane.pipeline.admission import authenticate, presented_key
from dataplane.pipeline.proxy import Endpoint, Proxy
from dataplane.snapshot.policy import CompiledPolicy

# Protocol-level refusals from dataplane/http/server.py that are not plain invalid requests.
_REFUSAL_KINDS = {413: ErrorKind.TOO_LARGE, 414: ErrorKind.TOO_LARGE, 431: ErrorKind.TOO_LARGE,
                  408: ErrorKind.TIMEOUT, 503: ErrorKind.OVERLOADED}


class Router:
    """Every endpoint, listing path and error shape comes from the dialects (dataplane/dialects/registry.py):
    the first dialect is the fallback for requests no other one claims."""

    def __init__(
        self, *, proxy: Proxy, dialects: Mapping[str, Dialect], policy: Callable[[], CompiledPolicy | None],
        pepper: bytes, clock: Callable[[], float], ready: Callable[[], bool],
    ):
        self._proxy = proxy
        self._policy = policy
        self._pepper = pepper
        self._clock = clock
        self._ready = ready
        ordered = list(dialects.values())
        self._fallback, self._claimants = ordered[0], ordered[1:]
        self._all = tuple(ordered)
        # Built once per node: (method, path) -> Endpoint; templated endpoints (the model in the path) by spec.
        self._endpoints: dict[tuple[str, str], Endpoint] = {}
        # keyed by the spec object's identity: dialects return their own long-lived specs from match(), and
        # hashing a dataclass per request would cost more than the lookup
        self._templated: dict[int, Endpoint] = {}
        self._matchers: list[Dialect] = []
        for d in ordered:
            for spec in d.endpoints():
                ep = Endpoint(d, spec.operation, spec.path)
                if "{" in spec.path:
                    self._templated[id(spec)] = ep
                else:
                    self._endpoints[(spec.method, spec.path)] = ep
            if any("{" in spec.path for spec in d.endpoints()):
                self._matchers.append(d)
        self._model_paths = frozenset(p for d in ordered for p in d.models_paths)
        self._model_prefixes = tuple(sorted({p + "/" for p in self._model_paths}))
        self._paths = {p for _, p in self._endpoints} | self._model_paths
        self.metrics: Callable[[], bytes] | None = None  # GET /metrics (Prometheus text), set by the node
        self.in_flight = 0  # proxied requests not yet finished (graceful drain waits for 0)
        self.draining = False
        self.idle = asyncio.Event()  # set whenever in_flight drops to 0
        self.idle.set()

    def endpoints(self) -> list[Endpoint]:
        """Every proxied endpoint; a templated one's path is its template (/v1beta/models/{model}:generateContent)."""
        return [*self._endpoints.values(), *self._templated.values()]

    def dialect_for(self, path: str, headers: Mapping[str, str] | None = None, query: str = "") -> Dialect:
        """The API a request that matched no endpoint speaks, for its error or model-list shape."""
        for d in self._claimants:
            if d.claims(path, headers, query):
                return d
        return self._fallback

    def _endpoint(self, req: Request) -> Endpoint | None:
        ep = self._endpoints.get((req.method, req.path))
        if ep is None:
            for d in self._matchers:
                spec = d.match(req.method, req.path)
                if spec is not None:
                    return self._templated.get(id(spec))
        return ep

    def render_error(self, path: str, status: int, message: str) -> bytes:
        kind = _REFUSAL_KINDS.get(status, ErrorKind.INVALID_REQUEST)
        return self.dialect_for(path).error_body(status, kind, message)

    async def __call__(self, req: Request, resp: Responder) -> None:
        ep = self._endpoint(req)
        if ep is not None:
            if (why := ep.dialect.reject(req.path, req.query)) is not None:
                resp.send(400, "application/json", ep.dialect.error_body(400, ErrorKind.INVALID_REQUEST, why))
                return
            self.in_flight += 1
            self.idle.clear()
            try:
                await self._proxy.handle(req, resp, ep)
            finally:
                self.in_flight -= 1
                if not self.in_flight:
                    self.idle.set()
            return
        if req.method == "GET" and (req.path in self._model_paths or req.path.startswith(self._model_prefixes)):
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
            for a in self._all:  # a path one API would use for a method the gateway does not serve
                if (why := a.unknown_method(req.method, req.path)) is not None:
                    msg = why
                    break
            resp.send(status, "application/json", d.error_body(status, ErrorKind.NOT_FOUND, msg))

    def _models(self, req: Request, resp: Responder) -> None:
        """GET {models_path}[/{id}] of any dialect, in the shape of the dialect the request speaks
        (/v1/models is OpenAI's or, by header, Anthropic's)."""
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
                body = orjson.dumps(dialect.model_entry(one, route.model.provider.name))
                resp.send(200, "application/json", body)
                return
        except GatewayError as exc:
            resp.send(exc.status, "application/json", dialect.error_body(exc.status, exc.kind, exc.message))
            return
        resp.send(200, "application/json", policy.model_list(dialect, key.allowed))
