"""The control plane's admin API: policy apply/diff, virtual keys, models, node status.

A thin HTTP front end over the `PolicyService` contract. Every route under
/admin/v1 requires `Authorization: Bearer <admin token>`; every error, ours or
the service's, has the shape `{"error": {"type", "message", "errors"}}`.
Key hashes never leave this module: responses are built from admin_schemas,
which has no field for them.
Policy writes are audited (controlplane/audit.py) under the actor named by the
X-Interlock-Actor header, else "admin-token"; GET /admin/v1/audit/policy reads the log.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .admin_schemas import (
    ApplyOut,
    ChangeOut,
    ErrorDetail,
    ErrorOut,
    Health,
    KeyCreatedOut,
    KeyCreateIn,
    KeyList,
    KeyOut,
    ModelList,
    ModelOut,
    NodeList,
    NodeOut,
    PolicyOut,
    SnapshotOut,
)
from .audit import clean_actor
from .audit_api import create_audit_router
from .errors import ControlPlaneError, PolicyInvalid
from .policy.model import PolicyDocument
from .service_types import PolicyService

PREFIX = "/admin/v1"


class Unauthorized(ControlPlaneError):
    status = 401


def _error(status: int, type_: str, message: str, errors: list[str] | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorOut(error=ErrorDetail(type=type_, message=message, errors=errors or []))
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers) if headers else None)


def _loc(loc: Iterable[object]) -> str:
    """('body', 'models', 2, 'price', 'input') -> 'models[2].price.input'."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _install_error_handlers(app: FastAPI) -> None:
    log = logging.getLogger("interlock.controlplane.admin")

    async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ControlPlaneError)
        errors = list(exc.errors) if isinstance(exc, PolicyInvalid) else []
        # PolicyInvalid is raised before any write (service contract), so say so: the caller can just fix and retry.
        n = len(errors)
        message = f"rejected, nothing was changed: {n} problem{'s' * (n != 1)}" if errors else str(exc)
        if exc.status >= 500:
            log.warning("admin %s %s failed: %r", request.method, request.url.path, exc)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, type(exc).__name__, message or type(exc).__name__, errors, headers)

    async def on_request_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [f"{_loc(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        return _error(422, "RequestInvalid", "the request body or parameters are invalid", errors)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, "HTTPError", str(exc.detail), headers=exc.headers)

    app.add_exception_handler(ControlPlaneError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_request_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


def _require_admin(admin_token: bytes) -> Callable[..., Awaitable[None]]:
    bearer = HTTPBearer(auto_error=False, description="The control plane's INTERLOCK_ADMIN_TOKEN")

    # A default, not Annotated: with postponed annotations FastAPI could not see the local `bearer`.
    async def require_admin(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if creds is None:
            raise Unauthorized("missing admin token: send 'Authorization: Bearer <INTERLOCK_ADMIN_TOKEN>'")
        # Constant-time: the token is the only thing guarding policy and keys.
        if not hmac.compare_digest(creds.credentials.encode(), admin_token):
            raise Unauthorized("invalid admin token: it must equal the control plane's INTERLOCK_ADMIN_TOKEN")

    return require_admin


def _actor(request: Request) -> str:
    """Who the audit log names. The admin token is shared, so this is the caller's claim (a CI job or a
    wrapper sets X-Interlock-Actor); without it the change is attributed to the token itself."""
    return clean_actor(request.headers.get("x-interlock-actor"), "admin-token")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _routes(service: PolicyService) -> APIRouter:
    r = APIRouter()

    @r.get("/policy", summary="The current declarative policy and its version")
    async def get_policy() -> PolicyOut:
        doc, version = await service.get_document()
        return PolicyOut(version=version, document=doc)

    @r.post(
        "/policy/apply",
        summary="Make the stored policy equal this document (absent items are deleted)",
        responses={409: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def apply_policy(
        doc: PolicyDocument,
        request: Request,
        dry_run: Annotated[bool, Query(description="Only report the changes")] = False,
    ) -> ApplyOut:
        res = await service.apply(doc, dry_run=dry_run, actor=_actor(request))
        return ApplyOut(changes=[ChangeOut.of(c) for c in res.changes], version=res.version, dry_run=res.dry_run)

    @r.get("/keys", summary="Virtual keys (never their secrets or hashes)")
    async def list_keys() -> KeyList:
        return KeyList(keys=[KeyOut.of(k) for k in await service.list_keys()])

    @r.post(
        "/keys", status_code=201, summary="Create a virtual key; its secret is in this response only",
        responses={422: {"model": ErrorOut}},
    )
    async def create_key(spec: KeyCreateIn, request: Request, response: Response) -> KeyCreatedOut:
        created = await service.create_key(spec.to_spec(), actor=_actor(request))
        # The secret exists nowhere else; keep it out of every cache on the way.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return KeyCreatedOut(**KeyOut.of(created.record).model_dump(), secret=created.secret)

    @r.post("/keys/{key_id}/revoke", summary="Revoke a virtual key (idempotent)", responses={404: {"model": ErrorOut}})
    async def revoke_key(key_id: str, request: Request) -> KeyOut:
        return KeyOut.of(await service.revoke_key(key_id, actor=_actor(request)))

    @r.get("/models", summary="Routable models and aliases with prices per 1M tokens")
    async def list_models() -> ModelList:
        return ModelList(models=[ModelOut.of(m) for m in await service.list_models()])

    @r.get("/nodes", summary="Data-plane nodes and whether they run the current snapshot")
    async def list_nodes() -> NodeList:
        snap = await service.current_snapshot()
        nodes = [NodeOut.of(n, snap.version, snap.content_hash) for n in await service.node_status()]
        return NodeList(version=snap.version, content_hash=snap.content_hash, server_time_unix_ms=_now_ms(), nodes=nodes)

    @r.get("/snapshot", summary="Current snapshot summary: version, hash, counts")
    async def snapshot() -> SnapshotOut:
        return SnapshotOut.of(await service.current_snapshot())

    return r


def create_admin_app(
    service: PolicyService, admin_token: bytes, *, extra_routers: Iterable[APIRouter] = ()
) -> FastAPI:
    """Build the admin app. `extra_routers` are mounted as given and require the admin token too."""
    if not admin_token:
        raise ValueError("admin_token must not be empty: the admin API controls policy and keys")
    app = FastAPI(
        title="Interlock admin API",
        description="Policy, virtual keys, models and data-plane status. Authenticate with the admin token.",
        version="1",
        docs_url="/docs",
    )
    _install_error_handlers(app)
    auth = [Depends(_require_admin(admin_token))]
    unauthorized: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut, "description": "Missing or invalid admin token"}}

    @app.get("/healthz", summary="Liveness (no authentication)", tags=["health"])
    async def healthz() -> Health:
        return Health()

    app.include_router(_routes(service), prefix=PREFIX, dependencies=auth, tags=["admin"], responses=unauthorized)
    app.include_router(create_audit_router(service), dependencies=auth, responses=unauthorized)
    for router in extra_routers:
        app.include_router(router, dependencies=auth, responses=unauthorized)
    return app
