"""`interlock explain`: the route a request would take, computed by the data plane's own code.

Runs select_plan / Conditions.mismatch / the planner's constraint filter on a CompiledPolicy, so
what it prints is what the proxy would do (except the weighted draw, shown as shares).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataplane.dialects.client_errors import GatewayError
from dataplane.routing.breaker import Breakers
from dataplane.routing.failure import CONDITIONS
from dataplane.routing.matching import Facts
from dataplane.routing.select import RoutedPolicy, select_plan

if TYPE_CHECKING:
    from dataplane.policy_types import KeyEntry


def explain(policy: RoutedPolicy, key: KeyEntry, f: Facts, breakers: Breakers | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"policy_version": policy.version, "key_id": key.id, "team": key.team_id,
                           "project": key.project_id, "requested_model": f.requested, "estimated_input_tokens": f.input_tokens,
                           "has_tools": f.has_tools}
    candidates, _default = policy.routing.candidates_for(f.requested)
    considered = []
    for c in candidates:
        why = c.conditions.mismatch(f)
        considered.append({"rule": c.rule_id, "matched": not why, "reason": why or "all conditions hold"})
        if not why:
            break
    out["rules"] = considered
    try:
        plan = select_plan(policy, key, f)
    except GatewayError as exc:
        out.update(refused={"status": exc.status, "message": exc.message}, rule="", targets=[])
        return out
    constraint = policy.routing.constraints.get(key.team_id)
    out["rule"] = plan.rule_id
    out["constraints"] = constraint.describe() if constraint is not None else ""
    targets = []
    reachable = False
    for i, t in enumerate(plan.targets):
        allowed = [d for d in t.deployments if constraint is None or constraint.permits(d)]
        first = sum(d.weight for d in allowed if d.weight > 0)
        reachable = reachable or bool(allowed)
        deps = []
        for d in t.deployments:
            ok = d in allowed
            deps.append({
                "deployment": d.id, "provider": d.model.provider.name, "upstream_model": d.model.upstream_name,
                "region": d.region, "weight": d.weight,
                "share": round(100 * d.weight / first, 1) if ok and first and d.weight > 0 else 0.0,
                "excluded": "" if ok else f"outside team {key.team_id!r} limits ({constraint.describe() if constraint else ''})",
                "circuit": breakers.state(d.id) if breakers is not None else "unknown",
            })
        targets.append({"role": "target" if i == 0 else f"fallback {i}", "model": t.model, "deployments": deps})
    out["targets"] = targets
    out["fallback_on"] = sorted(c for c, classes in CONDITIONS.items() if classes <= plan.retryable)
    out["retries"] = plan.retries
    out["backoff_ms"] = [int(plan.backoff_s * 1000), int(plan.max_backoff_s * 1000)]
    out["max_retry_after_ms"] = int(plan.max_retry_after_s * 1000)
    out["attempt_timeout_ms"] = int(plan.attempt_timeout_s * 1000)
    out["total_timeout_ms"] = int(plan.total_timeout_s * 1000)
    out["sticky"] = plan.sticky
    if not reachable:
        out["refused"] = {"status": 403, "message": f"team {key.team_id!r} may not reach any deployment of this route"}
    return out
