"""An alert event: what happened, with a dedup key that names it exactly once (per window and threshold)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

KINDS = ("budget_threshold", "node_lost", "node_out_of_sync", "loop_breaker", "circuit_open", "circuit_closed",
         "rate_limit_saturated", "usage_spool_high", "test")


@dataclass(frozen=True)
class AlertEvent:
    dedup_key: str  # e.g. "budget_threshold:team-a-monthly:2026-12:80": fired at most once
    kind: str
    severity: str  # "info" | "warning" | "critical"
    summary: str  # one line a human reads in Slack or PagerDuty
    created_ms: int
    details: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> AlertEvent:
        return cls(**orjson.loads(raw))


def budget_threshold(budget_id: str, window_key: str, pct: int, spent_pico: int, limit_pico: int, scope: str,
                     now_ms: int) -> AlertEvent:
    severity = "critical" if pct >= 100 else "warning" if pct >= 80 else "info"
    return AlertEvent(
        dedup_key=f"budget_threshold:{budget_id}:{window_key}:{pct}", kind="budget_threshold", severity=severity,
        summary=(f"budget {budget_id} ({scope}) reached {pct}% of its limit in window {window_key}: "
                 f"${spent_pico / 1e12:.2f} of ${limit_pico / 1e12:.2f}"),
        created_ms=now_ms,
        details={"budget_id": budget_id, "window": window_key, "threshold_pct": pct,
                 "spent_usd": f"{spent_pico / 1e12:.6f}", "limit_usd": f"{limit_pico / 1e12:.6f}", "scope": scope},
    )


def node_event(kind: str, node_id: str, detail: str, episode: int, now_ms: int) -> AlertEvent:
    """A data plane lost or out of sync; `episode` (when it was last seen / the version it lags at) makes each
    outage one event rather than one per check."""
    return AlertEvent(dedup_key=f"{kind}:{node_id}:{episode}", kind=kind, severity="warning",
                      summary=f"data plane {node_id}: {detail}", created_ms=now_ms,
                      details={"node_id": node_id, "detail": detail})
