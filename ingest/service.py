"""The ingest loop: Kafka usage topic -> ClickHouse usage_events, exactly once in effect.

Two tasks share one consumer (group member, manual commits, read_committed):
the *poller* fetches into per-partition buffers, cuts deterministic batches
(ingest.consumer) onto a small queue and pauses partitions whose buffer is full
(bounded memory while ClickHouse is slow or down); the *writer* takes batches
in order and for each: commits its intent, inserts it in a worker thread with
`dedup_token` = topic:partition:first-last (retrying the same batch with backoff,
never skipping), sends poison records to the DLQ with the reason in a header,
and only then commits last+1. A crash anywhere replays a batch that ClickHouse
drops (same token) or, after a rebalance re-cut it, collapses by event_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from ingest import consumer as kc
from ingest import gc_policy
from ingest.clickhouse_writer import IngestError
from ingest.consumer import PartitionBatch, PartitionBuffers, RebalanceHandler, Record
from ingest.stats import IngestStats
from interlock_contracts.settings.ingest import IngestSettings
from interlock_contracts.v1 import usage_pb2

log = logging.getLogger(__name__)

# ClickHouse error codes meaning the server cannot take raw protobuf inserts at all:
# UNKNOWN_SETTING (format_schema_source is newer than the server), UNKNOWN_FORMAT.
WIRE_UNSUPPORTED = frozenset({115, 73})


class EventWriter(Protocol):  # ClickHouseWriter, or a test double wrapping it
    def insert_events(self, events: Sequence[usage_pb2.UsageEvent], *, dedup_token: str | None = None) -> int: ...

    def insert_wire(self, values: Sequence[bytes], *, dedup_token: str | None = None) -> int: ...


@dataclass
class Hooks:
    """Fault injection for tests: called in the writer after the insert, before the commit."""

    after_insert: Callable[[PartitionBatch], None] | None = None


class IngestService:
    def __init__(
        self, settings: IngestSettings, writer: EventWriter, *, ping: Callable[[], object] | None = None,
        hooks: Hooks | None = None, max_backoff_s: float = 5.0, queue_batches: int = 4, tune_gc: bool = True,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.stats = IngestStats()
        self._writer, self._ping, self._hooks = writer, ping, hooks or Hooks()
        self._max_backoff_s = max_backoff_s
        self._tune_gc = tune_gc  # process-wide while run() runs: see ingest.gc_policy
        self._wire = True  # raw protobuf inserts (ingest.wire) until the server proves it cannot
        self._buffers = PartitionBuffers(settings.batch_max, settings.batch_ms)
        self._queue: asyncio.Queue[PartitionBatch] = asyncio.Queue(maxsize=queue_batches)
        self._committed: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._inflight: PartitionBatch | None = None
        self._writer_idle = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self.started = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then flush what is buffered; raises if a task crashed."""
        s = self.settings
        self._admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
        self._producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=True)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=s.kafka_group, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=64 << 20, client_id="interlock-ingest",
        )  # fmt: skip
        scopes = contextlib.ExitStack()
        try:
            await self._admin.start()
            if s.kafka_topic not in set(await self._admin.list_topics()):
                # Kafka's own "Topic ... not found" says nothing about whose job the topic is
                log.warning("topic %s does not exist: create it (and its DLQ) with `interlock kafka init "
                            "--partitions N` (N = the most ingest replicas you will run); consuming once it exists",
                            s.kafka_topic)
            await self._producer.start()
            self._consumer.subscribe([s.kafka_topic], listener=RebalanceHandler(self.on_revoked, self.on_assigned))
            await self._consumer.start()
            scopes.enter_context(gc_policy.tuned_gc(self._tune_gc))  # after start-up: its objects get frozen
            self.started.set()
            poller = asyncio.create_task(self._poll_loop(stop), name="ingest-poller")
            writer = asyncio.create_task(self._write_loop(), name="ingest-writer")
            done, _ = await asyncio.wait([poller, writer], return_when=asyncio.FIRST_COMPLETED)
            if writer in done:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
                writer.result()  # a crash surfaces here
            poller.result()
            await self._queue.join()  # poller stopped after cutting everything buffered
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        finally:
            scopes.close()
            for closer in (self._consumer.stop, self._producer.stop, self._admin.close):
                with contextlib.suppress(Exception):
                    await closer()

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        assert consumer is not None
        s = self.settings
        while not stop.is_set():
            self.stats.last_loop = time.monotonic()
            data = await consumer.getmany(timeout_ms=min(100, s.batch_ms), max_records=s.batch_max)
            for tp, records in data.items():
                self._buffers.add(tp, records)
                self.stats.consumed += len(records)
            await self._enqueue(force=False)
            self._backpressure()
            self._update_lag()
        await self._enqueue(force=True)

    async def _enqueue(self, *, force: bool) -> None:
        consumer = self._consumer
        assert consumer is not None
        while force or not self._queue.full():
            batches = self._buffers.cut(lambda tp: kc.fetch_position(consumer, tp), force=force)
            if not batches:
                break
            for batch in batches:
                await self._queue.put(batch)  # only blocks when flushing at shutdown
        self.stats.buffered = self._buffers.total()

    def _backpressure(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        owned = consumer.assignment()
        full = {tp for tp in owned if self._buffers.full(tp)}
        if full - self._paused:
            consumer.pause(*(full - self._paused))
        resume = (self._paused - full) & owned
        if resume:
            consumer.resume(*resume)
        self._paused = full

    def _update_lag(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        lag: dict[int, int] = {}
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            if end is not None:
                lag[tp.partition] = max(0, end - self._committed.get(tp, 0))
        self.stats.lag = lag

    def idle(self) -> bool:
        """Everything fetched so far is in ClickHouse and committed, and nothing is left to fetch."""
        return (
            self.started.is_set() and bool(self.stats.lag) and not any(self.stats.lag.values())
            and self._buffers.total() == 0 and self._queue.empty() and self._inflight is None
        )  # fmt: skip

    async def _write_loop(self) -> None:
        while True:
            try:
                batch = await asyncio.wait_for(self._queue.get(), timeout=5.0)
            except TimeoutError:
                await self._ping_clickhouse()
                continue
            self._inflight = batch
            self._writer_idle.clear()
            try:
                if self._current(batch):
                    await self._process(batch)
            finally:
                self._inflight = None
                self._writer_idle.set()
                self._queue.task_done()

    def _current(self, batch: PartitionBatch) -> bool:  # False once its partition was revoked
        return batch.epoch == self._buffers.epoch(batch.tp)

    async def _process(self, batch: PartitionBatch) -> None:
        started = time.monotonic()
        await self._process_batch(batch)
        self.stats.batch_seconds.observe((), time.monotonic() - started)

    async def _process_batch(self, batch: PartitionBatch) -> None:
        if not await self._commit(batch, batch.first, kc.encode_intent(batch.last)):
            return  # partition lost: the new owner reads nothing of ours but this intent
        decoded = await asyncio.to_thread(kc.decode_records, batch.records)
        self.stats.duplicates += decoded.duplicates
        poison = list(decoded.poison)
        inserted = await self._insert(batch, decoded)
        if inserted is None:
            return
        if inserted < len(decoded.events):
            poison.extend(await asyncio.to_thread(kc.find_rejected, decoded))
        if poison and not await self._dead_letter(batch, poison):
            return
        if self._hooks.after_insert is not None:
            self._hooks.after_insert(batch)
        if await self._commit(batch, batch.last + 1, ""):
            self.stats.batches += 1

    async def _retrying(self, what: str, batch: PartitionBatch, attempt: Callable[[], object]) -> bool:
        """Await `attempt()` until it succeeds (True) or the batch goes stale after a revocation (False)."""
        backoff = 0.05
        while True:
            try:
                result = attempt()
                if asyncio.iscoroutine(result):
                    await result
                return True
            except Exception as exc:  # IngestError, KafkaError, anything: never skip the batch
                if isinstance(exc, CommitFailedError):
                    log.warning("ingest: %s for %s: partition revoked (%s)", what, batch.dedup_token, exc)
                    return False
                self.stats.errors += 1
                self.stats.last_error = f"{what}: {exc}"
                log.warning("ingest: %s for %s failed (retrying in %.2fs): %s", what, batch.dedup_token, backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)
            if not self._current(batch):
                return False

    def _write(self, batch: PartitionBatch, decoded: kc.Decoded) -> int:
        """One insert of the batch: ClickHouse decodes the values itself when it can, else Python rows."""
        token = batch.dedup_token
        if decoded.wire is not None and self._wire:
            try:
                n = self._writer.insert_wire(decoded.wire, dedup_token=token)
                self.stats.wire_batches += 1
                return n
            except IngestError as exc:
                if exc.retryable:
                    raise
                # Deterministic refusal (a server without inline schemas, a decoder disagreement):
                # the row path inserts the same events in the same order under the same token.
                self.stats.wire_fallbacks += 1
                self.stats.last_error = f"wire insert: {exc}"
                log.warning("ingest: raw protobuf insert of %s refused, inserting rows instead: %s", token, exc)
                if exc.code in WIRE_UNSUPPORTED:
                    log.warning("ingest: this ClickHouse cannot decode inline protobuf schemas; rows from now on")
                    self._wire = False
        return self._writer.insert_events(decoded.events, dedup_token=token)

    async def _insert(self, batch: PartitionBatch, decoded: kc.Decoded) -> int | None:
        if not decoded.events:
            return 0
        box: list[int] = []

        async def attempt() -> None:
            box.append(await asyncio.to_thread(self._write, batch, decoded))

        if not await self._retrying("insert", batch, attempt):
            return None
        self.stats.inserted += box[-1]
        self.stats.last_insert_wall = time.time()
        self.stats.last_ok = time.monotonic()
        return box[-1]

    async def _dead_letter(self, batch: PartitionBatch, poison: list[tuple[Record, str]]) -> bool:
        producer = self._producer
        assert producer is not None

        async def attempt() -> None:
            futs = [await producer.send(self.settings.dead_letter_topic, rec.value, key=rec.key,
                                        headers=kc.dlq_headers(rec, why)) for rec, why in poison]  # fmt: skip
            await asyncio.gather(*futs)

        if not await self._retrying("dead-letter", batch, attempt):
            return False
        self.stats.dlq += len(poison)
        return True

    async def _commit(self, batch: PartitionBatch, offset: int, metadata: str) -> bool:
        consumer = self._consumer
        assert consumer is not None
        offsets = {batch.tp: OffsetAndMetadata(offset, metadata)}
        if not await self._retrying("commit", batch, lambda: consumer.commit(offsets)):
            return False
        self._committed[batch.tp] = offset
        return True

    async def _ping_clickhouse(self) -> None:
        if self._ping is None or time.monotonic() - self.stats.last_ok < 5.0:
            return
        try:
            await asyncio.to_thread(self._ping)
            self.stats.last_ok = time.monotonic()
        except Exception as exc:
            self.stats.errors += 1
            self.stats.last_error = f"ping: {exc}"

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._buffers.revoke(revoked)  # queued batches of these partitions are now stale
        self._paused -= revoked
        inflight = self._inflight
        if inflight is not None and inflight.tp in revoked:
            # give the in-flight batch a moment to commit; if not, its intent lets the next owner redo it exactly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writer_idle.wait(), timeout=10.0)
        for tp in revoked:
            self._committed.pop(tp, None)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if not assigned or self._admin is None:
            return
        try:
            committed = await self._admin.list_consumer_group_offsets(self.settings.kafka_group,
                                                                      partitions=sorted(assigned))  # fmt: skip
        except KafkaError as exc:  # without the intent a replay is re-cut: still collapsed by event_id
            log.warning("ingest: cannot read committed intents: %s", exc)
            return
        for tp, meta in committed.items():
            if meta is None or meta.offset < 0:
                continue
            self._committed[tp] = meta.offset
            last = kc.parse_intent(meta.metadata)
            if last is not None:
                log.info("ingest: %s:%d replays in-flight batch %d-%d", tp.topic, tp.partition, meta.offset, last)
                self._buffers.set_replay(tp, last)
