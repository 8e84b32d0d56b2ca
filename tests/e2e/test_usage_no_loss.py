"""The usage bar: no request the gateway served is missing from ClickHouse, whatever crashes.

Two data planes (Kafka sink, write-ahead WAL), `interlock ingest` into chDB and the fake provider; 10,000
requests at concurrency 16 while, one at a time, the broker, the ingest process and a data plane are
SIGKILLed and restarted. Every request answered with a full 200 must be in ClickHouse exactly once (FINAL).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import httpx

from ingest.clickhouse_writer import open_clickhouse
from tests.fixtures.cluster import Cluster, Node, chat_body
from tests.fixtures.kafka import KafkaBroker

TOTAL, CONCURRENCY = 10_000, 16


class Load:
    def __init__(self, nodes: list[Node], key: str) -> None:
        self.nodes, self.key = nodes, key
        self.succeeded: set[str] = set()
        self.failed_attempts = 0
        self._next = itertools.count()

    async def worker(self, w: int, http: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        while (i := next(self._next)) < TOTAL:
            for attempt in range(200):
                node = self.nodes[(i + w + attempt) % len(self.nodes)]  # a retry goes to the other node
                try:
                    r = await http.post(f"{node.openai_base}/chat/completions", json=chat_body("m-a"), headers=headers)
                except httpx.HTTPError:
                    self.failed_attempts += 1
                    await asyncio.sleep(0.05)
                    continue
                if r.status_code == 200:
                    self.succeeded.add(r.headers["x-interlock-request-id"])
                    break
                self.failed_attempts += 1
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.02)  # ~500 RPS in all: the traffic spans every kill


async def chaos(c: Cluster, kafka: KafkaBroker, ingest: Any, load: Load) -> list[str]:
    log: list[str] = []

    async def after(n: int) -> None:
        for _ in range(6000):  # bounded: 5 min
            if len(load.succeeded) >= n:
                return
            await asyncio.sleep(0.05)

    await after(1000)
    await asyncio.to_thread(kafka.kill)
    log.append(f"broker SIGKILLed at {len(load.succeeded)} succeeded")
    await asyncio.sleep(2)
    await asyncio.to_thread(kafka.start)
    await after(len(load.succeeded) + 1000)
    await asyncio.to_thread(ingest.kill)
    log.append(f"ingest SIGKILLed at {len(load.succeeded)}")
    await asyncio.sleep(1)
    await asyncio.to_thread(ingest.start)
    await after(len(load.succeeded) + 1000)
    node = c.nodes[1]
    await asyncio.to_thread(node.proc.kill)
    log.append(f"{node.node_id} SIGKILLed at {len(load.succeeded)}")
    await asyncio.sleep(1)
    await asyncio.to_thread(c.start_node, node)
    log.append(f"{node.node_id} back at {len(load.succeeded)}")
    return log


async def wait_ingested(port: int, timeout_s: float = 90) -> dict[str, Any]:
    """Until ingest has consumed everything (lag 0) and nothing new arrived for 3 s (the WALs are shipped)."""
    deadline, last, stable_since = time.monotonic() + timeout_s, None, time.monotonic()
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            try:
                m = (await http.get(f"http://127.0.0.1:{port}/stats")).json()
            except httpx.HTTPError:
                await asyncio.sleep(0.5)
                continue
            seen = (m.get("consumed"), m.get("lag_total"))
            if seen != last:
                last, stable_since = seen, time.monotonic()
            elif m.get("lag_total") == 0 and m.get("lag") and time.monotonic() - stable_since > 3:
                return dict(m)
            await asyncio.sleep(0.25)
    raise AssertionError(f"ingest did not catch up within {timeout_s}s: {last}")


async def test_no_served_request_is_missing(cluster_factory: Any, kafka: KafkaBroker, kafka_topic: str,
                                            tmp_path: Path) -> None:  # fmt: skip
    c: Cluster = cluster_factory(setup=False)
    c.usage_env = {"INTERLOCK_USAGE_SINK": "kafka", "INTERLOCK_KAFKA_BOOTSTRAP": kafka.bootstrap,
                   "INTERLOCK_KAFKA_TOPIC": kafka_topic}  # fmt: skip
    await asyncio.to_thread(c.setup, 2)
    key = (await asyncio.to_thread(c.create_key, team="eng"))["secret"]
    await asyncio.to_thread(c.wait_in_sync)
    ingest, health_port = c.add_ingest(kafka.bootstrap, tmp_path / "ch", kafka_topic)
    load = Load(c.nodes, key)
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=CONCURRENCY * 2)) as http:
        workers = [asyncio.create_task(load.worker(w, http)) for w in range(CONCURRENCY)]
        events = await chaos(c, kafka, ingest, load)
        await asyncio.gather(*workers)
    took = time.monotonic() - began
    metrics = await wait_ingested(health_port)
    await asyncio.to_thread(ingest.terminate)
    w = await asyncio.to_thread(open_clickhouse, f"chdb://{(tmp_path / 'ch').resolve()}")
    try:
        rows = w.client.query("SELECT event_id FROM interlock.usage_events FINAL").result_rows
        count, unique = w.client.query(
            "SELECT count(), uniqExact(event_id) FROM interlock.usage_events FINAL").result_rows[0]  # fmt: skip
    finally:
        await asyncio.to_thread(w.close)
    stored = {r[0] for r in rows}
    missing = load.succeeded - stored
    extra = stored - load.succeeded
    print(f"\n{'; '.join(events)}\n{len(load.succeeded)} succeeded in {took:.1f}s, {load.failed_attempts} failed "
          f"attempts (retried); ClickHouse FINAL: {count} rows, {unique} unique, {len(missing)} missing, "
          f"{len(extra)} beyond the succeeded (in flight at a kill); ingest {metrics}")  # fmt: skip
    assert len(load.succeeded) == TOTAL
    assert not missing, f"{len(missing)} served requests are missing from ClickHouse, e.g. {sorted(missing)[:5]}"
    assert count == unique >= len(load.succeeded)
    assert len(extra) <= load.failed_attempts
