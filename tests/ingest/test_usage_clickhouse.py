"""Usage events into ClickHouse (schema, rows, writer, data-plane sink) on real chDB.

chDB hosts one engine path per process: the module shares one data dir and gives each test its own database."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from dataplane.usage.sink import ClickHouseSink, MemorySink, NullSink, UsageSink, make_usage_sink
from dataplane.usage.wal_sink import WalClickHouseSink
from ingest.clickhouse_writer import ClickHouseWriter, IngestError, open_clickhouse, redact_dsn
from ingest.rows import COLUMNS, InvalidEvent, event_to_row, events_to_batch, parse_cost
from ingest.schema import DEFAULT_TTL_DAYS, create_database, migrate, migrations
from interlock_contracts.settings.common import SettingsError
from interlock_contracts.settings.dataplane import DataPlaneSettings
from interlock_contracts.v1 import usage_pb2

MODELS = (("gpt-4o", "openai"), ("claude-sonnet", "anthropic"), ("llama-70b", "bedrock"))
US_PER_DAY = 86_400 * 10**6


def make_events(n: int, *, seed: int = 7, days: int = 3) -> list[usage_pb2.UsageEvent]:
    """Deterministic events over the last `days` UTC days (inside the TTL); every 17th is a refusal."""
    rng = random.Random(seed)
    start = (int(time.time()) // 86_400 - days + 1) * US_PER_DAY
    events = []
    for i in range(n):
        t = start + rng.randrange(days * US_PER_DAY - 10**7)
        model, provider = rng.choice(MODELS)
        ok = i % 17 != 0
        ev = usage_pb2.UsageEvent(
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex, received_unix_us=t, done_unix_us=t + 10**6,
            first_byte_unix_us=t + rng.randrange(1000, 900_000) if ok else 0, node_id="node-1",
            team_id=rng.choice(("team-a", "team-b", "team-c")), user_id=f"user-{rng.randrange(8)}",
            key_id=f"key-{rng.randrange(12)}", project_id="proj", tags={"env": rng.choice(("dev", "prod"))} if i % 2 else {},
            dialect="openai", endpoint="/v1/chat/completions", requested_model=model, provider=provider,
            upstream_model=model + "-2025", model=model, status=200 if ok else 429, error_class="" if ok else "rate_limited",
            input_tokens=rng.randrange(50_000) if ok else 0, output_tokens=rng.randrange(4_000) if ok else 0,
            cached_input_tokens=rng.randrange(100), reasoning_tokens=rng.randrange(100), price_version="p1",
            # Plain decimal strings with up to 12 places, as the pricing engine emits; "" when refused
            cost_usd=format(Decimal(rng.randrange(5 * 10**12)).scaleb(-12), "f") if ok else "",
            latency_ms=rng.randrange(5_000), stream=bool(i % 3), request_bytes=rng.randrange(10_000), fallback=i % 5 == 0,
        )  # fmt: skip
        if i % 5 == 0:
            ev.attempts.add(provider=provider, deployment="d1", upstream_model=model, status=503, error_class="upstream_5xx")
        events.append(ev)
    return events


def total_cost(events: Sequence[usage_pb2.UsageEvent]) -> Decimal:
    return sum((Decimal(e.cost_usd or "0") for e in events), Decimal(0))


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def database() -> str:
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture
def writer(dsn: str, database: str) -> Iterator[ClickHouseWriter]:
    with open_clickhouse(dsn, database=database) as w:
        yield w


def one(writer: ClickHouseWriter, sql: str) -> tuple[Any, ...]:
    return tuple(writer.client.query(sql.format(db=writer.database)).result_rows[0])


def test_migrations_create_tables_and_are_idempotent(dsn: str, database: str) -> None:
    versions = [v for v, _ in migrations(database)]
    assert versions == sorted(set(versions))
    with clickhouse_connect.get_client(dsn=dsn) as client:
        create_database(client, database)
        assert migrate(client, database) == migrate(client, database) == versions[-1]
        tables = f"SELECT name, engine_full FROM system.tables WHERE database = '{database}'"
        engines = dict(client.query(tables).result_rows)
        assert {"usage_events", "spend_daily", "spend_daily_mv", "schema_migrations"} <= set(engines)
        assert client.query(f"SELECT count() FROM {database}.schema_migrations").result_rows[0][0] == len(versions)
        types = dict(r[:2] for r in client.query(f"DESCRIBE TABLE {database}.usage_events").result_rows)
        assert set(COLUMNS) <= set(types)
        assert (types["cost_usd"], types["received_at"], types["first_byte_at"], types["tags"]) == (
            "Decimal(38, 12)", "DateTime64(6, 'UTC')", "Nullable(DateTime64(6, 'UTC'))", "Map(String, String)")  # fmt: skip
        assert types["team_id"] == types["model"] == types["error_class"] == "LowCardinality(String)"
        assert engines["usage_events"].startswith(
            "ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY (team_id, key_id, received_at, event_id)")  # fmt: skip
        assert f"toIntervalDay({DEFAULT_TTL_DAYS})" in engines["usage_events"]
        assert engines["spend_daily"].startswith("SummingMergeTree")
        # The query copy (v4+): day partitions, time-first key, both functions of the event
        assert engines["usage_by_time"].startswith(
            "ReplacingMergeTree PARTITION BY toYYYYMMDD(received_at) ORDER BY (received_at, event_id)")  # fmt: skip
        assert {"usage_by_time_mv140"} <= set(engines) and "usage_by_time_mv" not in engines and versions[-1] >= 6
        assert "min_age_to_force_merge_on_partition_only = 1" in engines["usage_by_time"]  # closed days: one part
        indexes = client.query(f"SELECT table, name, type, expr FROM system.data_skipping_indices "
                               f"WHERE database = '{database}' AND table = 'usage_by_time'").result_rows  # fmt: skip
        assert [tuple(r) for r in indexes] == [("usage_by_time", "tag_values_bf", "bloom_filter", "mapValues(tags)")]
        # A changed retention takes effect on the next start, without a new version, on both tables
        assert migrate(client, database, ttl_days=30) == versions[-1]
        changed = dict(client.query(tables).result_rows)
        assert "toIntervalDay(30)" in changed["usage_events"] and "toIntervalDay(30)" in changed["usage_by_time"]
    for name, ttl in (("interlock; DROP DATABASE x", 400), ("interlock", 0)):
        with pytest.raises(ValueError):
            migrations(name, ttl)


def test_rows_cover_every_field_and_reject_bad_events_alone() -> None:
    # A new proto field must get a column (in a new migration): this fails until it does
    assert {f.name.replace("_unix_us", "_at") for f in usage_pb2.UsageEvent.DESCRIPTOR.fields} == set(COLUMNS)
    assert len(event_to_row(make_events(1)[0])) == len(COLUMNS)
    assert parse_cost("") == 0
    assert parse_cost("12345678901234567890.123456789012") == Decimal("12345678901234567890.123456789012")
    assert parse_cost("0.0000000000015") == Decimal("2e-12")  # banker's rounding at 12 places
    for bad in ("abc", "NaN", "inf", "1e26"):
        with pytest.raises(InvalidEvent):
            parse_cost(bad)
    bad = [usage_pb2.UsageEvent(event_id=eid, received_unix_us=t, cost_usd=c) for eid, t, c in (("e1", 1, "free"), ("", 1, ""), ("e3", 0, ""))]
    batch = events_to_batch([*make_events(3), *bad])
    assert len(batch.rows) == 3
    assert [eid for eid, _ in batch.rejected] == ["e1", "", "e3"]


def test_insert_1000_events_exact_sums(writer: ClickHouseWriter) -> None:
    events = make_events(1000)
    assert writer.insert_events(events) == 1000
    sums = one(writer, "SELECT count(), sum(cost_usd), sum(input_tokens), sum(output_tokens) FROM {db}.usage_events")
    assert isinstance(sums[1], Decimal)
    assert sums == (1000, total_cost(events), sum(e.input_tokens for e in events), sum(e.output_tokens for e in events))
    # Field fidelity; timestamps compared as integer micros (chDB may drop the zone on read)
    ev = next(e for e in events if e.status == 429 and e.tags and e.attempts)
    row = one(writer, "SELECT toUnixTimestamp64Micro(received_at), first_byte_at, tags, attempts, cost_usd, status, "
                      f"error_class FROM {{db}}.usage_events WHERE event_id = '{ev.event_id}'")  # fmt: skip
    assert row[:3] == (ev.received_unix_us, None, dict(ev.tags))  # first_byte 0 = "no byte sent" is stored as NULL
    assert [tuple(a.values()) for a in row[3]] == [(ev.provider, "d1", ev.model, 503, "upstream_5xx", 0)]
    assert row[4:] == (Decimal(0), 429, "rate_limited")


def test_reinserted_events_are_deduplicated(writer: ClickHouseWriter) -> None:
    events = make_events(1000, seed=3)
    writer.client.command(f"SYSTEM STOP MERGES {writer.database}.usage_by_time")  # keep its duplicates visible
    writer.insert_events(events)
    writer.insert_events(events)  # an identical retried batch is dropped at insert time, rollup included
    assert one(writer, "SELECT count() FROM {db}.usage_events") == (1000,)
    assert one(writer, "SELECT sum(requests) FROM {db}.spend_daily") == (1000,)
    # Redelivery in different batches gets past insert dedup; ReplacingMergeTree collapses it
    for i in range(0, 1000, 300):
        writer.insert_events(events[::-1][i : i + 300])
    assert one(writer, "SELECT count() FROM {db}.usage_events FINAL") == (1000,)
    # The query copy got every redelivery too (its view sees inserts) and collapses it the same way
    assert one(writer, "SELECT count() FROM {db}.usage_by_time") == (2000,)
    assert one(writer, "SELECT count(), sum(cost_usd) FROM {db}.usage_by_time FINAL") == (1000, total_cost(events))
    writer.client.command(f"OPTIMIZE TABLE {writer.database}.usage_events FINAL")
    assert one(writer, "SELECT count(), uniqExact(event_id), sum(cost_usd) FROM {db}.usage_events") == (
        1000, 1000, total_cost(events))  # fmt: skip
    # A caller-supplied token (e.g. Kafka partition + offsets) dedups a retry even if reordered
    more = make_events(20, seed=4)
    writer.insert_events(more, dedup_token="usage-0:100-119")
    writer.insert_events(more[::-1], dedup_token="usage-0:100-119")
    assert one(writer, "SELECT count() FROM {db}.usage_events") == (1020,)


def test_query_copy_backfills_older_events_exactly(dsn: str, database: str) -> None:
    """A store written before v4: migrating copies its events into usage_by_time. Re-running the
    backfill, or an insert racing it (seen by the view and the copy), still counts each event once."""
    events = make_events(600, seed=21)
    with clickhouse_connect.get_client(dsn=dsn) as client:
        create_database(client, database)
        client.command(f"CREATE TABLE {database}.schema_migrations (version UInt32, applied_at DateTime64(3, 'UTC') "
                       "DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY version")  # fmt: skip
        steps = dict(migrations(database))
        # v1..v3, plus v140's new usage_events columns this writer's rows carry (the view comes with v4/v142)
        for version, sql in [*migrations(database)[:3], (140, steps[140])]:
            client.command(sql)
            client.insert("schema_migrations", [(version,)], column_names=["version"], database=database)
        old = ClickHouseWriter(client, database)
        old.insert_events(events[:400])
        old.insert_events(events[300:400])  # a redelivery already in the v3 table, unmerged
        with open_clickhouse(dsn, database=database) as writer:  # migrates 4..6
            assert one(writer, "SELECT max(version) FROM {db}.schema_migrations") == (migrations(database)[-1][0],)
            writer.insert_events(events[350:])  # new events and redeliveries of backfilled ones, via the view
            backfill = dict(migrations(database))[6]
            writer.client.command(backfill)  # a crash before recording v6 re-runs it
            raw = one(writer, "SELECT count() FROM {db}.usage_by_time")
            assert raw[0] > len(events)  # the duplicates really are there, unmerged
            assert one(writer, "SELECT count(), uniqExact(event_id), sum(cost_usd) FROM {db}.usage_by_time FINAL") == (
                600, 600, total_cost(events))  # fmt: skip


def test_spend_daily_rollup_matches_raw(writer: ClickHouseWriter) -> None:
    events = make_events(1000, seed=11, days=3)
    for i in range(0, len(events), 250):
        writer.insert_events(events[i : i + 250])
    expected: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
    for e in events:
        day = datetime.fromtimestamp(e.received_unix_us // 10**6, UTC).date()
        acc = expected[(day, e.team_id, e.user_id, e.key_id, e.model, e.provider)]
        for k, v in enumerate((1, e.status >= 400, e.input_tokens, e.output_tokens, Decimal(e.cost_usd or "0"))):
            acc[k] += v
    group = "day, team_id, user_id, key_id, model, provider"
    raw = writer.client.query(
        f"SELECT toDate(received_at) AS day, team_id, user_id, key_id, model, provider, count(), countIf(status >= 400), "
        f"sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM {writer.database}.usage_events FINAL GROUP BY {group}")  # fmt: skip
    rollup = writer.client.query(
        f"SELECT {group}, sum(requests), sum(errors), sum(input_tokens), sum(output_tokens), sum(cost_usd) "
        f"FROM {writer.database}.spend_daily GROUP BY {group}")  # fmt: skip
    by_key = [{tuple(r[:6]): list(r[6:]) for r in q.result_rows} for q in (raw, rollup)]
    assert by_key[0] == by_key[1] == dict(expected)
    assert len({k[0] for k in expected}) == 3  # the data really spans day boundaries


def test_driver_errors_become_ingest_errors(writer: ClickHouseWriter, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="describing"):
        ClickHouseWriter(writer.client, database="no_such_db")
    with pytest.raises(IngestError, match="already initialized"):
        open_clickhouse(f"chdb://{tmp_path}")  # chDB: one engine path per process while any client is open
    with pytest.raises(IngestError) as info:
        open_clickhouse("http://user:s3cret@127.0.0.1:1")
    assert info.value.retryable and "s3cret" not in str(info.value)
    with pytest.raises(IngestError, match="three slashes"):
        open_clickhouse("chdb://relative/dir")
    assert redact_dsn("http://user:s3cret@h:8123/x") == "http://user:***@h:8123/x"


async def test_clickhouse_sink_writes_5000_events(dsn: str, database: str, capsys: pytest.CaptureFixture[str]) -> None:
    sink = ClickHouseSink.from_dsn(dsn, database=database, batch_size=500, flush_interval_ms=50)
    await sink.start()
    events, emit_s = make_events(5000, seed=5), 0.0
    for i in range(0, len(events), 100):
        t0 = time.perf_counter()
        for ev in events[i : i + 100]:
            sink.emit(ev)
        emit_s += time.perf_counter() - t0
        await asyncio.sleep(0)  # let the loop breathe as request handling would
    await sink.close()
    assert (sink.emitted, sink.written, sink.dropped, sink.failed_batches) == (5000, 5000, 0, 0)
    with clickhouse_connect.get_client(dsn=dsn) as client:
        rows = client.query(f"SELECT count(), sum(cost_usd) FROM {database}.usage_events").result_rows
    assert rows[0] == (5000, total_cost(events))
    with capsys.disabled():
        print(f"\n[usage sink] emit() hot path: {emit_s / len(events) * 1e9:.0f} ns/event")


class FakeWriter:
    """Records batch sizes; optionally blocks inside insert until released, or always fails."""

    def __init__(self, *, gated: bool = False, fail: bool = False) -> None:
        self.entered, self.release, self.fail, self.calls = threading.Event(), threading.Event(), fail, list[int]()
        if not gated:
            self.release.set()

    def insert_events(self, events: Sequence[usage_pb2.UsageEvent]) -> int:
        self.calls.append(len(events))
        self.entered.set()
        self.release.wait(10)
        if self.fail:
            raise IngestError("boom")
        return len(events)

    def close(self) -> None: ...


async def test_clickhouse_sink_drops_newest_while_writer_is_stuck(caplog: pytest.LogCaptureFixture) -> None:
    writer = FakeWriter(gated=True)
    sink = ClickHouseSink(lambda: writer, batch_size=10, flush_interval_ms=5, max_buffer=50)
    events = make_events(210, seed=8)
    for ev in events[:10]:
        sink.emit(ev)  # before start, so the first batch is exactly these 10
    await sink.start()
    assert await asyncio.to_thread(writer.entered.wait, 5)
    for ev in events[10:]:
        sink.emit(ev)
    assert (sink.buffered, sink.dropped) == (50, 150)
    with caplog.at_level(logging.ERROR, logger="dataplane.usage.sink"):
        writer.release.set()
        await sink.close()
    assert (sum(writer.calls), sink.written, sink.dropped) == (60, 60, 150)
    assert "buffer full (max_buffer=50): dropped 150 events since last report" in caplog.text


async def test_sink_retries_lifecycle_simple_sinks_and_factory() -> None:
    writer = FakeWriter(fail=True)
    sink = ClickHouseSink(lambda: writer, batch_size=10, max_attempts=2, retry_backoff_s=0)
    for ev in make_events(25, seed=9):
        sink.emit(ev)  # before start, so batches are exactly 10, 10, 5
    await sink.start()
    await sink.close()
    assert writer.calls == [10, 10, 10, 10, 5, 5]
    assert (sink.written, sink.dropped, sink.failed_batches) == (0, 25, 3)
    sink = ClickHouseSink(FakeWriter, batch_size=10)
    sink.emit(make_events(1)[0])
    await sink.close()  # never started: buffered events are counted as dropped, not lost silently
    sink.emit(make_events(1)[0])
    assert (sink.emitted, sink.written, sink.dropped) == (2, 0, 2)
    memory = MemorySink()
    for simple in (NullSink(), memory):
        typed: UsageSink = simple
        await typed.start()
        for ev in make_events(3):
            typed.emit(ev)
        await typed.close()
        assert typed.emitted == 3
    assert len(memory.events) == memory.written == 3
    settings = functools.partial(DataPlaneSettings, node_id="n1", key_pepper=b"p" * 32)
    assert isinstance(make_usage_sink(settings()), NullSink)
    assert isinstance(make_usage_sink(settings(usage_sink="clickhouse", clickhouse_dsn="chdb:///x")), WalClickHouseSink)
    for bad in (settings(usage_sink="clickhouse"), settings(usage_sink="carrier-pigeon")):
        with pytest.raises(SettingsError):
            make_usage_sink(bad)


def test_insert_throughput_100k(writer: ClickHouseWriter, capsys: pytest.CaptureFixture[str]) -> None:
    events = make_events(100_000, seed=99, days=2)
    t0 = time.perf_counter()
    events_to_batch(events)
    convert_s, t0 = time.perf_counter() - t0, time.perf_counter()
    for i in range(0, len(events), 10_000):
        writer.insert_events(events[i : i + 10_000])
    total_s = time.perf_counter() - t0
    assert one(writer, "SELECT count() FROM {db}.usage_events") == (100_000,)
    with capsys.disabled():
        print(f"\n[usage insert] 100k events in batches of 10k: {len(events) / total_s:,.0f} events/s end to end "
              f"({total_s:.2f}s); row conversion alone {len(events) / convert_s:,.0f} events/s")  # fmt: skip
