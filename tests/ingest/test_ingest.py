"""Ingest service against a REAL Kafka broker and embedded chDB: exactly once in effect."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from ingest.clickhouse_writer import ClickHouseWriter, IngestError, open_clickhouse
from ingest.consumer import PartitionBatch
from ingest.health import HealthServer
from ingest.service import Hooks, IngestService
from interlock_contracts.settings.ingest import IngestSettings
from interlock_contracts.v1 import usage_pb2
from tests.fixtures.kafka import KafkaBroker, create_topic, read_topic

pytestmark = pytest.mark.integration


def _event(i: int) -> usage_pb2.UsageEvent:
    return usage_pb2.UsageEvent(
        event_id=uuid.uuid4().hex, received_unix_us=int(time.time() * 1e6) + i, done_unix_us=int(time.time() * 1e6) + i,
        team_id=f"team-{i % 3}", key_id=f"key-{i % 7}", model="gpt-4o", provider="openai", status=200,
        input_tokens=10, output_tokens=5, cost_usd="0.001",
    )  # fmt: skip


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[ClickHouseWriter]:
    w = open_clickhouse(f"chdb://{tmp_path / 'ch'}")
    yield w
    w.close()


def _count(w: ClickHouseWriter, sql: str) -> int:
    return int(w.client.query(sql).result_rows[0][0])


async def _produce(bootstrap: str, topic: str, values: Sequence[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futs = [await producer.send(topic, v, key=k) for k, v in values]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def _settings(kafka: KafkaBroker, topic: str, **kw: int) -> IngestSettings:
    return IngestSettings(kafka_bootstrap=kafka.bootstrap, kafka_topic=topic, kafka_group=f"g-{topic}",
                          clickhouse_dsn="unused", batch_max=kw.get("batch_max", 50), batch_ms=kw.get("batch_ms", 200),
                          health_port=0)  # fmt: skip


async def _run_until_idle(service: IngestService, timeout_s: float = 60.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    deadline = time.monotonic() + timeout_s
    try:
        while not service.idle():
            if task.done():
                task.result()
            assert time.monotonic() < deadline, f"not idle after {timeout_s}s: {service.stats}"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await task


async def test_ingest_dedups_and_dead_letters(kafka: KafkaBroker, kafka_topic: str, writer: ClickHouseWriter) -> None:
    await create_topic(kafka.bootstrap, kafka_topic, 3)
    events = [_event(i) for i in range(400)]
    values = [(e.event_id.encode(), e.SerializeToString()) for e in events]
    values += values[:37]  # at-least-once producer redeliveries
    bad = usage_pb2.UsageEvent(event_id="no-time", cost_usd="0.1")  # decodes but events_to_batch rejects it
    values += [(b"poison", b"\xff\xff\xff not a protobuf"), (b"no-time", bad.SerializeToString())]
    await _produce(kafka.bootstrap, kafka_topic, values)

    settings = _settings(kafka, kafka_topic)
    service = IngestService(settings, writer, ping=lambda: writer.client.command("SELECT 1"))
    health = HealthServer(service.stats, "127.0.0.1", 0)
    await health.start()
    try:
        await _run_until_idle(service)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{health.port}/stats") as resp:
                metrics = await resp.json()
            async with http.get(f"http://127.0.0.1:{health.port}/healthz") as resp:
                assert resp.status in (200, 503)  # the loop has stopped by now; shape only
    finally:
        await health.close()

    assert _count(writer, "SELECT count() FROM interlock.usage_events FINAL") == 400
    assert _count(writer, "SELECT uniqExact(event_id) FROM interlock.usage_events") == 400
    assert metrics["consumed"] == 439 and metrics["dlq"] == 2 and metrics["lag_total"] == 0
    # ClickHouse decoded the clean batches itself; the batch holding `no-time` went through Python rows
    assert metrics["wire_batches"] >= 1 and metrics["wire_fallbacks"] == 0
    assert metrics["wire_batches"] < metrics["batches"]
    dlq = await read_topic(kafka.bootstrap, settings.dead_letter_topic, min_count=2)
    reasons = {r.key: dict(r.headers)["reason"].decode() for r in dlq}
    assert set(reasons) == {b"poison", b"no-time"}
    assert "undecodable" in reasons[b"poison"] and "received_unix_us" in reasons[b"no-time"]


class Crash(Exception):
    pass


async def test_crash_after_insert_before_commit_replays_exactly(
    kafka: KafkaBroker, kafka_topic: str, writer: ClickHouseWriter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.service")
    await create_topic(kafka.bootstrap, kafka_topic, 2)
    events = [_event(i) for i in range(300)]
    await _produce(kafka.bootstrap, kafka_topic, [(e.event_id.encode(), e.SerializeToString()) for e in events])
    settings = _settings(kafka, kafka_topic, batch_max=40, batch_ms=100)
    crashed: list[PartitionBatch] = []

    def after_insert(batch: PartitionBatch) -> None:
        if len(crashed) == 0 and batch.first > 0:  # mid-way: some batches already committed
            crashed.append(batch)
            raise Crash(batch.dedup_token)

    with pytest.raises(Crash):
        await _run_until_idle(IngestService(settings, writer, hooks=Hooks(after_insert=after_insert)))
    assert crashed
    await _run_until_idle(IngestService(settings, writer))
    assert f"replays in-flight batch {crashed[0].first}-{crashed[0].last}" in caplog.text

    assert _count(writer, "SELECT count() FROM interlock.usage_events") == 300  # no FINAL: nothing inserted twice
    assert _count(writer, "SELECT uniqExact(event_id) FROM interlock.usage_events") == 300
    assert _count(writer, "SELECT sum(requests) FROM interlock.spend_daily") == 300  # the replay was deduplicated


class FlakyWriter:
    """Raises a retryable IngestError on the first `failures` inserts, then delegates."""

    def __init__(self, inner: ClickHouseWriter, failures: int) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0

    def insert_events(self, events: Sequence[usage_pb2.UsageEvent], *, dedup_token: str | None = None) -> int:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise IngestError("injected: connection refused", retryable=True)
        return self.inner.insert_events(events, dedup_token=dedup_token)

    def insert_wire(self, values: Sequence[bytes], *, dedup_token: str | None = None) -> int:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise IngestError("injected: connection refused", retryable=True)
        return self.inner.insert_wire(values, dedup_token=dedup_token)


async def test_retryable_clickhouse_errors_are_retried(
    kafka: KafkaBroker, kafka_topic: str, writer: ClickHouseWriter
) -> None:
    events = [_event(i) for i in range(120)]
    await _produce(kafka.bootstrap, kafka_topic, [(e.event_id.encode(), e.SerializeToString()) for e in events])
    flaky = FlakyWriter(writer, failures=2)
    service = IngestService(_settings(kafka, kafka_topic), flaky, max_backoff_s=0.2)
    await _run_until_idle(service)
    assert flaky.failures == 0 and service.stats.errors >= 2
    assert _count(writer, "SELECT count() FROM interlock.usage_events FINAL") == 120
    assert _count(writer, "SELECT sum(requests) FROM interlock.spend_daily") == 120


class NoWireWriter:
    """Refuses the first `refusals` raw protobuf inserts with ClickHouse error `code` (115: an old server)."""

    def __init__(self, inner: ClickHouseWriter, code: int = 115, refusals: int = 10**9) -> None:
        self.inner, self.code, self.refusals, self.wire_calls = inner, code, refusals, 0

    def insert_events(self, events: Sequence[usage_pb2.UsageEvent], *, dedup_token: str | None = None) -> int:
        return self.inner.insert_events(events, dedup_token=dedup_token)

    def insert_wire(self, values: Sequence[bytes], *, dedup_token: str | None = None) -> int:
        self.wire_calls += 1
        if self.wire_calls <= self.refusals:
            raise IngestError(f"Code: {self.code}. DB::Exception: refused (injected)", code=self.code)
        return self.inner.insert_wire(values, dedup_token=dedup_token)


async def test_refused_raw_inserts_fall_back_to_rows_once_and_for_all(
    kafka: KafkaBroker, kafka_topic: str, writer: ClickHouseWriter
) -> None:
    events = [_event(i) for i in range(120)]
    await _produce(kafka.bootstrap, kafka_topic, [(e.event_id.encode(), e.SerializeToString()) for e in events])
    no_wire = NoWireWriter(writer)
    service = IngestService(_settings(kafka, kafka_topic, batch_max=30), no_wire)
    await _run_until_idle(service)
    assert no_wire.wire_calls == 1 and service.stats.wire_fallbacks == 1 and service.stats.wire_batches == 0
    assert service.stats.batches >= 4 and service.stats.errors == 0
    assert _count(writer, "SELECT count() FROM interlock.usage_events") == 120
    assert _count(writer, "SELECT sum(requests) FROM interlock.spend_daily") == 120


async def test_a_data_refusal_of_one_raw_insert_falls_back_for_that_batch_only(
    kafka: KafkaBroker, kafka_topic: str, writer: ClickHouseWriter
) -> None:
    events = [_event(i) for i in range(120)]
    await _produce(kafka.bootstrap, kafka_topic, [(e.event_id.encode(), e.SerializeToString()) for e in events])
    refusing = NoWireWriter(writer, code=27, refusals=1)  # CANNOT_PARSE_INPUT_ASSERTION_FAILED, once
    service = IngestService(_settings(kafka, kafka_topic, batch_max=30), refusing)
    await _run_until_idle(service)
    assert service.stats.wire_fallbacks == 1 and service.stats.wire_batches == service.stats.batches - 1
    assert _count(writer, "SELECT count() FROM interlock.usage_events") == 120
    assert _count(writer, "SELECT sum(requests) FROM interlock.spend_daily") == 120


def test_settings_from_env() -> None:
    s = IngestSettings.from_env({"INTERLOCK_CLICKHOUSE_DSN": "chdb:///x", "INTERLOCK_KAFKA_TOPIC": "t"})
    assert (s.kafka_group, s.dead_letter_topic, s.batch_max) == ("interlock-ingest", "t.dlq", 20_000)
