"""The kafka_broker fixture runs a real KRaft broker that survives SIGKILL with committed data intact."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from tests.fixtures.kafka import KafkaBroker, read_topic


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v, key=v)
    finally:
        await producer.stop()


async def test_produce_and_consume(kafka: KafkaBroker, kafka_topic: str) -> None:
    await _produce(kafka.bootstrap, kafka_topic, [b"hello", b"world"])
    records = await read_topic(kafka.bootstrap, kafka_topic, min_count=2)
    assert [r.value for r in records] == [b"hello", b"world"]


async def test_kill9_and_restart_keeps_committed_messages(kafka: KafkaBroker, kafka_topic: str) -> None:
    await _produce(kafka.bootstrap, kafka_topic, [b"committed-before-kill"])
    await asyncio.to_thread(kafka.kill)
    assert not kafka.running
    began = time.monotonic()
    await asyncio.to_thread(kafka.start)
    print(f"kafka restarted after SIGKILL in {time.monotonic() - began:.1f}s on {kafka.bootstrap}")
    await _produce(kafka.bootstrap, kafka_topic, [b"after-restart"])
    records = await read_topic(kafka.bootstrap, kafka_topic, min_count=2)
    assert [r.value for r in records] == [b"committed-before-kill", b"after-restart"]
