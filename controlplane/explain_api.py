"""POST /admin/v1/explain: which route a request would take under the current policy, without sending it.

Compiles the current snapshot with the data plane's own CompiledPolicy and runs its routing code
(dataplane/routing/explain.py). Circuit-breaker state lives on each data-plane node, so it is
reported as "unknown" here. The key may be given by id or by secret; the secret is only hashed
(like the data plane does) and never echoed back.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dataplane.errors import SnapshotRejected
from dataplane.guardrails.explain import describe as describe_guardrails
from dataplane.providers.registry import default_providers
from dataplane.routing.explain import explain
from dataplane.routing.select import facts_of
from dataplane.snapshot.policy import CompiledPolicy, KeyEntry
from interlock_contracts.keys import hash_key

from .admin_auth import Role, requires
from .admin_schemas import ErrorOut
from .errors import ControlPlaneError, NotFound
from .service_types import PolicyService

EXPLAIN_PATH = "/admin/v1/explain"


class ExplainIn(BaseModel):
    key: str = Field(min_length=1, description="virtual key id (vk_...) or the key itself (never echoed)")
    model: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    has_tools: bool = False
    input_tokens: int = Field(default=0, ge=0)


class ExplainOut(BaseModel):
    explanation: dict[str, Any]


class ExplainUnavailable(ControlPlaneError):
    status = 409


def _find_key(policy: CompiledPolicy, pepper: bytes, given: str) -> KeyEntry:
    if given.startswith("vk_"):
        for entry in policy.keys.values():
            if entry.id == given:
                return entry
        raise NotFound(f"no virtual key with id {given!r}; `interlock keys list` shows them")
    found = policy.keys.get(hash_key(pepper, given))
    if found is None:
        raise NotFound("that virtual key is not known to this control plane (check for typos, or pass its vk_ id)")
    return found


def create_explain_router(service: PolicyService, key_pepper: bytes) -> APIRouter:
    """Mount behind the admin token: create_admin_app(..., extra_routers=[create_explain_router(...)])."""
    r = APIRouter(prefix=EXPLAIN_PATH, tags=["routing"], responses={404: {"model": ErrorOut}},
                  dependencies=[requires(Role.VIEWER)])  # read-only: nothing is sent or changed

    @r.post("", summary="The route a request would take: rule, deployments, constraints, fallbacks")
    async def explain_route(q: ExplainIn) -> ExplainOut:
        snap = await service.current_snapshot()
        try:
            # credentials are the data planes' business: none are resolved here
            policy = CompiledPolicy.from_snapshot(snap, adapters=default_providers(), credentials=lambda _ref: None)
        except SnapshotRejected as exc:
            raise ExplainUnavailable(f"the current policy does not compile for a data plane: {exc}") from exc
        key = _find_key(policy, key_pepper, q.key)
        headers = {k.lower(): v for k, v in q.headers.items()}
        tags = {**key.tags, **q.tags}
        # body size is what the data plane estimates tokens from (bytes / 4)
        body: dict[str, Any] = {"tools": [{}]} if q.has_tools else {}
        f = facts_of(key, q.model, headers, tags, body, q.input_tokens * 4)
        out = explain(policy, key, f)
        out["guardrails"] = describe_guardrails(policy, key, q.model, str(out.get("rule", "")))
        return ExplainOut(explanation=out)

    return r
