"""Ingest throughput and latency: Kafka -> IngestService (in-process) -> chDB, end to end.

    python benchmarks/ingest_throughput.py --bootstrap 127.0.0.1:9092 [--events 500000]

Without --bootstrap it starts a throwaway KRaft broker (tests/fixtures/kafka.py; needs java).
Phases (bounded, ~2-3 min): (1) pre-produce N events into a fresh topic; (2) baseline: raw
ClickHouseWriter.insert_events of the same events in 20k batches, no Kafka; (3) backlog drain: the
service consumes the N events, events/s from service start to the last insert (bar >= 50,000/s);
(4) steady state: produce at --rate/s for --seconds with received_unix_us = send time; latency per
event = inserted_at (server clock, set when the insert lands) - received_at (bar p99 <= 10 s).
Also printed: the raw protobuf path without Kafka (decode_records + insert_wire), the ingest process's
CPU per event and the whole machine's busy cores while draining (other jobs on the machine show up
there), and the time spent in cyclic-GC collections (--default-gc: without ingest.gc_policy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.clickhouse_writer import ClickHouseWriter, open_clickhouse
from ingest.consumer import decode_records
from ingest.service import IngestService
from interlock_contracts.settings.ingest import IngestSettings
from interlock_contracts.v1 import usage_pb2


def make_event(i: int, node: str, received_us: int) -> usage_pb2.UsageEvent:
    return usage_pb2.UsageEvent(
        event_id=uuid.uuid4().hex, received_unix_us=received_us, first_byte_unix_us=received_us + 150_000,
        done_unix_us=received_us + 900_000, node_id=node, key_id=f"key-{i % 200}", team_id=f"team-{i % 20}",
        user_id=f"user-{i % 1000}", project_id="proj", tags={"env": "prod"}, dialect="openai",
        endpoint="/v1/chat/completions", requested_model="gpt-4o", provider="openai", upstream_model="gpt-4o-2024",
        model="gpt-4o", status=200, input_tokens=1200 + i % 500, output_tokens=300, cost_usd="0.004125",
        price_version="2025-01", latency_ms=900, ttfb_ms=150, stream=True, policy_version=7,
        request_bytes=4000, response_bytes=2000,
    )  # fmt: skip


def new_producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=linger_ms,
                            max_batch_size=1 << 20, compression_type=None)  # fmt: skip


async def preproduce(bootstrap: str, topic: str, n: int) -> None:
    producer = new_producer(bootstrap, 20)
    await producer.start()
    began, now_us, chunk = time.monotonic(), int(time.time() * 1e6), 25_000
    try:
        for start in range(0, n, chunk):
            evs = [make_event(i, "backlog", now_us + i) for i in range(start, min(n, start + chunk))]
            futs = [await producer.send(topic, e.SerializeToString(), key=e.event_id.encode()) for e in evs]
            await asyncio.gather(*futs)
            done = start + len(evs)
            print(f"  produced {done:>7}/{n} ({done / (time.monotonic() - began):,.0f}/s)", flush=True)
    finally:
        await producer.stop()


def raw_baseline(writer: ClickHouseWriter, n: int, batch: int) -> float:
    now_us = int(time.time() * 1e6)
    batches = [[make_event(i, "raw", now_us + i) for i in range(s, s + batch)] for s in range(0, n, batch)]
    began = time.perf_counter()
    for k, evs in enumerate(batches):
        writer.insert_events(evs, dedup_token=f"raw-{k}")
    return n / (time.perf_counter() - began)


def raw_wire_ceiling(writer: ClickHouseWriter, n: int, batch: int) -> float:
    """What the service does per batch without Kafka: decode + checks (ingest.consumer) and one raw insert."""
    now_us = int(time.time() * 1e6)
    batches = [[SimpleNamespace(value=make_event(i, "wire", now_us + i).SerializeToString())
                for i in range(s, s + batch)] for s in range(0, n, batch)]  # fmt: skip
    began = time.perf_counter()
    for k, records in enumerate(batches):
        decoded = decode_records(records)
        assert decoded.wire is not None
        writer.insert_wire(decoded.wire, dedup_token=f"wire-{k}")
    return n / (time.perf_counter() - began)


class GcClock:
    """Time spent in cyclic-GC collections (gc.callbacks), per generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._began
            self.count[info["generation"]] += 1

    def __str__(self) -> str:
        return ", ".join(f"gen{g} {self.count[g]}x {self.seconds[g]:.2f}s" for g in range(3))


