"""Which budgets and rate limits apply to which request: computed once per snapshot, read with dict gets.

Rules (the contract in proto/interlock_contracts/v1/policy.proto and /tmp/coord/BUDGETS.md):
  key scope      scope_id == key id, or == the key's parent (a per-run key also spends its parent's budgets)
  team/user/project  scope_id == the key's team/user/project
  tag scope      "name=value" matching the request's effective tags (the only per-request part)
  rate limits    key/team as above; model: scope_id == resolved or requested model; global: all;
                 a non-empty `models` filter must contain the requested or resolved name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dataplane.lazy_index import LazyIndex
from dataplane.pricing import Price, price_from_proto
from interlock_contracts.v1 import budget_pb2, policy_pb2

# Lease kinds as plain ints (the proto enum values), used as dict keys on the request path.
BUDGET: int = budget_pb2.LEASE_KIND_BUDGET
REQUESTS: int = budget_pb2.LEASE_KIND_REQUESTS
TOKENS: int = budget_pb2.LEASE_KIND_TOKENS
CONCURRENCY: int = budget_pb2.LEASE_KIND_CONCURRENCY
_NO_PRICE = Price(0, 0, 0, "")


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    id: str
    scope: str
    scope_id: str
    window: str
    timezone: str
    limit_pico: int
    limit_usd: str
    offline_mode: str
    optimistic_pico: int
    max_staleness_ms: int = 0  # refuse after this long without word from the control plane (0 = never)

    @property
    def label(self) -> str:
        return f"{self.scope} {self.scope_id!r} budget {self.id!r}"


@dataclass(frozen=True, slots=True)
class RateSpec:
    id: str
    scope: str
    scope_id: str
    models: frozenset[str]
    requests_per_minute: int
    tokens_per_minute: int
    max_concurrent: int
    offline_mode: str

    @property
    def label(self) -> str:
        return f"{self.scope} {self.scope_id!r} rate limit {self.id!r}" if self.scope_id else f"global rate limit {self.id!r}"

    def applies_to(self, requested: str, resolved: str) -> bool:
        return not self.models or requested in self.models or resolved in self.models


@dataclass(frozen=True)
class BudgetIndex:
    budgets_by_key: Mapping[str, tuple[BudgetSpec, ...]] = field(default_factory=dict)
    tag_budgets: Mapping[tuple[str, str], tuple[BudgetSpec, ...]] = field(default_factory=dict)
    tag_names: tuple[str, ...] = ()
    rates_by_key: Mapping[str, tuple[RateSpec, ...]] = field(default_factory=dict)
    rates_by_model: Mapping[str, tuple[RateSpec, ...]] = field(default_factory=dict)
    global_rates: tuple[RateSpec, ...] = ()
    budgets: Mapping[str, BudgetSpec] = field(default_factory=dict)
    rates: Mapping[str, RateSpec] = field(default_factory=dict)
    unpriced_models: frozenset[str] = frozenset()
    unpriced_price: Price = _NO_PRICE
    default_max_output_tokens: int = 0
    # (key id, requested, resolved) -> applicable rate limits; memoised (the index is immutable per snapshot)
    _rate_memo: dict[tuple[str, str, str], tuple[RateSpec, ...]] = field(default_factory=dict, repr=False)

    @property
    def empty(self) -> bool:
        return not (self.budgets or self.rates)

    def rates_for(self, key_id: str, requested: str, resolved: str) -> tuple[RateSpec, ...]:
        memo_key = (key_id, requested, resolved)
        found = self._rate_memo.get(memo_key)
        if found is None:
            cands = [*self.rates_by_key.get(key_id, ()), *self.rates_by_model.get(resolved, ()), *self.global_rates]
            if requested != resolved:
                cands += self.rates_by_model.get(requested, ())
            unique = {r.id: r for r in cands if r.applies_to(requested, resolved)}
            found = tuple(unique.values())
            if len(self._rate_memo) < 100_000:  # bounded: key x model pairs actually used
                self._rate_memo[memo_key] = found
        return found

    def budgets_for(self, key_id: str, tags: Mapping[str, str]) -> tuple[BudgetSpec, ...]:
        found = self.budgets_by_key.get(key_id, ())
        for name in self.tag_names:
            value = tags.get(name)
            if value is not None and (extra := self.tag_budgets.get((name, value))):
                found = found + extra
        return found

    def price_for(self, model: str, price: Price) -> Price:
        """Budgets reserve and settle an unpriced model at the policy's default price: never free."""
        return self.unpriced_price if model in self.unpriced_models else price


