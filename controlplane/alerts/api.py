"""Admin routes for alerts; mounted by ControlPlaneBackend.admin_routers.

    GET  /admin/v1/alerts              recent deliveries (pending, retrying, delivered, dead)   role viewer
    POST /admin/v1/alerts/test         send a test event to one destination                    role operator
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from ..admin_auth import Role, requires
from .events import AlertEvent
from .service import AlertService


class DeliveryOut(BaseModel):
    dedup_key: str
    destination: str
    kind: str
    severity: str
    summary: str
    status: str = Field(description="pending | retrying | delivered | dead")
    attempts: int
    created_ms: int
    finished_ms: int
    last_error: str


class DeliveryListOut(BaseModel):
    deliveries: list[DeliveryOut]


class TestIn(BaseModel):
    destination: str


class TestOut(BaseModel):
    dedup_key: str
    destination: str


def create_alerts_router(alerts: AlertService) -> APIRouter:
    r = APIRouter(prefix="/admin/v1/alerts", tags=["alerts"])

    @r.get("", summary="Recent alert deliveries", dependencies=[requires(Role.VIEWER)])
    async def recent(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> DeliveryListOut:
        rows = await alerts.recent(limit)
        return DeliveryListOut(deliveries=[DeliveryOut(**vars(x)) for x in rows])

    @r.post("/test", summary="Send a test event to a destination", dependencies=[requires(Role.OPERATOR)])
    async def test(body: TestIn) -> TestOut:
        dests = await alerts.destinations()
        if body.destination not in dests:
            known = ", ".join(sorted(dests)) or "none: add a destinations: section to the policy"
            raise HTTPException(404, f"destination {body.destination!r} is not in the policy (known: {known})")
        now = alerts.now_ms()
        ev = AlertEvent(f"test:{body.destination}:{now}", "test", "info",
                        f"test alert from interlock to destination {body.destination}", now)
        await alerts.fire(ev, [body.destination])
        await alerts.deliver_due()
        return TestOut(dedup_key=ev.dedup_key, destination=body.destination)

    return r
