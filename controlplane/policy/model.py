"""Declarative policy documents and stored records.

`PolicyDocument` is what `interlock apply -f policy.yaml` sends: providers,
models, aliases, teams, users, projects. Virtual keys are not declarative
(their secrets are shown once), they are `KeyRecord`s managed by the keys API.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .guardrails import Guardrail
from .routing_model import CircuitBreaker, Deployment, Region, RoutingRule

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$"
ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_RE)]
Ident = Annotated[str, Field(pattern=ID_RE)]
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is allowed
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
    options: dict[str, str] = Field(default_factory=dict)  # kind-specific (interlock_contracts/kinds.py PROVIDER_OPTIONS)
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

    @field_validator("headers")
    @classmethod
    def _header_fields(cls, v: dict[str, str]) -> dict[str, str]:
        # A CR/LF would split the upstream request (every request to the provider would then fail, or worse).
        for name, value in v.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name[:70]!r} must be letters, digits and !#$%&'*+-.^_`|~")
            if _HEADER_VALUE_BAD.search(value):
                raise ValueError(f"header {name!r}: the value must not contain CR, LF or other control characters")
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


class PriceTier(_Frozen):
    """Above `input_tokens` input tokens the whole request is priced with these figures (long context)."""

    input_tokens: int = Field(gt=0)
    input: str
    output: str
    cached_input: str | None = None
    cache_write: str | None = None
    cache_write_1h: str | None = None

    @field_validator("input", "output", "cached_input", "cache_write", "cache_write_1h", mode="before")
    @classmethod
    def _exact(cls, v: object) -> str | None:
        return None if v is None else _decimal(v)


class Price(_Frozen):
    """USD per 1M tokens, kept as exact decimal strings. Unset class prices fall back: cache writes and
    audio input to `input`, audio output to `output`, cached_input to `input`.

    `catalog`: take the figures from the shipped price catalog ("latest" or a pinned version like
    "2026-12-06"); any figure given alongside overrides the catalog's. `catalog_model`: the catalog's
    name for the model when the upstream name is not (an Azure deployment name, say).
    `source*` are filled in from the catalog; they say where the figures came from."""

    input: str = "0"
    output: str = "0"
    cached_input: str | None = None
    cache_write: str | None = None  # prompt-cache write, default (5-minute) TTL
    cache_write_1h: str | None = None
    audio_input: str | None = None
    audio_output: str | None = None
    above: PriceTier | None = None
    catalog: str | None = Field(default=None, pattern=r"^(latest|\d{4}-\d{2}-\d{2})$")
    catalog_model: str | None = None
    source: str | None = None  # "policy" | "catalog:<version>" (set when the catalog is applied)
    source_url: str | None = None
    source_date: str | None = None

    @field_validator("input", "output", "cached_input", "cache_write", "cache_write_1h", "audio_input", "audio_output",
                     mode="before")
    @classmethod
    def _exact(cls, v: object) -> str | None:
        return None if v is None else _decimal(v)


class Model(_Frozen):
    name: Name
    provider: Name | None = None  # the single deployment; or list several under `deployments`
    upstream: str | None = None
    price: Price = Field(default_factory=Price)  # `price: catalog` = the shipped catalog's figures
    max_output_tokens: int = Field(default=0, ge=0)
    context_window: int = Field(default=0, ge=0)
    free: bool = False  # a zero price is 'unpriced' (budgets charge a conservative default) unless free
    deployments: list[Deployment] = Field(default_factory=list)  # routing: weighted provider deployments
    circuit: CircuitBreaker = Field(default_factory=CircuitBreaker)
    fallback: list[Name] = Field(default_factory=list)  # routing: default fallback chain (models or aliases)


    @field_validator("price", mode="before")
    @classmethod
    def _catalog_shorthand(cls, v: object) -> object:
        return {"catalog": "latest"} if v == "catalog" else v


class Alias(_Frozen):
    name: Name
    target: Name


# Attribution tags as dataplane/pipeline/tags.py accepts them from clients: names of letters, digits and _ . : -; values
# up to 256 characters without control characters (they reach terminals and CSV exports).
TagName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
TagValue = Annotated[str, Field(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]


class Team(_Frozen):
    id: Ident
    name: str = ""
    allowed_models: list[Name] = Field(default_factory=list)
    default_tags: dict[TagName, TagValue] = Field(default_factory=dict)
    required_tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]] = Field(default_factory=list)
    allowed_regions: list[Region] = Field(default_factory=list)  # routing never leaves these (empty = any)
    allowed_providers: list[Name] = Field(default_factory=list)  # routing never leaves these (empty = any)
    # Default tags a client may override (header, metadata, labels); all others are authoritative.
    overridable_tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]] = Field(default_factory=list)


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
    # percent of the window's limit at which destinations are notified ([] = each destination's default)
    alert_thresholds: list[Annotated[int, Field(ge=1, le=1000)]] = Field(default_factory=list)
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


class Destination(_Frozen):
    """Where the control plane delivers alerts (controlplane/alerts/). Secrets are references (env:NAME or
    file:/path) resolved by the control plane, never stored in the policy: the Slack webhook URL (url_ref),
    the HMAC signing key of a generic webhook, the PagerDuty routing key (secret_ref)."""

    id: Ident
    kind: Literal["webhook", "slack", "pagerduty"]
    url: str = ""  # webhook / slack (or url_ref); pagerduty defaults to the Events v2 endpoint
    url_ref: str = ""
    secret_ref: str = ""
    events: list[str] = Field(default_factory=lambda: ["*"])  # event kinds ("budget_threshold", ...) or "*"
    budget_thresholds: list[Annotated[int, Field(ge=1, le=1000)]] = Field(default_factory=lambda: [50, 80, 95, 100])

    @field_validator("url_ref", "secret_ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        if not CREDENTIAL_RE.match(v):
            raise ValueError("must be a reference like env:NAME or file:/path, never the secret itself")
        return v

    @model_validator(mode="after")
    def _target(self) -> Destination:
        if self.kind != "pagerduty" and not (self.url or self.url_ref):
            raise ValueError(f"destination {self.id!r} ({self.kind}) needs url or url_ref")
        if self.kind == "pagerduty" and not self.secret_ref:
            raise ValueError(f"destination {self.id!r} (pagerduty) needs secret_ref naming the routing key")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"destination {self.id!r}: url must be http(s)://")
        return self


class LoopBreaker(_Frozen):
    """Runaway-loop detection on the data plane (dataplane/loopguard/) for keys in a scope (the most specific
    applies: key, then team, then all). Either detector may be off (0)."""

    id: Ident
    scope: Literal["all", "team", "key"] = "all"
    scope_id: str = ""
    identical_requests: int = Field(default=0, ge=0, le=100_000)  # N requests with the same normalised tail...
    identical_window_s: int = Field(default=600, ge=1, le=86_400)  # ...within this window
    max_usd_per_minute: str = "0"  # spend velocity over velocity_window_s
    velocity_window_s: int = Field(default=60, ge=10, le=3_600)
    action: Literal["alert", "pause", "revoke"] = "pause"

    @field_validator("max_usd_per_minute", mode="before")
    @classmethod
    def _velocity(cls, v: object) -> str:
        return _decimal(v)

    @model_validator(mode="after")
    def _scoped(self) -> LoopBreaker:
        if (self.scope == "all") == bool(self.scope_id):
            raise ValueError(f"loop breaker {self.id!r}: scope_id names the team or key (and is empty for 'all')")
        return self


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
    destinations: list[Destination] = Field(default_factory=list)  # where alerts go (controlplane/alerts/)
    loop_breakers: list[LoopBreaker] = Field(default_factory=list)  # runaway-loop detection (issue 15)
    guardrails: list[Guardrail] = Field(default_factory=list)


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
    default_tags: dict[TagName, TagValue] = Field(default_factory=dict)
    parent: str = ""
    budget_usd: str = ""  # per-run keys: implicit lifetime budget ("" = none)
    max_concurrency: int = 0  # per-run keys: implicit concurrency limit (0 = none)
    paused: bool = False  # by the loop breaker, until `interlock keys resume` (issue 15)
    paused_reason: str = ""
    paused_at_unix_ms: int = 0


SectionName = Literal[
    "providers", "models", "aliases", "teams", "users", "projects", "budgets", "rate_limits", "routes",
    "destinations", "loop_breakers", "guardrails",
]
SECTIONS: tuple[SectionName, ...] = (
    "providers", "models", "aliases", "teams", "users", "projects", "budgets", "rate_limits", "routes",
    "destinations", "loop_breakers", "guardrails",
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
    "destinations": Destination,
    "loop_breakers": LoopBreaker,
    "guardrails": Guardrail,
}


def record_key(section: str, item: BaseModel) -> str:
    """The identity of an item within its section (name or id)."""
    return str(getattr(item, "name" if section in {"providers", "models", "aliases"} else "id"))
