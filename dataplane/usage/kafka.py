"""KafkaUsageSink: every UsageEvent to Kafka, write-ahead: in the local WAL before emit() returns.

emit() (event-loop thread, after the response was sent) serializes the event and
appends it to the active WAL segment with one os.write (dataplane.durable.wal: page
cache, microseconds, no fsync, no lock), so a request the client saw succeed
survives a SIGKILL of the process. Never blocks or raises: a full WAL
(`spool_max_bytes`, e.g. Kafka down for long) drops the event, counted in
`dropped` and logged at ERROR at most once per log_interval_s.

The *shipper* connects (retrying: start() never fails on a Kafka outage), reads
records from the WAL files (own fds, on a reader thread), sends them (idempotent,
acks=all, key event_id) and acks the WAL cursor, deleting shipped segments; a
failed batch is retried, reusing sends still pending, so Kafka down means the
WAL simply grows. The *syncer* fsyncs the WAL every sync_interval_ms on its own
thread: a machine crash (not a process crash) loses at most that window.

At least once (a resend after a timeout or a restart can duplicate): ingest
dedupes by event_id, the key. close() ships what Kafka takes within
close_timeout_s; the rest stays in the WAL for the next start. Counters:
emitted, written (acked by Kafka), dropped, failed_batches, spooled (appended to
the WAL), replayed (shipped records a previous process wrote).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from google.protobuf.message import DecodeError

from dataplane.durable.wal import Cursor, Wal
from dataplane.usage.wal_front import WalFront
from interlock_contracts.v1 import usage_pb2

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "interlock.usage.v1"
Record = tuple[bytes, bytes]  # (key, value)
Fut = asyncio.Future[Any]


def _key(value: bytes) -> bytes:
    try:
        return usage_pb2.UsageEvent.FromString(value).event_id.encode()
    except DecodeError:  # CRC-checked, so written that way: send it on, the ingest stage rejects it
        return b""


def _acked(fut: Fut | None) -> bool:
    return fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None


class KafkaUsageSink(WalFront):
    def __init__(
        self, bootstrap: str, spool_dir: Path, *, topic: str = DEFAULT_TOPIC, spool_max_bytes: int = 1 << 30,
        spool_segment_bytes: int = 8 << 20, batch_size: int = 1000, linger_ms: int = 5, max_buffer: int = 100_000,
        sync_interval_ms: int = 100, send_timeout_s: float = 5.0, close_timeout_s: float = 5.0,
        max_backoff_s: float = 5.0, log_interval_s: float = 10.0, compression_type: str | None = "gzip",
        client_id: str = "interlock-dataplane",
    ) -> None:  # fmt: skip
        if min(batch_size, linger_ms, max_buffer, sync_interval_ms, spool_max_bytes) <= 0:
            raise ValueError("batch_size, linger_ms, max_buffer, sync_interval_ms and spool_max_bytes must be positive")
        self._producer_kwargs: dict[str, Any] = dict(
            bootstrap_servers=bootstrap, client_id=client_id, acks="all", enable_idempotence=True,
            compression_type=compression_type, linger_ms=linger_ms, max_batch_size=512 * 1024,
            request_timeout_ms=int(send_timeout_s * 1000),
        )  # fmt: skip
        self._wal_args: dict[str, Any] = dict(directory=Path(spool_dir), max_bytes=spool_max_bytes,
                                              segment_bytes=spool_segment_bytes)  # fmt: skip
        self._topic, self._batch_size, self._linger_s = topic, batch_size, linger_ms / 1000
        self._max_early, self._sync_s, self._log_interval_s = max_buffer, sync_interval_ms / 1000, log_interval_s
        self._send_timeout_s, self._close_timeout_s = send_timeout_s, close_timeout_s
        self._max_backoff_s = max_backoff_s
        self._early: deque[usage_pb2.UsageEvent] = deque()  # emitted before start(): written to the WAL by it
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set by the shipper whenever it finds the WAL fully acked
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-wal-read")
        self._syncer_io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-wal-sync")
        self._wal: Wal | None = None
        self._producer: AIOKafkaProducer | None = None  # set by the shipper once connected
        self._tasks: list[asyncio.Task[None]] = []
        self._healthy = False  # the last delivery (or the connect) succeeded
        self._closed = self._late_logged = self._stopping = False
        self._last_report, self._lost_reported, self._errors_logged = 0.0, 0, 0
        self.emitted = self.written = self.failed_batches = self.spooled = self.replayed = 0
        self._overflow = self._lost = 0  # emit-side drops (before start, after close); WAL full or failing

    @property
    def dropped(self) -> int:
        return self._overflow + self._lost

    @property
    def direct(self) -> bool:
        """Connected, and the last delivery succeeded: events reach Kafka as they are emitted."""
        return self._producer is not None and self._healthy

    @property
    def spool_empty(self) -> bool:
        """Every record in the WAL was acked by Kafka."""
        return self._wal is None or self._wal.empty

    def _spooled_one(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    async def start(self) -> None:
        """Open (and recover) the WAL, then start shipping. Raises OSError for an unusable spool dir;
        a Kafka outage does not raise (events accumulate in the WAL until Kafka is reachable)."""
        if self._wal is not None or self._closed:
            return
        wal: Wal = await asyncio.get_running_loop().run_in_executor(self._reader, lambda: Wal(**self._wal_args))
        recovered = self._adopt(wal)
        self._tasks = [asyncio.create_task(self._guard(self._shipper, recovered)),
                       asyncio.create_task(self._guard(self._syncer))]  # fmt: skip

    async def _guard(self, loop_fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a background loop until it returns; a bug restarts it rather than silently stopping usage."""
        while True:
            try:
                return await loop_fn(*args)
            except Exception:
                log.exception("usage kafka: %s failed; restarting it", loop_fn.__name__)
                await asyncio.sleep(1.0)

    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)

    async def _deliver(self, records: Sequence[Record], timeout_s: float, prior: list[Fut | None]) -> list[Fut | None]:
        """Each record's send future (None: never sent), reusing `prior` sends not failed (no duplicate per retry)."""
        futs: list[Fut | None] = list(prior) if prior else [None] * len(records)
        producer = self._producer
        if producer is None:
            return futs
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                for i, (key, value) in enumerate(records):
                    f = futs[i]
                    if f is None or (f.done() and not _acked(f)):
                        futs[i] = await producer.send(self._topic, value, key=key)
            pending = [f for f in futs if f is not None and not f.done()]
            if pending:
                await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
        except Exception as exc:  # KafkaError, TimeoutError, anything: the records stay in the WAL
            log.debug("usage kafka: send failed: %r", exc)
        for f in futs:
            if f is not None and not f.done():
                f.add_done_callback(lambda g: g.cancelled() or g.exception())  # a late failure: retried anyway
        if not all(_acked(f) for f in futs):
            self.failed_batches += 1
        return futs

    async def _connect(self) -> bool:
        producer = AIOKafkaProducer(**self._producer_kwargs)
        try:
            await producer.start()
            self._producer, self._healthy = producer, True
            return True
        except Exception as exc:
            log.warning("usage kafka: cannot connect to %s: %s", self._producer_kwargs["bootstrap_servers"], exc)
        with contextlib.suppress(Exception):
            await producer.stop()
        return False

    def _read_batch(self, cursor: Cursor, limit: Cursor | None) -> tuple[list[Record], Cursor]:
        assert self._wal is not None
        values, nxt = self._wal.read_from(cursor, max_records=self._batch_size, limit=limit)
        return [(_key(v), v) for v in values], nxt

    async def _shipper(self, recovered: Cursor) -> None:
        """WAL -> Kafka, in order: read a batch, deliver it (retrying what failed), ack it, repeat."""
        wal = self._wal
        assert wal is not None  # background tasks run after start()
        backoff = 0.1
        batch: tuple[list[Record], Cursor, list[Fut | None], bool] | None = None
        while not self._stopping:
            if self._producer is None and not await self._connect():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            if batch is None:
                cursor = wal.cursor
                if wal.empty:
                    self._drained.set()
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 0.5)
                    await asyncio.sleep(self._linger_s)  # let a batch gather
                    continue
                limit = recovered if cursor < recovered else None  # replay stops at the recovered end: counted
                records, nxt = await self._read(self._read_batch, cursor, limit)
                if not records:  # only corrupt bytes: skip them
                    await self._read(wal.ack, nxt)
                    continue
                batch = (records, nxt, [], limit is not None)
            records, nxt, prior, replay = batch
            futs = await self._deliver(records, self._send_timeout_s, prior)
            if all(map(_acked, futs)):
                await self._read(wal.ack, nxt)
                self.written += len(records)
                self.replayed += len(records) if replay else 0
                backoff, batch, self._healthy = 0.1, None, True
            else:  # keep the batch and its pending sends: a retry resends only what failed
                if self._healthy:
                    log.warning("usage kafka: %d events not acknowledged: keeping them in the WAL", len(records))
                batch, self._healthy = (records, nxt, futs, replay), False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    async def _syncer(self) -> None:
        wal = self._wal
        assert wal is not None
        loop = asyncio.get_running_loop()
        while True:
            stopping = self._stopping
            try:
                await loop.run_in_executor(self._syncer_io, wal.sync)
            except OSError as exc:
                log.error("usage kafka: WAL sync failed: %s", exc)
            self._report_drops()
            if stopping:
                return
            await asyncio.sleep(self._sync_s)

    def _report_drops(self) -> None:
        now = time.monotonic()
        errors = self._wal.write_errors if self._wal is not None else 0
        if self.dropped > self._lost_reported and now - self._last_report >= self._log_interval_s:
            log.error("usage kafka: dropped %d events since last report (%d in total; WAL full or %d write errors)",
                      self.dropped - self._lost_reported, self.dropped, errors)  # fmt: skip
            self._lost_reported, self._last_report = self.dropped, now

    async def close(self) -> None:
        """Stop taking events, ship what Kafka acks within close_timeout_s; the rest stays in the WAL. Idempotent."""
        if self._closed:
            return
        self._closed = True
        wal = self._wal
        if wal is None:
            if self._early:
                log.error("usage kafka sink closed before start(): dropped %d buffered events", len(self._early))
            self._overflow += len(self._early)
            self._early.clear()
            self._reader.shutdown(wait=False)
            self._syncer_io.shutdown(wait=False)
            return
        self._drained.clear()
        if self.direct and not wal.empty:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self._close_timeout_s)
        self._stopping = True
        self._wake.set()
        _, late = await asyncio.wait(self._tasks, timeout=self._send_timeout_s + 1.0)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        try:
            if self._producer is not None:
                await asyncio.wait_for(self._producer.stop(), self._close_timeout_s)
        except Exception as exc:
            log.warning("usage kafka: producer did not stop cleanly: %r", exc)
        self._syncer_io.shutdown(wait=True)
        await self._read(wal.close)  # after any read or ack still running there
        self._reader.shutdown(wait=True)
        self._report_drops()
        log.log(logging.ERROR if self.dropped else logging.INFO,
                "usage kafka sink closed: emitted=%d written=%d dropped=%d spooled=%d replayed=%d failed_batches=%d",
                self.emitted, self.written, self.dropped, self.spooled, self.replayed, self.failed_batches)  # fmt: skip
