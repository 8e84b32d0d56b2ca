"""The control plane's admin API: policy apply/diff, virtual keys, models, node status.

A thin HTTP front end over the `PolicyService` contract. Every route under
/admin/v1 requires `Authorization: Bearer <admin token>` of an identity whose
role is high enough for that route (controlplane/admin_auth.py: viewer,
operator, admin); every error, ours or the service's, has the shape
`{"error": {"type", "message", "errors"}}`.
Key hashes never leave this module: responses are built from admin_schemas,
which has no field for them.
Policy writes are audited (controlplane/audit.py) under the authenticated
identity; a client's X-Interlock-Actor header is kept only as an unverified
"on behalf of" note. GET /admin/v1/audit/policy reads the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from interlock_contracts.settings.controlplane import AdminCredential

from .admin_auth import AdminAuth, Forbidden, Principal, Role, assert_guarded, requires
from .admin_auth import Unauthorized as Unauthorized  # re-exported: the error type of a bad token
from .admin_body_gate import AuthBeforeBody
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
from .audit_api import create_audit_router
from .errors import ControlPlaneError, PolicyInvalid
from .policy.model import PolicyDocument
from .service_types import PolicyService

PREFIX = "/admin/v1"


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


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


Viewer = Annotated[Principal, requires(Role.VIEWER)]
Operator = Annotated[Principal, requires(Role.OPERATOR)]
Admin = Annotated[Principal, requires(Role.ADMIN)]


class WhoAmIOut(BaseModel):
    name: str
    role: str


def _routes(service: PolicyService) -> APIRouter:
    r = APIRouter()

    @r.get("/whoami", summary="The identity and role this token authenticates as (viewer and up)")
    async def whoami(who: Viewer) -> WhoAmIOut:
        return WhoAmIOut(name=who.name, role=who.role.label)

    # Admin only: provider entries may carry header values (the audit log masks them, this does not).
    @r.get("/policy", summary="The current declarative policy and its version (admin)")
    async def get_policy(who: Admin) -> PolicyOut:
        doc, version = await service.get_document()
        return PolicyOut(version=version, document=doc)

    @r.post(
        "/policy/apply",
        summary="Make the stored policy equal this document (absent items are deleted) (admin)",
        responses={409: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    )
    async def apply_policy(
        doc: PolicyDocument,
        request: Request,
        who: Admin,
        dry_run: Annotated[bool, Query(description="Only report the changes")] = False,
    ) -> ApplyOut:
        res = await service.apply(doc, dry_run=dry_run, actor=who.actor(request))
        return ApplyOut(changes=[ChangeOut.of(c) for c in res.changes], version=res.version, dry_run=res.dry_run)

    @r.get("/keys", summary="Virtual keys (never their secrets or hashes) (viewer)")
    async def list_keys(who: Viewer) -> KeyList:
        return KeyList(keys=[KeyOut.of(k) for k in await service.list_keys()])

    @r.post(
        "/keys", status_code=201, summary="Create a virtual key; its secret is in this response only (admin)",
        responses={422: {"model": ErrorOut}},
    )
    async def create_key(spec: KeyCreateIn, request: Request, response: Response, who: Admin) -> KeyCreatedOut:
        created = await service.create_key(spec.to_spec(), actor=who.actor(request))
        # The secret exists nowhere else; keep it out of every cache on the way.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return KeyCreatedOut(**KeyOut.of(created.record).model_dump(), secret=created.secret)

    @r.post("/keys/{key_id}/revoke", responses={404: {"model": ErrorOut}},
            summary="Revoke a virtual key, idempotent (operator: per-run keys only; admin: any key)")
    async def revoke_key(key_id: str, request: Request, who: Operator) -> KeyOut:
        if who.role < Role.ADMIN:
            record = next((k for k in await service.list_keys() if k.id == key_id), None)
            if record is not None and not record.parent:
                raise Forbidden(f"'{who.name}' (role '{who.role.label}') may revoke only per-run keys; "
                                f"{key_id} is not one: revoking it needs role 'admin'")
        return KeyOut.of(await service.revoke_key(key_id, actor=who.actor(request)))

    @r.get("/models", summary="Routable models and aliases with prices per 1M tokens (viewer)")
    async def list_models(who: Viewer) -> ModelList:
        return ModelList(models=[ModelOut.of(m) for m in await service.list_models()])

    @r.get("/nodes", summary="Data-plane nodes and whether they run the current snapshot (viewer)")
    async def list_nodes(who: Viewer) -> NodeList:
        snap = await service.current_snapshot()
        nodes = [NodeOut.of(n, snap.version, snap.content_hash) for n in await service.node_status()]
        return NodeList(version=snap.version, content_hash=snap.content_hash, server_time_unix_ms=_now_ms(), nodes=nodes)

    @r.get("/snapshot", summary="Current snapshot summary: version, hash, counts (viewer)")
    async def snapshot(who: Viewer) -> SnapshotOut:
        return SnapshotOut.of(await service.current_snapshot())

    return r


def create_admin_app(
    service: PolicyService, admin_token: bytes = b"", *, credentials: Iterable[AdminCredential] = (),
    extra_routers: Iterable[APIRouter] = (),
) -> FastAPI:
    """Build the admin app. `admin_token` (the legacy single token) authenticates as the admin "admin-token";
    `credentials` add named identities. Every route, including those of `extra_routers`, must declare its role
    with admin_auth.requires (checked here: the app is not built otherwise)."""
    auth = AdminAuth.of(admin_token, credentials)
    app = FastAPI(
        title="Interlock admin API",
        description="Policy, virtual keys, models and data-plane status. Authenticate with an admin token; "
                    "roles: viewer (read), operator (+ per-run keys), admin (+ policy and keys).",
        version="1",
        # No Swagger UI/ReDoc: FastAPI loads them from an unpinned CDN on the page where admins paste tokens.
        # The schema stays at /openapi.json for local tools.
        docs_url=None, redoc_url=None,
    )
    app.state.admin_auth = auth
    app.add_middleware(AuthBeforeBody, auth=auth,  # type: ignore[arg-type]
                       refuse=lambda msg: _error(401, "Unauthorized", msg, None, {"WWW-Authenticate": "Bearer"}))
    _install_error_handlers(app)
    guarded: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorOut, "description": "Missing or invalid admin token"},
        403: {"model": ErrorOut, "description": "The token's role is below the role this route needs"},
    }

    @app.get("/healthz", summary="Liveness (no authentication)", tags=["health"])
    async def healthz() -> Health:
        return Health()

    app.include_router(_routes(service), prefix=PREFIX, tags=["admin"], responses=guarded)
    app.include_router(create_audit_router(service), responses=guarded)
    for router in extra_routers:
        app.include_router(router, responses=guarded)
    assert_guarded(app)
    return app
