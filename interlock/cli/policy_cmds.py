"""`interlock apply | keys | models | status`: the policy commands, over the admin API."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import click
import yaml
from pydantic import ValidationError
from rich.markup import escape
from rich.text import Text

from controlplane.admin_schemas import KeyCreateIn
from controlplane.policy.model import SECTION_TYPES, PolicyDocument
from controlplane.policy.prices import resolve_prices, stale_prices
from controlplane.price_catalog import CatalogError
from interlock.cli.settings import CliSettings
from interlock.cli.term import cli_console as _console
from interlock_contracts.settings.common import SettingsError

from . import render
from .admin_client import AdminClient, AdminError

F = TypeVar("F", bound=Callable[..., Any])
OUTPUT = click.Choice(["table", "json", "csv"])


def register(group: click.Group) -> None:
    for cmd in (apply_cmd, keys, models, status):
        group.add_command(cmd)


# -- shared plumbing ------------------------------------------------------------------


def admin_options(f: F) -> F:
    f = click.option("--admin-token", metavar="TOKEN",
                     help="Admin token (default: $INTERLOCK_ADMIN_TOKEN; prefer the variable, argv is visible)")(f)
    return click.option("--admin-url", metavar="URL",
                        help="Admin API URL (default: $INTERLOCK_ADMIN_URL or http://127.0.0.1:8081)")(f)


def _client(admin_url: str | None, admin_token: str | None) -> AdminClient:
    try:
        s = CliSettings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    return AdminClient(admin_url or s.admin_url, admin_token or s.admin_token, actor=s.actor)


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _dump(items: list[Any]) -> list[dict[str, Any]]:
    return [i.model_dump(mode="json") for i in items]


# -- apply ----------------------------------------------------------------------------


def catalog_warnings(doc: PolicyDocument, today: date, max_age_days: int) -> list[str]:
    """Stale catalog prices in `doc` (the catalog shipped with this CLI; the control plane checks entries too)."""
    try:
        return stale_prices(resolve_prices(doc), today, max_age_days)
    except CatalogError:
        return []  # the control plane reports a catalog miss as a policy error, with the fix


def load_policy(path: str) -> PolicyDocument:
    """Read and validate a policy file, with errors that point at the field to fix."""
    try:
        with click.open_file(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise click.ClickException(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from exc
    if data is None:
        raise click.ClickException(
            f"{path} is empty; refusing to apply it because an empty policy deletes every provider, model and "
            "team. Write `{}` if that is really what you want."
        )
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: the top level must be a mapping of sections "
                                   f"({', '.join(SECTION_TYPES)}), not a {type(data).__name__}")
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        problems = render.validation_problems(data, exc)
        raise click.ClickException(f"{path} is not a valid policy:\n" + "\n".join(f"  - {p}" for p in problems)) from exc


@click.command("apply")
@click.option("-f", "--file", "path", required=True, metavar="FILE", help="Policy YAML ('-' reads stdin)")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing")
@click.option("-y", "--yes", is_flag=True, help="Apply without asking (implied when stdin is not a terminal)")
@click.option("--max-price-age", type=click.IntRange(1), default=90, show_default=True, metavar="DAYS",
              envvar="INTERLOCK_MAX_PRICE_AGE_DAYS", help="Warn about catalog prices read longer ago than this")
@admin_options
def apply_cmd(path: str, dry_run: bool, yes: bool, max_price_age: int, admin_url: str | None,
              admin_token: str | None) -> None:
    """Make the control plane's policy equal FILE; items not in FILE are deleted."""
    doc = load_policy(path)
    for warning in catalog_warnings(doc, datetime.now(UTC).date(), max_price_age):
        click.echo(f"warning: {warning}", err=True)
    try:
        _apply_now(doc, dry_run, yes, admin_url, admin_token)
    except AdminError as exc:
        if any("which the policy no longer defines" in e for e in exc.errors):
            exc.message += "\n" + KEY_OWNER_HINT
        raise


KEY_OWNER_HINT = (
    "Existing virtual keys (revoked ones too) belong to teams, users and projects by id, and a policy that drops "
    "a key's owner is refused. To keep them, start from the live policy: `interlock policy get > policy.yaml`, "
    "edit it, `interlock apply -f policy.yaml`; or add the owners listed above to your file."
)


