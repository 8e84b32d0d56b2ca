"""Admin route for the control-plane audit log (see controlplane/audit.py).

    GET /admin/v1/audit/policy?since=7d&limit=100   newest first

Role: viewer (controlplane/admin_auth.py). `create_admin_app` mounts it, so it answers
in the admin error shape. Records carry no key hashes or secrets; they are masked
when written and scrubbed again here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from .admin_auth import Role, requires
from .admin_schemas import ChangeOut, ErrorOut
from .audit import SINCE_FORMAT, parse_since
from .service_types import PolicyAuditRecord, PolicyService

AUDIT_PATH = "/admin/v1/audit"
MAX_LIMIT = 10_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PolicyAuditOut(BaseModel):
    id: str
    at: str  # ISO 8601 UTC
    at_unix_ms: int
    actor: str = Field(description="The authenticated admin identity that made the change")
    actor_role: str = Field(description="Its role at the time ('' on records older than named credentials)")
    actor_verified: bool = Field(description="False on records older than named credentials: their actor was "
                                             "the client's claim")
    on_behalf_of_unverified: str = Field(description="UNVERIFIED: the name the client declared "
                                                     "(X-Interlock-Actor / INTERLOCK_ACTOR), '' if none")
    action: str
    subject: str
    version: int = Field(description="Policy version the change produced")
    base_version: int = Field(description="Policy version the change was made against")
    changes: list[ChangeOut]
    values_omitted: bool

    @classmethod
    def of(cls, r: PolicyAuditRecord) -> PolicyAuditOut:
        changes = [ChangeOut.of(c) for c in r.changes]
        return cls(id=r.id, at=iso(r.at_unix_ms), at_unix_ms=r.at_unix_ms, actor=r.actor, actor_role=r.actor_role,
                   actor_verified=r.actor_verified, on_behalf_of_unverified=r.on_behalf_of_unverified, action=r.action,
                   subject=r.subject, version=r.version, base_version=r.base_version, changes=changes,
                   values_omitted=r.values_omitted)


class PolicyAuditLogOut(BaseModel):
    since: str | None
    since_unix_ms: int | None
    limit: int
    truncated: bool = Field(description="More records match: narrow `since` or raise `limit`")
    records: list[PolicyAuditOut]


def create_audit_router(service: PolicyService) -> APIRouter:
    """Routes under /admin/v1/audit (role viewer); mount with create_admin_app."""
    errors: dict[int | str, dict[str, Any]] = {422: {"model": ErrorOut}, 503: {"model": ErrorOut}}
    r = APIRouter(prefix=AUDIT_PATH, tags=["audit"], responses=errors, dependencies=[requires(Role.VIEWER)])

    @r.get("/policy", summary="Policy changes (apply, key create/revoke), newest first")
    async def policy_log(
        since: Annotated[str | None, Query(description=f"Only this window: {SINCE_FORMAT}; default: all")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    ) -> PolicyAuditLogOut:
        since_ms = parse_since(since, time.time_ns() // 1_000_000)
        records = await service.policy_log(since_ms, limit + 1)  # one more says whether there is more
        return PolicyAuditLogOut(since=since or None, since_unix_ms=since_ms, limit=limit,
                                 truncated=len(records) > limit, records=[PolicyAuditOut.of(x) for x in records[:limit]])

    return r
