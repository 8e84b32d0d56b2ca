"""Versioned ClickHouse schema for usage events.

Migrations are an ordered list of (version, SQL), one statement each because
ClickHouse runs one statement per request. Each statement is idempotent on its
own (IF NOT EXISTS), so a crash between applying and recording a version is
repaired by simply running `migrate` again. Applied versions are recorded in
`<database>.schema_migrations`. Never edit a released migration: append one.

Dedup design: usage_events is a ReplacingMergeTree whose sorting key
(team_id, key_id, received_at, event_id) and partition (month of received_at)
are all deterministic functions of the event, so a redelivered event collapses
on merge and `FINAL` reads count it once. Both tables also keep a
non-replicated insert-deduplication window: a retried batch (same rows, or same
`insert_deduplication_token`) is dropped at insert time, before it reaches the
spend_daily materialized view, which sees inserts, not merges. A redelivery in
a *different* batch is still collapsed in usage_events but double-counted in
spend_daily, so spend_daily is the fast dashboard number and
`usage_events FINAL` the reconciliation source.
"""

from __future__ import annotations

import re

from clickhouse_connect.driver.client import Client

DEFAULT_DATABASE = "interlock"
DEFAULT_TTL_DAYS = 400
DEDUP_WINDOW = 1000  # recent insert blocks remembered per table for retry dedup

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_USAGE_EVENTS = """
CREATE TABLE IF NOT EXISTS {db}.usage_events
(
    event_id            String,
    received_at         DateTime64(6, 'UTC'),
    first_byte_at       Nullable(DateTime64(6, 'UTC')),
    done_at             DateTime64(6, 'UTC'),
    node_id             LowCardinality(String),
    key_id              LowCardinality(String),
    team_id             LowCardinality(String),
    user_id             LowCardinality(String),
    project_id          LowCardinality(String),
    tags                Map(String, String),
    dialect             LowCardinality(String),
    endpoint            LowCardinality(String),
    requested_model     LowCardinality(String),
    alias               LowCardinality(String),
    provider            LowCardinality(String),
    upstream_model      LowCardinality(String),
    model               LowCardinality(String),
    route_rule          LowCardinality(String),
    attempts            Array(Tuple(provider LowCardinality(String), deployment String, upstream_model String,
                                    status UInt32, error_class String, latency_ms UInt32)),
    fallback            Bool,
    status              UInt32,
    error_class         LowCardinality(String),
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    reasoning_tokens    UInt64,
    usage_estimated     Bool,
    cost_usd            Decimal(38, 12),
    price_version       LowCardinality(String),
    latency_ms          UInt32,
    ttfb_ms             UInt32,
    stream              Bool,
    client_disconnected Bool,
    policy_version      UInt64,
    guardrail_outcome   LowCardinality(String),
    request_bytes       UInt32,
    response_bytes      UInt32,
    inserted_at         DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX event_id_bf event_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (team_id, key_id, received_at, event_id)
TTL toDateTime(received_at) + INTERVAL {ttl_days} DAY
SETTINGS non_replicated_deduplication_window = {window}
"""

_SPEND_DAILY = """
CREATE TABLE IF NOT EXISTS {db}.spend_daily
(
    day                 Date,
    team_id             LowCardinality(String),
    user_id             LowCardinality(String),
    key_id              LowCardinality(String),
    model               LowCardinality(String),
    provider            LowCardinality(String),
    requests            UInt64,
    errors              UInt64,
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    reasoning_tokens    UInt64,
    cost_usd            Decimal(38, 12)
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (team_id, day, user_id, key_id, model, provider)
SETTINGS non_replicated_deduplication_window = {window}
"""

# Rows of spend_daily are partial sums until merged: always read with sum() ... GROUP BY.
_SPEND_DAILY_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.spend_daily_mv TO {db}.spend_daily AS
SELECT
    toDate(received_at) AS day,
    team_id, user_id, key_id, model, provider,
    count() AS requests,
    countIf(status >= 400) AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd
FROM {db}.usage_events
GROUP BY day, team_id, user_id, key_id, model, provider
"""

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version    UInt32,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


def check_identifier(name: str) -> str:
    """Database names are interpolated into DDL, so only plain identifiers pass."""
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a valid ClickHouse identifier")
    return name


def migrations(database: str = DEFAULT_DATABASE, ttl_days: int = DEFAULT_TTL_DAYS) -> list[tuple[int, str]]:
    """The ordered migrations, rendered for one database and retention."""
    if ttl_days <= 0:
        raise ValueError(f"ttl_days must be positive, got {ttl_days}")
    args = {"db": check_identifier(database), "ttl_days": int(ttl_days), "window": DEDUP_WINDOW}
    # The MV comes after both tables: it only sees inserts made after it exists.
    return [
        (version, sql.format(**args).strip())
        for version, sql in ((1, _USAGE_EVENTS), (2, _SPEND_DAILY), (3, _SPEND_DAILY_MV))
    ]


def create_database(client: Client, database: str = DEFAULT_DATABASE) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {check_identifier(database)}")


def applied_versions(client: Client, database: str = DEFAULT_DATABASE) -> set[int]:
    result = client.query(f"SELECT DISTINCT version FROM {check_identifier(database)}.schema_migrations")
    return {int(row[0]) for row in result.result_rows}


def migrate(client: Client, database: str = DEFAULT_DATABASE, ttl_days: int = DEFAULT_TTL_DAYS) -> int:
    """Apply missing migrations in order; returns the schema version now in place.

    The database must exist (see `create_database`). Driver errors propagate
    unchanged; `ingest.clickhouse_writer.open_clickhouse` translates them.
    """
    steps = migrations(database, ttl_days)
    client.command(_MIGRATIONS_TABLE.format(db=database).strip())
    done = applied_versions(client, database)
    for version, sql in steps:
        if version in done:
            continue
        client.command(sql)
        client.insert("schema_migrations", [(version,)], column_names=["version"], database=database)
        done.add(version)
    _sync_ttl(client, database, ttl_days)
    return max(done)


def _sync_ttl(client: Client, database: str, ttl_days: int) -> None:
    """Make a changed retention setting take effect on an existing table.

    The TTL lives in migration 1, which never re-runs; compare against the
    engine definition and only ALTER when it differs, so a normal start costs
    one system.tables read, not a TTL re-materialization.
    """
    result = client.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'usage_events'",
        parameters={"db": database},
    )
    if not result.result_rows or f"toIntervalDay({ttl_days})" in str(result.result_rows[0][0]):
        return
    # Existing parts are re-checked on their next merge instead of by an
    # immediate full-table mutation.
    client.command(
        f"ALTER TABLE {database}.usage_events MODIFY TTL toDateTime(received_at) + INTERVAL {int(ttl_days)} DAY",
        settings={"materialize_ttl_after_modify": 0},
    )