def _apply_now(doc: PolicyDocument, dry_run: bool, yes: bool, admin_url: str | None, admin_token: str | None) -> None:
    out = _console()
    interactive = not (yes or dry_run) and _stdin_is_tty()
    with _client(admin_url, admin_token) as api:
        preview = None
        if dry_run or interactive:
            preview = api.apply(doc, dry_run=True)
            if not preview.changes:
                out.print(f"no changes (policy version {preview.version})")
                return
            out.print(render.diff(preview.changes))
            out.print(f"\n{render.change_summary(preview.changes)}")
            if dry_run:
                out.print(f"dry run: nothing applied (policy version {preview.version})")
                return
            click.confirm("Apply these changes?", abort=True)
        result = api.apply(doc, dry_run=False)
    if not result.changes:
        out.print(f"no changes (policy version {result.version})")
        return
    if preview is None or result.changes != preview.changes:
        if preview is not None:
            out.print("[yellow]the policy changed since the preview; these are the changes actually applied:[/]")
        out.print(render.diff(result.changes))
    out.print(f"applied: {render.change_summary(result.changes)}; policy version now [bold]{result.version}[/]")


# -- keys -----------------------------------------------------------------------------


def parse_expiry(value: str | None, now: datetime) -> int:
    """'30d', '12h', '2w', '90m' or an ISO date/time (UTC unless it says otherwise) -> unix ms; 0 = never."""
    if not value:
        return 0
    if m := re.fullmatch(r"(\d+)\s*([mhdw])", value.strip()):
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m[2]]
        at = now + timedelta(**{unit: int(m[1])})
    else:
        try:
            at = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise click.BadParameter("use a duration like 30d, 12h, 2w or an ISO date like 2026-01-31",
                                     param_hint="--expires") from exc
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
    if at <= now:
        raise click.BadParameter(f"{value!r} is in the past", param_hint="--expires")
    return int(at.timestamp() * 1000)


