"""Validate and compile the routing part of policy: deployments, fallback chains, rules, team constraints.

Pure, like the rest of the compiler: documents in, error strings or snapshot messages out.
"""

from __future__ import annotations

from collections.abc import Mapping

from interlock_contracts.v1 import policy_pb2

from .model import Model, PolicyDocument, Provider, Team
from .routing_model import RoutingRule

MAX_CHAIN = 16  # longest flattened fallback chain (a longer one is almost certainly a mistake)


def deployments_of(m: Model, providers: Mapping[str, Provider]) -> list[policy_pb2.Deployment]:
    """A model's deployments; a model with just `provider` gets one deployment named after it."""
    if not m.deployments:
        p = providers.get(m.provider or "")
        region = p.region if p is not None and p.region else ""
        return [policy_pb2.Deployment(name=m.provider or "", provider=m.provider or "",
                                      upstream_name=m.upstream or m.name, weight=1, region=region)]
    out = []
    for d in m.deployments:
        p = providers.get(d.provider)
        region = d.region or (p.region if p is not None and p.region else "")
        out.append(policy_pb2.Deployment(name=d.name or d.provider, provider=d.provider,
                                         upstream_name=d.upstream or m.upstream or m.name, weight=d.weight, region=region))
    return out


def _permits(team: Team, dep: policy_pb2.Deployment) -> bool:
    if team.allowed_regions and dep.region not in team.allowed_regions:
        return False
    return not (team.allowed_providers and dep.provider not in team.allowed_providers)


def fallback_chains(doc: PolicyDocument, flat: Mapping[str, str]) -> tuple[dict[str, list[str]], list[str]]:
    """Flatten each model's `fallback` (following the fallbacks' own fallbacks) into model names; report cycles."""
    models = {m.name: m for m in doc.models}
    errors: list[str] = []
    direct: dict[str, list[str]] = {}
    for m in doc.models:
        names = []
        for f in m.fallback:
            target = f if f in models else flat.get(f)
            if target is None:
                errors.append(f"model {m.name!r}: fallback {f!r} is neither a model nor an alias")
            else:
                names.append(target)
        direct[m.name] = names
    chains: dict[str, list[str]] = {}
    for name in direct:
        chain: list[str] = []
        stack: list[tuple[str, list[str]]] = [(name, [name])]
        while stack:  # depth-first, preserving the declared order
            n, path = stack.pop()
            for nxt in reversed(direct.get(n, [])):
                if nxt in path:
                    errors.append(f"fallback cycle: {' -> '.join([*path, nxt])}")
                else:
                    stack.append((nxt, [*path, nxt]))
            if n != name and n not in chain:
                chain.append(n)
        if len(chain) > MAX_CHAIN:
            errors.append(f"model {name!r}: fallback chain is longer than {MAX_CHAIN} models")
        chains[name] = chain
    return chains, sorted(set(errors), key=errors.index)


def validate_routing(doc: PolicyDocument, flat: Mapping[str, str]) -> list[str]:
    errors: list[str] = []
    providers = {p.name: p for p in doc.providers}
    models = {m.name: m for m in doc.models}
    teams = {t.id: t for t in doc.teams}
    for m in doc.models:
        if m.provider and m.deployments:
            errors.append(f"model {m.name!r}: give either `provider` or `deployments`, not both")
        elif not m.provider and not m.deployments:
            errors.append(f"model {m.name!r}: needs a `provider` (or a list of `deployments`)")
        seen: set[str] = set()
        for d in m.deployments:
            name = d.name or d.provider
            if name in seen:
                errors.append(f"model {m.name!r}: deployment {name!r} is defined more than once (give each a `name`)")
            seen.add(name)
            if d.provider not in providers:
                errors.append(f"model {m.name!r}: deployment {name!r} uses provider {d.provider!r}, which is not defined")
        if m.deployments and all(d.weight == 0 for d in m.deployments):
            errors.append(f"model {m.name!r}: every deployment has weight 0; give at least one a positive weight")
    for t in doc.teams:
        errors += [f"team {t.id!r}: allowed provider {p!r} is not defined" for p in t.allowed_providers if p not in providers]
    _, chain_errors = fallback_chains(doc, flat)
    errors += chain_errors
    deps = {m.name: deployments_of(m, providers) for m in doc.models}

    def model_of(name: str) -> str | None:
        return name if name in models else flat.get(name)

    _, rule_dupes = _dupe_ids(doc.routes)
    errors += rule_dupes
    for r in doc.routes:
        where = f"route {r.id!r}"
        errors += [f"{where}: team {t!r} is not defined" for t in r.match.teams if t not in teams]
        errors += [f"{where}: project {p!r} is not defined" for p in r.match.projects if p not in {x.id for x in doc.projects}]
        if r.match.max_input_tokens and r.match.max_input_tokens < r.match.min_input_tokens:
            errors.append(f"{where}: max_input_tokens is below min_input_tokens, so it can never match")
        target = model_of(r.target) if r.target else None
        if r.target and target is None:
            errors.append(f"{where}: target {r.target!r} is neither a model nor an alias")
        if r.deployments:
            if not r.target:
                errors.append(f"{where}: `deployments` needs a `target` model to pick them from")
            elif target is not None:
                known = {d.name for d in deps[target]}
                errors += [f"{where}: model {target!r} has no deployment {d!r} (it has: {', '.join(sorted(known))})"
                           for d in r.deployments if d not in known]
        fallback = []
        for f in r.fallback:
            fm = model_of(f)
            if fm is None:
                errors.append(f"{where}: fallback {f!r} is neither a model nor an alias")
            else:
                fallback.append(fm)
        if target is not None and target in fallback:
            errors.append(f"{where}: fallback cycle: {target!r} falls back to itself")
        if len(fallback) != len(set(fallback)):
            errors.append(f"{where}: fallback names the same model twice")
        # Constraint check at compile time: a rule only for restricted teams must be able to serve them.
        if r.match.teams and (target is not None or not r.target):
            for tid in r.match.teams:
                team = teams.get(tid)
                if team is None or not (team.allowed_regions or team.allowed_providers):
                    continue
                primary = _rule_deployments(r, target, deps) if target is not None else None
                if primary is not None:
                    bad = [d.name for d in primary if not _permits(team, d)]
                    if r.deployments and bad:
                        errors.append(f"{where}: deployments {', '.join(bad)} of {target!r} are outside what team "
                                      f"{tid!r} may reach ({_limits(team)})")
                reachable = list(primary or []) + [d for fm in fallback for d in deps.get(fm, [])]
                if primary is not None and not any(_permits(team, d) for d in reachable):
                    errors.append(f"{where}: no deployment of its target or fallbacks is allowed for team {tid!r} "
                                  f"({_limits(team)}); every request would be refused")
    return errors


