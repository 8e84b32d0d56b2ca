"""What `interlock controlplane` adds to the admin app for FinOps: the usage routes, always mounted (503 with
what to set when no usage store is configured). The console is mounted by controlplane.console.mount_console."""

from __future__ import annotations

from fastapi import APIRouter

from controlplane.usage_api import create_usage_router
from ingest.query_service import UsageQueryService


def usage_routers(queries: UsageQueryService | None) -> list[APIRouter]:
    return [create_usage_router(queries)]
