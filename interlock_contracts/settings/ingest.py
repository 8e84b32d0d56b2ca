"""The ingest service's settings (`interlock ingest`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from interlock_contracts.settings.common import PREFIX, SettingsError, _get


@dataclass(frozen=True)
class IngestSettings:
    """The Kafka -> ClickHouse ingest service (`interlock ingest`)."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: str = "interlock.usage.v1"  # = dataplane.usage.kafka.DEFAULT_TOPIC (not imported: keeps settings light)
    kafka_group: str = "interlock-ingest"
    dlq_topic: str = ""  # "" = kafka_topic + ".dlq"
    clickhouse_dsn: str = ""
    batch_max: int = 20_000  # events per partition batch
    batch_ms: int = 1000  # a partition batch is flushed at most this long after its first record
    health_host: str = "127.0.0.1"
    health_port: int = 8090  # 0 = any free port
    rollup_interval_s: float = 30.0  # how often the exact rollups are brought up to date (ingest.rollup); 0 = never

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        topic = _get(env, "KAFKA_TOPIC", cls.kafka_topic, str)
        settings = cls(
            kafka_bootstrap=_get(env, "KAFKA_BOOTSTRAP", cls.kafka_bootstrap, str),
            kafka_topic=topic,
            kafka_group=_get(env, "KAFKA_GROUP", cls.kafka_group, str),
            dlq_topic=_get(env, "DLQ_TOPIC", topic + ".dlq", str),
            clickhouse_dsn=_get(env, "CLICKHOUSE_DSN", cls.clickhouse_dsn, str),
            batch_max=_get(env, "INGEST_BATCH_MAX", cls.batch_max, int),
            batch_ms=_get(env, "INGEST_BATCH_MS", cls.batch_ms, int),
            health_host=_get(env, "INGEST_HEALTH_HOST", cls.health_host, str),
            health_port=_get(env, "INGEST_HEALTH_PORT", cls.health_port, int),
            rollup_interval_s=_get(env, "INGEST_ROLLUP_INTERVAL_S", cls.rollup_interval_s, float),
        )
        if not settings.clickhouse_dsn:
            raise SettingsError(f"{PREFIX}CLICKHOUSE_DSN must be set (e.g. chdb:///abs/dir or http://host:8123)")
        if settings.batch_max <= 0 or settings.batch_ms <= 0:
            raise SettingsError(f"{PREFIX}INGEST_BATCH_MAX and {PREFIX}INGEST_BATCH_MS must be positive")
        if settings.rollup_interval_s < 0:
            raise SettingsError(f"{PREFIX}INGEST_ROLLUP_INTERVAL_S must be 0 (off) or a positive number of seconds")
        return settings

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or self.kafka_topic + ".dlq"
