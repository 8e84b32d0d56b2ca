"""The usage-event schema, declared once: the UsageEvent proto descriptor plus this table of column metadata.

Everything else is derived from the two: the event builder's plain fields (dataplane/usage/event_builder.py), the
row conversion and insert column list (ingest/rows.py), the check that the migrated ClickHouse tables
agree (ingest/schema_check.py), the audit-trail select list (ingest/queries.py), the one audit row type
shared by the query service, the admin API and the CLI (ingest/audit_row.py), and the CLI's audit columns.
Adding a column is: the proto field, one `UsageColumn` line here, and one migration in ingest/schema.py
(migrations stay historical SQL; the check compares this table with what they built).

A contract: imports no plane, only the generated protobuf.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor

from interlock_contracts.v1 import usage_pb2


@dataclass(frozen=True, slots=True)
class Audit:
    """How a column shows in the request trail: typed row, admin API, `interlock audit` (json, csv, table)."""

    name: str = ""  # the row's field (default: the column's name)
    sql: str = ""  # the select expression (default: the column itself)
    api: str = ""  # the field's name in the admin API's JSON and the CLI's csv (default: `name`)
    cli: str = ""  # a column of its own in the CLI table, as interlock/cli/render.table reads it ("GPU S>~2");
    # "" = shown inside a summary cell (route, tokens, flags) or only in json/csv
    kind: type | None = None  # the row field's Python type when `sql` computes it (default: from the column type)


@dataclass(frozen=True, slots=True)
class UsageColumn:
    name: str  # the column of usage_events
    ch_type: str  # its ClickHouse type, exactly as system.columns reports it
    doc: str = ""
    field: str = ""  # the UsageEvent field it is read from, when not `name`; "-" = filled by the server
    source: str = ""  # where the event builder reads it on the request record: "attr", "usage.attr", "key.attr";
    # "" = computed by the builder itself (timestamps, cost, latencies, ...)
    default: str = ""  # the DEFAULT expression a migration gave it, as system.columns reports it ("" = none)
    by_time: bool = False  # also a column of usage_by_time (the FinOps query copy)
    unit: str = ""  # "tokens", "usd", "ms", "bytes"; "us": the trail shows Unix microseconds, the API ISO-8601 time
    audit: Audit | None = None

    @property
    def proto_field(self) -> str:
        return "" if self.field == "-" else (self.field or self.name)


_A = Audit()
_LC = "LowCardinality(String)"
_TS = "DateTime64(6, 'UTC')"

# In request-trail order (the audit row's field order); the rest after. Insert order follows this table.
USAGE_COLUMNS: tuple[UsageColumn, ...] = (
    UsageColumn("received_at", _TS, "when the request arrived", field="received_unix_us", by_time=True,
                default="fromUnixTimestamp64Micro(received_unix_us, 'UTC')",
                unit="us", audit=Audit(name="time_us", sql="toUnixTimestamp64Micro(received_at)", api="time", kind=int)),
    UsageColumn("event_id", "String", "unique per request (UUIDv7-like)", source="event_id", by_time=True, audit=_A),
    UsageColumn("team_id", _LC, source="key.team_id", by_time=True, audit=Audit(api="team")),
    UsageColumn("user_id", _LC, source="key.user_id", by_time=True, audit=Audit(api="user")),
    UsageColumn("key_id", _LC, "virtual key id, never the key", source="key.id", by_time=True, audit=Audit(api="key")),
    UsageColumn("requested_model", _LC, source="requested_model", by_time=True, audit=_A),
    UsageColumn("alias", _LC, "alias that resolved, if any", source="alias", by_time=True, audit=_A),
    UsageColumn("model", _LC, "resolved public model name", source="model", by_time=True, audit=_A),
    UsageColumn("provider", _LC, source="provider", by_time=True, audit=_A),
    UsageColumn("upstream_model", _LC, source="upstream_model", by_time=True, audit=_A),
    UsageColumn("route_rule", _LC, "routing rule that chose the deployments", source="route_rule", by_time=True,
                audit=_A),
    UsageColumn("fallback", "Bool", "more than one upstream attempt", audit=_A),
    UsageColumn("attempts", "Array(Tuple(provider LowCardinality(String), deployment String, upstream_model String, "
                "status UInt32, error_class String, latency_ms UInt32))", "every upstream attempt, in order",
                audit=Audit(sql="length(attempts)", kind=int)),
    UsageColumn("status", "UInt32", "HTTP status returned to the client", source="status", by_time=True, audit=_A),
    UsageColumn("error_class", _LC, '"" on success', source="error_class", by_time=True, audit=_A),
    UsageColumn("input_tokens", "UInt64", source="usage.input_tokens", by_time=True, unit="tokens", audit=_A),
    UsageColumn("output_tokens", "UInt64", source="usage.output_tokens", by_time=True, unit="tokens", audit=_A),
    UsageColumn("cost_usd", "Decimal(38, 12)", "exact cost", by_time=True, unit="usd", audit=_A),
    UsageColumn("latency_ms", "UInt32", unit="ms", audit=_A),
    UsageColumn("ttfb_ms", "UInt32", "time to first byte", unit="ms", audit=_A),
    UsageColumn("stream", "Bool", source="stream", audit=_A),
    UsageColumn("client_disconnected", "Bool", source="client_disconnected", audit=_A),
    UsageColumn("cached_input_tokens", "UInt64", "cache reads (a subset of input)", source="usage.cached_input_tokens",
                by_time=True, unit="tokens", audit=_A),
    UsageColumn("cache_write_5m_tokens", "UInt64", "prompt-cache writes, 5-minute TTL",
                source="usage.cache_write_5m_tokens", default="0", by_time=True, unit="tokens", audit=_A),
    UsageColumn("cache_write_1h_tokens", "UInt64", "prompt-cache writes, 1-hour TTL",
                source="usage.cache_write_1h_tokens", default="0", by_time=True, unit="tokens", audit=_A),
    UsageColumn("reasoning_tokens", "UInt64", source="usage.reasoning_tokens", unit="tokens", audit=_A),
    UsageColumn("audio_input_tokens", "UInt64", source="usage.audio_input_tokens", default="0", unit="tokens",
                audit=_A),
    UsageColumn("audio_output_tokens", "UInt64", source="usage.audio_output_tokens", default="0", unit="tokens",
                audit=_A),
    UsageColumn("usage_estimated", "Bool", "the provider never reported usage", audit=_A),
    UsageColumn("price_version", _LC, "catalog:<v> or policy", source="price_version", audit=_A),
    UsageColumn("counted_tokens", "UInt64", "count_tokens: the count answered", source="counted_tokens", default="0",
                unit="tokens", audit=_A),
    UsageColumn("count_estimated", "Bool", "the count is the gateway's estimate", source="count_estimated",
                default="false", audit=_A),
    # not in the request trail
    UsageColumn("first_byte_at", f"Nullable({_TS})", "NULL when no byte was sent", field="first_byte_unix_us",
                default="if(first_byte_unix_us = 0, NULL, fromUnixTimestamp64Micro(first_byte_unix_us, 'UTC'))"),
    UsageColumn("done_at", _TS, field="done_unix_us", default="fromUnixTimestamp64Micro(done_unix_us, 'UTC')"),
    UsageColumn("node_id", _LC, by_time=True),
    UsageColumn("project_id", _LC, source="key.project_id", by_time=True),
    UsageColumn("tags", "Map(String, String)", source="tags", by_time=True),
    UsageColumn("dialect", _LC, source="dialect", by_time=True),
    UsageColumn("endpoint", _LC, source="endpoint", by_time=True),
    UsageColumn("policy_version", "UInt64", source="policy_version"),
    UsageColumn("guardrail_outcome", _LC, "guardrail outcomes as JSON (ids, rules, counts; never matched text)"),
    UsageColumn("request_bytes", "UInt32", source="request_bytes", unit="bytes"),
    UsageColumn("response_bytes", "UInt32", source="response_bytes", unit="bytes"),
    UsageColumn("inserted_at", "DateTime64(3, 'UTC')", "when the row landed", field="-", default="now64(3)"),
)


@dataclass(frozen=True)
class UsageSchema:
    """One usage schema: the event message and its columns. Tests build a second one with an extra column."""

    message: Descriptor
    columns: tuple[UsageColumn, ...]

    def column(self, name: str) -> UsageColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def inserted(self) -> tuple[UsageColumn, ...]:
        """The columns an insert names (row conversion); the server fills the rest."""
        return tuple(c for c in self.columns if c.proto_field)

    @property
    def audited(self) -> tuple[UsageColumn, ...]:
        return tuple(c for c in self.columns if c.audit is not None)

    def sourced(self, prefix: str = "") -> tuple[tuple[str, str], ...]:
        """(proto field, attribute) the event builder copies from the record (prefix "") or from
        `record.<prefix>` (prefix "usage." / "key.")."""
        out = []
        for c in self.columns:
            path = c.source
            if path and (path.startswith(prefix) if prefix else "." not in path):
                out.append((c.proto_field, path[len(prefix):]))
        return tuple(out)


def usage_schema(message: Descriptor | None = None, columns: Sequence[UsageColumn] = USAGE_COLUMNS) -> UsageSchema:
    """The production schema by default."""
    return UsageSchema(message or usage_pb2.UsageEvent.DESCRIPTOR, tuple(columns))


def audit_row_names(schema: UsageSchema) -> tuple[str, ...]:
    """The audit row's field names, in trail order (the select list's aliases)."""
    return tuple(c.audit.name or c.name for c in schema.audited if c.audit is not None)
