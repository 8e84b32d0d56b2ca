"""POST /admin/v1/keys/{key_id}/resume: lift a loop-breaker pause (role operator), audited as resume_key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from ..admin_auth import Principal, Role, requires
from ..admin_schemas import ErrorOut, KeyOut
from ..service import StorePolicyService


def create_loop_router(service: StorePolicyService) -> APIRouter:
    r = APIRouter(prefix="/admin/v1", tags=["admin"])

    @r.post("/keys/{key_id}/resume", responses={404: {"model": ErrorOut}},
            summary="Resume a key paused by the loop breaker, idempotent (operator)")
    async def resume_key(key_id: str, request: Request, who: Annotated[Principal, requires(Role.OPERATOR)]) -> KeyOut:
        record, _ = await service.set_paused(key_id, False, actor=who.actor(request))
        return KeyOut.of(record)

    return r
