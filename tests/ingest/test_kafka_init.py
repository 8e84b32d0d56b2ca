"""`interlock kafka init` against a real Kafka broker: creates the usage topic and its DLQ with the
partitions asked for, is idempotent, reports an existing topic with too few partitions; and ingest
started before the topic exists says which command creates it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from ingest.clickhouse_writer import open_clickhouse
from ingest.service import IngestService
from interlock_contracts.settings.ingest import IngestSettings
from tests.fixtures.kafka import KafkaBroker

pytestmark = pytest.mark.integration


def _init(kafka: KafkaBroker, topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERLOCK_KAFKA_BOOTSTRAP": kafka.bootstrap, "INTERLOCK_KAFKA_TOPIC": topic}
    return subprocess.run(["interlock", "kafka", "init", "-o", "json", *args], env=env, capture_output=True,
                          text=True, timeout=120)


async def _partitions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def test_kafka_init_creates_topics_idempotently(kafka: KafkaBroker, kafka_topic: str) -> None:
    first = _init(kafka, kafka_topic, "--partitions", "3")
    assert first.returncode == 0, first.stderr
    assert [(r["topic"], r["action"], r["partitions"], r["replication_factor"]) for r in json.loads(first.stdout)] == [
        (kafka_topic, "created", 3, 1), (f"{kafka_topic}.dlq", "created", 3, 1)]  # one broker: replication 1
    # what the broker says, not what the command says
    assert await _partitions(kafka.bootstrap, [kafka_topic, f"{kafka_topic}.dlq"]) == {
        kafka_topic: 3, f"{kafka_topic}.dlq": 3}

    again = _init(kafka, kafka_topic, "--partitions", "3")
    assert [(r["action"], r["note"]) for r in json.loads(again.stdout)] == [("exists", ""), ("exists", "")]
    more = _init(kafka, kafka_topic, "--partitions", "6")
    assert more.returncode == 0 and "fewer than the 6 asked for" in json.loads(more.stdout)[0]["note"], more.stdout


def test_kafka_init_without_a_broker_says_what_to_check() -> None:
    env = {**os.environ, "INTERLOCK_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    r = subprocess.run(["interlock", "kafka", "init", "--timeout", "2"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "cannot reach Kafka at 127.0.0.1:1" in r.stderr and "INTERLOCK_KAFKA_BOOTSTRAP" in r.stderr


async def test_ingest_names_the_command_when_its_topic_is_missing(kafka: KafkaBroker, kafka_topic: str, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ingest.service")
    writer = open_clickhouse(f"chdb://{tmp_path / 'ch'}")
    settings = IngestSettings(kafka_bootstrap=kafka.bootstrap, kafka_topic=kafka_topic, kafka_group=f"g-{kafka_topic}",
                              clickhouse_dsn="unused", health_port=0)
    service = IngestService(settings, writer)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.started.wait(), 60)
    finally:
        stop.set()
        await task
        writer.close()
    assert f"topic {kafka_topic} does not exist: create it (and its DLQ) with `interlock kafka init" in caplog.text