def cpu_load() -> tuple[float, float]:
    """(this process's CPU seconds, whole machine's busy CPU seconds) so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return time.process_time(), (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def drain_backlog(service: IngestService, n: int, timeout_s: float) -> tuple[float, float]:
    began = time.monotonic()
    first_insert = 0.0
    while service.stats.inserted < n:
        if service.stats.inserted and not first_insert:
            first_insert = time.monotonic()
        if time.monotonic() - began > timeout_s:
            raise TimeoutError(f"only {service.stats.inserted}/{n} inserted after {timeout_s}s")
        await asyncio.sleep(0.02)
    end = time.monotonic()
    return n / (end - began), n / (end - (first_insert or began))


async def steady(bootstrap: str, topic: str, rate: int, seconds: float) -> int:
    producer = new_producer(bootstrap, 5)
    await producer.start()
    sent, tick, began = 0, 0.01, time.monotonic()
    try:
        while (elapsed := time.monotonic() - began) < seconds:
            due = int(elapsed * rate) - sent
            now_us = int(time.time() * 1e6)
            for _ in range(due):
                e = make_event(sent, "steady", now_us)
                await producer.send(topic, e.SerializeToString(), key=e.event_id.encode())
                sent += 1
            await asyncio.sleep(tick)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


@contextlib.contextmanager
def broker_or(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    from tests.fixtures.kafka import KafkaBroker, install_kafka

    java = shutil.which("java")
    if java is None:
        raise SystemExit("no --bootstrap and no java: cannot start a broker")
    broker = KafkaBroker(install_kafka(), Path(tempfile.mkdtemp(prefix="ingest-bench-kafka-")), java=java)
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


async def bench(args: argparse.Namespace, bootstrap: str) -> None:
    from tests.fixtures.kafka import create_topic

    topic = f"bench-usage-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, args.partitions)
    print(f"[1] pre-producing {args.events:,} events into {topic} ({args.partitions} partitions)")
    await preproduce(bootstrap, topic, args.events)

    data = Path(tempfile.mkdtemp(prefix="ingest-bench-ch-"))
    writer = await asyncio.to_thread(open_clickhouse, f"chdb://{data}")
    raw_writer = await asyncio.to_thread(open_clickhouse, f"chdb://{data}", database="bench_raw")
    print(f"[2] baseline: raw ClickHouseWriter.insert_events, {args.raw_events:,} events in {args.batch_max:,} batches")
    raw = await asyncio.to_thread(raw_baseline, raw_writer, args.raw_events, args.batch_max)
    print(f"  raw writer: {raw:,.0f} events/s")
    ceiling = await asyncio.to_thread(raw_wire_ceiling, raw_writer, args.raw_events, args.batch_max)
    print(f"  (for reference, no Kafka: decode_records + insert_wire {ceiling:,.0f} events/s)")

    settings = IngestSettings(kafka_bootstrap=bootstrap, kafka_topic=topic, kafka_group=f"bench-{topic}",
                              clickhouse_dsn=f"chdb://{data}", batch_max=args.batch_max, batch_ms=args.batch_ms)  # fmt: skip
    service = IngestService(settings, writer, tune_gc=not args.default_gc)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    print("[3] draining the backlog through the ingest service")
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    cpu0, busy0, wall0 = *cpu_load(), time.monotonic()
    e2e, after_first = await drain_backlog(service, args.events, timeout_s=120)
    cpu1, busy1, wall1 = *cpu_load(), time.monotonic()
    gc.callbacks.remove(gc_clock)
    print(f"  end to end: {e2e:,.0f} events/s (from service start, incl. group join); "
          f"{after_first:,.0f} events/s from the first insert; ratio to raw writer {e2e / raw:.2f}")  # fmt: skip
    span = wall1 - wall0
    cpu_us = (cpu1 - cpu0) / args.events * 1e6
    print(f"  CPU while draining ({span:.1f}s): this process {(cpu1 - cpu0) / span:.2f} cores = {cpu_us:.1f} us/event "
          f"(Python + chDB); whole machine {(busy1 - busy0) / span:.2f} of {os.cpu_count()} cores busy "
          "(incl. the broker and other jobs: near the top means the figures are CPU-starved)")  # fmt: skip
    print(f"  cyclic GC while draining: {gc_clock}")

    print(f"[4] steady state: {args.rate:,}/s for {args.seconds:.0f}s")
    sent = await steady(bootstrap, topic, args.rate, args.seconds)
    for _ in range(300):  # up to 30 s for the tail
        if service.stats.inserted >= args.events + sent:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await task
    q = writer.client.query(
        "SELECT count(), quantiles(0.5, 0.99, 1)(dateDiff('millisecond', received_at, inserted_at)) "
        "FROM interlock.usage_events WHERE node_id = 'steady'"
    ).result_rows[0]
    p50, p99, pmax = (float(x) / 1000 for x in q[1])
    print(f"  steady: sent {sent:,}, queryable {q[0]:,}; produce->queryable p50 {p50:.2f}s p99 {p99:.2f}s max {pmax:.2f}s")
    total = writer.client.query("SELECT count() FROM interlock.usage_events FINAL").result_rows[0][0]
    print(f"[ok] usage_events FINAL = {total:,} (expected {args.events + sent:,}); stats {service.stats}")
    print(f"RESULT throughput_eps={e2e:.0f} raw_eps={raw:.0f} ratio={e2e / raw:.2f} cpu_us_per_event={cpu_us:.1f} "
          f"p50_s={p50:.2f} p99_s={p99:.2f} bar_throughput={'PASS' if e2e >= 50_000 else 'FAIL'} "
          f"bar_p99={'PASS' if p99 <= 10 else 'FAIL'}")  # fmt: skip
    raw_writer.close()
    writer.close()
    shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--raw-events", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch-max", type=int, default=20_000)
    ap.add_argument("--batch-ms", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--default-gc", action="store_true", help="keep CPython's GC thresholds (A/B of ingest.gc_policy)")
    args = ap.parse_args()
    import uvloop

    with broker_or(args.bootstrap) as bootstrap:
        uvloop.run(asyncio.wait_for(bench(args, bootstrap), timeout=240))


if __name__ == "__main__":
    main()
