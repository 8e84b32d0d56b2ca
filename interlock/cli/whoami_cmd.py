"""`interlock whoami`: which admin identity and role the configured token authenticates as."""

from __future__ import annotations

import json

import click

from .policy_cmds import _client, admin_options
from .render import emit_rows

# What each role may do (controlplane/admin_auth.py), for a human reading the answer.
_MAY = {
    "viewer": "read status, models, keys, budgets, usage and the audit log",
    "operator": "read, and mint and revoke per-run keys",
    "admin": "everything: policy, keys, per-run keys, reads",
}


@click.command("whoami")
@click.option("-o", "--output", type=click.Choice(["table", "text", "json", "csv"]), default="table",
              show_default=True, help="table and text: one readable line")
@admin_options
def whoami(output: str, admin_url: str | None, admin_token: str | None) -> None:
    """The admin identity and role your token has (as the audit log will name you)."""
    with _client(admin_url, admin_token) as api:
        me = api.whoami()
    if output == "json":
        click.echo(json.dumps(me.model_dump(mode="json")))
        return
    if output == "csv":
        emit_rows("csv", ["name", "role", "may"], [[me.name, me.role, _MAY.get(me.role, "")]])
        return
    click.echo(f"{me.name} (role {me.role}): may {_MAY.get(me.role, 'see the control plane for details')}")


def register(group: click.Group) -> None:
    group.add_command(whoami)
