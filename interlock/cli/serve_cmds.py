"""Long-running services: `interlock dataplane`, `interlock controlplane`, `interlock dev`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

import click

from interlock.settings import SettingsError


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop_event)` on uvloop; SIGINT/SIGTERM set the event for a clean shutdown."""
    import uvloop

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
    from dataplane.usage_sink import make_sink
    from interlock.settings import DataPlaneSettings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings_or_exit(DataPlaneSettings.from_env)
    assert isinstance(settings, DataPlaneSettings)

    async def main(stop: asyncio.Event) -> None:
        node = DataPlaneNode(settings, sink=make_sink(settings), env=os.environ)
        await node.start()
        click.echo(f"interlock data plane {settings.node_id} serving on http://{settings.host}:{node.port}")
        await stop.wait()
        await node.stop()

    run_until_signal(main)


def register(group: click.Group) -> None:
    group.add_command(dataplane_cmd)
