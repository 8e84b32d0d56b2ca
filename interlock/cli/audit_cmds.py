"""`interlock audit policy`: who changed the policy or keys, when, and what changed (newest first).

Mounted under the `audit` group in usage_cmds (whose own callback is the request trail).
"""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from controlplane.audit import SINCE_FORMAT, AuditQueryInvalid, parse_since
from controlplane.audit_api import PolicyAuditLogOut, PolicyAuditOut
from interlock.cli.settings import CliSettings
from interlock.cli.term import cli_console as _console
from interlock_contracts.settings.common import SettingsError

from . import render
from .admin_client import AdminClient
from .policy_cmds import admin_options

_MARK = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}  # as in the apply diff
_SHOWN_CHANGES = 4


def changes_cell(r: PolicyAuditOut) -> Text:
    """'~models/gpt-4o', '-aliases/fast', … (+3 more), one per line; styled like the apply diff. No space after
    the mark and no commas: at 80 columns a wrap there left a lone '+' or ', -' on its own line."""
    cell = Text()
    for i, c in enumerate(r.changes[:_SHOWN_CHANGES]):
        cell.append("\n" if i else "")
        mark, style = _MARK[c.action]
        cell.append(f"{mark}{c.section}/{c.name}", style=style)
    if len(r.changes) > _SHOWN_CHANGES:
        cell.append(f" (+{len(r.changes) - _SHOWN_CHANGES} more)", style="dim")
    return cell


def actor_cell(r: PolicyAuditOut) -> Text:
    """The authenticated identity (its role: --diff / -o json); records older than named credentials only had
    the client's claim."""
    return Text(r.actor) + (Text(" (claimed)", style="dim") if not r.actor_verified else Text())


def policy_log_table(log: PolicyAuditLogOut) -> Table:
    caption = ("older records exist: widen --since or raise --limit; " if log.truncated else "") + \
        "* unverified: the name the client declared (INTERLOCK_ACTOR); full diffs: --diff or -o json"
    t = render.table("TIME (UTC)!", "VERSION!~2", "ACTOR!", "ON BEHALF OF*~1", "ACTION!", "CHANGES", caption=caption)
    for r in log.records:
        # Plain Text, never markup: actors and names come from users and must print literally.
        t.add_row(Text(r.at[:19].replace("T", " ")), Text(str(r.version)), actor_cell(r),
                  Text(r.on_behalf_of_unverified or "-"), Text(r.action.replace("_", " ")), changes_cell(r))
    return t


CSV_FIELDS = ("at", "version", "actor", "actor_role", "actor_verified", "on_behalf_of_unverified", "action", "changes")


@click.command("policy")
@click.option("--since", default=None, help=f"only this window ({SINCE_FORMAT}); default: all recorded changes")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--diff", "show_diff", is_flag=True, help="print each change's field-level diff under the table")
@click.option("-o", "--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="csv: one row per change record, changes as action:section/name;...")
@admin_options
def policy_log_cmd(since: str | None, limit: int, show_diff: bool, output: str, admin_url: str | None,
                   admin_token: str | None) -> None:
    """Policy changes (apply, key create, key revoke), newest first: who (the admin token's identity, plus the
    unverified name the client declared), when, what, resulting version."""
    try:
        parse_since(since, 0)
    except AuditQueryInvalid as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    try:
        s = CliSettings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    with AdminClient(admin_url or s.admin_url, admin_token or s.admin_token, actor=s.actor) as api:
        log = api.policy_log(since=since, limit=limit)
    if output == "json":
        click.echo(json.dumps(log.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    if output == "csv":
        render.emit_rows("csv", list(CSV_FIELDS), [
            [r.at, str(r.version), r.actor, r.actor_role, str(r.actor_verified).lower(), r.on_behalf_of_unverified,
             r.action, ";".join(f"{c.action}:{c.section}/{c.name}" for c in r.changes)] for r in log.records])
        return
    out = _console()
    window = f"last {escape(since)}" if since else "all recorded"
    n = len(log.records)
    out.print(f"[bold]policy audit[/], {window}: {n} change{'s' * (n != 1)}, newest first")
    if not log.records:
        return
    out.print(policy_log_table(log))
    if show_diff:
        for r in log.records:
            role = f" ({r.actor_role})" if r.actor_role else "" if r.actor_verified else " (claimed)"
            behalf = f" on behalf of {r.on_behalf_of_unverified} (unverified)" if r.on_behalf_of_unverified else ""
            out.print(Text(f"\nv{r.version}  {r.at}  {r.actor}{role}{behalf}  {r.action.replace('_', ' ')}",
                           style="bold"))
            out.print(render.diff(r.changes))
            if r.values_omitted:
                out.print(Text("  (values omitted: the change was too large to record them)", style="dim"))
