"""`interlock budgets` (ledger figures per budget and rate limit) and `interlock keys mint` (per-run keys)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from controlplane.budget.admin_routes import BudgetListOut, BudgetRowOut, RunKeyIn

from . import policy_cmds, render
from .policy_cmds import admin_options

DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(group: click.Group) -> None:
    group.add_command(budgets)
    policy_cmds.keys.add_command(keys_mint)


def parse_duration_s(value: str) -> int:
    """'90s', '45m', '2h', '7d', '1w' -> seconds."""
    m = DURATION_RE.match(value)
    if not m or int(m[1]) == 0:
        raise click.BadParameter("use a duration like 45m, 2h or 7d", param_hint="--ttl")
    return int(m[1]) * SECONDS[m[2]]


def parse_tag_args(values: tuple[str, ...]) -> dict[str, str]:
    """--tags task=T-1,step=plan and/or repeated --tags k=v."""
    return policy_cmds.parse_tags(tuple(p for v in values for p in v.split(",") if p.strip()))


@click.command("mint")
@click.option("--parent", required=True, metavar="KEY_ID", help="The key this run key is minted from (vk_...)")
@click.option("--budget", "budget_usd", default="", metavar="USD", help="Lifetime budget of the run in USD, e.g. 20")
@click.option("--ttl", default="2h", show_default=True, help="Lifetime: 45m, 2h, 1d (never past the parent's expiry)")
@click.option("--max-concurrency", default=0, type=click.IntRange(min=0), help="Max in-flight requests (0 = no own limit)")
@click.option("--tags", "tags", multiple=True, metavar="K=V[,K=V]", help="Usage tags for every request, e.g. task=T-123")
@click.option("--models", "models_csv", default="", help="Narrow the parent's models (comma-separated)")
@click.option("--name", default="", help="What the run is (default: 'run of <parent>')")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@admin_options
def keys_mint(parent: str, budget_usd: str, ttl: str, max_concurrency: int, tags: tuple[str, ...], models_csv: str,
              name: str, output: str, admin_url: str | None, admin_token: str | None) -> None:
    """Mint a short-lived per-run key under PARENT and print its secret (shown only this once).

    The run key inherits the parent's team, user, project and tags, may only narrow its models, budget,
    concurrency and expiry, and its spend also counts against the parent's budgets. Revoke it (or the parent)
    with `interlock keys revoke`."""
    body = RunKeyIn(parent=parent, ttl_s=parse_duration_s(ttl), budget_usd=budget_usd,
                    max_concurrency=max_concurrency, tags=parse_tag_args(tags), name=name,
                    allowed_models=[m.strip() for m in models_csv.split(",") if m.strip()])
    with policy_cmds._client(admin_url, admin_token) as api:
        created = api.mint_run_key(body)
    if output == "json":
        click.echo(json.dumps(created.model_dump(mode="json"), indent=2))
    else:
        limits = [f"budget ${created.budget_usd}" if created.budget_usd else "",
                  f"max {created.max_concurrency} concurrent" if created.max_concurrency else "",
                  f"expires {render.until(created.expires_at_unix_ms, int(time.time() * 1000))}"]
        Console(stderr=True).print(f"minted run key [bold]{created.id}[/] from {escape(created.parent)} "
                                   f"({escape(', '.join(x for x in limits if x))})")
        click.echo(created.secret)  # alone on stdout, so `KEY=$(interlock keys mint ...)` works
    click.secho("Save this secret now: it will not be shown again.", fg="yellow", err=True)


def _reset(row: BudgetRowOut, now_ms: int) -> str:
    if not row.current:
        return "closed"
    if row.resets_unix_ms == 0:
        return "never"
    at = datetime.fromtimestamp(row.resets_unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{render.until(row.resets_unix_ms, now_ms)} ({at})"


def _fmt(value: str, unit: str) -> str:
    return f"${value}" if unit == "usd" else f"{value} {unit}"


def budgets_table(data: BudgetListOut) -> Table:
    # at 80 columns the in-flight detail (reserved, leased), overshoot, kind and scope give way first
    t = render.table("SCOPE~3", "LIMIT ID", "KIND~2", "WINDOW", "LIMIT>", "SETTLED>", "RESERVED>~1", "LEASED>~1",
                     "REMAINING>", "OVERSHOOT>~2", "RESETS")
    for r in data.budgets:
        remaining = Text(_fmt(r.remaining, r.unit), style="red" if r.remaining == "0" else "")
        overshoot = Text(_fmt(r.overshoot, r.unit), style="yellow" if r.overshoot != "0" else "dim")
        render.add_row(t, f"{r.scope} {r.scope_id}".strip(), r.limit_id, r.kind, r.window_key, _fmt(r.limit, r.unit),
                       _fmt(r.settled, r.unit), _fmt(r.reserved, r.unit), _fmt(r.leased, r.unit), remaining, overshoot,
                       _reset(r, data.server_time_unix_ms))
    return t


CSV_FIELDS = ("scope", "scope_id", "limit_id", "kind", "window_key", "unit", "limit", "settled", "reserved", "leased",
              "remaining", "overshoot", "resets_unix_ms", "current")


@click.command("budgets")
@click.option("--history", is_flag=True, help="Also list past windows")
@click.option("-o", "--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Same as -o json (kept for old scripts)")
@admin_options
def budgets(history: bool, output: str, as_json: bool, admin_url: str | None, admin_token: str | None) -> None:
    """Budgets and rate limits: limit, settled spend, reserved by requests in flight, leased to data planes,
    remaining, overshoot, reset time."""
    with policy_cmds._client(admin_url, admin_token) as api:
        data = api.budgets(history=history)
    if as_json or output == "json":
        click.echo(json.dumps(data.model_dump(mode="json"), indent=2))
    elif output == "csv":
        rows = [r.model_dump(mode="json") for r in data.budgets]
        render.emit_rows("csv", list(CSV_FIELDS), [[str(r.get(f, "")) for f in CSV_FIELDS] for r in rows])
    elif not data.budgets:
        Console().print("no budgets or rate limits yet; add `budgets:` or `rate_limits:` to your policy and "
                        "`interlock apply -f policy.yaml` (see README 'Budgets and rate limits')")
    else:
        Console().print(budgets_table(data))
