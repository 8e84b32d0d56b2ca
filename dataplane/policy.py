"""CompiledPolicy: an immutable view of one snapshot with every index the hot path needs.

Built once per snapshot (credential resolution, alias flattening, allowlist
expansion, key index); requests only do dict lookups against it. Swapping
the node's policy is a single reference assignment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from dataplane.budget.index import BudgetIndex, build_index
from dataplane.errors import SnapshotRejected
from dataplane.pricing import Price, per_token_pico
from dataplane.providers.base import ProviderAdapter, ProviderConfigError
from dataplane.routing.table import RoutingTable
from interlock.keys import HASH_SCHEME
from interlock.v1 import policy_pb2


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


CredentialResolver = Callable[[str], "str | None"]


def env_and_file_credentials(env: Mapping[str, str]) -> CredentialResolver:
    """Resolve `env:NAME` from the node's environment and `file:/path` from its filesystem."""

    def resolve(ref: str) -> str | None:
        if ref.startswith("env:"):
            return env.get(ref[4:]) or None
        if ref.startswith("file:"):
            try:
                return Path(ref[5:]).read_text().strip() or None
            except OSError:
                return None
        return None

    return resolve


def _provider(p: policy_pb2.Provider, adapters: Mapping[str, ProviderAdapter], creds: CredentialResolver) -> RuntimeProvider:
    adapter = adapters.get(p.kind)
    if adapter is None:
        raise SnapshotRejected(f"provider {p.name!r} has kind {p.kind!r}, which this node does not support (upgrade it)")
    secret = creds(p.credential_ref) if p.credential_ref else None
    unavailable = ""
    if p.credential_ref and secret is None:
        unavailable = f"credential {p.credential_ref} for provider {p.name!r} is not available on this node"
    elif adapter.credential_required and not p.credential_ref:
        unavailable = f"provider {p.name!r} has no credential configured"
    try:  # kind-specific settings and credential parsing, once per snapshot
        adapter = adapter.bind(dict(p.options), secret)
    except ProviderConfigError as exc:
        unavailable = unavailable or f"provider {p.name!r}: {exc}"
    headers = (("content-type", "application/json"), *adapter.static_headers, *sorted(p.headers.items()),
               *adapter.auth_headers(secret))
    return RuntimeProvider(
        name=p.name, adapter=adapter, base_url=p.base_url.rstrip("/"), headers=headers,
        timeout_s=(p.timeout_ms or 600_000) / 1000, unavailable=unavailable,
    )


def _requestable(entries: list[str], aliases_of: Mapping[str, list[str]]) -> frozenset[str] | None:
    # Allowing a model allows its aliases; allowing an alias allows only that alias.
    if not entries:
        return None
    names: set[str] = set()
    for e in entries:
        names.add(e)
        names.update(aliases_of.get(e, ()))
    return frozenset(names)


def aliases_by_target(snap: policy_pb2.PolicySnapshot) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in snap.aliases:
        out.setdefault(a.target, []).append(a.name)
    return out


def key_entry(k: policy_pb2.VirtualKey, teams: Mapping[str, policy_pb2.Team],
              aliases_of: Mapping[str, list[str]]) -> KeyEntry:
    """One key's index entry (also used to apply key deltas in place, dataplane/key_delta.py)."""
    team = teams.get(k.team_id)
    key_set = _requestable(list(k.allowed_models), aliases_of)
    team_set = _requestable(list(team.allowed_models), aliases_of) if team else None
    allowed = key_set if team_set is None else (team_set if key_set is None else key_set & team_set)
    tags = {**(dict(team.default_tags) if team else {}), **dict(k.default_tags)}
    return KeyEntry(
        id=k.id, team_id=k.team_id, user_id=k.user_id, project_id=k.project_id, allowed=allowed,
        expires_at_ms=k.expires_at_unix_ms, revoked=k.revoked, tags=tags,
        required_tags=frozenset(team.required_tags) if team else frozenset(),
    )


@dataclass(frozen=True)
class CompiledPolicy:
    version: int
    content_hash: str
    keys: Mapping[bytes, KeyEntry]
    routes: Mapping[str, Route]
    providers: Mapping[str, RuntimeProvider]
    budgets: BudgetIndex = field(default_factory=BudgetIndex)  # which budgets/rate limits apply to what
    routing: RoutingTable = field(default_factory=RoutingTable.empty)  # rules, deployments, team constraints
    _models_json: dict[frozenset[str] | None, bytes] = field(default_factory=dict, repr=False)

    @classmethod
    def from_snapshot(
        cls, snap: policy_pb2.PolicySnapshot, *, adapters: Mapping[str, ProviderAdapter], credentials: CredentialResolver
    ) -> CompiledPolicy:
        if snap.key_hash_scheme != HASH_SCHEME:
            raise SnapshotRejected(f"key hash scheme {snap.key_hash_scheme!r} is not supported by this node")
        providers = {p.name: _provider(p, adapters, credentials) for p in snap.providers}
        routes: dict[str, Route] = {}
        for m in snap.models:
            prov = providers.get(m.provider)
            if prov is None:
                raise SnapshotRejected(f"model {m.name!r} names unknown provider {m.provider!r}")
            price = Price(
                input_pico=per_token_pico(m.price.input_per_mtok),
                output_pico=per_token_pico(m.price.output_per_mtok),
                cached_pico=per_token_pico(m.price.cached_input_per_mtok or m.price.input_per_mtok),
                version=m.price.version,
            )
            rm = RuntimeModel(m.name, m.upstream_name or m.name, prov, price, m.max_output_tokens)
            routes[m.name] = Route(rm, "")
        aliases_of: dict[str, list[str]] = {}
        for a in snap.aliases:
            target = routes.get(a.target)
            if target is None:
                raise SnapshotRejected(f"alias {a.name!r} points to unknown model {a.target!r}")
            routes[a.name] = Route(target.model, a.name)
            aliases_of.setdefault(a.target, []).append(a.name)
        routing = RoutingTable.build(snap, {n: r.model for n, r in routes.items() if not r.alias}, providers,
                                     {n: r.model.name for n, r in routes.items()})
        teams = {t.id: t for t in snap.teams}
        keys: dict[bytes, KeyEntry] = {}
        for k in snap.keys:
            keys[bytes(k.key_hash)] = key_entry(k, teams, aliases_of)
        return cls(snap.version, snap.content_hash, keys, routes, providers, budgets=build_index(snap), routing=routing)

    def models_json(self, allowed: frozenset[str] | None) -> bytes:
        """OpenAI-style model list for a key; memoised per distinct allowlist (the policy is immutable)."""
        cached = self._models_json.get(allowed)
        if cached is None:
            names = sorted(n for n in self.routes if allowed is None or n in allowed)
            data = [{"id": n, "object": "model", "created": 0, "owned_by": self.routes[n].model.provider.name} for n in names]
            cached = orjson.dumps({"object": "list", "data": data})
            self._models_json[allowed] = cached
        return cached
