"""The runtime values a compiled snapshot is made of (providers, models, routes, key entries).

Only values: dataplane/snapshot/policy.py compiles a snapshot into them, and the routing, provider and guardrail
code reads them, so those import this module rather than the compiler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataplane.pricing import Price

if TYPE_CHECKING:
    from dataplane.providers.base import ProviderAdapter

CredentialResolver = Callable[[str], "str | None"]


@dataclass(frozen=True, slots=True)
class RuntimeProvider:
    name: str
    adapter: ProviderAdapter
    base_url: str
    # static + configured + auth, ready to send; kept out of repr so a logged provider never shows its key
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    timeout_s: float
    unavailable: str  # why this node cannot use the provider ("" = usable), e.g. a missing credential


@dataclass(frozen=True, slots=True)
class RuntimeModel:
    name: str
    upstream_name: str
    provider: RuntimeProvider
    price: Price
    max_output_tokens: int
    # upstream_name as the provider's URLs carry it (quoted by kinds with the model in the path), computed
    # here at snapshot swap (dataclasses.replace recomputes it) so no request quotes it again
    url_model: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url_model", self.provider.adapter.url_model(self.upstream_name))


@dataclass(frozen=True, slots=True)
class Route:
    model: RuntimeModel
    alias: str  # the alias the client used, "" if it named the model


@dataclass(frozen=True, slots=True)
class KeyEntry:
    id: str
    team_id: str
    user_id: str
    project_id: str
    allowed: frozenset[str] | None  # requestable names; None = every model
    expires_at_ms: int
    revoked: bool
    tags: Mapping[str, str]
    required_tags: frozenset[str] = frozenset()
    paused: str = ""  # why the loop breaker paused it ("" = not paused)
    # the default tags a client cannot override, with their values (dataplane/pipeline/tags.py); precomputed per snapshot
    locked_tags: Mapping[str, str] = field(default_factory=dict)
