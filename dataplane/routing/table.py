"""The routing table of one snapshot: deployments, plans and first-match rule lists per requested name.

Built once at snapshot swap; a request does one dict lookup and walks only the rules that can apply
to the name it asked for (their model condition was evaluated here, not per request).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataplane.errors import SnapshotRejected
from dataplane.routing.breaker import BreakerConfig
from dataplane.routing.failure import retryable_classes
from dataplane.routing.matching import Conditions, Facts
from interlock_contracts.v1 import policy_pb2

if TYPE_CHECKING:
    from dataplane.policy_types import RuntimeModel, RuntimeProvider

DEFAULT_CONDITIONS = ("429", "5xx", "529", "timeout", "connect")
DEFAULT_RULE = "default"  # what x-interlock-route says when no rule matched


@dataclass(frozen=True, slots=True)
class RuntimeDeployment:
    id: str  # "model/deployment": the breaker's key and what headers and events name
    name: str
    model: RuntimeModel  # the model as served by this deployment (its provider and upstream name)
    weight: int
    region: str
    breaker: BreakerConfig


@dataclass(frozen=True, slots=True)
class Target:
    model: str
    deployments: tuple[RuntimeDeployment, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    rule_id: str
    targets: tuple[Target, ...]  # the target, then its fallbacks in order
    retryable: frozenset[str]  # failure classes that move on to the next attempt
    retries: int = 0
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    max_retry_after_s: float = 10.0
    attempt_timeout_s: float = 0.0
    total_timeout_s: float = 0.0
    sticky: bool = False
    # The common case, decided at snapshot swap: one deployment, no retry, no fallback, no total timeout.
    # The proxy then tries it once without an AttemptPlanner (same outcome, no per-request planning).
    single: RuntimeDeployment | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.targets) == 1 and len(self.targets[0].deployments) == 1 and not self.retries \
                and not self.total_timeout_s:
            object.__setattr__(self, "single", self.targets[0].deployments[0])


@dataclass(frozen=True, slots=True)
class Constraint:
    """A team's region/provider limits; None = that dimension is unrestricted."""

    regions: frozenset[str] | None
    providers: frozenset[str] | None

    def permits(self, dep: RuntimeDeployment) -> bool:
        if self.regions is not None and dep.region not in self.regions:
            return False
        return self.providers is None or dep.model.provider.name in self.providers

    def describe(self) -> str:
        parts = []
        if self.regions is not None:
            parts.append("regions " + ", ".join(sorted(self.regions)))
        if self.providers is not None:
            parts.append("providers " + ", ".join(sorted(self.providers)))
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Candidate:
    rule_id: str
    conditions: Conditions
    plan: Plan


@dataclass(frozen=True, slots=True)
class Selection:
    plan: Plan
    known: bool  # the requested name is a model or alias (else a rule routed an unknown name)


