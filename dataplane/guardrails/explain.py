"""Which guardrails apply to a request, and why: for `interlock explain` (the data plane's own matching code)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from dataplane.guardrails.compiled import INPUT, OUTPUT, CompiledGuardrail, GuardrailSet

if TYPE_CHECKING:
    from dataplane.policy_types import KeyEntry


class GuardedPolicy(Protocol):
    """What explain reads from a compiled policy (dataplane/snapshot/policy.py's CompiledPolicy is one)."""

    @property
    def guardrails(self) -> GuardrailSet: ...


def _why(g: CompiledGuardrail, key: KeyEntry, requested: str, rule: str) -> str:
    if g.everywhere:
        return "every request"
    for what, hit in (("key", key.id in g.keys), ("team", key.team_id in g.teams),
                      ("project", bool(key.project_id) and key.project_id in g.projects),
                      ("model", requested in g.models), ("routing rule", bool(rule) and rule in g.routing_rules)):
        if hit:
            return f"attached to this {what}"
    return ""


def describe(policy: GuardedPolicy, key: KeyEntry, requested: str, rule: str) -> list[dict[str, Any]]:
    out = []
    for g in policy.guardrails.guardrails:
        why = _why(g, key, requested, rule)
        direction = {INPUT: "input", OUTPUT: "output", INPUT | OUTPUT: "both"}[g.directions]
        out.append({"id": g.id, "applies": bool(why), "why": why or "not attached to this key, team, project, "
                    "model or routing rule", "direction": direction, "action": g.action,
                    "mode": "audit_only" if g.audit_only else "enforce", "sampling_percent": g.sampling,
                    "fail_mode": "open" if g.fail_open else "closed", "rules": len(g.scanner.rule_ids)})
    return out
