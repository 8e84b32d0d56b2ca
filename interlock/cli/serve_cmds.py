"""Long-running services: `interlock dataplane`, `interlock controlplane`, `interlock dev`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import click

from interlock import logsetup
from interlock_contracts.settings.common import SettingsError

log = logging.getLogger("interlock")


def repeat_interval() -> float:
    """INTERLOCK_LOG_REPEAT_INTERVAL_S: seconds over which repeated connection errors collapse (0 = off)."""
    raw = os.environ.get("INTERLOCK_LOG_REPEAT_INTERVAL_S", "")
    try:
        return float(raw) if raw else logsetup.DEFAULT_REPEAT_S
    except ValueError as exc:
        raise click.ClickException(f"INTERLOCK_LOG_REPEAT_INTERVAL_S={raw!r} is not a number of seconds") from exc


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop_event)` on uvloop; SIGINT/SIGTERM set the event for a clean shutdown."""
    import uvloop

    # Everything a service creates (policy.db, snapshots, WAL/spool segments, chDB files) holds key HMACs,
    # provider headers or usage: owner-only, including files third-party engines create.
    os.umask(0o077)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    uvloop.run(runner())


def _settings_or_exit(factory: Callable[[], object]) -> object:
    try:
        return factory()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("dataplane")
@click.option("--log-level", default="INFO", show_default=True)
def dataplane_cmd(log_level: str) -> None:
    """Run one data-plane node (configured by INTERLOCK_* environment variables)."""
    from dataplane.node import DataPlaneNode
    from dataplane.usage.sink import make_usage_sink
    from interlock_contracts.settings.dataplane import DataPlaneSettings

    logsetup.configure(log_level, repeat_interval_s=repeat_interval())
    settings = _settings_or_exit(DataPlaneSettings.from_env)
    assert isinstance(settings, DataPlaneSettings)
    logsetup.log_effective(log, "data plane", settings)

    async def main(stop: asyncio.Event) -> None:
        node = DataPlaneNode(settings, sink=make_usage_sink(settings), env=os.environ)
        await node.start()
        click.echo(f"interlock data plane {settings.node_id} serving on http://{settings.host}:{node.port}")
        await stop.wait()
        await node.stop()

    run_until_signal(main)


@click.command("controlplane")
@click.option("--log-level", default="INFO", show_default=True)
def controlplane_cmd(log_level: str) -> None:
    """Run the control plane: admin API + snapshot gRPC service over etcd (INTERLOCK_STORE)."""
    from controlplane.admin_api import create_admin_app
    from controlplane.admin_server import serve_admin
    from controlplane.backend import start_backend
    from controlplane.console import mount_console
    from controlplane.usage_mount import usage_routers
    from controlplane.usage_source import UsageSourceSettings, open_usage_queries
    from ingest.clickhouse_writer import IngestError
    from interlock_contracts.settings.controlplane import ControlPlaneSettings

    logsetup.configure(log_level, repeat_interval_s=repeat_interval())
    settings = _settings_or_exit(ControlPlaneSettings.from_env)
    assert isinstance(settings, ControlPlaneSettings)
    logsetup.log_effective(log, "control plane", settings)
    usage = _settings_or_exit(UsageSourceSettings.from_env)
    assert isinstance(usage, UsageSourceSettings)

    async def main(stop: asyncio.Event) -> None:
        try:
            queries = open_usage_queries(usage)
        except IngestError as exc:
            raise click.ClickException(f"INTERLOCK_USAGE_STORE: {exc}") from exc
        backend = await start_backend(settings)
        routers = [*backend.admin_routers(settings.key_pepper), *usage_routers(queries)]
        app = create_admin_app(backend.service, settings.admin_token, credentials=settings.admin_credentials,
                               extra_routers=routers)
        mount_console(app, backend, queries, settings.key_pepper)
        server, task = await serve_admin(app, settings.admin_host, settings.admin_port)
        click.echo(f"interlock control plane: admin http://{settings.admin_host}:{settings.admin_port} "
                   f"(console /ui) gRPC {settings.grpc_host}:{backend.grpc_port} "
                   f"store {settings.store.split('@')[-1]} usage {usage.describe()}")
        await stop.wait()
        server.should_exit = True  # type: ignore[attr-defined]
        await task
        await backend.close()
        if queries is not None:
            queries.close()

    run_until_signal(main)


@click.command("dev")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="state directory (default ./.interlock)")
@click.option("--port", type=int, default=None, help="gateway port (default 8080)")
@click.option("--log-level", default="WARNING", show_default=True)
def dev_cmd(data_dir: Path | None, port: int | None, log_level: str) -> None:
    """Run a complete gateway on this machine: no etcd, Kafka or ClickHouse server needed."""
    from dataclasses import replace

    from interlock.dev.settings import DevSettings
    from interlock.dev.stack import DevStack

    logsetup.configure(log_level, repeat_interval_s=repeat_interval())
    settings = _settings_or_exit(DevSettings.from_env)
    assert isinstance(settings, DevSettings)
    if data_dir is not None:
        settings = replace(settings, data_dir=data_dir)
    if port is not None:
        settings = replace(settings, port=port)

    async def main(stop: asyncio.Event) -> None:
        stack = DevStack(settings, env=os.environ)
        try:
            await stack.start()
        except OSError as exc:
            raise click.ClickException(f"{exc.strerror or exc}: is another interlock already running? "
                                       "Stop it or choose other ports (--port, INTERLOCK_ADMIN_PORT, ...)") from exc
        click.echo(stack.banner())
        await stop.wait()
        click.echo("stopping…")
        await stack.stop()

    run_until_signal(main)


def register(group: click.Group) -> None:
    for cmd in (dataplane_cmd, controlplane_cmd, dev_cmd):
        group.add_command(cmd)
