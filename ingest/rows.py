"""UsageEvent -> ClickHouse row conversion.

Pure (no I/O, no clock) so the dev-mode sink and the Kafka consumer produce
byte-identical rows for the same event, which is what lets ClickHouse
deduplicate redelivered events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from operator import attrgetter
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from interlock_contracts.usage_schema import UsageColumn, UsageSchema, usage_schema
from interlock_contracts.v1 import usage_pb2

COST_PRECISION = 38
COST_SCALE = 12
COST_TYPE = f"Decimal({COST_PRECISION}, {COST_SCALE})"

_SCHEMA = usage_schema()
# The insert column list (interlock_contracts/usage_schema.py); server-side columns (inserted_at) get their DEFAULT.
COLUMNS: tuple[str, ...] = tuple(c.name for c in _SCHEMA.inserted)


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


RowBuilder = Callable[[Any], tuple[Any, ...]]


def _converter(column: UsageColumn, field: FieldDescriptor) -> Callable[[Any], Any] | None:
    """How a proto value becomes the column's value, from the two types; None = as it is."""
    if column.ch_type.startswith("Nullable("):
        return _or_none  # proto 0 means "no value" (e.g. no byte sent): NULL, not 1970
    if column.ch_type.startswith("Decimal("):
        return parse_cost
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        return dict
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.is_repeated:
        return _tuples(attrgetter(*(f.name for f in field.message_type.fields)))
    return None


def _or_none(value: Any) -> Any:
    return value or None


def _tuples(get: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], list[tuple[Any, ...]]]:
    return lambda items: [get(item) for item in items]


def row_builder(schema: UsageSchema) -> RowBuilder:
    """A function: event -> its row, in the order of `schema.inserted`. Timestamps stay integer
    microseconds (DateTime64(6) ticks). Raises InvalidEvent."""
    fields = schema.message.fields_by_name
    names = [c.proto_field for c in schema.inserted]
    get = attrgetter(*names)  # one C call reads every field; the few that need converting are fixed up after
    fixes = tuple((i, conv) for i, c in enumerate(schema.inserted)
                  if (conv := _converter(c, fields[c.proto_field])) is not None)

    def to_row(ev: Any) -> tuple[Any, ...]:
        if not ev.event_id:
            raise InvalidEvent("event_id is empty: the event could never be deduplicated")
        if ev.received_unix_us <= 0:
            # received_at drives partition and TTL: a zero would be expired on the next merge
            raise InvalidEvent(f"received_unix_us={ev.received_unix_us} is not a timestamp")
        row = list(get(ev))
        for i, conv in fixes:
            row[i] = conv(row[i])
        return tuple(row)

    return to_row


event_to_row: RowBuilder = row_builder(_SCHEMA)


def events_to_batch(events: Iterable[usage_pb2.UsageEvent], to_row: RowBuilder = event_to_row) -> Batch:
    """Convert many events; invalid ones land in `rejected` with the reason instead of raising."""
    batch = Batch()
    append = batch.rows.append
    for ev in events:
        try:
            append(to_row(ev))
        except InvalidEvent as exc:
            batch.rejected.append((ev.event_id, str(exc)))
    return batch
