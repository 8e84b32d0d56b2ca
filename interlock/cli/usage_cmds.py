"""`interlock spend | top | cost | audit`: FinOps and audit questions over the admin API's usage routes.

Arguments are validated here first (same parsers as the server), so a typo in
--since or --by fails fast with the accepted formats. Costs print with at least
6 decimals (more when the exact value needs them); JSON and CSV carry the exact
12-place strings.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from controlplane.usage_api import AuditOut, SpendOut, TaskCostOut
from ingest.audit_row import AuditRow, api_names, iso_time
from ingest.queries import InvalidQuery, parse_group_by, parse_where, parse_window
from interlock.cli.settings import CliSettings
from interlock.cli.term import cli_console as _console
from interlock_contracts.settings.common import SettingsError
from interlock_contracts.usage_schema import UsageSchema, usage_schema

from . import render
from .admin_client import AdminClient
from .audit_cmds import policy_log_cmd
from .policy_cmds import admin_options

F = TypeVar("F", bound=Callable[..., Any])
OUTPUT = click.Choice(["table", "json", "csv"])
_MICRO = Decimal("0.000001")


def register(group: click.Group) -> None:
    audit_cmd.add_command(policy_log_cmd)  # `interlock audit policy`
    for cmd in (spend_cmd, top_cmd, cost_cmd, audit_cmd):
        group.add_command(cmd)


class UsageClient(AdminClient):
    """The admin client plus the /usage routes."""

    def __enter__(self) -> UsageClient:
        return self

    def spend(self, **params: Any) -> SpendOut:
        return self._call(SpendOut, "GET", "/usage/spend", params=params)

    def top(self, **params: Any) -> SpendOut:
        return self._call(SpendOut, "GET", "/usage/top", params=params)

    def task_cost(self, **params: Any) -> TaskCostOut:
        return self._call(TaskCostOut, "GET", "/usage/cost", params=params)

    def audit(self, **params: Any) -> AuditOut:
        return self._call(AuditOut, "GET", "/usage/audit", params=params)


def _client(admin_url: str | None, admin_token: str | None) -> UsageClient:
    try:
        s = CliSettings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    return UsageClient(admin_url or s.admin_url, admin_token or s.admin_token)


def _check(hint: str, parse: Callable[[], object]) -> None:
    try:
        parse()
    except InvalidQuery as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from exc


# -- formatting -------------------------------------------------------------------------


def money(value: str | Decimal) -> str:
    """6 decimals for tables: '12.3' -> '$12.300000'; a nonzero cost below that keeps its digits
    ('0.000000123400' -> '$0.0000001234'), never shown as $0. JSON and CSV carry the exact value."""
    d = Decimal(value)
    q = d.quantize(_MICRO)
    return f"${q if q or not d else d.normalize():,f}"


def _n(v: int) -> str:
    return f"{v:,}"


def _v(s: str) -> str:
    return s if s else "(none)"


def _table(*columns: str, caption: str | None = None) -> Table:
    """render.table: '>' right-aligned numbers, '!' never wraps, '~N' dropped (rank 1 first) when too narrow."""
    return render.table(*columns, caption=caption)


def _row(t: Table, *cells: str | Text, style: str = "") -> None:
    t.add_row(*(render.cell(c) for c in cells), style=style or None)  # user text: no markup, controls escaped


def _emit(output: str, data: Any, header: Sequence[str], rows: Sequence[Sequence[Any]], table: Callable[[], None]) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif output == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    else:
        table()


def _span(s: SpendOut | AuditOut) -> str:
    start, end = (t[:16].replace("T", " ") for t in (s.window.start, s.window.end))
    where = f" where {escape(', '.join(s.where))}" if s.where else ""
    return f"last {escape(s.window.since)} ({start} → {end} UTC){where}"


# -- spend / top ------------------------------------------------------------------------


def _spend_csv(r: SpendOut) -> tuple[list[str], list[list[Any]]]:
    header = [*r.by, "requests", "errors", "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd",
              "share_pct"]
    rows = [[*(x.group[d] for d in r.by), x.requests, x.errors, x.input_tokens, x.output_tokens,
             x.cached_input_tokens, x.cost_usd, x.share_pct] for x in r.rows]
    return header, rows


def _print_spend(r: SpendOut, title: str) -> None:
    out = _console()
    out.print(f"[bold]{title} by {escape(', '.join(r.by))}[/], {_span(r)}")
    if not r.rows:
        out.print("no requests in this window" + (" matching the filters" if r.where else ""))
        return
    more = f"showing {len(r.rows)} of {r.groups} groups (raise --limit for more); " if r.groups > len(r.rows) else ""
    t = _table(*(d.upper() for d in r.by), "REQUESTS>", "ERRORS>~2", "INPUT TOK>~3", "OUTPUT TOK>~3",
               "COST (USD)>", "SHARE>~1", caption=f"{more}costs from usage_events FINAL, shown to 6 places (exact: -o json|csv); share of total cost")
    for x in r.rows:
        _row(t, *(_v(x.group[d]) for d in r.by), _n(x.requests), _n(x.errors), _n(x.input_tokens),
             _n(x.output_tokens), money(x.cost_usd), f"{x.share_pct}%")
    t.add_section()
    tot = r.total
    _row(t, "TOTAL", *([""] * (len(r.by) - 1)), _n(tot.requests), _n(tot.errors), _n(tot.input_tokens),
         _n(tot.output_tokens), money(tot.cost_usd), "100%" if Decimal(tot.cost_usd) else "—", style="bold")
    out.print(t)


def _spend_options(by: str, since: str, limit: int) -> Callable[[F], F]:
    def deco(f: F) -> F:
        for opt in reversed((
            click.option("--by", default=by, show_default=True,
                         help="team|user|key|project|model|provider|alias|upstream|route|error|tag:NAME; "
                              "up to 3, comma-separated"),
            click.option("--since", default=since, show_default=True, help="window ending now: 30m, 24h, 7d, 2w"),
            click.option("--where", multiple=True, metavar="DIM=VALUE",
                         help="filter, e.g. team=platform or tag:env=prod; repeatable (same DIM twice = OR)"),
            click.option("--limit", type=click.IntRange(1, 10_000), default=limit, show_default=True),
            click.option("--order", type=click.Choice(["cost", "requests", "tokens", "errors"]), default="cost",
                         show_default=True, help="rank groups by"),
            click.option("-o", "--output", type=OUTPUT, default="table", show_default=True),
        )):
            f = opt(f)
        return admin_options(f)

    return deco


def _spend_run(kind: str, by: str, since: str, where: tuple[str, ...], limit: int, order: str, output: str,
               admin_url: str | None, admin_token: str | None) -> None:
    _check("--by", lambda: parse_group_by(by))
    _check("--since", lambda: parse_window(since))
    _check("--where", lambda: parse_where(where))
    with _client(admin_url, admin_token) as api:
        fetch = api.spend if kind == "spend" else api.top
        r = fetch(by=by, since=since, where=list(where), limit=limit, order=order)
    _emit(output, r.model_dump(mode="json"), *_spend_csv(r), lambda: _print_spend(r, kind))


@click.command("spend")
@_spend_options("team", "7d", 100)
def spend_cmd(**kw: Any) -> None:
    """Spend per team (or user, key, model, provider, tag:NAME …) over a window, with shares of the total."""
    _spend_run("spend", **kw)


@click.command("top")
@_spend_options("key", "24h", 10)
def top_cmd(**kw: Any) -> None:
    """The heaviest keys (or any dimension) by cost, requests, tokens or errors."""
    _spend_run("top", **kw)


# -- cost -------------------------------------------------------------------------------


@click.command("cost")
@click.option("--task", required=True, help="Task id, e.g. T-123 (matched against the tag --tag-key)")
@click.option("--tag-key", default="task", show_default=True, help="Tag that holds the task id")
@click.option("--step-key", default="step", show_default=True, help="Tag that holds the step name")
@click.option("--since", default=None, help="Only this window (30m, 24h, 7d, 2w); default: all retained data")
@click.option("-o", "--output", type=OUTPUT, default="table", show_default=True)
@admin_options
def cost_cmd(task: str, tag_key: str, step_key: str, since: str | None, output: str, admin_url: str | None,
             admin_token: str | None) -> None:
    """One task's bill by step and model, steps in the order they started."""
    if since:
        _check("--since", lambda: parse_window(since))
    params = {"task": task, "tag_key": tag_key, "step_key": step_key, **({"since": since} if since else {})}
    with _client(admin_url, admin_token) as api:
        r = api.task_cost(**params)
    header = ["step", "model", "requests", "errors", "input_tokens", "output_tokens", "cost_usd", "share_pct",
              "first", "last", "cache_read_tokens", "cache_write_tokens"]
    rows = [[s.step, s.model, s.requests, s.errors, s.input_tokens, s.output_tokens, s.cost_usd, s.share_pct,
             s.first, s.last, s.cached_input_tokens, s.cache_write_tokens] for s in r.rows]

    def table() -> None:
        out = _console()
        out.print(f"[bold]task {escape(task)}[/] (tag {escape(tag_key)}, steps from tag {escape(step_key)})")
        if not r.rows:
            out.print(f"no requests tagged {escape(tag_key)}={escape(task)}")
            return
        t = _table("STEP", "MODEL", "REQUESTS>", "INPUT TOK>~3", "CACHE R/W>~4", "OUTPUT TOK>~3", "COST (USD)>",
                   "SHARE>~1", "STARTED~2",
                   caption="input includes cache reads (R) and writes (W), each billed at its own price")
        for s in r.rows:
            _row(t, _v(s.step), s.model, _n(s.requests), _n(s.input_tokens),
                 f"{_n(s.cached_input_tokens)}/{_n(s.cache_write_tokens)}", _n(s.output_tokens), money(s.cost_usd),
                 f"{s.share_pct}%", s.first[:19].replace("T", " "))
        t.add_section()
        reads, writes = sum(s.cached_input_tokens for s in r.rows), sum(s.cache_write_tokens for s in r.rows)
        _row(t, "TOTAL", "", _n(r.total.requests), _n(r.total.input_tokens), f"{_n(reads)}/{_n(writes)}",
             _n(r.total.output_tokens), money(r.total.cost_usd), "", "", style="bold")
        out.print(t)

    _emit(output, r.model_dump(mode="json"), header, rows, table)


