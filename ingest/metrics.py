"""Ingest's GET /metrics in the Prometheus text format, read from IngestStats at scrape time.

Rows per second is rate(interlock_ingest_rows_inserted_total[1m]); lag is per partition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from interlock_contracts.metrics.exposition import Registry

if TYPE_CHECKING:
    from ingest.stats import IngestStats


def _attr(stats: IngestStats, attr: str) -> Callable[[], list[tuple[tuple[str, ...], float]]]:
    return lambda: [((), float(getattr(stats, attr)))]


def ingest_registry(stats: IngestStats, *, clock: Callable[[], float] = time.time,
                    monotonic: Callable[[], float] = time.monotonic) -> Registry:
    reg = Registry()

    def one(fn: Callable[[], float]) -> Callable[[], list[tuple[tuple[str, ...], float]]]:
        return lambda: [((), float(fn()))]

    for name, attr, text in (
        ("interlock_ingest_records_consumed", "consumed", "Kafka records fetched."),
        ("interlock_ingest_rows_inserted", "inserted", "Rows inserted into ClickHouse (rows/s: rate() of this)."),
        ("interlock_ingest_duplicates", "duplicates", "Records dropped as duplicates of an event already seen."),
        ("interlock_ingest_dead_letter", "dlq", "Poison records sent to the dead-letter topic."),
        ("interlock_ingest_batches", "batches", "Batches inserted and committed."),
        ("interlock_ingest_wire_batches", "wire_batches", "Batches ClickHouse decoded from raw protobuf."),
        ("interlock_ingest_wire_fallbacks", "wire_fallbacks", "Raw inserts refused and redone as rows."),
        ("interlock_ingest_errors", "errors", "Failed insert, dead-letter, commit or ping attempts (each retried)."),
    ):
        reg.counter(name, text, (), _attr(stats, attr))
    reg.gauge("interlock_ingest_lag_records", "Records behind per partition (end offset - committed).",
              ("partition",), lambda: [((str(p),), float(n)) for p, n in stats.lag.items()])
    reg.gauge("interlock_ingest_buffered_records", "Records fetched, not yet cut into a batch.", (),
              one(lambda: stats.buffered))

    def insert_age() -> list[tuple[tuple[str, ...], float]]:
        return [((), round(clock() - stats.last_insert_wall, 3))] if stats.last_insert_wall else []

    def ok_age() -> list[tuple[tuple[str, ...], float]]:
        return [((), round(monotonic() - stats.last_ok, 3))] if stats.last_ok else []

    reg.gauge("interlock_ingest_last_insert_age_seconds", "Seconds since the last successful insert.", (), insert_age)
    reg.gauge("interlock_ingest_clickhouse_ok_age_seconds", "Seconds since ClickHouse last answered.", (), ok_age)
    reg.add(stats.batch_seconds)
    return reg
