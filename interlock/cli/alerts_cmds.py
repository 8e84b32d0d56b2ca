"""`interlock alerts`: recent alert deliveries and their status; `interlock alerts test DEST`."""

from __future__ import annotations

import csv
import json
import sys
import time

import click
from rich.console import Console
from rich.text import Text

from . import render
from .policy_cmds import _client, admin_options

_STYLE = {"delivered": "green", "dead": "red", "retrying": "yellow", "pending": "cyan"}


@click.group("alerts", invoke_without_command=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("-o", "--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@admin_options
@click.pass_context
def alerts_group(ctx: click.Context, limit: int, output: str, admin_url: str | None, admin_token: str | None) -> None:
    """Recent alert deliveries (pending and retrying first, then newest first): event, destination, status,
    attempts, last error. Destinations and thresholds are declared in the policy (destinations:)."""
    if ctx.invoked_subcommand is not None:
        return
    with _client(admin_url, admin_token) as api:
        rows = api.alerts(limit=limit).deliveries
    if output == "json":
        click.echo(json.dumps([r.model_dump() for r in rows], indent=2))
        return
    if output == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(["dedup_key", "destination", "kind", "status", "attempts", "created_ms", "finished_ms",
                    "last_error"])
        for r in rows:
            w.writerow([r.dedup_key, r.destination, r.kind, r.status, r.attempts, r.created_ms, r.finished_ms,
                        r.last_error])
        return
    out = Console(highlight=False)
    if not rows:
        out.print("no alert deliveries yet (declare destinations: in the policy; try `interlock alerts test DEST`)")
        return
    now = int(time.time() * 1000)
    t = render.table("WHEN!", "STATUS!", "DEST!", "TRIES>", "EVENT")
    for r in rows:
        t.add_row(Text(render.ago(r.finished_ms or r.created_ms, now)), Text(r.status, style=_STYLE.get(r.status, "")),
                  Text(r.destination), Text(str(r.attempts)),
                  Text(r.summary + (f" ({r.last_error})" if r.last_error else "")))
    out.print(t)


@alerts_group.command("test")
@click.argument("destination")
@admin_options
def alerts_test(destination: str, admin_url: str | None, admin_token: str | None) -> None:
    """Send a test event to DESTINATION (a destination id from the policy); see its delivery in `interlock alerts`."""
    with _client(admin_url, admin_token) as api:
        res = api.alert_test(destination)
    click.echo(f"test event {res.dedup_key} queued for {res.destination}; `interlock alerts` shows its delivery")


def register(group: click.Group) -> None:
    group.add_command(alerts_group)
