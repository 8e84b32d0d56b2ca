"""The ingest service's counters: written by the consumer loop, read by /healthz, /stats and /metrics
(below both ingest/health.py and ingest/metrics.py, so neither imports the other for the type)."""

from __future__ import annotations

from dataclasses import dataclass, field

from interlock_contracts.metrics.exposition import DURATION_BUCKETS, Histogram


def _batch_histogram() -> Histogram:
    return Histogram("interlock_ingest_batch_duration_seconds", "Time to insert, dead-letter and commit one batch.",
                     (), DURATION_BUCKETS)


@dataclass
class IngestStats:
    consumed: int = 0
    inserted: int = 0
    duplicates: int = 0
    dlq: int = 0
    batches: int = 0
    wire_batches: int = 0  # inserts ClickHouse decoded from the raw protobuf values (ingest.wire)
    wire_fallbacks: int = 0  # raw inserts refused and redone as Python rows
    errors: int = 0  # failed insert / DLQ / commit attempts (each retried)
    last_error: str = ""
    last_insert_wall: float = 0.0  # time.time() of the last successful insert
    last_ok: float = 0.0  # monotonic: last time ClickHouse answered (insert or ping)
    last_loop: float = 0.0  # monotonic: last poller iteration
    lag: dict[int, int] = field(default_factory=dict)  # partition -> end offset - committed
    buffered: int = 0
    batch_seconds: Histogram = field(default_factory=_batch_histogram)