class RoutingTable:
    __slots__ = ("_by_name", "_open", "constraints", "rules")

    def __init__(self, by_name: dict[str, tuple[tuple[Candidate, ...], Plan]], open_rules: tuple[Candidate, ...],
                 constraints: dict[str, Constraint], rules: tuple[tuple[str, Conditions, policy_pb2.RoutingRule], ...]):
        self._by_name = by_name
        self._open = open_rules
        self.constraints = constraints
        self.rules = rules

    @classmethod
    def empty(cls) -> RoutingTable:
        return cls({}, (), {}, ())

    def fixed(self, requested: str) -> Plan | None:
        """The plan of a known name no rule can apply to (the common case): no request facts needed."""
        entry = self._by_name.get(requested)
        return entry[1] if entry is not None and not entry[0] else None

    def select(self, f: Facts) -> Selection | None:
        """The plan for a request: the first rule that matches, else the requested model's default plan."""
        entry = self._by_name.get(f.requested)
        if entry is None:
            for c in self._open:
                if not c.conditions.mismatch(f):
                    return Selection(c.plan, False)
            return None
        candidates, default = entry
        for c in candidates:
            if not c.conditions.mismatch(f, model_checked=True):
                return Selection(c.plan, True)
        return Selection(default, True)

    def candidates_for(self, requested: str) -> tuple[tuple[Candidate, ...], Plan | None]:
        """For explain: the rules considered for this name, in order (open rules when the name is unknown)."""
        entry = self._by_name.get(requested)
        return (self._open, None) if entry is None else entry

    @classmethod
    def build(cls, snap: policy_pb2.PolicySnapshot, models: Mapping[str, RuntimeModel],
              providers: Mapping[str, RuntimeProvider], names: Mapping[str, str]) -> RoutingTable:
        """`models`: name -> RuntimeModel (primary provider); `names`: every requestable name -> its model."""
        deps: dict[str, tuple[RuntimeDeployment, ...]] = {}
        chains: dict[str, tuple[str, ...]] = {}
        for m in snap.models:
            base = models[m.name]
            c = m.circuit
            breaker = BreakerConfig(
                enabled=c.enabled, failures=c.failures or 5, failure_rate=c.failure_rate or 0.5,
                min_requests=c.min_requests or 20, window_s=(c.window_ms or 30_000) / 1000,
                cooldown_s=(c.cooldown_ms or 30_000) / 1000,
            ) if m.HasField("circuit") else BreakerConfig()
            out = []
            for d in m.deployments or [policy_pb2.Deployment(name=m.provider, provider=m.provider, weight=1)]:
                prov = providers.get(d.provider)
                if prov is None:
                    raise SnapshotRejected(f"model {m.name!r}: deployment {d.name!r} names unknown provider {d.provider!r}")
                rm = dataclasses.replace(base, provider=prov, upstream_name=d.upstream_name or base.upstream_name)
                out.append(RuntimeDeployment(f"{m.name}/{d.name}", d.name, rm, d.weight, d.region or "", breaker))
            deps[m.name] = tuple(out)
            chains[m.name] = tuple(m.fallback)

        def target(model: str, only: tuple[str, ...] = ()) -> Target:
            if model not in deps:
                raise SnapshotRejected(f"routing names unknown model {model!r}")
            ds = deps[model]
            return Target(model, tuple(d for d in ds if d.name in only) if only else ds)

        default_retryable = retryable_classes(DEFAULT_CONDITIONS)

        def default_plan(model: str) -> Plan:
            return Plan(DEFAULT_RULE, (target(model), *(target(f) for f in chains[model])), default_retryable)

        def rule_plan(r: policy_pb2.RoutingRule, model: str) -> Plan:
            fallback = tuple(r.fallback) if r.fallback else chains[model]
            return Plan(
                r.id, (target(model, tuple(r.deployments)), *(target(f) for f in fallback if f != model)),
                retryable_classes(tuple(r.fallback_on) or DEFAULT_CONDITIONS), retries=r.retries,
                backoff_s=r.backoff_ms / 1000, max_backoff_s=r.max_backoff_ms / 1000,
                max_retry_after_s=r.max_retry_after_ms / 1000, attempt_timeout_s=r.attempt_timeout_ms / 1000,
                total_timeout_s=r.total_timeout_ms / 1000, sticky=r.sticky,
            )

        rules = tuple((r.id, Conditions.of(r.match), r) for r in snap.routing_rules)
        by_name: dict[str, tuple[tuple[Candidate, ...], Plan]] = {}
        for name, model in names.items():
            cands = tuple(Candidate(rid, cond, rule_plan(r, r.target or model))
                          for rid, cond, r in rules if cond.model_matches(name))
            by_name[name] = (cands, default_plan(model))
        open_rules = tuple(Candidate(rid, cond, rule_plan(r, r.target)) for rid, cond, r in rules if r.target)
        constraints = {
            t.id: Constraint(frozenset(t.allowed_regions) or None, frozenset(t.allowed_providers) or None)
            for t in snap.teams if t.allowed_regions or t.allowed_providers
        }
        return cls(by_name, open_rules, constraints, rules)
