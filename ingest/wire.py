"""UsageEvents as ClickHouse decodes them: Kafka values sent as-is, `FORMAT Protobuf`.

Building rows in Python (ingest.rows) costs more than everything else in the
ingest loop together; ClickHouse parses the same bytes in C++. The values are
concatenated length-delimited (varint size + message, what the Protobuf format
reads) and inserted with the message's field names as the column list: every
field has a column of that name in usage_events, the three `*_unix_us`
timestamps as EPHEMERAL columns that the real DateTime64 columns default from
(schema migration 7). The schema travels with the insert
(`format_schema_source = 'string'`), rendered from the compiled descriptor, so
no .proto file has to exist on the ClickHouse server and it cannot drift from
the code that produced the events.

Only events that would become the very same row both ways take this path
(`wire_value` returns None otherwise); anything else - a cost that needs
rounding or is no number, a missing id or timestamp - goes through ingest.rows,
which rounds exactly or rejects with a reason. One fix-up: ClickHouse cannot
default a Decimal column from an absent string field (it fails the insert), so
an event without a cost gets `cost_usd = "0"` appended - when a singular field
occurs twice the last occurrence wins, so this is the same event with the same (zero) cost.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from interlock_contracts.v1 import usage_pb2

FORMAT = "Protobuf"

# Decimal(38, 12) holds 26 integer and 12 fractional digits; ClickHouse parses such a
# string exactly, as ingest.rows.parse_cost does. Longer fractions need rounding: not here.
_PLAIN_COST = re.compile(r"-?[0-9]{1,26}(?:\.[0-9]{1,12})?")

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double", FieldDescriptor.TYPE_FLOAT: "float", FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT64: "uint64", FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32", FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes", FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64", FieldDescriptor.TYPE_SINT32: "sint32", FieldDescriptor.TYPE_SINT64: "sint64",
}  # fmt: skip


class WireSchemaError(ValueError):
    """The message uses a protobuf feature the schema renderer does not cover (enums, groups)."""


def wire_eligible(ev: usage_pb2.UsageEvent) -> bool:
    """True when ClickHouse decoding the raw value yields exactly the row ingest.rows.event_to_row builds."""
    cost = ev.cost_usd
    return bool(ev.event_id) and ev.received_unix_us > 0 and (not cost or _PLAIN_COST.fullmatch(cost) is not None)


def wire_value(ev: usage_pb2.UsageEvent, raw: bytes, zero_cost: bytes) -> bytes | None:
    """`raw` (the serialized `ev`) as ClickHouse must read it, or None when `ev` needs ingest.rows.

    `zero_cost` is `zero_cost_field()`, passed in so the hot loop does not rebuild it.
    """
    if not wire_eligible(ev):
        return None
    return raw if ev.cost_usd else raw + zero_cost


def zero_cost_field(message: Descriptor = usage_pb2.UsageEvent.DESCRIPTOR) -> bytes:
    """The encoded field `cost_usd = "0"` (length-delimited wire type 2)."""
    return _varint(message.fields_by_name["cost_usd"].number << 3 | 2) + b"\x010"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame(values: Iterable[bytes]) -> bytes:
    """Length-delimited concatenation: each value preceded by its size as a varint."""
    sizes: dict[int, bytes] = {}  # events are similar in size: few distinct prefixes to encode
    parts: list[bytes] = []
    append = parts.append
    for value in values:
        n = len(value)
        prefix = sizes.get(n)
        if prefix is None:
            prefix = sizes[n] = _varint(n)
        append(prefix)
        append(value)
    return b"".join(parts)


def _field_type(field: FieldDescriptor, deps: dict[str, Descriptor]) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        msg = field.message_type
        if msg.GetOptions().map_entry:
            key, value = msg.fields_by_name["key"], msg.fields_by_name["value"]
            return f"map<{_field_type(key, deps)}, {_field_type(value, deps)}>"
        deps.setdefault(msg.full_name, msg)
        return f".{msg.full_name}"
    try:
        return _SCALARS[field.type]
    except KeyError:
        raise WireSchemaError(f"field {field.full_name}: type {field.type} is not rendered") from None


def _message_text(msg: Descriptor, deps: dict[str, Descriptor]) -> str:
    lines = [f"message {msg.name} {{"]
    for field in msg.fields:
        kind = _field_type(field, deps)
        repeated = field.is_repeated and not kind.startswith("map<")
        lines.append(f"  {'repeated ' if repeated else ''}{kind} {field.name} = {field.number};")
    lines.append("}")
    return "\n".join(lines)


def schema_text(message: Descriptor = usage_pb2.UsageEvent.DESCRIPTOR) -> str:
    """A proto3 file defining `message` and the messages it uses, from the compiled descriptor."""
    package = message.file.package
    deps: dict[str, Descriptor] = {}
    bodies = [_message_text(message, deps)]
    done = {message.full_name}
    while pending := [d for name, d in deps.items() if name not in done]:
        for dep in pending:
            if dep.file.package != package:
                raise WireSchemaError(f"{dep.full_name} is outside package {package}")
            done.add(dep.full_name)
            bodies.append(_message_text(dep, deps))
    return f'syntax = "proto3";\npackage {package};\n\n' + "\n\n".join(bodies) + "\n"


def columns(message: Descriptor = usage_pb2.UsageEvent.DESCRIPTOR) -> tuple[str, ...]:
    """The insert column list: the message's field names (usage_events has a column for each)."""
    return tuple(f.name for f in message.fields)


def settings(message: Descriptor = usage_pb2.UsageEvent.DESCRIPTOR) -> dict[str, Any]:
    """Per-insert settings that make ClickHouse read `message` from the inline schema."""
    return {
        "format_schema_source": "string",
        "format_schema": schema_text(message),
        "format_schema_message_name": message.name,
    }
