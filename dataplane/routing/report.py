"""What a request's attempts look like to the client (response headers) and in its usage event."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # per request: a frozen dataclass's __init__ costs ~2x
class AttemptRecord:
    provider: str
    deployment: str  # "model/deployment"
    upstream_model: str
    status: int  # HTTP status from the provider; for transport failures the status we would answer with
    error_class: str  # "" = success
    latency_ms: int


def route_headers(rule: str, attempts: list[AttemptRecord]) -> list[tuple[str, str]]:
    """x-interlock-route, -deployment, -attempts ("N; dep=status|class, ...") and -fallback when it fired."""
    if not attempts:
        return [("x-interlock-route", rule)] if rule else []
    last = attempts[-1]
    out = [("x-interlock-route", rule), ("x-interlock-deployment", last.deployment)]
    if len(attempts) == 1:
        out.append(("x-interlock-attempts", "1"))
    else:
        trail = ", ".join(f"{a.deployment}={a.error_class or a.status}" for a in attempts)
        out += [("x-interlock-attempts", f"{len(attempts)}; {trail}"), ("x-interlock-fallback", "true")]
    return out
