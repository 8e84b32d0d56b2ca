"""CompiledPolicy: indexes built at swap time from a real compiled snapshot."""

from __future__ import annotations

import pytest

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import Alias, KeyRecord, Model, PolicyDocument, Price, Provider, Team
from dataplane.dialects.base import Usage
from dataplane.dialects.client_errors import GatewayError
from dataplane.errors import SnapshotRejected
from dataplane.pipeline.admission import authenticate
from dataplane.pricing import format_usd
from dataplane.providers.registry import default_providers
from dataplane.routing.select import plan_for
from dataplane.snapshot.policy import CompiledPolicy, KeyEntry, RuntimeModel
from interlock_contracts.keys import hash_key, new_secret
from interlock_contracts.kinds import PROVIDER_KINDS

PEPPER = b"k" * 32


def build(keys: list[tuple[str, KeyRecord]], *, env: dict[str, str] | None = None) -> CompiledPolicy:
    doc = PolicyDocument(
        providers=[Provider(name="oa", kind="openai", base_url="https://api.example/v1", credential="env:OA_KEY"),
                   Provider(name="local", kind="openai_compatible", base_url="http://127.0.0.1:1/v1")],
        models=[Model(name="big", provider="oa", upstream="big-2025", price=Price(input="2.5", output="10", cached_input="1.25")),
                Model(name="small", provider="oa", price=Price(input="0.15", output="0.6")),
                Model(name="llama", provider="local")],
        aliases=[Alias(name="smart", target="big"), Alias(name="fast", target="small")],
        teams=[Team(id="t1", allowed_models=["small", "smart"]), Team(id="t2")],
    )
    snap = compile_snapshot(doc, [k for _, k in keys], version=5, now_ms=0)
    env = {"OA_KEY": "sk-real"} if env is None else env
    return CompiledPolicy.from_snapshot(snap, adapters=default_providers(),
                                        credentials=lambda ref: env.get(ref[4:]) if ref.startswith("env:") else None)


def key(team: str, models: list[str] | None = None, **kw: object) -> tuple[str, KeyRecord]:
    secret = new_secret()
    rec = KeyRecord(id=f"vk_{secret[-6:]}", key_hash=hash_key(PEPPER, secret).hex(), team=team,
                    allowed_models=models or [], **kw)  # type: ignore[arg-type]
    return secret, rec


def resolved(p: CompiledPolicy, key: KeyEntry, model: str) -> RuntimeModel:
    """The model a request for `model` goes to first, by the data plane's own routing (as the proxy asks it)."""
    return plan_for(p, key, model, {}, {}, {}, 0).targets[0].deployments[0].model


def test_registry_matches_the_kinds_the_control_plane_accepts() -> None:
    assert set(default_providers()) == PROVIDER_KINDS


def test_team_allowlist_expands_models_to_their_aliases_but_not_aliases_to_models() -> None:
    (s1, k1), (s2, k2) = key("t1"), key("t2")
    p = build([(s1, k1), (s2, k2)])
    e1 = authenticate(p, PEPPER, s1, 0)
    assert e1.allowed == frozenset({"small", "fast", "smart"})
    assert resolved(p, e1, "smart").upstream_name == "big-2025"
    with pytest.raises(GatewayError) as exc:
        resolved(p, e1, "big")  # only the alias was approved
    assert exc.value.status == 403
    assert authenticate(p, PEPPER, s2, 0).allowed is None  # no list = every model


def test_key_allowlist_intersects_the_team_list() -> None:
    s, k = key("t1", ["fast", "llama"])
    e = authenticate(build([(s, k)]), PEPPER, s, 0)
    assert e.allowed == frozenset({"fast"})


def test_unknown_model_is_404_and_unknown_key_401() -> None:
    s, k = key("t2")
    p = build([(s, k)])
    with pytest.raises(GatewayError) as exc:
        resolved(p, authenticate(p, PEPPER, s, 0), "nope")
    assert exc.value.status == 404
    for bad in (None, "", "sk-il-wrong"):
        with pytest.raises(GatewayError) as exc:
            authenticate(p, PEPPER, bad, 0)
        assert exc.value.status == 401


def test_revoked_and_expired_keys_are_refused_with_their_reason() -> None:
    (s1, k1), (s2, k2) = key("t2", revoked=True), key("t2", expires_at_unix_ms=1000)
    p = build([(s1, k1), (s2, k2)])
    with pytest.raises(GatewayError, match="revoked"):
        authenticate(p, PEPPER, s1, 0)
    assert authenticate(p, PEPPER, s2, 999).id == k2.id
    with pytest.raises(GatewayError, match="expired"):
        authenticate(p, PEPPER, s2, 1000)


def test_missing_credential_marks_provider_unavailable_but_keeps_the_snapshot() -> None:
    p = build([], env={})
    assert "env:OA_KEY" in p.providers["oa"].unavailable
    assert p.providers["local"].unavailable == ""  # OpenAI-compatible servers may run without auth
    assert ("authorization", "Bearer sk-real") in build([]).providers["oa"].headers


def test_exact_cost_in_pico_usd() -> None:
    price = build([]).routes["smart"].model.price
    u = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=3, reported=True)
    # 600k uncached * 2.5/M + 400k cached * 1.25/M + 3 * 10/M = 1.5 + 0.5 + 0.00003
    assert format_usd(price.cost_pico(u)) == "2.000030000000"


def test_unsupported_kind_is_rejected_with_a_reason() -> None:
    s, _ = key("t2")
    snap = compile_snapshot(PolicyDocument(), [], version=1, now_ms=0)
    snap.providers.add(name="x", kind="quantum", base_url="http://x")
    with pytest.raises(SnapshotRejected, match="quantum"):
        CompiledPolicy.from_snapshot(snap, adapters=default_providers(), credentials=lambda _r: None)
    assert s


def test_provider_repr_never_shows_the_provider_key() -> None:
    p = build([], env={"OA_KEY": "sk-provider-secret-123"})
    prov = p.providers["oa"]
    assert any("sk-provider-secret-123" in v for _, v in prov.headers)  # the key is there to send...
    assert "sk-provider-secret-123" not in repr(prov)  # ...but never in a log line or traceback
    assert "sk-provider-secret-123" not in repr(p.routes)
