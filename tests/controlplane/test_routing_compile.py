"""Routing policy compiles into the snapshot, and mistakes are refused with clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.errors import PolicyInvalid
from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import PolicyDocument


def doc(**extra: Any) -> PolicyDocument:
    base: dict[str, Any] = {
        "providers": [
            {"name": "oa-us", "kind": "openai", "base_url": "http://us.invalid/v1", "region": "us"},
            {"name": "oa-eu", "kind": "openai", "base_url": "http://eu.invalid/v1", "region": "eu"},
            {"name": "an-us", "kind": "anthropic", "base_url": "http://an.invalid", "region": "us"},
        ],
        "models": [
            {"name": "gpt-x", "deployments": [
                {"provider": "oa-us", "weight": 3}, {"provider": "oa-eu", "weight": 1, "upstream": "gpt-x-eu"}]},
            {"name": "claude-x", "provider": "an-us", "fallback": ["gpt-x"]},
        ],
        "aliases": [{"name": "gpt-5", "target": "gpt-x"}],
        "teams": [{"id": "eu", "allowed_regions": ["eu"]}, {"id": "open"}],
    }
    for k, v in extra.items():
        base[k] = base.get(k, []) + v if isinstance(v, list) and k != "models" else v
    return PolicyDocument.model_validate(base)


def errors_of(d: PolicyDocument) -> list[str]:
    with pytest.raises(PolicyInvalid) as exc:
        compile_snapshot(d, [], version=1, now_ms=0)
    return list(exc.value.errors)


def test_deployments_rules_and_constraints_reach_the_snapshot() -> None:
    d = doc(routes=[{"id": "eu-gpt", "priority": 5, "match": {"teams": ["eu"], "models": ["gpt-*"], "has_tools": True},
                     "target": "gpt-5", "deployments": ["oa-eu"], "fallback": ["claude-x"], "retries": 2}])
    # claude-x (us) as a fallback is fine: the eu deployment is still reachable; request time filters the rest
    s = compile_snapshot(d, [], version=1, now_ms=0)
    gpt = next(m for m in s.models if m.name == "gpt-x")
    assert [(x.name, x.weight, x.region, x.upstream_name) for x in gpt.deployments] == [
        ("oa-us", 3, "us", "gpt-x"), ("oa-eu", 1, "eu", "gpt-x-eu")]
    claude = next(m for m in s.models if m.name == "claude-x")
    assert [x.name for x in claude.deployments] == ["an-us"] and list(claude.fallback) == ["gpt-x"]
    assert claude.provider == "an-us" and gpt.provider == "oa-us"
    (r,) = s.routing_rules
    assert (r.id, r.target, list(r.deployments), list(r.fallback), r.retries) == ("eu-gpt", "gpt-x", ["oa-eu"], ["claude-x"], 2)
    assert r.match.HasField("has_tools") and r.match.has_tools and list(r.match.models) == ["gpt-*"]
    assert list(next(t for t in s.teams if t.id == "eu").allowed_regions) == ["eu"]


def test_rules_are_listed_in_evaluation_order() -> None:
    d = doc(routes=[{"id": "b", "priority": 10}, {"id": "a", "priority": 10}, {"id": "z", "priority": 1}])
    s = compile_snapshot(d, [], version=1, now_ms=0)
    assert [r.id for r in s.routing_rules] == ["z", "a", "b"]


def test_unknown_targets_are_named() -> None:
    errs = errors_of(doc(routes=[{"id": "r1", "target": "nope", "fallback": ["gone"]},
                                 {"id": "r2", "target": "gpt-x", "deployments": ["oa-mars"]}]))
    assert "route 'r1': target 'nope' is neither a model nor an alias" in errs
    assert "route 'r1': fallback 'gone' is neither a model nor an alias" in errs
    assert any("route 'r2': model 'gpt-x' has no deployment 'oa-mars'" in e for e in errs)


def test_fallback_cycles_are_refused() -> None:
    d = doc(models=[
        {"name": "a", "provider": "oa-us", "fallback": ["b"]},
        {"name": "b", "provider": "oa-us", "fallback": ["a"]},
    ], aliases=[], routes=[{"id": "self", "target": "a", "fallback": ["a"]}])
    errs = errors_of(d)
    assert any(e.startswith("fallback cycle: a -> b -> a") for e in errs)
    assert "route 'self': fallback cycle: 'a' falls back to itself" in errs


def test_rule_for_a_restricted_team_that_can_never_serve_it_is_refused() -> None:
    errs = errors_of(doc(routes=[{"id": "us-only", "match": {"teams": ["eu"]}, "target": "claude-x"},
                                 {"id": "pinned", "match": {"teams": ["eu"]}, "target": "gpt-x", "deployments": ["oa-us"]}]))
    assert any(e.startswith("route 'us-only': no deployment of its target or fallbacks is allowed for team 'eu'") for e in errs)
    assert any(e.startswith("route 'pinned': deployments oa-us of 'gpt-x' are outside what team 'eu' may reach") for e in errs)


def test_model_needs_exactly_one_way_to_name_providers() -> None:
    errs = errors_of(doc(models=[
        {"name": "none"}, {"name": "both", "provider": "oa-us", "deployments": [{"provider": "oa-eu"}]},
        {"name": "dupe", "deployments": [{"provider": "oa-us"}, {"provider": "oa-us"}]},
        {"name": "ghost", "deployments": [{"provider": "mars"}]},
    ], aliases=[]))
    assert "model 'none': needs a `provider` (or a list of `deployments`)" in errs
    assert "model 'both': give either `provider` or `deployments`, not both" in errs
    assert any("model 'dupe': deployment 'oa-us' is defined more than once" in e for e in errs)
    assert "model 'ghost': deployment 'mars' uses provider 'mars', which is not defined" in errs


def test_team_provider_allowlist_must_name_providers() -> None:
    errs = errors_of(doc(teams=[{"id": "t", "allowed_providers": ["nope"]}]))
    assert "team 't': allowed provider 'nope' is not defined" in errs