def parse_tags(tags: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for t in tags:
        k, sep, v = t.partition("=")
        if not sep or not k.strip():
            raise click.BadParameter(f"{t!r} must look like key=value", param_hint="--tag")
        out[k.strip()] = v.strip()
    return out


@click.group()
def keys() -> None:
    """Create, list and revoke virtual keys."""


@keys.command("create")
@click.option("--name", required=True, help="What the key is for, e.g. 'alice-laptop' or 'ci'")
@click.option("--team", default="", help="Team id (the key gets the team's model allowlist and tags)")
@click.option("--user", default="", help="User id")
@click.option("--project", default="", help="Project id")
@click.option("--models", "models_csv", default="", help="Comma-separated model/alias allowlist (default: the team's)")
@click.option("--expires", default=None, help="30d, 12h, 2w, or an ISO date/time (UTC unless given)")
@click.option("--tag", "tags", multiple=True, metavar="K=V", help="Default usage tag; repeatable")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@admin_options
def keys_create(name: str, team: str, user: str, project: str, models_csv: str, expires: str | None,
                tags: tuple[str, ...], output: str, admin_url: str | None, admin_token: str | None) -> None:
    """Create a virtual key and print its secret (shown only this once)."""
    spec = KeyCreateIn(
        name=name, team=team, user=user, project=project,
        allowed_models=[m.strip() for m in models_csv.split(",") if m.strip()],
        expires_at_unix_ms=parse_expiry(expires, datetime.now(UTC)), default_tags=parse_tags(tags),
    )
    with _client(admin_url, admin_token) as api:
        created = api.create_key(spec)
    warning = "Save this secret now: it will not be shown again."
    if output == "json":
        _echo_json(created.model_dump(mode="json"))
    else:
        # From the record: the service may infer the team from the user or project.
        owner = ", ".join(f"{k} {v}" for k, v in (("team", created.team), ("user", created.user),
                                                   ("project", created.project)) if v)
        about = escape(", ".join([name, owner] if owner else [name]))  # user text: print literally, not as markup
        _console().print(f"created virtual key [bold]{created.id}[/] ({about})")
        click.echo(created.secret)  # plain echo: never wrapped or styled, so it copies cleanly
    click.secho(warning, fg="yellow", err=True)


@keys.command("list")
@click.option("-o", "--output", type=OUTPUT, default="table", show_default=True)
@admin_options
def keys_list(output: str, admin_url: str | None, admin_token: str | None) -> None:
    """List virtual keys: hint (last characters of the secret), OWNER as team/user/project, status."""
    with _client(admin_url, admin_token) as api:
        items = api.list_keys()
    if output == "json":
        _echo_json(_dump(items))
    elif output == "csv":
        render.emit_models_csv(list(items))
    elif not items:
        _console().print("no virtual keys yet; create one with `interlock keys create --name NAME`")
    else:
        _console().print(render.keys_table(items, _now_ms()))


@keys.command("revoke")
@click.argument("key_ids", metavar="KEY_ID...", nargs=-1, required=True)
@admin_options
def keys_revoke(key_ids: tuple[str, ...], admin_url: str | None, admin_token: str | None) -> None:
    """Revoke virtual keys by id (from `interlock keys list`, not the secret). KEY_ID '-' reads ids from stdin,
    one per line or as `keys list -o csv` prints them: `interlock keys list -o csv | grep ci- | interlock keys
    revoke -`. Exit 1 when any key could not be revoked (the others still are)."""
    from .key_ids import key_ids as read_ids

    ids, failed = read_ids(key_ids, sys.stdin), []
    with _client(admin_url, admin_token) as api:
        for key_id in ids:
            try:
                k = api.revoke_key(key_id)
            except AdminError as exc:
                if exc.status != 404:
                    raise  # auth, connection: the rest would fail the same way
                failed.append(key_id)
                click.echo(f"Error: {exc.message} (see `interlock keys list` for ids)", err=True)
                continue
            _console().print(f"revoked [bold]{escape(k.id)}[/]{escape(f' ({k.name})') if k.name else ''}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(ids)} keys not revoked: {', '.join(failed)}")
    click.echo("data-plane nodes stop accepting revoked keys as soon as they apply the next snapshot", err=True)


@keys.command("resume")
@click.argument("key_id")
@admin_options
def keys_resume(key_id: str, admin_url: str | None, admin_token: str | None) -> None:
    """Resume KEY_ID after the runaway-loop breaker paused it (audited; role operator)."""
    if key_id.startswith("sk-"):
        raise click.BadParameter("that looks like a key's secret; pass its id (vk_…) from `interlock keys list`")
    try:
        with _client(admin_url, admin_token) as api:
            k = api.resume_key(key_id)
    except AdminError as exc:
        if exc.status == 404:
            exc.message += " (see `interlock keys list` for ids)"
        raise
    _console().print(f"resumed [bold]{escape(k.id)}[/]; data-plane nodes accept it again as soon as they apply "
                     "the next snapshot")


# -- models and status ---------------------------------------------------------------


@click.group()
def models() -> None:
    """Inspect routable models and aliases."""


@models.command("list")
@click.option("-o", "--output", type=OUTPUT, default="table", show_default=True)
@admin_options
def models_list(output: str, admin_url: str | None, admin_token: str | None) -> None:
    """Models and aliases with their routes and prices (USD per 1M tokens)."""
    with _client(admin_url, admin_token) as api:
        items = api.list_models()
    if output == "json":
        _echo_json(_dump(items))
    elif output == "csv":
        render.emit_models_csv(list(items))
    elif not items:
        _console().print("no models yet; add some to your policy and run `interlock apply -f policy.yaml`")
    else:
        _console().print(render.models_table(items))


@click.command("status")
@click.option("-o", "--output", type=OUTPUT, default="table", show_default=True)
@admin_options
def status(output: str, admin_url: str | None, admin_token: str | None) -> None:
    """Current policy version and whether every data-plane node runs it."""
    with _client(admin_url, admin_token) as api:
        nodes, snap = api.nodes(), api.snapshot()
    if output == "json":
        _echo_json({"snapshot": snap.model_dump(mode="json"), **nodes.model_dump(mode="json")})
        return
    if output == "csv":  # one row per node (its applied version, sync state, usage sink)
        render.emit_models_csv(list(nodes.nodes))
        return
    out, c = _console(), snap.counts
    out.print(f"policy version [bold]{nodes.version}[/] (hash {nodes.content_hash[:12] or '—'})")
    counts = (("provider", c.providers), ("model", c.models), ("alias", c.aliases), ("team", c.teams),
              ("user", c.users), ("project", c.projects), ("active key", c.active_keys))
    out.print(", ".join(render.plural(n, word) for word, n in counts))
    if not nodes.nodes:
        out.print("no data-plane nodes have connected yet; start one with `interlock dataplane`")
        return
    in_sync = sum(n.in_sync for n in nodes.nodes)
    style = "green" if in_sync == len(nodes.nodes) else "yellow"
    out.print(f"[{style}]{in_sync} of {len(nodes.nodes)} nodes in sync[/]")
    out.print(render.nodes_table(nodes.nodes, nodes.version, nodes.server_time_unix_ms))
    if warning := render.usage_sink_warning(nodes.nodes):
        out.print(Text(warning, style="yellow"))
