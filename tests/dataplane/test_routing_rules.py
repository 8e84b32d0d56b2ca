"""Rule matching, plans and constraints, on a real compiled snapshot (the same tables the proxy uses)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import KeyRecord, PolicyDocument
from dataplane.dialects.client_errors import GatewayError
from dataplane.providers.registry import default_providers
from dataplane.routing.attempts import AttemptPlanner, sticky_order, weighted_order
from dataplane.routing.breaker import Breakers
from dataplane.routing.matching import Facts
from dataplane.routing.select import select_plan
from dataplane.snapshot.policy import CompiledPolicy, KeyEntry

POLICY: dict[str, Any] = {
    "providers": [
        {"name": "oa-us", "kind": "openai", "base_url": "http://us.invalid/v1", "region": "us"},
        {"name": "oa-eu", "kind": "openai", "base_url": "http://eu.invalid/v1", "region": "eu"},
        {"name": "an-us", "kind": "anthropic", "base_url": "http://an.invalid", "region": "us"},
        {"name": "an-eu", "kind": "anthropic", "base_url": "http://an-eu.invalid", "region": "eu"},
    ],
    "models": [
        {"name": "gpt-x", "deployments": [{"provider": "oa-us", "weight": 3}, {"provider": "oa-eu", "weight": 1}]},
        {"name": "gpt-mini", "provider": "oa-us"},
        {"name": "claude-x", "deployments": [{"provider": "an-us", "weight": 1}, {"provider": "an-eu", "weight": 1}],
         "fallback": ["gpt-x"]},
    ],
    "aliases": [{"name": "gpt-5", "target": "gpt-x"}],
    "teams": [{"id": "eu", "allowed_regions": ["eu"]}, {"id": "anth", "allowed_providers": ["an-us", "an-eu"]},
              {"id": "open"}],
    "projects": [{"id": "p1", "team": "open"}],
    "routes": [
        {"id": "big-prompts", "priority": 1, "match": {"models": ["gpt-*"], "min_input_tokens": 10_000},
         "target": "claude-x"},
        {"id": "tools-header", "priority": 2, "match": {"has_tools": True, "headers": {"X-Env": "prod-*"}},
         "fallback": ["gpt-mini"], "retries": 1},
        {"id": "tagged", "priority": 3, "match": {"tags": {"task": "T-1?"}, "projects": ["p1"]}, "target": "gpt-mini"},
        {"id": "codex-names", "priority": 4, "match": {"models": ["o9-*"]}, "target": "gpt-5"},
        {"id": "one-key", "priority": 5, "match": {"keys": ["vk_special"]}, "target": "claude-x", "deployments": ["an-eu"]},
    ],
}


def compiled(doc: dict[str, Any] = POLICY) -> CompiledPolicy:
    snap = compile_snapshot(PolicyDocument.model_validate(doc), [], version=1, now_ms=0)
    return CompiledPolicy.from_snapshot(snap, adapters=default_providers(), credentials=lambda ref: None)


def key(team: str = "open", id: str = "vk_1", project: str = "", allowed: frozenset[str] | None = None) -> KeyEntry:
    return KeyEntry(id=id, team_id=team, user_id="", project_id=project, allowed=allowed, expires_at_ms=0,
                    revoked=False, tags={})


def facts(model: str, k: KeyEntry | None = None, *, headers: dict[str, str] | None = None,
          tags: dict[str, str] | None = None, tools: bool = False, tokens: int = 10) -> Facts:
    k = k or key()
    return Facts(k.id, k.team_id, k.project_id, model, headers or {}, tags or {}, tools, tokens)


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compiled()


def test_no_rule_matches_default_plan_with_models_fallback_chain(policy: CompiledPolicy) -> None:
    plan = select_plan(policy, key(), facts("claude-x"))
    assert plan.rule_id == "default"
    assert [t.model for t in plan.targets] == ["claude-x", "gpt-x"]
    assert [d.id for d in plan.targets[0].deployments] == ["claude-x/an-us", "claude-x/an-eu"]


def test_first_match_in_priority_order(policy: CompiledPolicy) -> None:
    # big prompt beats the tools rule (priority 1 < 2) even though both match
    f = facts("gpt-5", headers={"x-env": "prod-eu"}, tools=True, tokens=20_000)
    assert select_plan(policy, key(), f).rule_id == "big-prompts"
    plan = select_plan(policy, key(), facts("gpt-5", headers={"x-env": "prod-eu"}, tools=True))
    assert plan.rule_id == "tools-header" and plan.retries == 1
    assert [t.model for t in plan.targets] == ["gpt-x", "gpt-mini"]  # no target: the requested model's
    assert select_plan(policy, key(), facts("gpt-5", headers={"x-env": "dev"}, tools=True)).rule_id == "default"
    assert select_plan(policy, key(), facts("gpt-5", headers={"x-env": "prod-1"}, tools=False)).rule_id == "default"


def test_tags_and_project_conditions_are_anded(policy: CompiledPolicy) -> None:
    k = key(project="p1")
    assert select_plan(policy, k, facts("claude-x", k, tags={"task": "T-12"})).rule_id == "tagged"
    assert select_plan(policy, k, facts("claude-x", k, tags={"task": "T-123"})).rule_id == "default"  # glob T-1?
    assert select_plan(policy, key(), facts("claude-x", tags={"task": "T-12"})).rule_id == "default"  # no project


def test_key_rule_pins_a_deployment(policy: CompiledPolicy) -> None:
    k = key(id="vk_special")
    plan = select_plan(policy, k, facts("gpt-mini", k))
    assert plan.rule_id == "one-key" and [d.id for d in plan.targets[0].deployments] == ["claude-x/an-eu"]


def test_glob_rule_routes_a_name_that_is_not_a_model(policy: CompiledPolicy) -> None:
    plan = select_plan(policy, key(), facts("o9-codex"))
    assert plan.rule_id == "codex-names" and plan.targets[0].model == "gpt-x"
    with pytest.raises(GatewayError) as exc:
        select_plan(policy, key(), facts("nothing-routes-this"))
    assert exc.value.status == 404


def test_allowlist_is_never_widened_by_a_rule(policy: CompiledPolicy) -> None:
    k = key(allowed=frozenset({"gpt-mini"}))
    with pytest.raises(GatewayError) as exc:
        select_plan(policy, k, facts("o9-codex", k))  # routes to gpt-x, which the key may not use
    assert exc.value.status == 403
    assert select_plan(policy, k, facts("gpt-mini", k)).rule_id == "default"


def order_ids(policy: CompiledPolicy, team: str, model: str) -> tuple[list[str], list[str]]:
    k = key(team=team)
    plan = select_plan(policy, k, facts(model, k))
    planner = AttemptPlanner(plan, constraint=policy.routing.constraints.get(team), breakers=Breakers(lambda: 0.0),
                             rng=random.Random(1))
    ids = []
    while (n := planner.next(0.0)) is not None:
        ids.append(n.deployment.id)
    return ids, [d.id for d in planner.excluded]


def test_region_constraint_filters_every_target_and_fallback(policy: CompiledPolicy) -> None:
    tried, excluded = order_ids(policy, "eu", "claude-x")
    assert tried == ["claude-x/an-eu", "gpt-x/oa-eu"]
    assert set(excluded) == {"claude-x/an-us", "gpt-x/oa-us"}


def test_provider_constraint(policy: CompiledPolicy) -> None:
    tried, excluded = order_ids(policy, "anth", "claude-x")
    assert sorted(tried) == ["claude-x/an-eu", "claude-x/an-us"]  # never the gpt-x fallback's OpenAI deployments
    assert set(excluded) == {"gpt-x/oa-us", "gpt-x/oa-eu"}


def test_unconstrained_team_tries_everything_once(policy: CompiledPolicy) -> None:
    tried, excluded = order_ids(policy, "open", "claude-x")
    assert sorted(tried) == ["claude-x/an-eu", "claude-x/an-us", "gpt-x/oa-eu", "gpt-x/oa-us"] and not excluded
    assert tried[:2] in (["claude-x/an-us", "claude-x/an-eu"], ["claude-x/an-eu", "claude-x/an-us"])


def test_weighted_first_choice_follows_weights(policy: CompiledPolicy) -> None:
    deps = select_plan(policy, key(), facts("gpt-x")).targets[0].deployments  # weights 3 : 1
    rng = random.Random(7)
    n = 20_000
    firsts = Counter(weighted_order(deps, rng)[0].name for _ in range(n))
    share = firsts["oa-us"] / n
    # expected 0.75; 6 sigma of a binomial at n=20000 is ~0.018
    assert abs(share - 0.75) < 0.02, firsts


def test_sticky_sessions_stay_put_and_spread_by_weight(policy: CompiledPolicy) -> None:
    deps = select_plan(policy, key(), facts("gpt-x")).targets[0].deployments
    assert all(sticky_order(deps, f"s{i}")[0] is sticky_order(deps, f"s{i}")[0] for i in range(50))
    firsts = Counter(sticky_order(deps, f"session-{i}")[0].name for i in range(8000))
    assert abs(firsts["oa-us"] / 8000 - 0.75) < 0.04, firsts


def test_rules_are_precomputed_per_requested_name(policy: CompiledPolicy) -> None:
    cands, default = policy.routing.candidates_for("claude-x")
    assert default is not None
    # gpt-* rules and the o9-* rule cannot apply to claude-x: they are not even considered
    assert [c.rule_id for c in cands] == ["tools-header", "tagged", "one-key"]


def test_snapshot_keys_compile_into_kept_records() -> None:
    # a key record is unaffected by routing (sanity: compile with keys present)
    rec = KeyRecord(id="vk_a", key_hash="00" * 32, team="eu")
    snap = compile_snapshot(PolicyDocument.model_validate(POLICY), [rec], version=1, now_ms=0)
    assert [k.id for k in snap.keys] == ["vk_a"]
