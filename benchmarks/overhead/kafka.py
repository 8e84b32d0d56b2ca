"""A real Kafka broker for the benchmark, from the same jars and helper the tests use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .gateway import REPO

sys.path.insert(0, str(REPO))  # tests.fixtures.kafka: one broker launcher for tests and benchmarks

from tests.fixtures.kafka import KafkaBroker, install_kafka


def start_kafka(work: Path, core: int) -> KafkaBroker:
    """Start a broker and pin all its threads to `core`, away from the gateway's."""
    broker = KafkaBroker(install_kafka(), work / "kafka")
    broker.start()
    pid = broker.pid
    subprocess.run(["taskset", "-a", "-cp", str(core), str(pid)], check=True, capture_output=True)
    return broker


def topic_messages(bootstrap: str, topic: str, settle_s: float = 3.0) -> int:
    """Messages in `topic` (sum of end offsets) after letting producers flush for `settle_s`."""
    import asyncio
    import time

    from aiokafka import AIOKafkaConsumer, TopicPartition

    time.sleep(settle_s)

    async def count() -> int:
        # subscribing makes the client fetch this topic's metadata; partitions_for_topic reads only that cache
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
            ends = await consumer.end_offsets(parts) if parts else {}
            return sum(ends.values())
        finally:
            await consumer.stop()

    return asyncio.run(count())
