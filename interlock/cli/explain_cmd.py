"""`interlock explain`: which rule, deployments, constraints and fallbacks a request would get, without sending it.

The control plane answers with the data plane's own routing code (controlplane/explain_api.py);
this module only renders. A key given as a secret is sent to the admin API to be hashed, never printed.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from interlock.cli.settings import CliSettings
from interlock_contracts.settings.common import SettingsError

from .admin_client import AdminClient
from .policy_cmds import admin_options
from .render import emit_rows, safe_tree, table

_CIRCUIT_STYLE = {"closed": "green", "open": "red", "half_open": "yellow"}


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, val = v.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{v!r}: write it as name=value", param_hint=what)
        out[name.strip()] = val.strip()
    return out


def render(e: dict[str, Any], console: Console) -> None:
    console.print(Text.assemble(("policy v", "dim"), (str(e["policy_version"]), "dim"), "  key ", (e["key_id"], "bold"),
                                "  team ", (e["team"] or "-", "bold"), "  model ", (e["requested_model"], "bold"),
                                ("  (~", "dim"), (str(e["estimated_input_tokens"]), "dim"),
                                (" input tokens, tools)" if e["has_tools"] else " input tokens)", "dim")))
    rules = table("RULE", "RESULT", title="rules considered, in order")
    for r in e["rules"]:
        rules.add_row(Text(r["rule"]), Text("match" if r["matched"] else f"skip: {r['reason']}",
                                            style="green" if r["matched"] else "dim"))
    if e["rules"]:
        console.print(rules)
    if "refused" in e and not e.get("targets"):
        console.print(Text(f"refused ({e['refused']['status']}): {e['refused']['message']}", style="red"))
        return
    console.print(Text.assemble("route ", (e["rule"], "bold cyan"),
                                ("  (no rule matched: the model's defaults)" if e["rule"] == "default" else "", "dim")))
    if e["constraints"]:
        console.print(Text.assemble("team limits: ", (e["constraints"], "yellow")))
    # narrow terminals lose the circuit first (the control plane only knows it as 'unknown'), then the weight
    # (FIRST PICK shows its effect), region, provider (often the deployment's name)
    t = table("ORDER!", "MODEL!", "DEPLOYMENT!", "PROVIDER!~4", "UPSTREAM~5", "REGION!~3", "WEIGHT!~2", "FIRST PICK",
              "CIRCUIT!~1")
    for target in e["targets"]:
        for d in target["deployments"]:
            excluded = d["excluded"]
            t.add_row(Text(target["role"]), Text(target["model"]), Text(d["deployment"].split("/", 1)[-1]),
                      Text(d["provider"]), Text(d["upstream_model"]), Text(d["region"] or "-"), Text(str(d["weight"])),
                      Text(f"excluded: {excluded}", style="red") if excluded else Text(f"{d['share']:g}%"),
                      Text(d["circuit"], style=_CIRCUIT_STYLE.get(d["circuit"], "dim")))
    console.print(t)
    console.print(Text.assemble(
        "next attempt on: ", (", ".join(e["fallback_on"]) or "never", "bold"),
        f"   retries per target: {e['retries']}",
        f"   backoff: {e['backoff_ms'][0]}..{e['backoff_ms'][1]} ms",
        f"   retry-after honoured up to {e['max_retry_after_ms']} ms"))
    console.print(Text(
        f"timeouts: per attempt {e['attempt_timeout_ms'] or 'provider default'}"
        f"{' ms' if e['attempt_timeout_ms'] else ''}, total {e['total_timeout_ms'] or 'none'}"
        f"{' ms' if e['total_timeout_ms'] else ''}   sticky sessions: {'yes' if e['sticky'] else 'no'}"))
    console.print(Text("circuit state lives on each data-plane node; the control plane reports it as unknown",
                       style="dim"))
    if "refused" in e:
        console.print(Text(f"refused ({e['refused']['status']}): {e['refused']['message']}", style="red"))
    _guardrails(e.get("guardrails") or [], console)


def _guardrails(gs: list[dict[str, Any]], console: Console) -> None:
    if not gs:
        return
    t = table("GUARDRAIL!", "APPLIES", "DIRECTION!", "ACTION!", "MODE!", "SAMPLING>", title="guardrails")
    for g in gs:
        t.add_row(Text(g["id"]), Text(g["why"], style="green" if g["applies"] else "dim"), Text(g["direction"]),
                  Text(g["action"]), Text(g["mode"]), Text(f"{g['sampling_percent']}%"))
    console.print(t)


CSV_FIELDS = ("rule", "role", "model", "deployment", "provider", "upstream_model", "region", "weight", "share_pct",
              "excluded", "circuit")


def deployment_rows(e: dict[str, Any]) -> list[list[str]]:
    """One CSV row per candidate deployment, in the order they would be tried (none when refused outright)."""
    return [[e.get("rule", ""), t["role"], t["model"], d["deployment"], d["provider"], d["upstream_model"],
             d["region"] or "", str(d["weight"]), f"{d['share']:g}", d["excluded"] or "", d["circuit"]]
            for t in e.get("targets") or [] for d in t["deployments"]]


@click.command("explain")
@click.option("--key", "key", required=True, help="virtual key id (vk_...) or the key itself (never printed)")
@click.option("--model", required=True, help="the model name the client would ask for")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE", help="a request header (repeatable)")
@click.option("--tag", "tags", multiple=True, metavar="NAME=VALUE", help="an attribution tag (repeatable)")
@click.option("--tools", is_flag=True, help="the request carries tools")
@click.option("--input-tokens", type=click.IntRange(0), default=0, help="estimated prompt size in tokens")
@click.option("-o", "--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="csv: one row per candidate deployment")
@admin_options
def explain_cmd(key: str, model: str, headers: tuple[str, ...], tags: tuple[str, ...], tools: bool, input_tokens: int,
                output: str, admin_url: str | None, admin_token: str | None) -> None:
    """Show the route a request would take under the current policy, without sending it.

    Exit code 0: the request would be served; 1: it would be refused (the reason and status are printed)."""
    query = {"key": key, "model": model, "headers": _pairs(headers, "--header"), "tags": _pairs(tags, "--tag"),
             "has_tools": tools, "input_tokens": input_tokens}
    try:
        s = CliSettings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    with AdminClient(admin_url or s.admin_url, admin_token or s.admin_token, actor=s.actor) as api:
        explanation = api.explain(query)
    if output == "json":
        click.echo(json.dumps(explanation, indent=2, ensure_ascii=False))
    elif output == "csv":
        emit_rows("csv", list(CSV_FIELDS), deployment_rows(explanation))
    else:
        render(safe_tree(explanation), Console(highlight=False))  # model names and tags are client text
    if "refused" in explanation:
        raise SystemExit(1)  # scripts can tell "would be refused" from "would be served"


def register(group: click.Group) -> None:
    group.add_command(explain_cmd)
