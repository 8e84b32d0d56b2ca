"""`interlock fake-provider`: run the fake model provider, or write nginx benchmark files."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import click

from interlock.fakeprovider import FakeProviderConfig, nginx_conf, start_fake_provider, write_recorded_responses


async def _serve(config: FakeProviderConfig, host: str, port: int) -> None:
    runner, base_url = await start_fake_provider(config, host, port, access_log=logging.getLogger("aiohttp.access"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    click.echo(
        f"fake provider listening on {base_url}  (OpenAI: {base_url}/v1, Anthropic: {base_url}, Gemini: {base_url}/v1beta)"
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _write_nginx(directory: Path, port: int) -> None:
    files = write_recorded_responses(directory)
    # A root-started nginx drops workers to `nobody`, who may not be able to read DIR.
    user = "root" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    conf = directory / "nginx.conf"
    conf.write_text(nginx_conf(directory, port, user=user))
    for path in [*files.values(), conf]:
        click.echo(f"wrote {path}")
    click.echo(f"run: nginx -p {directory.resolve()} -c {conf.resolve()} -e stderr -g 'daemon off;'")


@click.command("fake-provider")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9099, show_default=True, type=int)
@click.option("--latency-ms", default=0.0, show_default=True, type=float, help="Delay before the first byte.")
@click.option("--chunk-delay-ms", default=0.0, show_default=True, type=float, help="Delay between stream events.")
@click.option("--output-tokens", default=20, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--api-key", default=None, envvar="INTERLOCK_FAKE_API_KEY", help="Require this key (default: any key).")
@click.option("--ignore-max-tokens", is_flag=True, help="Misbehave: answer --output-tokens whatever limit was asked.")
@click.option(
    "--write-nginx",
    "nginx_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write recorded responses + nginx.conf to DIR and exit.",
)
@click.option("--nginx-port", default=9098, show_default=True, type=int, help="Port for --write-nginx.")
def fake_provider(
    host: str,
    port: int,
    latency_ms: float,
    chunk_delay_ms: float,
    output_tokens: int,
    api_key: str | None,
    ignore_max_tokens: bool,
    nginx_dir: Path | None,
    nginx_port: int,
) -> None:
    """Run the deterministic fake OpenAI/Anthropic/Gemini provider until Ctrl-C."""
    if nginx_dir is not None:
        _write_nginx(nginx_dir, nginx_port)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = FakeProviderConfig(
        latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms, output_tokens=output_tokens, api_key=api_key or None,
        ignore_max_tokens=ignore_max_tokens,
    )
    import uvloop  # imported here so `--write-nginx` and --help work without it

    uvloop.run(_serve(config, host, port))


def register(group: click.Group) -> None:
    group.add_command(fake_provider)
