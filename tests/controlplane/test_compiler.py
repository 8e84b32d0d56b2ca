"""Policy validation and snapshot compilation (controlplane.policy.compiler)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.errors import PolicyInvalid
from controlplane.policy.compiler import compile_snapshot, validate
from controlplane.policy.model import KeyRecord, PolicyDocument
from interlock_contracts.snapshot_hash import snapshot_content_hash


def doc(**overrides: Any) -> PolicyDocument:
    base: dict[str, Any] = {
        "providers": [{"name": "openai", "kind": "openai", "base_url": "https://api.openai.com/v1", "credential": "env:OPENAI_API_KEY"}],
        "models": [
            {"name": "gpt-4o", "provider": "openai", "price": {"input": "2.5", "output": "10"}},
            {"name": "gpt-4o-mini", "provider": "openai", "price": {"input": 0.15, "output": "0.60"}},
        ],
        "aliases": [{"name": "fast", "target": "gpt-4o-mini"}],
        "teams": [{"id": "core", "allowed_models": ["fast", "gpt-4o"]}],
        "users": [{"id": "ana", "team": "core"}],
        "projects": [{"id": "web", "team": "core"}],
    }
    base.update(overrides)
    return PolicyDocument.model_validate(base)


def key(**overrides: Any) -> KeyRecord:
    return KeyRecord.model_validate({"id": "vk_1", "key_hash": "ab" * 32, "team": "core", **overrides})


def errors_of(d: PolicyDocument, keys: list[KeyRecord] | None = None) -> list[str]:
    with pytest.raises(PolicyInvalid) as info:
        validate(d, keys or [])
    return info.value.errors


def test_valid_policy_compiles() -> None:
    s = compile_snapshot(doc(), [key()], version=7, now_ms=123)
    assert s.version == 7 and s.created_unix_ms == 123 and s.key_hash_scheme == "hmac-sha256"
    assert [m.name for m in s.models] == ["gpt-4o", "gpt-4o-mini"]
    assert s.models[1].price.input_per_mtok == "0.15" and s.models[1].price.output_per_mtok == "0.6"
    assert s.models[1].price.cached_input_per_mtok == "0.15"  # defaults to the input price
    assert s.keys[0].key_hash == bytes.fromhex("ab" * 32)


def test_dangling_references_are_all_reported() -> None:
    d = doc(
        models=[{"name": "m", "provider": "nope"}],
        aliases=[{"name": "a", "target": "ghost"}],
        teams=[{"id": "t", "allowed_models": ["unknown"]}],
        users=[{"id": "u", "team": "missing"}],
        projects=[{"id": "p", "team": "missing"}],
    )
    errs = errors_of(d, [key(team="gone", user="nobody", project="nothing", allowed_models=["zzz"])])
    expected = [
        "model 'm': provider 'nope' is not defined",
        "alias 'a' points to 'ghost'",
        "team 't': allowed model 'unknown'",
        "user 'u': team 'missing'",
        "project 'p': team 'missing'",
        "belongs to team 'gone'",
        "belongs to user 'nobody'",
        "belongs to project 'nothing'",
        "allowed model 'zzz'",
    ]
    for fragment in expected:
        assert any(fragment in e for e in errs), (fragment, errs)


def test_revoked_keys_may_name_models_that_no_longer_exist() -> None:
    validate(doc(), [key(allowed_models=["retired-model"], revoked=True)])


def test_alias_cycles_are_reported() -> None:
    errs = errors_of(doc(aliases=[{"name": "a", "target": "b"}, {"name": "b", "target": "a"}]))
    assert any("alias cycle: a -> b -> a" in e for e in errs)


def test_alias_named_like_a_model_is_rejected() -> None:
    errs = errors_of(doc(aliases=[{"name": "gpt-4o", "target": "gpt-4o-mini"}]))
    assert any("same name as a model" in e for e in errs)


@pytest.mark.parametrize(
    ("section", "items", "message"),
    [
        ("providers", [{"name": "p", "base_url": "http://a"}, {"name": "p", "base_url": "http://b"}], "provider 'p' is defined more than once"),
        ("models", [{"name": "m", "provider": "openai"}] * 2, "model 'm' is defined more than once"),
        ("aliases", [{"name": "x", "target": "gpt-4o"}] * 2, "alias 'x' is defined more than once"),
        ("teams", [{"id": "t"}] * 2, "team 't' is defined more than once"),
        ("users", [{"id": "u", "team": "core"}] * 2, "user 'u' is defined more than once"),
        ("projects", [{"id": "p", "team": "core"}] * 2, "project 'p' is defined more than once"),
    ],
)
def test_duplicate_names(section: str, items: list[dict[str, Any]], message: str) -> None:
    overrides: dict[str, Any] = {section: items}
    if section == "providers":
        overrides["models"] = [{"name": "m", "provider": "p"}]
        overrides["aliases"] = []
        overrides["teams"] = [{"id": "core"}]
    assert message in errors_of(doc(**overrides))


def test_unknown_provider_kind() -> None:
    errs = errors_of(doc(providers=[{"name": "openai", "kind": "carrier-pigeon", "base_url": "https://x"}]))
    assert any("unknown kind 'carrier-pigeon'" in e and "openai" in e for e in errs)


def test_aliases_are_flattened() -> None:
    chain = [{"name": "a", "target": "b"}, {"name": "b", "target": "c"}, {"name": "c", "target": "gpt-4o"}]
    d = doc(aliases=chain, teams=[{"id": "core", "allowed_models": ["a"]}])
    s = compile_snapshot(d, [], version=1, now_ms=0)
    assert {a.name: a.target for a in s.aliases} == {"a": "gpt-4o", "b": "gpt-4o", "c": "gpt-4o"}


def test_content_hash_ignores_version_and_time_but_not_content() -> None:
    a = compile_snapshot(doc(), [key()], version=1, now_ms=1)
    b = compile_snapshot(doc(), [key()], version=99, now_ms=5000)
    assert a.content_hash == b.content_hash == snapshot_content_hash(a)
    c = compile_snapshot(doc(), [key(revoked=True)], version=1, now_ms=1)
    assert c.content_hash != a.content_hash


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False))
def test_content_hash_is_independent_of_declaration_order(rnd: Any) -> None:
    base = doc(
        models=[{"name": f"m{i}", "provider": "openai"} for i in range(6)],
        aliases=[{"name": f"a{i}", "target": f"m{i}"} for i in range(4)],
        teams=[{"id": f"t{i}", "allowed_models": [f"m{j}" for j in range(i)]} for i in range(4)],
        users=[{"id": f"u{i}", "team": "t0"} for i in range(4)],
        projects=[],
    )
    keys = [key(id=f"vk_{i}", team="t1", allowed_models=["m1", "a2", "m3"]) for i in range(4)]
    shuffled = {s: rnd.sample(list(getattr(base, s)), len(getattr(base, s))) for s in ("models", "aliases", "teams", "users")}
    shuffled["teams"] = [t.model_copy(update={"allowed_models": rnd.sample(t.allowed_models, len(t.allowed_models))})
                         for t in shuffled["teams"]]
    other = base.model_copy(update=shuffled)
    h1 = compile_snapshot(base, keys, version=1, now_ms=0).content_hash
    h2 = compile_snapshot(other, rnd.sample(keys, len(keys)), version=2, now_ms=9).content_hash
    assert h1 == h2
