"""Budget policy compiles into the snapshot (pico-USD, per-run key limits, unpriced models) or fails clearly."""

from __future__ import annotations

import pytest

from controlplane.errors import PolicyInvalid
from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import KeyRecord, PolicyDocument

HASH = "ab" * 32


def doc(**extra: object) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://x"}],
        "models": [{"name": "priced", "provider": "p", "price": {"input": "1", "output": "2"}},
                   {"name": "unpriced", "provider": "p"}, {"name": "local", "provider": "p", "free": True}],
        "teams": [{"id": "t1"}],
        **extra,
    })


def test_budgets_rate_limits_and_run_keys_compile() -> None:
    d = doc(budgets=[{"id": "monthly", "scope": "team", "scope_id": "t1", "limit_usd": "12.345678901234",
                      "timezone": "Europe/Berlin"},
                     {"id": "task", "scope": "tag", "scope_id": "task=T-1", "window": "lifetime", "limit_usd": 5,
                      "offline_mode": "optimistic", "optimistic_overshoot_usd": "0.5"}],
            rate_limits=[{"id": "rpm", "scope": "model", "scope_id": "priced", "requests_per_minute": 60}])
    parent = KeyRecord(id="vk_parent", key_hash=HASH)
    run = KeyRecord(id="vk_run", key_hash=HASH, parent="vk_parent", budget_usd="20", max_concurrency=8)
    revoked = KeyRecord(id="vk_old", key_hash=HASH, parent="vk_parent", budget_usd="1", revoked=True)
    bp = compile_snapshot(d, [parent, run, revoked], version=1, now_ms=0).budget_policy
    assert [(b.id, b.limit_pico, b.window, b.timezone) for b in bp.budgets] == [
        ("key:vk_run", 20 * 10**12, "lifetime", "UTC"),
        ("monthly", 12_345_678_901_234, "month", "Europe/Berlin"),
        ("task", 5 * 10**12, "lifetime", "UTC"),
    ]
    assert bp.budgets[2].offline_mode == "optimistic" and bp.budgets[2].optimistic_overshoot_pico == 5 * 10**11
    assert [(r.id, r.scope, r.scope_id, r.max_concurrent, r.requests_per_minute) for r in bp.rate_limits] == [
        ("key:vk_run", "key", "vk_run", 8, 0), ("rpm", "model", "priced", 0, 60)]
    assert list(bp.unpriced_models) == ["unpriced"]  # "local" is explicitly free
    assert bp.unpriced_price.output_per_mtok == "75" and bp.default_max_output_tokens > 0


@pytest.mark.parametrize(("extra", "message"), [
    ({"budgets": [{"id": "b", "scope": "team", "scope_id": "nope", "limit_usd": 1}]}, "team 'nope' is not defined"),
    ({"budgets": [{"id": "b", "scope": "key", "scope_id": "vk_x", "limit_usd": 1}]}, "create the key first"),
    ({"budgets": [{"id": "b", "scope": "tag", "scope_id": "task", "limit_usd": 1}]}, "'name=value'"),
    ({"budgets": [{"id": "b", "scope": "team", "scope_id": "t1", "limit_usd": 1, "timezone": "Moon/Base"}]}, "IANA"),
    ({"budgets": [{"id": "b", "scope": "team", "scope_id": "t1", "limit_usd": 1, "offline_mode": "optimistic"}]},
     "optimistic_overshoot_usd > 0"),
    ({"budgets": [{"id": "b", "scope": "team", "scope_id": "t1", "limit_usd": 1}] * 2}, "defined more than once"),
    ({"rate_limits": [{"id": "r", "scope": "team", "scope_id": "t1"}]}, "at least one of"),
    ({"rate_limits": [{"id": "r", "scope": "global", "max_concurrent": 1, "models": ["gpt-x"]}]}, "'gpt-x' is not a model"),
])
def test_invalid_budget_policy_is_refused_with_a_clear_error(extra: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyInvalid) as err:
        compile_snapshot(doc(**extra), [], version=1, now_ms=0)
    assert message in str(err.value)


def test_limit_must_be_positive_and_exact() -> None:
    with pytest.raises(ValueError, match="more than 0"):
        doc(budgets=[{"id": "b", "scope": "team", "scope_id": "t1", "limit_usd": "0"}])
    with pytest.raises(ValueError, match="1e-12"):
        doc(budgets=[{"id": "b", "scope": "team", "scope_id": "t1", "limit_usd": "0.0000000000001"}])


def test_run_key_parent_must_exist() -> None:
    orphan = KeyRecord(id="vk_run", key_hash=HASH, parent="vk_gone", budget_usd="1")
    with pytest.raises(PolicyInvalid, match="parent key 'vk_gone' does not exist"):
        compile_snapshot(doc(), [orphan], version=1, now_ms=0)
