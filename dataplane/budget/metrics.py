"""Budget and rate-limit figures of this node in the Prometheus text format (GET /metrics)."""

from __future__ import annotations

from dataplane.budget.gate import PoolTable
from dataplane.budget.index import BUDGET, CONCURRENCY, REQUESTS, TOKENS

_KIND = {BUDGET: "budget", REQUESTS: "requests", TOKENS: "tokens", CONCURRENCY: "concurrency"}
_UNIT = {BUDGET: "pico_usd", REQUESTS: "requests", TOKENS: "tokens", CONCURRENCY: "slots"}


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(table: PoolTable, lease_sync_failures: int = 0, online: bool = False) -> bytes:
    out = [
        "# HELP interlock_budget_overshoot_total Sum over settled requests of max(0, actual - reserved), per limit "
        "(unit: pico-USD for budgets, tokens for token rate limits).",
        "# TYPE interlock_budget_overshoot_total counter",
    ]
    for (kind, limit_id), v in sorted(table.overshoot.items()):
        out.append(f'interlock_budget_overshoot_total{{kind="{_KIND[kind]}",limit_id="{_label(limit_id)}",'
                   f'unit="{_UNIT[kind]}"}} {v}')
    out += ["# HELP interlock_budget_refused_total Requests refused by a budget or rate limit.",
            "# TYPE interlock_budget_refused_total counter"]
    for (kind, limit_id), v in sorted(table.refused.items()):
        out.append(f'interlock_budget_refused_total{{kind="{_KIND[kind]}",limit_id="{_label(limit_id)}"}} {v}')
    out += ["# HELP interlock_budget_pool Local lease accounting per limit and window.",
            "# TYPE interlock_budget_pool gauge"]
    for p in sorted(table.pools.values(), key=lambda p: (p.key.kind, p.key.limit_id, p.key.window_key)):
        key = p.key
        labels = f'kind="{_KIND[key.kind]}",limit_id="{_label(key.limit_id)}",window="{_label(key.window_key)}"'
        for field, v in (("lease", p.lease), ("reserved", p.reserved), ("unreported", p.spent)):
            out.append(f'interlock_budget_pool{{{labels},field="{field}"}} {v}')
    out += ["# HELP interlock_budget_lease_sync_failures_total Lease syncs with the control plane that failed.",
            "# TYPE interlock_budget_lease_sync_failures_total counter",
            f"interlock_budget_lease_sync_failures_total {lease_sync_failures}",
            "# HELP interlock_budget_control_plane_reachable 1 when the last lease sync reached the control plane.",
            "# TYPE interlock_budget_control_plane_reachable gauge",
            f"interlock_budget_control_plane_reachable {int(online)}"]
    return ("\n".join(out) + "\n").encode()
