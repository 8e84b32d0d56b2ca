"""UsageEvent -> ClickHouse row conversion.

Pure (no I/O, no clock) so the dev-mode sink and the Kafka consumer produce
byte-identical rows for the same event, which is what lets ClickHouse
deduplicate redelivered events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any

from interlock.v1 import usage_pb2

COST_PRECISION = 38
COST_SCALE = 12
COST_TYPE = f"Decimal({COST_PRECISION}, {COST_SCALE})"

# Column order of the tuples below; also the column list of every insert, so
# server-side columns (inserted_at) are filled by their DEFAULT.
COLUMNS: tuple[str, ...] = (
    "event_id",
    "received_at",
    "first_byte_at",
    "done_at",
    "node_id",
    "key_id",
    "team_id",
    "user_id",
    "project_id",
    "tags",
    "dialect",
    "endpoint",
    "requested_model",
    "alias",
    "provider",
    "upstream_model",
    "model",
    "route_rule",
    "attempts",
    "fallback",
    "status",
    "error_class",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "usage_estimated",
    "cost_usd",
    "price_version",
    "latency_ms",
    "ttfb_ms",
    "stream",
    "client_disconnected",
    "policy_version",
    "guardrail_outcome",
    "request_bytes",
    "response_bytes",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
    "counted_tokens",
    "count_estimated",
)


class InvalidEvent(ValueError):
    """An event that cannot become a row; it is rejected alone so it never poisons its batch."""


@dataclass
class Batch:
    """Rows ready for `client.insert(column_names=COLUMNS)` plus the events refused on the way."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (event_id, reason)


def parse_cost(text: str) -> Decimal:
    """The exact cost as stored: Decimal(38, 12), banker's rounding beyond 12 places.

    An empty string is zero (refused requests carry no cost). Anything else
    that is not a finite decimal fitting 26 integer digits is rejected rather
    than silently clamped: a wrong cost is worse than a loud missing one.
    """
    if not text:
        return Decimal(0)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidEvent(f"cost_usd {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise InvalidEvent(f"cost_usd {text!r} is not a finite number")
    # A 38-digit context: quantize raises InvalidOperation exactly when the
    # result needs more digits than Decimal(38, 12) holds.
    ctx = Context(prec=COST_PRECISION, rounding=ROUND_HALF_EVEN)
    try:
        return value.quantize(Decimal(1).scaleb(-COST_SCALE), context=ctx)
    except InvalidOperation:
        raise InvalidEvent(f"cost_usd {text!r} does not fit {COST_TYPE}") from None


def event_to_row(ev: usage_pb2.UsageEvent) -> tuple[Any, ...]:
    """One row in COLUMNS order. Timestamps stay integer microseconds (DateTime64(6) ticks)."""
    if not ev.event_id:
        raise InvalidEvent("event_id is empty: the event could never be deduplicated")
    if ev.received_unix_us <= 0:
        # received_at drives partition and TTL: a zero would be expired on the next merge
        raise InvalidEvent(f"received_unix_us={ev.received_unix_us} is not a timestamp")
    return (
        ev.event_id,
        ev.received_unix_us,
        ev.first_byte_unix_us or None,  # proto 0 means "no byte sent": NULL, not 1970
        ev.done_unix_us,
        ev.node_id,
        ev.key_id,
        ev.team_id,
        ev.user_id,
        ev.project_id,
        dict(ev.tags),
        ev.dialect,
        ev.endpoint,
        ev.requested_model,
        ev.alias,
        ev.provider,
        ev.upstream_model,
        ev.model,
        ev.route_rule,
        [(a.provider, a.deployment, a.upstream_model, a.status, a.error_class, a.latency_ms) for a in ev.attempts],
        ev.fallback,
        ev.status,
        ev.error_class,
        ev.input_tokens,
        ev.output_tokens,
        ev.cached_input_tokens,
        ev.reasoning_tokens,
        ev.usage_estimated,
        parse_cost(ev.cost_usd),
        ev.price_version,
        ev.latency_ms,
        ev.ttfb_ms,
        ev.stream,
        ev.client_disconnected,
        ev.policy_version,
        ev.guardrail_outcome,
        ev.request_bytes,
        ev.response_bytes,
        ev.cache_write_5m_tokens,
        ev.cache_write_1h_tokens,
        ev.audio_input_tokens,
        ev.audio_output_tokens,
        ev.counted_tokens,
        ev.count_estimated,
    )


def events_to_batch(events: Iterable[usage_pb2.UsageEvent]) -> Batch:
    """Convert many events; invalid ones land in `rejected` with the reason instead of raising."""
    batch = Batch()
    append = batch.rows.append
    for ev in events:
        try:
            append(event_to_row(ev))
        except InvalidEvent as exc:
            batch.rejected.append((ev.event_id, str(exc)))
    return batch
