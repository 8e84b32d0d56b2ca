"""Admin routes for budgets and per-run keys; mount with create_admin_app(extra_routers=[...]).

    POST /admin/v1/keys/mint    mint a per-run key under a parent key (secret in this response only)  role operator
    GET  /admin/v1/budgets      every budget and rate limit: limit, settled, leased, remaining, reset   role viewer
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, field_validator

from interlock_contracts.v1 import policy_pb2

from ..admin_auth import Principal, Role, requires
from ..admin_schemas import ErrorOut
from ..audit import Actor
from ..policy.budgets import PICO_PER_USD
from ..service_types import CreatedKey
from .ledger import Ledger
from .runkeys import RunKeySpec
from .visibility import budget_rows


class RunKeyMinter(Protocol):
    async def mint_run_key(self, spec: RunKeySpec, *, actor: str | Actor = "admin",
                           teams: frozenset[str] | None = None) -> CreatedKey: ...


class RunKeyIn(BaseModel):
    parent: str = Field(description="Id of the key this run key is minted from (vk_...)")
    ttl_s: int = Field(gt=0, description="Lifetime in seconds; at most 30 days and never past the parent's expiry")
    budget_usd: str = Field(default="", description="Lifetime budget in USD, e.g. '20' ('' = only the parent's budgets)")
    max_concurrency: int = Field(default=0, ge=0, description="Max in-flight requests (0 = the parent's limits only)")
    tags: dict[str, str] = Field(default_factory=dict, description="Usage tags added to every request (e.g. task=T-1)")
    allowed_models: list[str] = Field(default_factory=list, description="Narrow the parent's models ([] = same)")
    name: str = ""

    @field_validator("budget_usd", mode="before")
    @classmethod
    def _as_text(cls, v: object) -> str:
        return "" if v is None else str(v)  # accept 20 as well as "20"


class RunKeyOut(BaseModel):
    id: str
    secret: str = Field(description="Shown once: store it in the run's environment, it cannot be retrieved again")
    parent: str
    name: str
    team: str
    user: str
    project: str
    allowed_models: list[str]
    expires_at_unix_ms: int
    budget_usd: str
    max_concurrency: int
    tags: dict[str, str]


class BudgetRowOut(BaseModel):
    kind: str
    limit_id: str
    scope: str
    scope_id: str
    window: str
    window_key: str
    unit: str = Field(description="usd (amounts are decimal USD strings), requests, tokens or slots")
    limit: str
    settled: str
    leased: str = Field(description="Handed to data planes as leases, in use or not")
    reserved: str = Field(description="Part of `leased` held by requests in flight (as nodes last reported)")
    remaining: str
    overshoot: str = Field(description="Spend beyond reservations (provider returned more than estimated)")
    nodes: int
    resets_unix_ms: int = Field(description="When the window resets; 0 = never (lifetime)")
    current: bool


class BudgetListOut(BaseModel):
    server_time_unix_ms: int
    policy_version: int
    budgets: list[BudgetRowOut]


def _amount(value: int, unit: str) -> str:
    if unit != "usd":
        return str(value)
    whole, frac = divmod(value, PICO_PER_USD)
    return f"{whole}.{frac:012d}".rstrip("0").rstrip(".") if frac else str(whole)


def create_budget_router(
    minter: RunKeyMinter, ledger: Ledger, snapshot: Callable[[], Awaitable[policy_pb2.PolicySnapshot]],
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    errors: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}, 422: {"model": ErrorOut},
                                                409: {"model": ErrorOut}, 503: {"model": ErrorOut}}
    r = APIRouter(prefix="/admin/v1", tags=["budgets"], responses=errors)

    @r.post("/keys/mint", status_code=201, summary="Mint a per-run key bounded by its parent; secret shown once")
    async def mint(body: RunKeyIn, request: Request, response: Response,
                   who: Annotated[Principal, requires(Role.OPERATOR)]) -> RunKeyOut:
        spec = RunKeySpec(parent=body.parent, ttl_ms=body.ttl_s * 1000, budget_usd=body.budget_usd,
                          max_concurrency=body.max_concurrency, tags=body.tags, allowed_models=body.allowed_models,
                          name=body.name)
        created = await minter.mint_run_key(spec, actor=who.actor(request), teams=who.teams)
        response.headers["Cache-Control"] = "no-store"
        k = created.record
        return RunKeyOut(id=k.id, secret=created.secret, parent=k.parent, name=k.name, team=k.team, user=k.user,
                         project=k.project, allowed_models=k.allowed_models, expires_at_unix_ms=k.expires_at_unix_ms,
                         budget_usd=k.budget_usd, max_concurrency=k.max_concurrency, tags=k.default_tags)

    @r.get("/budgets", summary="Budgets and rate limits with their ledger figures")
    async def budgets(
        who: Annotated[Principal, requires(Role.VIEWER)],
        history: Annotated[bool, Query(description="Also list past windows")] = False,
    ) -> BudgetListOut:
        snap = await snapshot()
        ledger_rows = [(x.kind, x.limit_id, x.window_key, x.record) for x in await ledger.rows()]
        now = clock()
        rows = budget_rows(snap.budget_policy, ledger_rows, now_s=now, history=history)
        return BudgetListOut(server_time_unix_ms=int(now * 1000), policy_version=snap.version, budgets=[
            BudgetRowOut(kind=x.kind, limit_id=x.limit_id, scope=x.scope, scope_id=x.scope_id, window=x.window,
                         window_key=x.window_key, unit=x.unit, limit=_amount(x.limit, x.unit),
                         settled=_amount(x.settled, x.unit), leased=_amount(x.leased, x.unit),
                         reserved=_amount(x.reserved, x.unit),
                         remaining=_amount(x.remaining, x.unit), overshoot=_amount(x.overshoot, x.unit),
                         nodes=x.nodes, resets_unix_ms=x.resets_unix_ms, current=x.current)
            for x in rows
        ])

    return r
