"""Exact pre-aggregates ("rollups") of usage_by_time: the tables, their migrations (v150-v154).

Why exact, unlike spend_daily: a rollup partition is never fed event by event. `ingest.rollup`
rebuilds a whole day from `usage_by_time FINAL` (deduplicated) into a staging table and swaps it
in with REPLACE PARTITION (atomic), so a redelivered event counts once. Every row carries the
`rolled_at` (server clock, read *before* the rebuild read its source) and `covered_until` (end of
the closed hours the rebuild covered) of the rebuild that wrote it.

Late and redelivered events: `usage_rollup_marks_mv` fires on every insert block that reaches
usage_by_time (after that block is visible there) and records, per hour the block touched, the
server time. An hour's rollup rows are used only when no mark for that hour is newer than the
rollup's `rolled_at`: an event the rebuild may have missed was made visible after the rebuild
started, so its mark is newer and the hour is answered from usage_by_time until the next rebuild
(`ingest.rollup_read`). Marks are a ReplacingMergeTree keeping the newest mark per hour.

Three rollups, chosen by measuring the console's questions (benchmarks/finops_queries.py):
- usage_rollup_hour: per hour, the low-cardinality dimensions (team, project, model, provider,
  route, ...): the overview, the periods and hourly series;
- usage_rollup_day: per day, every dimension but node (adds key and user);
- usage_rollup_tag_day: per day, one row per (tag name, tag value) plus a totals row (tag name '')
  per day, so that `tag:NAME` groups include the events without that tag (total minus tagged).
"""

from __future__ import annotations

from dataclasses import dataclass

MARKS_TABLE = "usage_rollup_marks"
TAG_TOTALS = ""  # tag_key of the per-bucket totals row of the tag rollup (no real tag has an empty name)


@dataclass(frozen=True)
class Rollup:
    table: str
    step_s: int  # bucket width: 3600 or 86400, UTC, aligned to the Unix epoch
    dims: tuple[str, ...]  # usage_by_time columns kept as dimensions
    tags: bool = False  # (tag_key, tag_value) dimensions, one row per map entry, plus a totals row


_LOW = ("team_id", "project_id", "model", "provider", "alias", "upstream_model", "requested_model", "route_rule",
        "endpoint", "dialect", "error_class")  # fmt: skip
HOUR = Rollup("usage_rollup_hour", 3600, _LOW)
DAY = Rollup("usage_rollup_day", 86_400, (*_LOW, "key_id", "user_id"))
TAG_DAY = Rollup("usage_rollup_tag_day", 86_400, (), tags=True)
ROLLUPS: tuple[Rollup, ...] = (HOUR, DAY, TAG_DAY)  # preference order when several can answer

MEASURES = ("requests", "errors", "in_tokens", "out_tokens", "cached_tokens", "write_5m", "write_1h")


def _table_sql(r: Rollup, name: str) -> str:
    dims = [f"    {d} LowCardinality(String)," for d in r.dims]
    if r.tags:
        dims += ["    tag_key LowCardinality(String),", "    tag_value String,"]
    measures = "\n".join(f"    {m} UInt64," for m in MEASURES)
    order = ", ".join(("bucket", *(("tag_key", "tag_value") if r.tags else r.dims)))
    return (f"CREATE TABLE IF NOT EXISTS {{db}}.{name}\n(\n    bucket DateTime('UTC'),\n" + "\n".join(dims) +
            f"\n{measures}\n    cost Decimal(38, 12),\n    rolled_at DateTime64(6, 'UTC'),\n"
            "    covered_until DateTime('UTC')\n)\nENGINE = MergeTree\nPARTITION BY toYYYYMMDD(bucket)\n"
            f"ORDER BY ({order})\nTTL bucket + INTERVAL {{ttl_days}} DAY\nSETTINGS ttl_only_drop_parts = 1")


_MARKS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.{MARKS_TABLE}
(
    hour      DateTime('UTC'),
    marked_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(marked_at)
ORDER BY hour
TTL hour + INTERVAL {{ttl_days}} DAY
"""

# On usage_by_time (not usage_events): its view runs after usage_by_time's own block is written, so
# a mark is never older than the moment the event became readable where the rebuild reads it.
_MARKS_MV = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.usage_rollup_marks_mv TO {{db}}.{MARKS_TABLE} AS
SELECT toStartOfHour(received_at) AS hour, now64(6, 'UTC') AS marked_at FROM {{db}}.usage_by_time GROUP BY hour
"""


def rollup_migrations() -> list[tuple[int, str]]:
    """(version, SQL template with {db} and {ttl_days}) for ingest.schema.migrations."""
    tables = [_table_sql(r, r.table) for r in ROLLUPS]
    return [(150, _MARKS), (151, _MARKS_MV), (152, tables[0]), (153, tables[1]), (154, tables[2])]