# -- audit ------------------------------------------------------------------------------


@click.group("audit", invoke_without_command=True)
@click.option("--key", default=None, help="Virtual key id (vk_…)")
@click.option("--where", multiple=True, metavar="DIM=VALUE", help="more filters, e.g. user=alice; repeatable")
@click.option("--since", default="1h", show_default=True, help="window ending now: 30m, 24h, 7d, 2w")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("-o", "--output", type=OUTPUT, default="table", show_default=True)
@admin_options
@click.pass_context
def audit_cmd(ctx: click.Context, key: str | None, where: tuple[str, ...], since: str, limit: int, output: str,
              admin_url: str | None, admin_token: str | None) -> None:
    """The request trail, newest first (routing, status, tokens, cost, latency); `audit policy`: policy changes."""
    if ctx.invoked_subcommand is not None:
        return
    if key and key.startswith("sk-"):
        raise click.BadParameter("that looks like a key's secret; pass its id (vk_…)", param_hint="--key")
    _check("--since", lambda: parse_window(since))
    _check("--where", lambda: parse_where(where))
    with _client(admin_url, admin_token) as api:
        r = api.audit(since=since, where=list(where), limit=limit, **({"key": key} if key else {}))
    print_audit(r, output, limit)


def _unit_text(unit: str, value: Any) -> str:
    """A trail value in the CLI table, by the column's unit (interlock_contracts/usage_schema.py)."""
    if unit == "usd":
        return money(value)
    if unit == "ms":
        return f"{value:,}ms"
    if unit == "us":
        return iso_time(value)[5:19].replace("T", " ")
    if isinstance(value, bool):
        return "yes" if value else "—"
    return _n(value) if isinstance(value, int) else _v(str(value))


