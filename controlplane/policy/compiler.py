"""Validate policy state and compile it into an immutable PolicySnapshot.

Pure: records in, snapshot (or a list of errors) out. Validation runs before
anything is written to the store, and again whenever the store changes, so an
invalid policy is never published.
"""

from __future__ import annotations

from collections.abc import Iterable

from interlock_contracts.keys import HASH_SCHEME
from interlock_contracts.kinds import PROVIDER_KINDS, PROVIDER_OPTIONS, missing_options
from interlock_contracts.snapshot_hash import snapshot_content_hash
from interlock_contracts.v1 import policy_pb2

from ..errors import PolicyInvalid
from .budgets import compile_budget_policy, revoked_ids, validate_budgets
from .guardrails import compile_guardrails, validate_guardrails
from .loop import compile_loop_breakers
from .model import KeyRecord, PolicyDocument
from .prices import compile_price, price_errors, resolve_prices
from .routing import compile_model_routing, compile_rules, compile_team_routing, fallback_chains, validate_routing


def _dupes(kind: str, names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for n in names:
        if n in seen:
            out.append(f"{kind} {n!r} is defined more than once")
        seen.add(n)
    return out


def resolve_aliases(doc: PolicyDocument) -> tuple[dict[str, str], list[str]]:
    """Flatten alias chains to their final model; report cycles and dangling targets."""
    models = {m.name for m in doc.models}
    raw = {a.name: a.target for a in doc.aliases}
    flat: dict[str, str] = {}
    errors: list[str] = []
    for name in raw:
        seen = [name]
        target = raw[name]
        while target in raw:
            if target in seen:
                errors.append(f"alias cycle: {' -> '.join([*seen, target])}")
                break
            seen.append(target)
            target = raw[target]
        else:
            if target in models:
                flat[name] = target
            else:
                errors.append(f"alias {name!r} points to {target!r}, which is neither a model nor an alias")
    return flat, errors


def validate(doc: PolicyDocument, keys: Iterable[KeyRecord]) -> dict[str, str]:
    """Raise PolicyInvalid listing every problem; return the flattened alias map."""
    errors: list[str] = []
    errors += _dupes("provider", (p.name for p in doc.providers))
    errors += _dupes("model", (m.name for m in doc.models))
    errors += _dupes("alias", (a.name for a in doc.aliases))
    errors += _dupes("team", (t.id for t in doc.teams))
    errors += _dupes("user", (u.id for u in doc.users))
    errors += _dupes("project", (p.id for p in doc.projects))
    providers = {p.name for p in doc.providers}
    models = {m.name for m in doc.models}
    teams = {t.id for t in doc.teams}
    users = {u.id: u.team for u in doc.users}
    projects = {p.id: p.team for p in doc.projects}
    for p in doc.providers:
        if p.kind not in PROVIDER_KINDS:
            errors.append(f"provider {p.name!r}: unknown kind {p.kind!r} (known: {', '.join(sorted(PROVIDER_KINDS))})")
        elif unknown := sorted(set(p.options) - PROVIDER_OPTIONS.get(p.kind, frozenset())):
            known = ", ".join(sorted(PROVIDER_OPTIONS.get(p.kind, ()))) or "none"
            errors.append(f"provider {p.name!r}: unknown options {unknown} for kind {p.kind!r} (known: {known})")
        elif missing := missing_options(p.kind, p.options):
            errors.append(f"provider {p.name!r}: kind {p.kind!r} needs options {missing}, e.g. "
                          f"options: {{{', '.join(f'{o}: ...' for o in missing)}}}")
    for m in doc.models:
        if m.provider is not None and m.provider not in providers:
            errors.append(f"model {m.name!r}: provider {m.provider!r} is not defined")
    for a in doc.aliases:
        if a.name in models:
            errors.append(f"alias {a.name!r} has the same name as a model; rename one of them")
    flat, alias_errors = resolve_aliases(doc)
    errors += alias_errors
    routable = models | set(flat)
    for t in doc.teams:
        errors += [f"team {t.id!r}: allowed model {n!r} is not a model or alias" for n in t.allowed_models if n not in routable]
    for u in doc.users:
        if u.team not in teams:
            errors.append(f"user {u.id!r}: team {u.team!r} is not defined")
    for pr in doc.projects:
        if pr.team not in teams:
            errors.append(f"project {pr.id!r}: team {pr.team!r} is not defined")
    for k in keys:
        where = f"virtual key {k.id}"
        if k.team and k.team not in teams:
            errors.append(f"{where} belongs to team {k.team!r}, which the policy no longer defines")
        if k.user and k.user not in users:
            errors.append(f"{where} belongs to user {k.user!r}, which the policy no longer defines")
        if k.project and k.project not in projects:
            errors.append(f"{where} belongs to project {k.project!r}, which the policy no longer defines")
        if not k.revoked:
            errors += [f"{where}: allowed model {n!r} is not a model or alias" for n in k.allowed_models if n not in routable]
    errors += validate_budgets(doc, keys, routable)
    errors += validate_routing(doc, flat)
    errors += price_errors(doc)
    errors += validate_guardrails(doc.guardrails, teams=teams, projects=set(projects), models=routable,
                                  rules={r.id for r in doc.routes})
    if errors:
        raise PolicyInvalid(errors)
    return flat


def key_pb(k: KeyRecord, *, revoked: bool) -> policy_pb2.VirtualKey:
    """One key as the snapshot carries it (also compiled alone for deltas: controlplane/policy/incremental.py)."""
    return policy_pb2.VirtualKey(
        id=k.id, key_hash=bytes.fromhex(k.key_hash), name=k.name, team_id=k.team, user_id=k.user,
        project_id=k.project, allowed_models=sorted(k.allowed_models), expires_at_unix_ms=k.expires_at_unix_ms,
        revoked=revoked, default_tags=k.default_tags, parent_key_id=k.parent,
        paused=k.paused, paused_reason=k.paused_reason,
    )


def compile_snapshot(
    doc: PolicyDocument, keys: Iterable[KeyRecord], *, version: int, now_ms: int
) -> policy_pb2.PolicySnapshot:
    keys = sorted(keys, key=lambda k: k.id)
    flat = validate(doc, keys)
    doc = resolve_prices(doc)  # catalog prices as figures, for models and budgets alike
    s = policy_pb2.PolicySnapshot(version=version, created_unix_ms=now_ms, key_hash_scheme=HASH_SCHEME)
    for p in sorted(doc.providers, key=lambda p: p.name):
        s.providers.add(
            name=p.name, kind=p.kind, base_url=p.base_url, credential_ref=p.credential,
            headers=p.headers, timeout_ms=p.timeout_ms, options=p.options,
        )
        s.providers[-1].region = p.region or ""
    providers = {p.name: p for p in doc.providers}
    chains, _ = fallback_chains(doc, flat)
    for m in sorted(doc.models, key=lambda m: m.name):
        s.models.add(
            name=m.name, provider=m.provider or m.deployments[0].provider, upstream_name=m.upstream or m.name,
            price=compile_price(m.price),
            max_output_tokens=m.max_output_tokens, context_window=m.context_window,
        )
        compile_model_routing(m, providers, chains[m.name], s.models[-1])
    for name in sorted(flat):
        s.aliases.add(name=name, target=flat[name])
    for t in sorted(doc.teams, key=lambda t: t.id):
        s.teams.add(id=t.id, name=t.name, allowed_models=sorted(t.allowed_models), default_tags=t.default_tags,
                    required_tags=sorted(set(t.required_tags)), overridable_tags=sorted(set(t.overridable_tags)))
        compile_team_routing(t, s.teams[-1])
    for u in sorted(doc.users, key=lambda u: u.id):
        s.users.add(id=u.id, team_id=u.team, name=u.name)
    for pj in sorted(doc.projects, key=lambda p: p.id):
        s.projects.add(id=pj.id, team_id=pj.team, name=pj.name)
    revoked = revoked_ids(keys)  # revoking a parent key revokes the run keys minted from it
    s.keys.extend(key_pb(k, revoked=k.id in revoked) for k in keys)
    s.budget_policy.CopyFrom(compile_budget_policy(doc, keys))
    compile_rules(doc, flat, s)
    compile_loop_breakers(doc, s)
    compile_guardrails(doc.guardrails, s)
    s.content_hash = snapshot_content_hash(s)
    return s
