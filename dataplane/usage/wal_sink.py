"""WalClickHouseSink: the embedded (chDB / ClickHouse) usage sink, write-ahead like the Kafka sink.

emit() (event-loop thread) serializes the event and appends it to the same WAL
the Kafka sink uses (dataplane.durable.wal: one os.write into the page cache, no fsync,
no lock), so an event whose request was answered survives a SIGKILL of the
process. One *flusher* thread reads the WAL in order, inserts each batch into
ClickHouse, acks the WAL cursor and fsyncs the WAL (a machine crash loses at
most one sync interval; a process crash loses nothing).

Exactly once across a crash: the only records that can already be in ClickHouse
while still in the WAL are those inserted just before the kill, before their
ack. So every batch read before the end the WAL had when it was opened (the
replay) is first filtered against the event ids already stored. Within one
process a retried insert carries the same insert_deduplication_token (its WAL
range), so a failure reported after the insert landed cannot double count.

A batch ClickHouse refuses stays in the WAL and is retried (with backoff) until
it lands; a full WAL (`max_bytes`) drops new events, counted in `dropped`.
close() ships what it can within close_timeout_s and leaves the rest in the WAL
for the next start. Counters: emitted, written, dropped, failed_batches,
spooled, replayed (written records a previous process had appended).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from google.protobuf.message import DecodeError

from dataplane.durable.wal import Cursor, Wal
from dataplane.usage.wal_front import WalFront
from ingest import wire
from ingest.clickhouse_writer import ClickHouseWriter, IngestError, open_clickhouse
from ingest.schema import DEFAULT_DATABASE, DEFAULT_TTL_DAYS
from interlock_contracts.v1 import usage_pb2

log = logging.getLogger(__name__)


class BatchWriter(Protocol):
    """What the sink needs from a writer (ingest.clickhouse_writer.ClickHouseWriter)."""

    def insert_events(self, events: Sequence[usage_pb2.UsageEvent], *, dedup_token: str | None = None) -> int: ...
    def insert_wire(self, values: Sequence[bytes], *, dedup_token: str | None = None) -> int: ...
    def close(self) -> None: ...


StoredIds = Callable[[list[str]], set[str]]


def stored_ids(writer: ClickHouseWriter, ids: list[str]) -> set[str]:
    """Which of `ids` are already in usage_events (the replay filter)."""
    if not ids:
        return set()
    rows = writer.client.query(
        f"SELECT DISTINCT event_id FROM {writer.database}.usage_events WHERE event_id IN {{ids:Array(String)}}",
        parameters={"ids": ids},
    ).result_rows
    return {str(r[0]) for r in rows}


class WalClickHouseSink(WalFront):
    def __init__(
        self, open_writer: Callable[[], BatchWriter], wal_dir: Path, *, stored: Callable[[BatchWriter], StoredIds],
        batch_size: int = 1000, flush_interval_ms: int = 200, max_bytes: int = 1 << 30,
        segment_bytes: int = 8 << 20, max_early: int = 100_000, retry_backoff_s: float = 0.2,
        max_backoff_s: float = 5.0, close_timeout_s: float = 10.0,
    ) -> None:  # fmt: skip
        if min(batch_size, flush_interval_ms, max_bytes, max_early) <= 0:
            raise ValueError("batch_size, flush_interval_ms, max_bytes and max_early must be positive")
        self._open_writer, self._stored_for = open_writer, stored
        self._wal_args = dict(directory=Path(wal_dir), max_bytes=max_bytes, segment_bytes=segment_bytes)
        self._batch_size, self._interval_s, self._max_early = batch_size, flush_interval_ms / 1000, max_early
        self._backoff_s, self._max_backoff_s, self._close_timeout_s = retry_backoff_s, max_backoff_s, close_timeout_s
        self._zero_cost = wire.zero_cost_field()
        self._early: deque[usage_pb2.UsageEvent] = deque()  # emitted before start(): written to the WAL by it
        self._wal: Wal | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = self._late_logged = False
        self._stopping = False  # read by the flusher: ship what it can, then exit
        self._deadline = 0.0  # monotonic time the flusher gives up shipping at close
        # Producer-owned (event-loop thread)
        self.emitted = self.spooled = 0
        self._overflow = self._lost = 0
        # Flusher-owned
        self.written = self.replayed = self.failed_batches = self._rejected = 0

    @classmethod
    def from_dsn(cls, dsn: str, wal_dir: Path, *, database: str = DEFAULT_DATABASE, ttl_days: int = DEFAULT_TTL_DAYS,
                 **kwargs: int | float) -> WalClickHouseSink:  # fmt: skip
        """Sink writing to ClickHouse at `dsn` (e.g. chdb:///abs/dir) through a WAL in `wal_dir`."""
        opener = functools.partial(open_clickhouse, dsn, database=database, ttl_days=ttl_days)

        def stored(writer: BatchWriter) -> StoredIds:
            assert isinstance(writer, ClickHouseWriter)
            return functools.partial(stored_ids, writer)

        return cls(opener, wal_dir, stored=stored, **kwargs)  # type: ignore[arg-type]

    @property
    def dropped(self) -> int:
        return self._overflow + self._lost + self._rejected

    @property
    def spool_empty(self) -> bool:
        """Every record in the WAL is in ClickHouse."""
        return self._wal is None or self._wal.empty

    async def start(self) -> None:
        """Open (and recover) the WAL, open the writer (connect + migrate), start flushing.
        Raises OSError (unusable WAL dir) or IngestError."""
        if self._thread is not None or self._closed:
            return
        wal = await asyncio.to_thread(lambda: Wal(**self._wal_args))  # type: ignore[arg-type]
        try:
            writer = await asyncio.to_thread(self._open_writer)
        except BaseException:
            wal.close()
            raise
        recovered = self._adopt(wal)
        self._thread = threading.Thread(target=self._run, args=(writer, recovered), name="usage-sink-wal", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Stop taking events, ship what ClickHouse takes within close_timeout_s (the rest stays in the WAL),
        then close the writer and the WAL. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            if self._early:
                log.error("usage sink closed before start(): dropped %d buffered events", len(self._early))
            self._overflow += len(self._early)
            self._early.clear()
            return
        self._deadline = time.monotonic() + self._close_timeout_s
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)
        log.log(logging.ERROR if self.dropped else logging.INFO,
                "usage sink closed: emitted=%d written=%d dropped=%d spooled=%d replayed=%d failed_batches=%d "
                "left in the WAL=%d bytes", self.emitted, self.written, self.dropped, self.spooled, self.replayed,
                self.failed_batches, self.spool_bytes)  # fmt: skip

    # ---- flusher thread -------------------------------------------------

    def _run(self, writer: BatchWriter, recovered: Cursor) -> None:
        wal = self._wal
        assert wal is not None
        stored = self._stored_for(writer)
        try:
            while True:
                self._wake.wait(self._interval_s)
                self._wake.clear()
                # Read before shipping: every emit() preceding close() has already written to the WAL.
                stopping = self._stopping
                try:
                    self._ship(wal, writer, stored, recovered)
                    wal.sync()
                except Exception:  # the flusher must survive anything, or usage silently stops
                    log.exception("usage sink flusher error")
                if stopping:
                    return
        finally:
            try:
                writer.close()
            except IngestError as exc:
                log.warning("usage sink: closing the writer failed: %s", exc)
            wal.close()

    def _ship(self, wal: Wal, writer: BatchWriter, stored: StoredIds, recovered: Cursor) -> None:
        backoff = self._backoff_s
        while not wal.empty:
            cursor = wal.cursor
            replay = cursor < recovered
            values, nxt = wal.read_from(cursor, max_records=self._batch_size, limit=recovered if replay else None)
            pairs = []
            for v in values:
                try:
                    pairs.append((usage_pb2.UsageEvent.FromString(v), v))
                except DecodeError:  # CRC-checked, so written that way: nothing to insert
                    self._rejected += 1
            if pairs and replay:
                # Inserted just before a crash, before the ack: already there, not to be counted twice.
                have = stored([e.event_id for e, _ in pairs])
                pairs = [(e, v) for e, v in pairs if e.event_id not in have]
            # ClickHouse decodes the WAL bytes itself (ingest.wire): little Python on this thread, so
            # little GIL taken from the event loop; the rare event needing rounding goes through rows.
            raw: list[bytes] = []
            rows: list[usage_pb2.UsageEvent] = []
            for e, v in pairs:
                w = wire.wire_value(e, v, self._zero_cost)
                if w is None:
                    rows.append(e)
                else:
                    raw.append(w)
            token = f"wal:{cursor.segment}:{cursor.offset}"
            while True:
                try:
                    if raw:
                        writer.insert_wire(raw, dedup_token=token + ":w")
                    raw = []  # landed: a retry of the rows part must not resend it
                    accepted_rows = writer.insert_events(rows, dedup_token=token + ":r") if rows else 0
                except Exception as exc:  # IngestError or anything: the batch stays in the WAL
                    self.failed_batches += 1
                    if self._stopping and time.monotonic() >= self._deadline:
                        log.error("usage sink: leaving %d events in the WAL at close: %s", len(pairs), exc)
                        return
                    log.warning("usage sink: insert of %d events failed, kept in the WAL: %s", len(pairs), exc)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)
                    continue
                break
            wal.ack(nxt)
            self.written += len(pairs) - len(rows) + accepted_rows
            self._rejected += len(rows) - accepted_rows  # invalid: the writer logged why
            self.replayed += (len(pairs) - len(rows) + accepted_rows) if replay else 0
            backoff = self._backoff_s
