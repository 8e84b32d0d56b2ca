"""Pick the plan for a request (first matching rule) and apply the key's allowlist; errors in gateway terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.client_errors import GatewayError
from dataplane.routing.matching import Facts
from dataplane.routing.table import Plan, RoutingTable

if TYPE_CHECKING:
    from dataplane.policy_types import KeyEntry


class RoutedPolicy(Protocol):
    """What routing reads from a compiled policy (dataplane/snapshot/policy.py's CompiledPolicy is one), declared
    here so routing does not import the snapshot compiler that builds its table."""

    @property
    def version(self) -> int: ...

    @property
    def routing(self) -> RoutingTable: ...

SESSION_HEADER = "x-interlock-session-id"


def facts_of(key: KeyEntry, requested: str, headers: Mapping[str, str], tags: Mapping[str, str],
             body: Mapping[str, Any], body_bytes: int) -> Facts:
    return Facts(key.id, key.team_id, key.project_id, requested, headers, tags, bool(body.get("tools")), body_bytes // 4)


def session_of(headers: Mapping[str, str], tags: Mapping[str, str]) -> str:
    """The session a sticky rule keeps on one deployment: the `session` tag (Claude Code / Codex ids are
    captured into it automatically), else the x-interlock-session-id header."""
    return tags.get("session") or headers.get(SESSION_HEADER, "")


def plan_for(policy: RoutedPolicy, key: KeyEntry, requested: str, headers: Mapping[str, str],
             tags: Mapping[str, str], body: Mapping[str, Any], body_bytes: int) -> Plan:
    """select_plan for the hot path: request facts are only built when some rule could apply to the name."""
    plan = policy.routing.fixed(requested)
    if plan is None:
        return select_plan(policy, key, facts_of(key, requested, headers, tags, body, body_bytes))
    if key.allowed is not None and requested not in key.allowed:
        raise GatewayError(403, ErrorKind.PERMISSION, f"virtual key {key.id} is not allowed to use model {requested!r}")
    return plan


def select_plan(policy: RoutedPolicy, key: KeyEntry, f: Facts) -> Plan:
    sel = policy.routing.select(f)
    if sel is None:
        raise GatewayError(404, ErrorKind.NOT_FOUND,
                           f"model {f.requested!r} does not exist on this gateway; GET /v1/models lists yours")
    if key.allowed is not None:
        # A rule never widens a key: known names are checked as asked, rule-routed names by their target.
        name = f.requested if sel.known else sel.plan.targets[0].model
        if name not in key.allowed:
            raise GatewayError(403, ErrorKind.PERMISSION, f"virtual key {key.id} is not allowed to use model {f.requested!r}")
    return sel.plan
