"""Declarative routing: model deployments, circuit breakers, and routing rules.

Kept apart from model.py so routing and budgets can grow without editing the same lines.
A rule's `match` conditions are ANDed; each list inside a condition is ORed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$"
ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
RName = Annotated[str, Field(pattern=NAME_RE)]
RIdent = Annotated[str, Field(pattern=ID_RE)]
Region = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]

# What may trigger the next attempt (retry or fallback). "context_length" is opt-in: falling back to a
# model with a larger window only helps when the chain is built for it.
FallbackCondition = Literal["429", "5xx", "529", "timeout", "connect", "context_length"]
DEFAULT_FALLBACK_ON: tuple[FallbackCondition, ...] = ("429", "5xx", "529", "timeout", "connect")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Deployment(_Frozen):
    """One provider serving a model. `name` defaults to the provider's name; `region` to the provider's."""

    name: RName | None = None
    provider: RName
    upstream: str | None = None
    weight: int = Field(default=1, ge=0, le=10_000)  # 0 = never chosen first (fallback-only within the model)
    region: Region | None = None


class CircuitBreaker(_Frozen):
    """Per deployment, per data-plane node. Opens on `failures` consecutive failures, or when at least
    `min_requests` in the current `window_ms` failed at `failure_rate` or more; after `cooldown_ms` one probe
    request is let through (half-open): success closes it, failure re-opens it."""

    enabled: bool = True
    failures: int = Field(default=5, ge=1, le=10_000)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    min_requests: int = Field(default=20, ge=1, le=1_000_000)
    window_ms: int = Field(default=30_000, ge=100, le=3_600_000)
    cooldown_ms: int = Field(default=30_000, ge=10, le=3_600_000)


class RuleMatch(_Frozen):
    keys: list[str] = Field(default_factory=list)  # virtual key ids (vk_...)
    teams: list[RIdent] = Field(default_factory=list)
    projects: list[RIdent] = Field(default_factory=list)
    models: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list)  # exact or glob
    headers: dict[str, str] = Field(default_factory=dict)  # header name -> exact value or glob
    tags: dict[str, str] = Field(default_factory=dict)  # attribution tag -> exact value or glob
    has_tools: bool | None = None
    min_input_tokens: int = Field(default=0, ge=0)  # estimated as request bytes / 4
    max_input_tokens: int = Field(default=0, ge=0)  # 0 = no upper bound

    @field_validator("headers")
    @classmethod
    def _lower(cls, v: dict[str, str]) -> dict[str, str]:
        return {k.lower(): val for k, val in v.items()}


class RoutingRule(_Frozen):
    """First match wins, lowest `priority` first (ties: by id). `target` omitted = the requested model."""

    id: RIdent
    priority: int = Field(default=100, ge=0, le=1_000_000)
    match: RuleMatch = Field(default_factory=RuleMatch)
    target: RName | None = None
    deployments: list[RName] = Field(default_factory=list)  # subset of the target's deployments
    fallback: list[RName] = Field(default_factory=list)  # models or aliases, tried in order
    fallback_on: list[FallbackCondition] = Field(default_factory=lambda: list(DEFAULT_FALLBACK_ON))
    retries: int = Field(default=0, ge=0, le=10)  # extra attempts per target after each deployment was tried once
    backoff_ms: int = Field(default=200, ge=0, le=60_000)
    max_backoff_ms: int = Field(default=5_000, ge=0, le=300_000)
    max_retry_after_ms: int = Field(default=10_000, ge=0, le=300_000)  # longer retry-after hints: move on instead
    attempt_timeout_ms: int = Field(default=0, ge=0, le=3_600_000)  # 0 = the provider's timeout
    total_timeout_ms: int = Field(default=0, ge=0, le=3_600_000)  # 0 = unbounded beyond per-attempt limits
    sticky: bool = False  # keep a session (tag `session` / header x-interlock-session-id) on one deployment