def _limits(team: Team) -> str:
    parts = []
    if team.allowed_regions:
        parts.append("regions " + ", ".join(team.allowed_regions))
    if team.allowed_providers:
        parts.append("providers " + ", ".join(team.allowed_providers))
    return "; ".join(parts)


def _rule_deployments(r: RoutingRule, target: str, deps: Mapping[str, list[policy_pb2.Deployment]]) -> list[policy_pb2.Deployment]:
    all_deps = deps.get(target, [])
    return [d for d in all_deps if d.name in r.deployments] if r.deployments else list(all_deps)


def _dupe_ids(rules: list[RoutingRule]) -> tuple[set[str], list[str]]:
    seen: set[str] = set()
    errors = []
    for r in rules:
        if r.id in seen:
            errors.append(f"route {r.id!r} is defined more than once")
        seen.add(r.id)
    return seen, errors


def compile_model_routing(m: Model, providers: Mapping[str, Provider], chain: list[str], out: policy_pb2.Model) -> None:
    out.deployments.extend(deployments_of(m, providers))
    c = m.circuit
    out.circuit.CopyFrom(policy_pb2.CircuitBreaker(
        enabled=c.enabled, failures=c.failures, failure_rate=c.failure_rate, min_requests=c.min_requests,
        window_ms=c.window_ms, cooldown_ms=c.cooldown_ms,
    ))
    out.fallback.extend(chain)


def compile_rules(doc: PolicyDocument, flat: Mapping[str, str], s: policy_pb2.PolicySnapshot) -> None:
    models = {m.name for m in doc.models}

    def model_of(name: str) -> str:
        return name if name in models else flat[name]

    for r in sorted(doc.routes, key=lambda r: (r.priority, r.id)):
        mt = r.match
        match = policy_pb2.RuleMatch(
            keys=sorted(mt.keys), teams=sorted(mt.teams), projects=sorted(mt.projects), models=sorted(mt.models),
            headers=mt.headers, tags=mt.tags, min_input_tokens=mt.min_input_tokens, max_input_tokens=mt.max_input_tokens,
        )
        if mt.has_tools is not None:
            match.has_tools = mt.has_tools
        s.routing_rules.add(
            id=r.id, priority=r.priority, match=match, target=model_of(r.target) if r.target else "",
            deployments=r.deployments, fallback=[model_of(f) for f in r.fallback], fallback_on=sorted(set(r.fallback_on)),
            retries=r.retries, backoff_ms=r.backoff_ms, max_backoff_ms=r.max_backoff_ms,
            max_retry_after_ms=r.max_retry_after_ms, attempt_timeout_ms=r.attempt_timeout_ms,
            total_timeout_ms=r.total_timeout_ms, sticky=r.sticky,
        )


def compile_team_routing(t: Team, out: policy_pb2.Team) -> None:
    out.allowed_regions.extend(sorted(set(t.allowed_regions)))
    out.allowed_providers.extend(sorted(set(t.allowed_providers)))
