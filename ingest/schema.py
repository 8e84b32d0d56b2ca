"""Versioned ClickHouse schema for usage events.

Migrations are an ordered list of (version, SQL), one statement each because
ClickHouse runs one statement per request. Each statement is idempotent on its
own (IF NOT EXISTS), so a crash between applying and recording a version is
repaired by simply running `migrate` again. Applied versions are recorded in
`<database>.schema_migrations`. Never edit a released migration: append one.

Dedup design: usage_events is a ReplacingMergeTree whose sorting key
(team_id, key_id, received_at, event_id) and partition (month of received_at)
are all deterministic functions of the event, so a redelivered event collapses
on merge and `FINAL` reads count it once. usage_events, spend_daily and
usage_by_time keep a non-replicated insert-deduplication window: a retried
batch (same rows, or same `insert_deduplication_token`) is dropped at insert
time - also by the view targets, which get the retried block again and drop it
by their own window (materialized views see inserts, not merges). A redelivery
in a *different* batch is still collapsed in usage_events but double-counted in
spend_daily, so spend_daily is the fast dashboard number, never an exact one.

Query copy (v4-v6): usage_by_time holds the columns the FinOps queries read,
fed by usage_by_time_mv on every insert into usage_events (v6 backfills what
was there before). It is a ReplacingMergeTree too, keyed by (received_at,
event_id) and partitioned by *day* - again functions of the event, so a
redelivery (even one copy via the view and one via the backfill) collapses and
`usage_by_time FINAL` is exact. The layout is what makes it fast: a time window
prunes partitions and primary-key ranges (usage_events' key starts with team_id
and cannot), and with `do_not_merge_across_partitions_select_final` a day that
is no longer written to - force-merged into one part after an hour
(min_age_to_force_merge_seconds) - is read without any FINAL merging. A `mapValues(tags)` bloom filter serves tag filters such as
`cost --task`. At 10M events (benchmarks/finops_queries.py) this took the
slowest FinOps query from ~6.5 s to well under 1 s; the audit trail, filtered
by key, stays on usage_events.

Raw protobuf inserts (v7): the ingest service sends Kafka values unchanged with
`FORMAT Protobuf` (ingest.wire), which maps message fields to columns by name.
Every field already has a same-named column except the three `*_unix_us`
timestamps: they become EPHEMERAL columns (accepted by an insert, never stored)
that received_at, first_byte_at (0 = NULL) and done_at default from. Inserts
naming the DateTime64 columns themselves (ingest.rows) are unaffected.

Not used for exact answers: a rollup keyed by event_id-free dimensions (like
spend_daily, or an AggregatingMergeTree by hour) cannot tell a redelivery from a
new event, because its view sees each insert block alone; it could only be exact
once no redelivery can still arrive for its window, which nothing guarantees.
The exact rollups (v150-v154, ingest/rollup_schema.py) avoid this: rebuilt per day from
usage_by_time FINAL, never fed event by event, and bypassed for any hour written since.
"""

from __future__ import annotations

import re

from clickhouse_connect.driver.client import Client

from ingest.rollup_schema import rollup_migrations

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

# Query copy of usage_events for the FinOps questions (see the module docstring). Everything a
# spend/top/cost query reads, sorted and partitioned by time so a window prunes partitions and
# primary-key ranges, and so FINAL has little left to merge: a day no longer written to for an hour
# is force-merged into one part, which FINAL (not merging across partitions) reads as a plain scan.
_USAGE_BY_TIME = """
CREATE TABLE IF NOT EXISTS {db}.usage_by_time
(
    event_id            String,
    received_at         DateTime64(6, 'UTC'),
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
    status              UInt32,
    error_class         LowCardinality(String),
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    cost_usd            Decimal(38, 12),
    INDEX tag_values_bf mapValues(tags) TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (received_at, event_id)
TTL toDateTime(received_at) + INTERVAL {ttl_days} DAY
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = {window},
    min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1
"""

_BY_TIME_COLUMNS = ("event_id, received_at, node_id, key_id, team_id, user_id, project_id, tags, dialect, endpoint, "
                    "requested_model, alias, provider, upstream_model, model, route_rule, status, error_class, "
                    "input_tokens, output_tokens, cached_input_tokens, cost_usd")

