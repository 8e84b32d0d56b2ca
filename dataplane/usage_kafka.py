"""KafkaUsageSink: every UsageEvent to Kafka, through a durable local spool when Kafka is slow or down.

emit() appends to a deque (O(1), never blocks or raises; call it on the loop thread).
The *sender*, in direct mode, sends batches (idempotent, acks=all, key event_id)
and spools what Kafka does not ack within send_timeout_s, ending direct mode. The
*spooler* moves the deque into the spool (fsync'd, on a one-thread executor: the
loop never touches the disk) when not direct or over spool_threshold. The
*replayer* connects (retrying: start() never fails on a Kafka outage) and drains
the spool in order, then resumes direct mode, so replay stays ahead of live events.

At least once (a timed-out send may land later; a retry waits on it, but a crash
can duplicate): ingest dedupes by event_id, the key, so every copy lands in one
partition and load spreads evenly (key_id would pile a busy key onto one).
A full spool drops, counted in `dropped` and logged at ERROR at most once per
log_interval_s: blocking would stall requests. close() flushes what Kafka takes
within close_timeout_s and spools the rest. Counters: emitted, written (acked by
Kafka, replays included), dropped, failed_batches, spooled, replayed.
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

from dataplane.spool import Cursor, Spool
from interlock.v1 import usage_pb2

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "interlock.usage.v1"
Record = tuple[bytes, bytes]  # (key, value)
Fut = asyncio.Future[Any]


def _record(event: usage_pb2.UsageEvent) -> Record:
    return event.event_id.encode(), event.SerializeToString()


def _key(value: bytes) -> bytes:
    try:
        return usage_pb2.UsageEvent.FromString(value).event_id.encode()
    except DecodeError:  # CRC-checked, so written that way: send it on, the ingest stage rejects it
        return b""


def _acked(fut: Fut | None) -> bool:
    return fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None


class KafkaUsageSink:
    def __init__(
        self, bootstrap: str, spool_dir: Path, *, topic: str = DEFAULT_TOPIC, spool_max_bytes: int = 1 << 30,
        spool_segment_bytes: int = 8 << 20, batch_size: int = 500, linger_ms: int = 20, max_buffer: int = 100_000,
        spool_threshold: int = 10_000, send_timeout_s: float = 5.0, close_timeout_s: float = 5.0,
        max_backoff_s: float = 5.0, log_interval_s: float = 10.0, compression_type: str | None = "gzip",
        client_id: str = "interlock-dataplane",
    ) -> None:  # fmt: skip
        if min(batch_size, linger_ms, max_buffer, spool_threshold, spool_max_bytes) <= 0:
            raise ValueError("batch_size, linger_ms, max_buffer, spool_threshold and spool_max_bytes must be positive")
        self._producer_kwargs: dict[str, Any] = dict(
            bootstrap_servers=bootstrap, client_id=client_id, acks="all", enable_idempotence=True,
            compression_type=compression_type, linger_ms=linger_ms, max_batch_size=512 * 1024,
            request_timeout_ms=int(send_timeout_s * 1000),
        )  # fmt: skip
        self._spool_args: dict[str, Any] = dict(directory=Path(spool_dir), max_bytes=spool_max_bytes,
                                                segment_bytes=spool_segment_bytes)  # fmt: skip
        self._topic, self._batch_size, self._linger_s = topic, batch_size, linger_ms / 1000
        self._max_buffer, self._spool_threshold, self._log_interval_s = max_buffer, spool_threshold, log_interval_s
        self._send_timeout_s, self._close_timeout_s, self._max_backoff_s = send_timeout_s, close_timeout_s, max_backoff_s
        self._buf: deque[usage_pb2.UsageEvent] = deque()
        self._wake = asyncio.Event()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-spool")
        self._spool: Spool | None = None
        self._producer: AIOKafkaProducer | None = None  # set by the replayer once connected
        self._tasks: list[asyncio.Task[None]] = []
        self._limbo: dict[bytes, Fut] = {}  # spooled events whose timed-out send is still pending
        self._direct = False
        self._append_seq = 0  # spool appends submitted; lets the replayer tell "empty" is still true
        self._closed = self._late_logged = self._stopping = False
        self._last_report, self._lost_reported = 0.0, 0
        self.emitted = self.written = self.failed_batches = self.spooled = self.replayed = 0
        self._overflow = self._lost = 0  # emit-side drops (buffer full, after close); spool full
        self.spool_empty = True

    @property
    def dropped(self) -> int:
        return self._overflow + self._lost

    @property
    def direct(self) -> bool:
        """Live events go straight to Kafka (connected, spool drained)."""
        return self._direct

    def emit(self, event: usage_pb2.UsageEvent) -> None:
        self.emitted += 1
        buf = self._buf
        if self._closed or len(buf) >= self._max_buffer:
            self._overflow += 1
            if self._closed and not self._late_logged:
                self._late_logged = True  # once: emit is on the hot path
                log.error("usage event emitted after the sink closed: dropped, as will be every later one")
            return
        buf.append(event)
        if len(buf) == 1 or len(buf) == self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        """Open (and recover) the spool, then start the background tasks. Raises OSError for an unusable spool dir;
        a Kafka outage does not raise (events spool until Kafka is reachable)."""
        if self._spool is not None or self._closed:
            return
        self._spool = await self._run_io(Spool, **self._spool_args)
        self.spool_empty = self._spool.empty
        self._tasks = [asyncio.create_task(self._guard(fn)) for fn in (self._sender, self._spooler, self._replayer)]

    async def _guard(self, loop_fn: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop until it returns; a bug restarts it rather than silently stopping usage."""
        while True:
            try:
                return await loop_fn()
            except Exception:
                log.exception("usage kafka: %s failed; restarting it", loop_fn.__name__)
                await asyncio.sleep(1.0)

    async def _run_io(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, lambda: fn(*args, **kwargs))

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
        except Exception as exc:  # KafkaError, TimeoutError, anything: the records stay ours to spool
            log.debug("usage kafka: send failed: %r", exc)
        for f in futs:
            if f is not None and not f.done():
                f.add_done_callback(lambda g: g.cancelled() or g.exception())  # a late failure: already spooled
        if not all(_acked(f) for f in futs):
            self.failed_batches += 1
        return futs

    async def _connect(self) -> bool:
        producer = AIOKafkaProducer(**self._producer_kwargs)
        try:
            await producer.start()
            self._producer = producer
            return True
        except Exception as exc:
            log.warning("usage kafka: cannot connect to %s: %s", self._producer_kwargs["bootstrap_servers"], exc)
        with contextlib.suppress(Exception):
            await producer.stop()
        return False

    async def _sender(self) -> None:
        while not self._stopping:
            if not self._buf or not self._direct:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._linger_s * 5)
                continue
            await asyncio.sleep(self._linger_s)  # only this task ends direct mode: still direct here
            buf = self._buf
            batch = [buf.popleft() for _ in range(min(self._batch_size, len(buf)))]
            futs = await self._deliver([_record(e) for e in batch], self._send_timeout_s, [])
            self.written += sum(map(_acked, futs))
            failed = [e for e, f in zip(batch, futs, strict=True) if not _acked(f)]
            if len(self._limbo) > self._max_buffer:
                self._limbo.clear()  # bounded: losing it only risks a duplicate
            for e, f in zip(batch, futs, strict=True):
                if f is not None and not f.done():  # may still land: the replayer waits on it before resending
                    self._limbo[e.event_id.encode()] = f
            if failed:
                self._direct = False
                log.warning("usage kafka: %d of %d events not acknowledged: spooling", len(failed), len(batch))
                await self._append(failed)

    async def _spooler(self) -> None:
        while True:
            stopping = self._stopping
            self._report_drops()
            if self._buf and (not self._direct or len(self._buf) > self._spool_threshold):
                await self._append([self._buf.popleft() for _ in range(min(10 * self._batch_size, len(self._buf)))])
                continue
            if stopping:
                return
            await asyncio.sleep(self._linger_s)

    async def _append(self, events: list[usage_pb2.UsageEvent]) -> None:
        spool = self._spool
        assert spool is not None  # background tasks run after start()
        self._append_seq += 1
        self.spool_empty = False
        try:
            n = await self._run_io(lambda: spool.append([e.SerializeToString() for e in events]))
        except Exception:
            log.exception("usage kafka: spool append failed")
            n = 0
        self.spooled += n
        self._lost += len(events) - n

    async def _replayer(self) -> None:
        spool = self._spool
        assert spool is not None
        backoff = 0.1
        batch: tuple[list[Record], Cursor, list[Fut | None]] | None = None
        while True:
            if self._producer is None and not await self._connect():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            if batch is None:
                seq = self._append_seq
                values, cursor = await self._run_io(lambda: spool.read_from(spool.cursor, max_records=self._batch_size))
                if not values:
                    if seq == self._append_seq:
                        self.spool_empty = True
                        if not self._direct:
                            self._direct = True
                            log.info("usage kafka: spool drained, sending directly")
                    await asyncio.sleep(self._linger_s * 5)
                    continue
                records: list[Record] = await self._run_io(lambda vs: [(_key(v), v) for v in vs], values)
                batch = (records, cursor, [self._limbo.pop(k, None) for k, _ in records])
            records, cursor, prior = batch
            futs = await self._deliver(records, self._send_timeout_s, prior)
            if all(map(_acked, futs)):
                await self._run_io(spool.ack, cursor)
                self.written += len(records)
                self.replayed += len(records)
                backoff, batch = 0.1, None
            else:  # keep the batch and its pending sends: a retry resends only what failed
                batch = (records, cursor, futs)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    def _report_drops(self) -> None:
        now = time.monotonic()
        if self.dropped > self._lost_reported and now - self._last_report >= self._log_interval_s:
            log.error("usage kafka: dropped %d events since last report (%d in total; spool full or buffer over %d)",
                      self.dropped - self._lost_reported, self.dropped, self._max_buffer)  # fmt: skip
            self._lost_reported, self._last_report = self.dropped, now

    async def close(self) -> None:
        """Stop taking events, flush to Kafka what it acknowledges within close_timeout_s, spool the rest. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._spool is None:
            if self._buf:
                log.error("usage kafka sink closed before start(): dropped %d buffered events", len(self._buf))
            self._overflow += len(self._buf)
            self._buf.clear()
            return self._io.shutdown(wait=False)
        self._stopping = True
        self._wake.set()
        self._tasks[2].cancel()  # the replayer; the sender and spooler finish their step and return:
        await asyncio.wait(self._tasks)  # bounded by send_timeout_s and the disk
        leftover = list(self._buf)
        self._buf.clear()
        if leftover and self._direct:
            futs = await self._deliver([_record(e) for e in leftover], self._close_timeout_s, [])
            self.written += sum(map(_acked, futs))
            leftover = [e for e, f in zip(leftover, futs, strict=True) if not _acked(f)]
        self._limbo.clear()
        if leftover:
            await self._append(leftover)
        try:
            if self._producer is not None:
                await asyncio.wait_for(self._producer.stop(), self._close_timeout_s)
        except Exception as exc:
            log.warning("usage kafka: producer did not stop cleanly: %r", exc)
        await self._run_io(self._spool.close)
        self._io.shutdown(wait=True)
        log.log(logging.ERROR if self.dropped else logging.INFO,
                "usage kafka sink closed: emitted=%d written=%d dropped=%d spooled=%d replayed=%d failed_batches=%d",
                self.emitted, self.written, self.dropped, self.spooled, self.replayed, self.failed_batches)  # fmt: skip