def print_audit(r: AuditOut, output: str, limit: int, schema: UsageSchema | None = None) -> None:
    """The trail as json, csv (every audit column, by its API name) or a table: summary cells plus a column
    for each audit column the schema gives a CLI header (`Audit.cli`)."""
    schema = schema or usage_schema()
    row_type = type(r.rows[0]) if r.rows else AuditRow
    rows = [list(x.model_dump(mode="json", by_alias=True).values()) for x in r.rows]
    own = [(c.audit.cli, c.audit.name or c.name, c.unit) for c in schema.audited if c.audit and c.audit.cli]

    def table() -> None:
        out = _console()
        out.print(f"[bold]audit[/], {_span(r)}: {len(r.rows)} request{'s' * (len(r.rows) != 1)}, newest first")
        if not r.rows:
            return
        more = f"only the newest {limit}: narrow --since or raise --limit; " if r.truncated else ""
        t = _table("TIME (UTC)!", "EVENT!~3", "MODEL / ROUTE", "STATUS!", "TOKENS IN/OUT>~2",
                   "COST (USD)>", "LATENCY>~1", *(h for h, _, _ in own), "FLAGS!",
                   caption=f"{more}flags: S stream, D client disconnected, F fallback (attempts); tokens: r/w cache "
                           "reads/writes, cnt counted (~ estimated); exact: -o json|csv")
        for x in r.rows:
            route = Text(x.model if x.requested_model in ("", x.model) else f"{x.requested_model} → {x.model}")
            route.append(f"\n{x.provider}/{x.upstream_model}", style="dim")
            route.append(f"\nrule {x.route_rule}" if x.route_rule else "", style="dim")
            route.append(f"\n{x.error_class}" if x.error_class else "", style="red")
            flags = "".join(f for f, on in (("S", x.stream), ("D", x.client_disconnected),
                                            (f"F{x.attempts}", x.fallback)) if on)
            status = Text(str(x.status), style="red" if x.status >= 400 else "green")
            tokens = f"{_n(x.input_tokens)}/{_n(x.output_tokens)}"
            writes = x.cache_write_5m_tokens + x.cache_write_1h_tokens
            if x.cached_input_tokens or writes:
                tokens += f"\nr {_n(x.cached_input_tokens)}\nw {_n(writes)}"  # one short line each: 80 columns
            if x.counted_tokens:
                tokens += f"\ncnt {_n(x.counted_tokens)}{'~' if x.count_estimated else ''}"
            _row(t, _unit_text("us", x.time_us), x.event_id, route, status, tokens, money(x.cost_usd),
                 f"{x.latency_ms:,}ms", *(_unit_text(unit, getattr(x, f)) for _, f, unit in own), flags or "—")
        out.print(t)

    _emit(output, r.model_dump(mode="json", by_alias=True), api_names(row_type), rows, table)