_USAGE_BY_TIME_MV = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.usage_by_time_mv TO {{db}}.usage_by_time AS
SELECT {_BY_TIME_COLUMNS} FROM {{db}}.usage_events
"""

# Copies what usage_events held before the view existed. Safe to re-run, and safe against inserts
# racing it (seen by both the view and this copy): usage_by_time collapses them like any redelivery.
_USAGE_BY_TIME_BACKFILL = f"""
INSERT INTO {{db}}.usage_by_time ({_BY_TIME_COLUMNS}) SELECT {_BY_TIME_COLUMNS} FROM {{db}}.usage_events
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

_WIRE_TIMESTAMPS = """
ALTER TABLE {db}.usage_events
    ADD COLUMN IF NOT EXISTS received_unix_us Int64 EPHEMERAL,
    ADD COLUMN IF NOT EXISTS first_byte_unix_us Int64 EPHEMERAL,
    ADD COLUMN IF NOT EXISTS done_unix_us Int64 EPHEMERAL,
    MODIFY COLUMN received_at DEFAULT fromUnixTimestamp64Micro(received_unix_us, 'UTC'),
    MODIFY COLUMN first_byte_at DEFAULT if(first_byte_unix_us = 0, NULL, fromUnixTimestamp64Micro(first_byte_unix_us, 'UTC')),
    MODIFY COLUMN done_at DEFAULT fromUnixTimestamp64Micro(done_unix_us, 'UTC')
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


# Issue 14: the token classes billed apart (subsets of input/output tokens) and count_tokens answers.
_TOKEN_CLASSES = """
ALTER TABLE {db}.usage_events
    ADD COLUMN IF NOT EXISTS cache_write_5m_tokens UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS audio_input_tokens UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS audio_output_tokens UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS counted_tokens UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS count_estimated Bool DEFAULT false
"""

_BY_TIME_CACHE_WRITES = """
ALTER TABLE {db}.usage_by_time
    ADD COLUMN IF NOT EXISTS cache_write_5m_tokens UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens UInt64 DEFAULT 0
"""

_BY_TIME_COLUMNS_V140 = _BY_TIME_COLUMNS + ", cache_write_5m_tokens, cache_write_1h_tokens"

# The new view is created before the old one is dropped: an event inserted in between reaches
# usage_by_time twice, which its ReplacingMergeTree (read with FINAL) collapses; none is lost.
_USAGE_BY_TIME_MV_V140 = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.usage_by_time_mv140 TO {{db}}.usage_by_time AS
SELECT {_BY_TIME_COLUMNS_V140} FROM {{db}}.usage_events
"""

_DROP_USAGE_BY_TIME_MV = "DROP VIEW IF EXISTS {db}.usage_by_time_mv"


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
    # An MV comes after its tables: it only sees inserts made after it exists (hence the backfill).
    return [
        (version, sql.format(**args).strip())
        for version, sql in ((1, _USAGE_EVENTS), (2, _SPEND_DAILY), (3, _SPEND_DAILY_MV), (4, _USAGE_BY_TIME),
                             (5, _USAGE_BY_TIME_MV), (6, _USAGE_BY_TIME_BACKFILL), (7, _WIRE_TIMESTAMPS),
                             (140, _TOKEN_CLASSES), (141, _BY_TIME_CACHE_WRITES), (142, _USAGE_BY_TIME_MV_V140),
                             (143, _DROP_USAGE_BY_TIME_MV), *rollup_migrations())
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


TTL_TABLES = ("usage_events", "usage_by_time")


def _sync_ttl(client: Client, database: str, ttl_days: int) -> None:
    """Make a changed retention setting take effect on existing tables.

    The TTLs live in migrations 1 and 4, which never re-run; compare against
    the engine definitions and only ALTER what differs, so a normal start costs
    one system.tables read, not a TTL re-materialization.
    """
    result = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String} AND name IN {names:Array(String)}",
        parameters={"db": database, "names": list(TTL_TABLES)},
    )
    for name, engine in result.result_rows:
        if f"toIntervalDay({ttl_days})" in str(engine):
            continue
        # Existing parts are re-checked on their next merge instead of by an
        # immediate full-table mutation.
        client.command(
            f"ALTER TABLE {database}.{name} MODIFY TTL toDateTime(received_at) + INTERVAL {int(ttl_days)} DAY",
            settings={"materialize_ttl_after_modify": 0},
        )
