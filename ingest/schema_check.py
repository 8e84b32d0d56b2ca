"""Do the usage schema's three declarations agree: the column table, the proto descriptor, the migrated tables?

Migrations (ingest/schema.py) stay historical SQL, so nothing derives the tables from the column table
(interlock_contracts/usage_schema.py); this check compares them instead. It runs when a writer opens the store
(ClickHouseWriter) and in CI (tests/contracts/test_usage_schema.py), so a column added to one and not the others
fails at start with what is missing, not as a failed insert or a silently dropped field.
"""

from __future__ import annotations

from collections.abc import Mapping

from clickhouse_connect.driver.client import Client
from google.protobuf.descriptor import FieldDescriptor

from interlock_contracts.usage_schema import UsageSchema

TABLE = "usage_events"
BY_TIME_TABLE = "usage_by_time"

# ClickHouse types a proto scalar lands in without loss (FORMAT Protobuf and ingest.rows alike).
_COMPATIBLE: Mapping[int, tuple[str, ...]] = {
    FieldDescriptor.TYPE_STRING: ("String", "LowCardinality(String)", "Decimal("),
    FieldDescriptor.TYPE_BOOL: ("Bool",),
    FieldDescriptor.TYPE_UINT32: ("UInt32", "UInt64", "Int64"),
    FieldDescriptor.TYPE_UINT64: ("UInt64",),
    FieldDescriptor.TYPE_INT32: ("Int32", "Int64"),
    FieldDescriptor.TYPE_INT64: ("Int64", "DateTime64(", "Nullable(DateTime64("),
}


class SchemaMismatch(ValueError):
    """The column table, the proto and the tables disagree; the message lists every difference."""


def descriptor_problems(schema: UsageSchema) -> list[str]:
    """Column table vs proto descriptor (no database needed)."""
    fields = schema.message.fields_by_name
    problems = []
    names = [c.name for c in schema.columns]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"columns declared twice: {dupes}")
    for c in schema.inserted:
        f = fields.get(c.proto_field)
        if f is None:
            problems.append(f"column {c.name}: {schema.message.name} has no field {c.proto_field!r}")
        elif f.type != FieldDescriptor.TYPE_MESSAGE and not c.ch_type.startswith(_COMPATIBLE.get(f.type, ("?",))):
            problems.append(f"column {c.name} {c.ch_type} cannot hold proto field {f.name} (type {f.type})")
    declared = {c.proto_field for c in schema.inserted}
    if missing := [f.name for f in schema.message.fields if f.name not in declared]:
        problems.append(f"{schema.message.name} fields without a column in interlock_contracts/usage_schema.py: {missing}")
    return problems


def table_problems(schema: UsageSchema, tables: Mapping[str, Mapping[str, tuple[str, str, str]]], *,
                   exact: bool = True) -> list[str]:
    """Column table vs the migrated tables: `tables[table][column] = (type, default_kind, default_expression)`.

    `exact=False` reports only what breaks a row insert (a missing column, another type): a writer runs
    fine against a store a newer release migrated further (extra columns with defaults) during a
    rolling upgrade, or one not yet given the protobuf-insert columns."""
    events, by_time = tables.get(TABLE, {}), tables.get(BY_TIME_TABLE, {})
    if not events:
        return [f"table {TABLE} does not exist: run ingest.schema.migrate"]
    problems = []
    for c in schema.columns:
        have = events.get(c.name)
        if have is None:
            problems.append(f"{TABLE} lacks column {c.name} {c.ch_type}: add a migration (ingest/schema.py)")
            continue
        if have[0] != c.ch_type:
            problems.append(f"{TABLE}.{c.name} is {have[0]}, the usage schema says {c.ch_type}")
        if not exact:
            continue
        if have[1] not in ("", "DEFAULT") or have[2] != c.default:
            problems.append(f"{TABLE}.{c.name} defaults to {have[1]} {have[2]!r}, the usage schema says {c.default!r}")
        if c.by_time and by_time and by_time.get(c.name, ("",))[0] != c.ch_type:
            problems.append(f"{BY_TIME_TABLE}.{c.name} should be {c.ch_type} (by_time in the usage schema), "
                            f"is {by_time.get(c.name, ('missing',))[0]}")
    if not exact:
        return problems
    declared = {c.name for c in schema.columns}
    # a field read under another column's name (received_unix_us -> received_at) is an EPHEMERAL column:
    # FORMAT Protobuf inserts name the fields (ingest.wire)
    ephemeral = {c.proto_field for c in schema.inserted if c.proto_field != c.name}
    for name, (_, kind, _) in events.items():
        if kind == "EPHEMERAL" and name in ephemeral:
            continue
        if name not in declared:
            problems.append(f"{TABLE}.{name} ({kind or 'stored'}) is not in the usage schema (interlock_contracts/usage_schema.py)")
    if missing := sorted(ephemeral - {n for n, v in events.items() if v[1] == "EPHEMERAL"}):
        problems.append(f"{TABLE} lacks the EPHEMERAL columns {missing} that protobuf inserts name")
    return problems


def read_tables(client: Client, database: str) -> dict[str, dict[str, tuple[str, str, str]]]:
    result = client.query(
        "SELECT table, name, type, default_kind, default_expression FROM system.columns "
        "WHERE database = {db:String} AND table IN {tables:Array(String)} ORDER BY table, position",
        parameters={"db": database, "tables": [TABLE, BY_TIME_TABLE]},
    )
    out: dict[str, dict[str, tuple[str, str, str]]] = {}
    for table, name, type_, kind, expr in result.result_rows:
        out.setdefault(str(table), {})[str(name)] = (str(type_), str(kind), str(expr))
    return out


def check(client: Client, database: str, schema: UsageSchema, *, exact: bool = True) -> None:
    """Raise SchemaMismatch listing every disagreement (descriptor and tables)."""
    problems = descriptor_problems(schema) + table_problems(schema, read_tables(client, database), exact=exact)
    if problems:
        raise SchemaMismatch(f"the usage schema does not match {database}: " + "; ".join(problems))
