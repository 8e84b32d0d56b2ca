"""Guardrails in the policy file: model, validation and compilation into the snapshot (issue 12).

    guardrails:
      - id: no-secrets
        detect: [secrets]              # groups (secrets, pii) or rule ids (aws-access-key-id, email, ...)
        custom:
          - {id: internal-host, regex: 'corp\\.example\\.internal'}
          - {id: codenames, keywords: [bluebird, nightjar]}
        action: redact                 # block | redact | audit
        direction: input               # input | output | both
        sampling: 100                  # percent of requests, deterministic per request id
        mode: enforce                  # enforce | audit_only (record what would happen, change nothing)
        fail_mode: closed              # closed (refuse) | open (forward) when a detector errors
        attach: {teams: [payments]}    # teams, keys, projects, models, routing_rules; empty = every request
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dataplane.guardrails.catalog import GROUPS, known_detector
from dataplane.guardrails.engine import validate_pattern
from interlock_contracts.v1 import policy_pb2


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CustomPattern(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    regex: str = Field(default="", max_length=2000)
    keywords: list[str] = Field(default_factory=list, max_length=1000)


class Attach(_Frozen):
    teams: list[str] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list)
    projects: list[str] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    routing_rules: list[str] = Field(default_factory=list)


class Guardrail(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    detect: list[str] = Field(default_factory=list)
    custom: list[CustomPattern] = Field(default_factory=list)
    action: Literal["block", "redact", "audit"] = "redact"
    direction: Literal["input", "output", "both"] = "input"
    sampling: int = Field(default=100, ge=1, le=100)
    mode: Literal["enforce", "audit_only"] = "enforce"
    fail_mode: Literal["open", "closed"] = "closed"
    attach: Attach = Field(default_factory=Attach)


def validate_guardrails(guardrails: list[Guardrail], *, teams: set[str], projects: set[str], models: set[str],
                        rules: set[str]) -> list[str]:
    errors: list[str] = []
    seen: set[str] = set()
    for g in guardrails:
        where = f"guardrail {g.id!r}"
        if g.id in seen:
            errors.append(f"{where} is defined more than once")
        seen.add(g.id)
        if not g.detect and not g.custom:
            errors.append(f"{where} detects nothing: set detect (e.g. [secrets]) or custom patterns")
        for d in g.detect:
            if not known_detector(d):
                errors.append(f"{where}: unknown detector {d!r} (groups: {', '.join(sorted(GROUPS))}; "
                              "docs/guardrails.md lists the rule ids)")
        for c in g.custom:
            if bool(c.regex) == bool(c.keywords):
                errors.append(f"{where}: custom pattern {c.id!r} needs exactly one of regex or keywords")
            elif c.regex and (err := validate_pattern(c.regex)) is not None:
                errors.append(f"{where}: custom pattern {c.id!r}: invalid regex: {err}")
        a = g.attach
        errors += [f"{where}: attached to team {t!r}, which is not defined" for t in a.teams if t not in teams]
        errors += [f"{where}: attached to project {p!r}, which is not defined" for p in a.projects if p not in projects]
        errors += [f"{where}: attached to model {m!r}, which is not a model or alias" for m in a.models if m not in models]
        errors += [f"{where}: attached to routing rule {r!r}, which is not defined" for r in a.routing_rules
                   if r not in rules]
    return errors


def compile_guardrails(guardrails: list[Guardrail], snap: policy_pb2.PolicySnapshot) -> None:
    for g in guardrails:  # policy order: the order they run in
        a = g.attach
        snap.guardrails.add(
            id=g.id, detectors=g.detect, action=g.action, direction=g.direction, sampling_percent=g.sampling,
            mode=g.mode, fail_mode=g.fail_mode, teams=sorted(a.teams), keys=sorted(a.keys),
            projects=sorted(a.projects), models=sorted(a.models), routing_rules=sorted(a.routing_rules),
            custom=[policy_pb2.GuardrailPattern(id=c.id, regex=c.regex, keywords=c.keywords) for c in g.custom],
        )
