"""Guardrails compiled once per snapshot: each one's scanner built, attachments indexed, sampling precomputed.

Which guardrails apply to a request depends only on (key, requested model) before routing, so the answer is
memoised per pair on the (immutable) set.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataplane.guardrails.catalog import expand
from dataplane.guardrails.engine import Scanner
from dataplane.guardrails.rules import Rule
from dataplane.guardrails.scancache import ScanCache
from interlock_contracts.v1 import policy_pb2

if TYPE_CHECKING:
    from dataplane.policy_types import KeyEntry

INPUT, OUTPUT = 1, 2
_DIRECTIONS = {"input": INPUT, "output": OUTPUT, "both": INPUT | OUTPUT}


@dataclass(frozen=True, slots=True)
class CompiledGuardrail:
    id: str
    scanner: Scanner
    action: str  # block | redact | audit
    directions: int
    sampling: int  # percent
    audit_only: bool
    fail_open: bool
    teams: frozenset[str]
    keys: frozenset[str]
    projects: frozenset[str]
    models: frozenset[str]
    routing_rules: frozenset[str]
    # input strings already scanned under this snapshot's rules (digest -> findings); new snapshot, new cache
    cache: ScanCache | None = field(default=None, compare=False)

    @property
    def everywhere(self) -> bool:
        return not (self.teams or self.keys or self.projects or self.models or self.routing_rules)

    def attached(self, key: KeyEntry, requested: str, rule: str) -> bool:
        return self.everywhere or key.team_id in self.teams or key.id in self.keys or (
            bool(key.project_id) and key.project_id in self.projects) or requested in self.models or (
            bool(rule) and rule in self.routing_rules)

    def sampled(self, request_id: str) -> bool:
        """Deterministic per request id: the same request (retries, replays) gets the same answer."""
        return self.sampling >= 100 or zlib.crc32(f"{self.id}:{request_id}".encode()) % 100 < self.sampling


def custom_rules(g: policy_pb2.Guardrail) -> list[Rule]:
    out = []
    for c in g.custom:
        if c.regex:
            pattern = f"(?P<s>{c.regex})"
        else:  # keywords: whole words, case-insensitive, escaped
            pattern = r"(?i)\b(?P<s>" + "|".join(re.escape(k) for k in c.keywords) + r")\b"
        out.append(Rule(f"custom:{c.id}", "custom", pattern))
    return out


def compile_guardrail(g: policy_pb2.Guardrail) -> CompiledGuardrail:
    return CompiledGuardrail(
        id=g.id, scanner=Scanner([*expand(list(g.detectors)), *custom_rules(g)]), action=g.action or "redact",
        directions=_DIRECTIONS.get(g.direction, INPUT), sampling=g.sampling_percent or 100,
        audit_only=g.mode == "audit_only", fail_open=g.fail_mode == "open", teams=frozenset(g.teams),
        keys=frozenset(g.keys), projects=frozenset(g.projects), models=frozenset(g.models),
        routing_rules=frozenset(g.routing_rules), cache=ScanCache(),
    )


@dataclass(frozen=True)
class GuardrailSet:
    guardrails: tuple[CompiledGuardrail, ...] = ()
    _memo: dict[tuple[str, str, str, int], tuple[CompiledGuardrail, ...]] = field(default_factory=dict, repr=False)

    by_rule: bool = False  # some guardrail is attached to a routing rule (else the post-route check is skipped)
    outputs: bool = False  # some guardrail scans output (else no output filter is ever looked up)
    # Precomputed so the common cases cost nothing per request: no input guardrail before routing at all, or
    # only ones attached everywhere (then there is nothing to look up), and whether any samples.
    inputs: bool = False
    universal_input: tuple[CompiledGuardrail, ...] = ()
    sampled: bool = False

    @classmethod
    def from_snapshot(cls, snap: policy_pb2.PolicySnapshot) -> GuardrailSet:
        gs = tuple(compile_guardrail(g) for g in snap.guardrails)
        pre_route = [g for g in gs if g.directions & INPUT and not (g.routing_rules and not (
            g.teams or g.keys or g.projects or g.models))]
        universal = tuple(g for g in pre_route if g.everywhere)
        return cls(gs, by_rule=any(g.routing_rules for g in gs), outputs=any(g.directions & OUTPUT for g in gs),
                   inputs=bool(pre_route), universal_input=universal if len(universal) == len(pre_route) else (),
                   sampled=any(g.sampling < 100 for g in gs))

    def applicable(self, key: KeyEntry, requested: str, rule: str, direction: int) -> tuple[CompiledGuardrail, ...]:
        k = (key.id, requested, rule, direction)
        got = self._memo.get(k)
        if got is None:
            got = tuple(g for g in self.guardrails if g.directions & direction and g.attached(key, requested, rule))
            if len(self._memo) < 100_000:  # bounded: keys x models is finite per snapshot, but be safe
                self._memo[k] = got
        return got
