"""Where the data plane puts the one UsageEvent each request produces.

`emit` runs on the request hot path: it is O(1), never blocks, never raises and
does no serialization; an emitted event must not be mutated afterwards. Work
(row conversion, inserts, retries) happens off the event loop.

Counters: `emitted` counts every emit() call; `written` events accepted by the
store; `dropped` events lost (buffer full, invalid, batch failed, emitted
after close); `failed_batches` batches given up after retries. After close():
emitted == written + dropped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from ingest.clickhouse_writer import IngestError, open_clickhouse
from ingest.schema import DEFAULT_DATABASE, DEFAULT_TTL_DAYS
from interlock_contracts.settings.common import SettingsError
from interlock_contracts.settings.dataplane import DataPlaneSettings
from interlock_contracts.v1 import usage_pb2

log = logging.getLogger(__name__)


class UsageSink(Protocol):
    @property
    def emitted(self) -> int: ...
    @property
    def written(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def failed_batches(self) -> int: ...

    def emit(self, event: usage_pb2.UsageEvent) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...


class BatchWriter(Protocol):
    """What ClickHouseSink needs from a writer (ingest.clickhouse_writer.ClickHouseWriter)."""

    def insert_events(self, events: Sequence[usage_pb2.UsageEvent]) -> int: ...
    def close(self) -> None: ...


class NullSink:
    """Usage recording off: counts and forgets."""

    def __init__(self) -> None:
        self.emitted = 0
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0

    def emit(self, event: usage_pb2.UsageEvent) -> None:
        self.emitted += 1

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemorySink(NullSink):
    """Keeps every event in `events`; for tests."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[usage_pb2.UsageEvent] = []

    def emit(self, event: usage_pb2.UsageEvent) -> None:
        self.emitted += 1
        self.events.append(event)
        self.written += 1


