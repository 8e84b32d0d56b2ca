"""Declarative policy documents and stored records.

`PolicyDocument` is what `interlock apply -f policy.yaml` sends: providers,
models, aliases, teams, users, projects. Virtual keys are not declarative
(their secrets are shown once), they are `KeyRecord`s managed by the keys API.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .routing_model import CircuitBreaker, Deployment, Region, RoutingRule

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$"
ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_RE)]
Ident = Annotated[str, Field(pattern=ID_RE)]
CREDENTIAL_RE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)?$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Provider(_Frozen):
    name: Name
    kind: str = "openai"
    base_url: str
    credential: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_ms: int = Field(default=600_000, ge=100, le=3_600_000)
    options: dict[str, str] = Field(default_factory=dict)  # kind-specific (interlock/kinds.py PROVIDER_OPTIONS)
    region: Region | None = None  # routing constraints (team allowed_regions) compare against this

    @field_validator("credential")
    @classmethod
    def _credential_is_reference(cls, v: str) -> str:
        if not CREDENTIAL_RE.match(v):
            raise ValueError(
                "credential must be a reference like 'env:OPENAI_API_KEY' or 'file:/run/secrets/openai', "
                "never the key itself"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/")


def _decimal(v: object) -> str:
    try:
        d = Decimal(str(v))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal number: {v!r}") from exc
    if d < 0 or not d.is_finite():
        raise ValueError("price must be a finite, non-negative number")
    return format(d.normalize(), "f")


class Price(_Frozen):
    """USD per 1M tokens, kept as exact decimal strings."""

    input: str = "0"
    output: str = "0"
    cached_input: str | None = None

    @field_validator("input", "output", "cached_input", mode="before")
    @classmethod
    def _exact(cls, v: object) -> str | None:
        return None if v is None else _decimal(v)


class Model(_Frozen):
    name: Name
    provider: Name | None = None  # the single deployment; or list several under `deployments`
    upstream: str | None = None
    price: Price = Field(default_factory=Price)
    max_output_tokens: int = Field(default=0, ge=0)
    context_window: int = Field(default=0, ge=0)
    free: bool = False  # a zero price is 'unpriced' (budgets charge a conservative default) unless free
    deployments: list[Deployment] = Field(default_factory=list)  # routing: weighted provider deployments
    circuit: CircuitBreaker = Field(default_factory=CircuitBreaker)
    fallback: list[Name] = Field(default_factory=list)  # routing: default fallback chain (models or aliases)


class Alias(_Frozen):
    name: Name
    target: Name


class Team(_Frozen):
    id: Ident
    name: str = ""
    allowed_models: list[Name] = Field(default_factory=list)
    default_tags: dict[str, str] = Field(default_factory=dict)
    required_tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]] = Field(default_factory=list)
    allowed_regions: list[Region] = Field(default_factory=list)  # routing never leaves these (empty = any)
    allowed_providers: list[Name] = Field(default_factory=list)  # routing never leaves these (empty = any)


class User(_Frozen):
    id: Ident
    team: Ident
    name: str = ""


class Project(_Frozen):
    id: Ident
    team: Ident
    name: str = ""


BudgetScope = Literal["key", "team", "user", "project", "tag"]
OfflineMode = Literal["fail_closed", "safe_share", "optimistic"]


def _usd_amount(v: object) -> str:
    amount = _decimal(v)
    if Decimal(amount) <= 0:
        raise ValueError("must be more than 0 USD")
    if Decimal(amount) * 10**12 != int(Decimal(amount) * 10**12):
        raise ValueError("has more precision than 1e-12 USD")
    return amount


class Budget(_Frozen):
    """A spend cap on one scope and window (issue 4). `scope_id` is "name=value" for tag budgets."""

    id: Ident
    scope: BudgetScope
    scope_id: str = Field(min_length=1, max_length=200)
    window: Literal["lifetime", "day", "week", "month"] = "month"
    limit_usd: str
    timezone: str = "UTC"
    offline_mode: OfflineMode = "safe_share"
    optimistic_overshoot_usd: str = "0"
    # cut off from the control plane this long, a node refuses requests under this budget (0 = last-known-good)
    max_staleness_s: float = Field(default=0, ge=0, le=86_400)

    @field_validator("limit_usd", mode="before")
    @classmethod
    def _limit(cls, v: object) -> str:
        return _usd_amount(v)

    @field_validator("optimistic_overshoot_usd", mode="before")
    @classmethod
    def _overshoot(cls, v: object) -> str:
        return _decimal(v)


class RateLimit(_Frozen):
    """Cross-node request/token/concurrency limits; 0 = that dimension is unlimited."""

    id: Ident
    scope: Literal["key", "team", "model", "global"]
    scope_id: str = Field(default="", max_length=200)
    models: list[Name] = Field(default_factory=list)
    requests_per_minute: int = Field(default=0, ge=0, le=10**9)
    tokens_per_minute: int = Field(default=0, ge=0, le=10**15)
    max_concurrent: int = Field(default=0, ge=0, le=10**6)
    offline_mode: OfflineMode = "safe_share"


class PolicyDocument(_Frozen):
    """The declarative part of policy (everything but virtual keys)."""

    providers: list[Provider] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    aliases: list[Alias] = Field(default_factory=list)
    teams: list[Team] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)
    projects: list[Project] = Field(default_factory=list)
    budgets: list[Budget] = Field(default_factory=list)
    rate_limits: list[RateLimit] = Field(default_factory=list)
    routes: list[RoutingRule] = Field(default_factory=list)


class KeyRecord(_Frozen):
    """A stored virtual key. `key_hash` is hex HMAC-SHA256; the secret is never stored."""

    id: str
    key_hash: str
    name: str = ""
    hint: str = ""
    team: str = ""
    user: str = ""
    project: str = ""
    allowed_models: list[str] = Field(default_factory=list)
    expires_at_unix_ms: int = 0
    revoked: bool = False
    revoked_at_unix_ms: int = 0
    created_at_unix_ms: int = 0
    default_tags: dict[str, str] = Field(default_factory=dict)
    parent: str = ""
    budget_usd: str = ""  # per-run keys: implicit lifetime budget ("" = none)
    max_concurrency: int = 0  # per-run keys: implicit concurrency limit (0 = none)


SectionName = Literal[
    "providers", "models", "aliases", "teams", "users", "projects", "budgets", "rate_limits", "routes",
]
SECTIONS: tuple[SectionName, ...] = (
    "providers", "models", "aliases", "teams", "users", "projects", "budgets", "rate_limits", "routes",
)
SECTION_TYPES: dict[str, type[BaseModel]] = {
    "providers": Provider,
    "models": Model,
    "aliases": Alias,
    "teams": Team,
    "users": User,
    "projects": Project,
    "budgets": Budget,
    "rate_limits": RateLimit,
    "routes": RoutingRule,
}


def record_key(section: str, item: BaseModel) -> str:
    """The identity of an item within its section (name or id)."""
    return str(getattr(item, "name" if section in {"providers", "models", "aliases"} else "id"))
