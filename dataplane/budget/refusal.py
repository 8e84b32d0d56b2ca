"""Refusals for budgets and rate limits: status, message and headers, in the client's dialect.

  402 + ErrorKind.BUDGET     the budget's remaining spend for this window cannot cover the request's worst case
                             (SDKs do not retry 402; retrying before the reset cannot succeed)
  429 + ErrorKind.RATE_LIMIT a rate limit or concurrency limit is reached, or the budget's remaining spend is held
                             by reservations of requests in flight (retrying shortly can succeed)

Every refusal names the scope, the remaining amount and the reset time, and carries `retry-after` (omitted for
a lifetime budget: it never resets), x-interlock-limit-* headers, and the rate-limit headers the client's SDK
knows, in the client's dialect (Dialect.rate_limit_headers: x-ratelimit-* for OpenAI clients,
anthropic-ratelimit-* for Anthropic clients).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dataplane.budget.index import CONCURRENCY, REQUESTS, TOKENS, BudgetSpec, RateSpec
from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.dialects.rate_headers import iso as _iso
from dataplane.pricing import format_usd

if TYPE_CHECKING:
    from dataplane.dialects.base import Dialect

Headers = tuple[tuple[str, str], ...]


def _usd(pico: int) -> str:
    return "$" + format_usd(max(0, pico)).rstrip("0").rstrip(".")


def _window(spec: BudgetSpec, window_key: str) -> str:
    """'month 2026-12', or just 'lifetime' (its window key is 'lifetime' too)."""
    return spec.window if window_key in ("", spec.window) else f"{spec.window} {window_key}"


def budget_exhausted(
    spec: BudgetSpec, window_key: str, reset_ms: int, remaining_pico: int, worst_pico: int, now_ms: int,
) -> GatewayError:
    when = _iso(reset_ms) if reset_ms else "never (lifetime budget)"
    where = f"{spec.label} ({_window(spec, window_key)})"
    if remaining_pico <= 0:
        what = f"{where} is exhausted: $0 of {_usd(spec.limit_pico)} left"
    else:  # money is left, just not enough for this request's worst case
        what = (f"{where} cannot cover this request: it may cost up to {_usd(worst_pico)}, and "
                f"{_usd(remaining_pico)} of {_usd(spec.limit_pico)} is left")
    msg = f"{what}; resets {when}. Lower max_tokens or ask your platform team to raise the budget."
    headers: list[tuple[str, str]] = [
        ("x-interlock-limit-scope", f"{spec.scope}:{spec.scope_id}"), ("x-interlock-limit-id", spec.id),
        ("x-interlock-budget-remaining-usd", format_usd(max(0, remaining_pico))),
    ]
    if reset_ms:
        headers += [("retry-after", str(max(1, math.ceil((reset_ms - now_ms) / 1000)))),
                    ("x-interlock-budget-reset", str(reset_ms // 1000))]
    return GatewayError(402, ErrorKind.BUDGET, msg, tuple(headers))


def budget_busy(spec: BudgetSpec, window_key: str, remaining_pico: int) -> GatewayError:
    msg = (f"{spec.label} ({_window(spec, window_key)}) has {_usd(remaining_pico)} left, but it is reserved by "
           "requests in flight; retry in a moment")
    headers = (("retry-after", "1"), ("x-interlock-limit-scope", f"{spec.scope}:{spec.scope_id}"),
               ("x-interlock-limit-id", spec.id), ("x-interlock-budget-remaining-usd", format_usd(max(0, remaining_pico))))
    return GatewayError(429, ErrorKind.RATE_LIMIT, msg, headers)


def budget_offline(spec: BudgetSpec) -> GatewayError:
    msg = (f"{spec.label} cannot be checked: this gateway node cannot reach the control plane and the budget's "
           f"offline mode ({spec.offline_mode}) allows no more spend here; retry shortly")
    return GatewayError(429, ErrorKind.RATE_LIMIT, msg, (("retry-after", "5"), ("x-interlock-limit-id", spec.id)))


def budget_stale(spec: BudgetSpec, age_s: float, max_s: float) -> GatewayError:
    msg = (f"{spec.label} cannot be checked: this gateway node has not heard from the control plane for "
           f"{age_s:.0f} s (policy staleness.max_staleness_s = {max_s:g}), so it cannot know whether the key was "
           f"revoked or the budget paused; retry shortly")
    return GatewayError(503, ErrorKind.UNAVAILABLE, msg, (("retry-after", "5"), ("x-interlock-limit-id", spec.id)))


_UNIT = {REQUESTS: "requests", TOKENS: "tokens", CONCURRENCY: "concurrent requests"}


def rate_limited(
    spec: RateSpec, kind: int, limit: int, remaining: int, reset_ms: int, now_ms: int, dialect: Dialect, offline: bool = False,
) -> GatewayError:
    unit = _UNIT[kind]
    wait_s = max(0.001, (reset_ms - now_ms) / 1000) if reset_ms else 1.0
    if kind == CONCURRENCY:
        msg = f"{spec.label}: at most {limit} {unit} in flight; retry when one finishes"
    else:
        msg = (f"{spec.label}: {limit} {unit} per minute reached ({max(0, remaining)} left this minute); "
               f"resets at {_iso(reset_ms)}")
    if offline:
        msg += " (this node cannot reach the control plane; it only uses the share it already holds)"
    headers: list[tuple[str, str]] = [
        ("retry-after", str(max(1, math.ceil(wait_s)))),
        ("x-interlock-limit-scope", f"{spec.scope}:{spec.scope_id}" if spec.scope_id else spec.scope),
        ("x-interlock-limit-id", spec.id),
    ]
    if kind != CONCURRENCY:
        dim = "requests" if kind == REQUESTS else "tokens"
        headers += dialect.rate_limit_headers(dim, limit, remaining, reset_ms, wait_s)
    return GatewayError(429, ErrorKind.RATE_LIMIT, msg, tuple(headers))