def budget_spec(b: policy_pb2.Budget) -> BudgetSpec:
    return BudgetSpec(b.id, b.scope, b.scope_id, b.window, b.timezone or "UTC", b.limit_pico, b.limit_usd,
                      b.offline_mode or "safe_share", b.optimistic_overshoot_pico, b.max_staleness_ms)


def rate_spec(r: policy_pb2.RateLimit) -> RateSpec:
    return RateSpec(r.id, r.scope, r.scope_id, frozenset(r.models), r.requests_per_minute, r.tokens_per_minute,
                    r.max_concurrent, r.offline_mode or "safe_share")


def _key_scopes(k: policy_pb2.VirtualKey) -> list[tuple[str, str]]:
    scopes = [("key", k.id), ("key", k.parent_key_id), ("team", k.team_id), ("user", k.user_id),
              ("project", k.project_id)]
    return [(s, i) for s, i in scopes if i]


def build_index(snap: policy_pb2.PolicySnapshot) -> BudgetIndex:
    """Per-limit specs and each key's limits are built on first lookup (dataplane/lazy_index.py): a run key
    carries its own budget and concurrency limit, so at 100,000 keys building them all took seconds at boot."""
    bp = snap.budget_policy
    if not bp.budgets and not bp.rate_limits and not bp.unpriced_models:
        return BudgetIndex(default_max_output_tokens=bp.default_max_output_tokens)
    # One pass per list, touching each message once (at 100,000 run keys every pass costs ~0.1 s at boot).
    budget_src: dict[str, policy_pb2.Budget] = {}
    by_scope: dict[tuple[str, str], list[str]] = {}
    tags: list[tuple[str, str]] = []
    for b in bp.budgets:
        bid, scope, scope_id = b.id, b.scope, b.scope_id
        if bid not in budget_src:
            if scope == "tag":
                tags.append((bid, scope_id))
            else:
                by_scope.setdefault((scope, scope_id), []).append(bid)
        budget_src[bid] = b
    rate_src: dict[str, policy_pb2.RateLimit] = {}
    rate_scope: dict[tuple[str, str], list[str]] = {}
    for r in bp.rate_limits:
        rid = r.id
        if rid not in rate_src:
            rate_scope.setdefault((r.scope, r.scope_id), []).append(rid)
        rate_src[rid] = r
    budgets: LazyIndex[str, policy_pb2.Budget, BudgetSpec] = LazyIndex(budget_src, budget_spec)
    rates: LazyIndex[str, policy_pb2.RateLimit, RateSpec] = LazyIndex(rate_src, rate_spec)
    tag_budgets: dict[tuple[str, str], list[BudgetSpec]] = {}
    for bid, scope_id in tags:
        name, _, value = scope_id.partition("=")
        tag_budgets.setdefault((name, value), []).append(budgets[bid])

    # get(): a key delta may have dropped a limit these scope lists still name; its keys were re-indexed then
    def key_budgets(k: policy_pb2.VirtualKey) -> tuple[BudgetSpec, ...] | None:
        found = (budgets.get(i) for s in _key_scopes(k) for i in by_scope.get(s, ()))
        return tuple(b for b in found if b is not None) or None

    def key_rates(k: policy_pb2.VirtualKey) -> tuple[RateSpec, ...] | None:
        found = (rates.get(i) for s in _key_scopes(k) for i in rate_scope.get(s, ()))
        return tuple(r for r in found if r is not None) or None

    key_src = {k.id: k for k in snap.keys}
    budgets_by_key: LazyIndex[str, policy_pb2.VirtualKey, tuple[BudgetSpec, ...]] = LazyIndex(dict(key_src),
                                                                                               key_budgets)
    rates_by_key: LazyIndex[str, policy_pb2.VirtualKey, tuple[RateSpec, ...]] = LazyIndex(key_src, key_rates)
    rates_by_model = {i: tuple(rates[r] for r in ids) for (s, i), ids in rate_scope.items() if s == "model"}
    return BudgetIndex(
        budgets_by_key=budgets_by_key, tag_budgets={k: tuple(v) for k, v in tag_budgets.items()},
        tag_names=tuple(sorted({n for n, _ in tag_budgets})), rates_by_key=rates_by_key, rates_by_model=rates_by_model,
        global_rates=tuple(rates[r] for r in rate_scope.get(("global", ""), ())), budgets=budgets, rates=rates,
        unpriced_models=frozenset(bp.unpriced_models), unpriced_price=price_from_proto(bp.unpriced_price),
        default_max_output_tokens=bp.default_max_output_tokens,
    )
