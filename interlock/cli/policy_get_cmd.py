"""`interlock policy get`: the live policy as YAML in exactly the format `interlock apply -f` takes.

Export, edit, apply: `interlock policy get > policy.yaml && $EDITOR policy.yaml && interlock apply -f
policy.yaml`. Fields left at their defaults are omitted (apply fills them in again), so the file is
what a person would have written, and applying it unchanged is a no-op.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
import yaml

from controlplane.policy.model import SECTIONS, PolicyDocument

from .policy_cmds import _client, admin_options


def policy_dict(doc: PolicyDocument) -> dict[str, Any]:
    """Sections in apply's order, empty ones and default-valued fields left out."""
    data = doc.model_dump(mode="json", exclude_defaults=True)
    return {s: data[s] for s in SECTIONS if data.get(s)}


def policy_yaml(doc: PolicyDocument, version: int, *, now: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    header = (f"# Interlock policy version {version}, exported {stamp} by `interlock policy get`.\n"
              "# Edit and apply with `interlock apply -f FILE` (apply makes the live policy equal this file;\n"
              "# virtual keys are not part of it: `interlock keys`).\n")
    body = policy_dict(doc)
    return header + (yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100) if body else "{}\n")


@click.group("policy")
def policy_group() -> None:
    """Read the live policy (change it with `interlock apply`)."""


@policy_group.command("get")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@admin_options
def policy_get_cmd(output: str, admin_url: str | None, admin_token: str | None) -> None:
    """Print the live policy in the format `interlock apply -f` takes (needs the admin role)."""
    with _client(admin_url, admin_token) as api:
        got = api.get_policy()
    if output == "json":
        click.echo(json.dumps({"version": got.version, "document": policy_dict(got.document)}, indent=2,
                              ensure_ascii=False))
    else:
        click.echo(policy_yaml(got.document, got.version, now=time.time()), nl=False)


def register(group: click.Group) -> None:
    group.add_command(policy_group)
