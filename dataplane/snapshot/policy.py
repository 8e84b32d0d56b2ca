"""CompiledPolicy: an immutable view of one snapshot with every index the hot path needs.

Built once per snapshot (credential resolution, alias flattening, allowlist
expansion, key index); requests only do dict lookups against it. Swapping
the node's policy is a single reference assignment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataplane.budget.index import BudgetIndex, build_index
from dataplane.errors import SnapshotRejected
from dataplane.guardrails.compiled import GuardrailSet
from dataplane.lazy_index import LazyIndex
from dataplane.loopguard.index import LoopIndex
from dataplane.policy_types import CredentialResolver, KeyEntry, Route, RuntimeModel, RuntimeProvider
from dataplane.pricing import price_from_proto
from dataplane.providers.base import ProviderAdapter, ProviderConfigError
from dataplane.routing.table import RoutingTable
from interlock_contracts.credential_refs import CredentialRules
from interlock_contracts.keys import HASH_SCHEME
from interlock_contracts.v1 import policy_pb2

if TYPE_CHECKING:
    from dataplane.dialects.base import Dialect


log = logging.getLogger(__name__)


def env_and_file_credentials(env: Mapping[str, str], rules: CredentialRules | None = None) -> CredentialResolver:
    """Resolve `env:NAME` from the node's environment and `file:/path` from its filesystem, only where the
    node's CredentialRules allow (interlock_contracts/credential_refs.py); a refused reference resolves to nothing."""
    rules = rules or CredentialRules()
    warned: set[str] = set()

    def refused(ref: str, why: str) -> None:
        if ref not in warned:  # re-resolved every credential refresh: say it once
            warned.add(ref)
            log.warning("not resolving %s", why)

    def resolve(ref: str) -> str | None:
        if problem := rules.problem(ref):
            refused(ref, problem)
            return None
        if ref.startswith("env:"):
            return env.get(ref[4:]) or None
        if ref.startswith("file:"):
            real = rules.resolved_file(ref[5:])
            if real is None:
                refused(ref, f"credential {ref!r}: a symlink leads outside the allowed directories")
                return None
            try:
                return real.read_text().strip() or None
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
    # One value per name (later wins: policy headers over the kind's defaults, the credential over both).
    merged = {n.lower(): (n, v) for n, v in (("content-type", "application/json"), *adapter.static_headers,
                                             *sorted(p.headers.items()), *adapter.auth_headers(secret))}
    headers = tuple(merged.values())
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


def _guardrails(snap: policy_pb2.PolicySnapshot) -> GuardrailSet:
    try:
        return GuardrailSet.from_snapshot(snap)
    except Exception as exc:  # a pattern the control plane let through but this node cannot compile
        raise SnapshotRejected(f"guardrails do not compile on this node: {exc}") from exc


def aliases_by_target(snap: policy_pb2.PolicySnapshot) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in snap.aliases:
        out.setdefault(a.target, []).append(a.name)
    return out


def key_entry(k: policy_pb2.VirtualKey, teams: Mapping[str, policy_pb2.Team],
              aliases_of: Mapping[str, list[str]]) -> KeyEntry:
    """One key's index entry (also used to apply key deltas in place, dataplane/snapshot/key_delta.py)."""
    team = teams.get(k.team_id)
    key_set = _requestable(list(k.allowed_models), aliases_of)
    team_set = _requestable(list(team.allowed_models), aliases_of) if team else None
    allowed = key_set if team_set is None else (team_set if key_set is None else key_set & team_set)
    tags = {**(dict(team.default_tags) if team else {}), **dict(k.default_tags)}
    return KeyEntry(
        id=k.id, team_id=k.team_id, user_id=k.user_id, project_id=k.project_id, allowed=allowed,
        expires_at_ms=k.expires_at_unix_ms, revoked=k.revoked, tags=tags,
        required_tags=frozenset(team.required_tags) if team else frozenset(),
        paused=(k.paused_reason or "paused") if k.paused else "",
        locked_tags={n: v for n, v in tags.items() if not team or n not in team.overridable_tags},
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
    loops: LoopIndex = field(default_factory=LoopIndex)  # runaway-loop breakers (dataplane/loopguard/)
    guardrails: GuardrailSet = field(default_factory=GuardrailSet)  # compiled scanners, attachments (issue 12)
    # [(name, owner)] of every requestable name, sorted: what each dialect's model list is rendered from
    model_owners: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _model_lists: dict[tuple[str, frozenset[str] | None], bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        owners = tuple((n, self.routes[n].model.provider.name) for n in sorted(self.routes))
        object.__setattr__(self, "model_owners", owners)

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
            price = price_from_proto(m.price)
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
        # Built per key on first lookup (dataplane/lazy_index.py): 100,000 entries would take seconds at boot.
        keys: LazyIndex[bytes, policy_pb2.VirtualKey, KeyEntry] = LazyIndex(
            {bytes(k.key_hash): k for k in snap.keys}, lambda k: key_entry(k, teams, aliases_of))
        return cls(snap.version, snap.content_hash, keys, routes, providers, budgets=build_index(snap), routing=routing,
                   loops=LoopIndex.build(snap), guardrails=_guardrails(snap))

    def model_list(self, dialect: Dialect, allowed: frozenset[str] | None) -> bytes:
        """A dialect's model list for a key; rendered once per (dialect, distinct allowlist): the policy is immutable."""
        k = (dialect.name, allowed)
        cached = self._model_lists.get(k)
        if cached is None:
            cached = dialect.model_list([(n, o) for n, o in self.model_owners if allowed is None or n in allowed])
            self._model_lists[k] = cached
        return cached
