"""Entry point: `interlock <command>`. Each command group lives in its own module."""

from __future__ import annotations

import click

from . import commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="interlock-gateway")
def cli() -> None:
    """Interlock: one governed endpoint between coding agents and every model provider."""


commands.register(cli)


def main() -> None:
    cli()
