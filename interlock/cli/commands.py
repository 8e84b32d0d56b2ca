"""Registry of command modules; each module exposes `register(group)`."""

from __future__ import annotations

import importlib

import click

# Modules are imported lazily at registration so one broken area can't hide the rest.
MODULES = (
    "interlock.cli.alerts_cmds",   # alerts, alerts test
    "interlock.cli.budget_cmds",   # budgets, keys mint
    "interlock.cli.explain_cmd",   # explain (routing)
    "interlock.cli.fake_cmd",      # interlock fake-provider
    "interlock.cli.ingest_cmd",    # ingest (Kafka -> ClickHouse)
    "interlock.cli.kafka_cmd",     # kafka init (usage topics)
    "interlock.cli.policy_cmds",   # apply, keys, models, status
    "interlock.cli.policy_get_cmd",  # policy get (export for edit-and-apply)
    "interlock.cli.serve_cmds",    # dev, dataplane, controlplane
    "interlock.cli.usage_cmds",    # spend, top, cost, audit
    "interlock.cli.whoami_cmd",    # whoami (admin identity and role)
)


def register(group: click.Group) -> None:
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(group)
