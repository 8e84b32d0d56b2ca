"""`interlock kafka init`: create the usage topics (events + DLQ) the data planes and ingest use.

Topic layout belongs to the product, not to a broker's auto-create defaults: the partition count
bounds how many ingest consumers can share the work, and the DLQ must exist before the first
poison message. Idempotent: existing topics are left alone and reported (Kafka can only add
partitions, never remove them, so a smaller existing count is reported, not "fixed").
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass

import click

DEFAULT_TOPIC = "interlock.usage.v1"  # = interlock_contracts/settings/ IngestSettings.kafka_topic


@dataclass(frozen=True)
class TopicResult:
    topic: str
    partitions: int
    replication_factor: int
    action: str  # "created" | "exists"
    note: str = ""


class KafkaInitError(Exception):
    """The broker could not be reached or refused to create a topic."""


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int, replication: int | None,
                        timeout_s: float) -> list[TopicResult]:
    """Create each missing topic with `partitions`; describe the ones that exist."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        try:
            await asyncio.wait_for(admin.start(), timeout_s)
            cluster = await admin.describe_cluster()
            existing = set(await admin.list_topics())
        except (KafkaError, OSError) as exc:  # TimeoutError is an OSError
            raise KafkaInitError(f"cannot reach Kafka at {bootstrap}: {exc!r}; check INTERLOCK_KAFKA_BOOTSTRAP "
                                 "(host:port of a broker, comma-separated)") from exc
        brokers = len(cluster.get("brokers", [])) or 1
        rf = replication if replication is not None else min(3, brokers)
        if rf > brokers:
            raise KafkaInitError(f"replication factor {rf} needs {rf} brokers, the cluster has {brokers}; "
                                 "pass --replication-factor")
        missing = [t for t in topics if t not in existing]
        results: dict[str, TopicResult] = {}
        if missing:
            try:
                await admin.create_topics([NewTopic(t, partitions, rf) for t in missing])
            except TopicAlreadyExistsError:
                pass  # another `kafka init` raced us: describe below
            except KafkaError as exc:
                raise KafkaInitError(f"creating {', '.join(missing)} failed: {exc!r}") from exc
            for t in missing:
                results[t] = TopicResult(t, partitions, rf, "created")
        described = await admin.describe_topics([t for t in topics if t not in results])
        for d in described:
            parts = d.get("partitions") or []
            have = len(parts)
            have_rf = len(parts[0].get("replicas", [])) if parts else 0
            note = (f"has {have} partitions, fewer than the {partitions} asked for: at most {have} ingest "
                    "consumers can share it (kafka-topics --alter --partitions adds more)") if have < partitions else ""
            results[d["topic"]] = TopicResult(d["topic"], have, have_rf, "exists", note)
        return [results[t] for t in topics]
    finally:
        await admin.close()


@click.group("kafka")
def kafka_group() -> None:
    """Kafka set-up for the usage pipeline (data plane -> Kafka -> ingest -> ClickHouse)."""


@kafka_group.command("init")
@click.option("--bootstrap", default=lambda: os.environ.get("INTERLOCK_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
              show_default="$INTERLOCK_KAFKA_BOOTSTRAP or 127.0.0.1:9092", help="Broker host:port list")
@click.option("--topic", default=lambda: os.environ.get("INTERLOCK_KAFKA_TOPIC", DEFAULT_TOPIC),
              show_default=f"$INTERLOCK_KAFKA_TOPIC or {DEFAULT_TOPIC}", help="Usage event topic")
@click.option("--partitions", type=click.IntRange(1, 10_000),
              default=lambda: int(os.environ.get("INTERLOCK_KAFKA_PARTITIONS", "12")),
              show_default="$INTERLOCK_KAFKA_PARTITIONS or 12",
              help="Partitions per topic: the most ingest replicas that can consume in parallel")
@click.option("--replication-factor", type=click.IntRange(1, 16), default=None,
              help="Copies of each partition  [default: min(3, brokers)]")
@click.option("--timeout", "timeout_s", type=float, default=15.0, show_default=True, help="Seconds to reach the broker")
@click.option("-o", "--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
def kafka_init_cmd(bootstrap: str, topic: str, partitions: int, replication_factor: int | None, timeout_s: float,
                   output: str) -> None:
    """Create the usage topic and its dead-letter topic (<topic>.dlq) if they are missing.

    Run it once per Kafka cluster before starting data planes with INTERLOCK_USAGE_SINK=kafka and
    `interlock ingest`; it is safe to run again. Exit code 1 when Kafka cannot be reached.
    """
    from .render import emit_rows

    topics = [topic, f"{topic}.dlq"]
    try:
        results = asyncio.run(ensure_topics(bootstrap, topics, partitions, replication_factor, timeout_s))
    except KafkaInitError as exc:
        raise click.ClickException(str(exc)) from exc
    if output == "json":
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
        return
    header = ["TOPIC", "ACTION", "PARTITIONS", "REPLICAS", "NOTE"]
    rows = [[r.topic, r.action, str(r.partitions), str(r.replication_factor), r.note] for r in results]
    emit_rows(output, header, rows, title=f"Kafka {bootstrap}")


def register(group: click.Group) -> None:
    group.add_command(kafka_group)
