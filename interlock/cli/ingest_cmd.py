"""`interlock ingest`: the Kafka -> ClickHouse usage ingest service."""

from __future__ import annotations

import asyncio
import logging

import click

from interlock import logsetup
from interlock.cli.serve_cmds import _settings_or_exit, repeat_interval, run_until_signal


async def serve_ingest(settings: object, stop: asyncio.Event) -> None:
    """Open (and migrate) ClickHouse, serve health, run the consumer until `stop`."""
    from ingest.clickhouse_writer import IngestError, open_clickhouse, redact_dsn
    from ingest.health import HealthServer
    from ingest.query_endpoint import query_endpoint_from_env
    from ingest.rollup import RollupLoop, open_roller
    from ingest.service import IngestService
    from interlock_contracts.settings.ingest import IngestSettings

    assert isinstance(settings, IngestSettings)
    try:
        writer = await asyncio.to_thread(open_clickhouse, settings.clickhouse_dsn)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from exc
    service = IngestService(settings, writer, ping=lambda: writer.client.command("SELECT 1"))
    try:
        endpoint = query_endpoint_from_env(settings.clickhouse_dsn)
    except IngestError as exc:
        await asyncio.to_thread(writer.close)
        raise click.ClickException(f"INTERLOCK_INGEST_QUERY_TOKEN: {exc}") from exc
    roller = await asyncio.to_thread(open_roller, settings.clickhouse_dsn) if settings.rollup_interval_s else None
    roll_stop = asyncio.Event()  # its own: a rebuild in flight finishes before its client closes
    rollups = (asyncio.create_task(RollupLoop(roller[0], settings.rollup_interval_s).run(roll_stop), name="rollups")
               if roller is not None else None)
    health = HealthServer(service.stats, settings.health_host, settings.health_port,
                          extra_routes=endpoint.add_to if endpoint is not None else None)
    try:
        await health.start()
        click.echo(f"interlock ingest: {settings.kafka_bootstrap}/{settings.kafka_topic} (group "
                   f"{settings.kafka_group}) -> {redact_dsn(settings.clickhouse_dsn)}; "
                   f"health http://{settings.health_host}:{health.port}/healthz"
                   + (f", usage queries http://{settings.health_host}:{health.port}/query/v1" if endpoint else ""))
        await service.run(stop)
    finally:
        if rollups is not None and roller is not None:
            roll_stop.set()
            await rollups
            await asyncio.to_thread(roller[1])
        await health.close()
        if endpoint is not None:
            await asyncio.to_thread(endpoint.close)
        await asyncio.to_thread(writer.close)


@click.command("ingest")
@click.option("--log-level", default="INFO", show_default=True)
def ingest_cmd(log_level: str) -> None:
    """Consume usage events from Kafka into ClickHouse (configured by INTERLOCK_* environment variables)."""
    from interlock_contracts.settings.ingest import IngestSettings

    logsetup.configure(log_level, repeat_interval_s=repeat_interval())
    settings = _settings_or_exit(IngestSettings.from_env)
    logsetup.log_effective(logging.getLogger("interlock"), "ingest", settings)

    async def main(stop: asyncio.Event) -> None:
        await serve_ingest(settings, stop)

    run_until_signal(main)


def register(group: click.Group) -> None:
    group.add_command(ingest_cmd)