class ClickHouseSink:
    """Bounded buffer drained by one background thread into a BatchWriter.

    A batch is flushed when `batch_size` events are waiting or every
    `flush_interval_ms`, whichever comes first. When `max_buffer` events are
    waiting, new events are dropped (tail drop keeps emit lock-free) and the
    drops are logged by the flusher at most once per interval. Call emit()
    from the event-loop thread only: each counter then has a single writing
    thread, so the hot path needs no lock.
    """

    def __init__(
        self,
        open_writer: Callable[[], BatchWriter],
        *,
        batch_size: int = 1000,
        flush_interval_ms: int = 200,
        max_buffer: int = 50_000,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.2,
    ) -> None:
        if min(batch_size, flush_interval_ms, max_buffer, max_attempts) <= 0:
            raise ValueError("batch_size, flush_interval_ms, max_buffer and max_attempts must be positive")
        self._open_writer = open_writer
        self._batch_size = batch_size
        self._interval_s = flush_interval_ms / 1000
        self._max_buffer = max_buffer
        self._max_attempts = max_attempts
        self._backoff_s = retry_backoff_s
        self._buf: deque[usage_pb2.UsageEvent] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer: BatchWriter | None = None
        self._closed = False  # set on the loop thread: emit stops buffering
        self._stopping = False  # read by the flusher: drain everything, then exit
        self._late_logged = False
        # Producer-owned (event-loop thread)
        self.emitted = 0
        self._overflow = 0
        # Flusher-owned
        self.written = 0
        self.failed_batches = 0
        self._lost = 0
        self._overflow_reported = 0

    @classmethod
    def from_dsn(
        cls,
        dsn: str,
        *,
        database: str = DEFAULT_DATABASE,
        ttl_days: int = DEFAULT_TTL_DAYS,
        batch_size: int = 1000,
        flush_interval_ms: int = 200,
        max_buffer: int = 50_000,
    ) -> ClickHouseSink:
        """Sink writing to ClickHouse at `dsn` (e.g. chdb:///abs/dir); connects and migrates in start()."""
        opener = functools.partial(open_clickhouse, dsn, database=database, ttl_days=ttl_days)
        return cls(opener, batch_size=batch_size, flush_interval_ms=flush_interval_ms, max_buffer=max_buffer)

    @property
    def dropped(self) -> int:
        return self._overflow + self._lost

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def emit(self, event: usage_pb2.UsageEvent) -> None:
        self.emitted += 1
        buf = self._buf
        if self._closed or len(buf) >= self._max_buffer:
            self._overflow += 1
            if self._closed and not self._late_logged:
                self._late_logged = True
                log.error("usage event emitted after the sink closed: dropped, as will be every later one")
            return
        buf.append(event)
        if len(buf) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    async def start(self) -> None:
        """Open the writer (connect + migrate, off the loop) and start flushing. Raises IngestError."""
        if self._thread is not None or self._closed:
            return
        self._writer = await asyncio.to_thread(self._open_writer)
        self._thread = threading.Thread(target=self._run, name="usage-sink-clickhouse", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Flush every buffered event, then close the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            if self._buf:
                self._lost += len(self._buf)
                log.error("usage sink closed before start(): dropped %d buffered events", len(self._buf))
                self._buf.clear()
            return
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)
        if self._writer is not None:
            try:
                await asyncio.to_thread(self._writer.close)
            except IngestError as exc:
                log.warning("usage sink: closing the writer failed: %s", exc)
        log.log(
            logging.ERROR if self.dropped else logging.INFO,
            "usage sink closed: emitted=%d written=%d dropped=%d failed_batches=%d",
            self.emitted,
            self.written,
            self.dropped,
            self.failed_batches,
        )

    # ---- flusher thread -------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            # Read before draining: every emit() preceding close() has already
            # appended, so one more drain after seeing the flag loses nothing.
            stopping = self._stopping
            try:
                self._drain()
            except Exception:  # the flusher must survive anything, or usage silently stops
                log.exception("usage sink flusher error")
            self._report_overflow()
            if stopping:
                return

    def _drain(self) -> None:
        buf = self._buf
        while buf:
            n = min(self._batch_size, len(buf))
            self._write([buf.popleft() for _ in range(n)])

    def _write(self, batch: list[usage_pb2.UsageEvent]) -> None:
        assert self._writer is not None  # set by start() before the thread exists
        attempt = 0
        while True:
            attempt += 1
            try:
                accepted = self._writer.insert_events(batch)
            except IngestError as exc:
                if attempt < self._max_attempts:
                    # ClickHouse drops a retried identical batch, so a failure
                    # reported after the insert actually landed cannot double count.
                    log.warning(
                        "usage sink: insert of %d events failed (attempt %d/%d): %s",
                        len(batch),
                        attempt,
                        self._max_attempts,
                        exc,
                    )
                    time.sleep(self._backoff_s * attempt)
                    continue
                log.error("usage sink: dropped a batch of %d events after %d attempts: %s", len(batch), attempt, exc)
            except Exception:
                log.exception("usage sink: dropped a batch of %d events: unexpected writer error", len(batch))
            else:
                self.written += accepted
                self._lost += len(batch) - accepted  # rejected as invalid; the writer logged why
                return
            self.failed_batches += 1
            self._lost += len(batch)
            return

    def _report_overflow(self) -> None:
        total = self._overflow
        if total > self._overflow_reported:
            log.error(
                "usage sink buffer full (max_buffer=%d): dropped %d events since last report, %d in total",
                self._max_buffer,
                total - self._overflow_reported,
                total,
            )
            self._overflow_reported = total


def make_usage_sink(settings: DataPlaneSettings) -> UsageSink:
    """The sink selected by INTERLOCK_USAGE_SINK."""
    if settings.usage_sink == "none":
        log.warning("INTERLOCK_USAGE_SINK=none: this node records NO usage (no spend, no budgets reports, no request "
                    "audit trail); set INTERLOCK_USAGE_SINK=kafka (with INTERLOCK_KAFKA_BOOTSTRAP) in production")
        return NullSink()
    if settings.usage_sink == "clickhouse":
        if not settings.clickhouse_dsn:
            raise SettingsError("INTERLOCK_CLICKHOUSE_DSN must be set when INTERLOCK_USAGE_SINK=clickhouse")
        from dataplane.usage.wal_sink import WalClickHouseSink  # write-ahead, as durable as the Kafka sink

        return WalClickHouseSink.from_dsn(settings.clickhouse_dsn, settings.usage_spool_dir,
                                          max_bytes=settings.spool_max_bytes)
    if settings.usage_sink == "kafka":
        if not settings.kafka_bootstrap:
            raise SettingsError("INTERLOCK_KAFKA_BOOTSTRAP must be set when INTERLOCK_USAGE_SINK=kafka")
        from dataplane.usage.kafka import KafkaUsageSink  # aiokafka only loads where Kafka is used

        return KafkaUsageSink(settings.kafka_bootstrap, settings.usage_spool_dir, topic=settings.kafka_topic,
                              spool_max_bytes=settings.spool_max_bytes)
    raise SettingsError(
        f"INTERLOCK_USAGE_SINK={settings.usage_sink!r} is not supported (expected none, clickhouse or kafka)"
    )
