"""End to end: a real data-plane node in front of two fake providers, the primary failing for the whole run.

Every request must still succeed through the fallback, with the attempts visible in the response
headers and in the usage event, and billed only for the attempt that succeeded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import KeyRecord, PolicyDocument
from dataplane.node import DataPlaneNode
from dataplane.snapshot import file as snapshot_file
from dataplane.usage.sink import MemorySink
from interlock.fakeprovider.config import FakeProviderConfig
from interlock_contracts.keys import hash_key, new_secret
from interlock_contracts.settings.dataplane import DataPlaneSettings
from interlock_contracts.v1 import usage_pb2
from tests.fixtures.fakeprovider import FakeProvider

PEPPER = b"fallback-test-pepper"
CHAT = "/v1/chat/completions"


@dataclass
class Rig:
    url: str
    keys: dict[str, str]  # team -> secret
    sink: MemorySink
    node: DataPlaneNode
    primary: FakeProvider
    backup: FakeProvider

    async def post(self, path: str, body: dict[str, Any], team: str = "eng", **headers: str) -> tuple[aiohttp.ClientResponse, bytes]:
        async with aiohttp.ClientSession() as s:
            r = await s.post(self.url + path, data=orjson.dumps(body),
                             headers={"authorization": f"Bearer {self.keys[team]}", **headers})
            return r, await r.read()

    async def events(self, n: int) -> list[usage_pb2.UsageEvent]:
        for _ in range(300):
            if len(self.sink.events) >= n:
                return self.sink.events
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {n} usage events, got {len(self.sink.events)}")


def policy(a: str, b: str) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "pa", "kind": "openai_compatible", "base_url": f"{a}/v1", "region": "us", "credential": "env:FAKE_KEY"},
            {"name": "pb", "kind": "openai_compatible", "base_url": f"{b}/v1", "region": "eu", "credential": "env:FAKE_KEY"},
            {"name": "ant-a", "kind": "anthropic", "base_url": a, "credential": "env:FAKE_KEY", "region": "us"},
        ],
        "models": [
            {"name": "gpt-primary", "provider": "pa", "upstream": "gpt-4o", "price": {"input": "100", "output": "100"},
             "circuit": {"enabled": False}},
            {"name": "gpt-backup", "provider": "pb", "upstream": "gpt-4o-mini", "price": {"input": "1", "output": "2"}},
            {"name": "gpt-slow", "provider": "pa", "upstream": "gpt-4o", "circuit": {"enabled": False}},
            {"name": "gpt-breaker", "provider": "pa", "upstream": "gpt-4o",
             "circuit": {"failures": 2, "cooldown_ms": 60000}},
            {"name": "claude-primary", "provider": "ant-a", "upstream": "claude-sonnet-4-5",
             "circuit": {"enabled": False}},
            {"name": "gpt-geo", "deployments": [{"name": "us", "provider": "pa", "weight": 100, "upstream": "gpt-4o"},
                                                {"name": "eu", "provider": "pb", "weight": 1, "upstream": "gpt-4o"}],
             "circuit": {"enabled": False}},
            {"name": "gpt-retry", "provider": "pa", "upstream": "gpt-4o", "circuit": {"enabled": False}},
            {"name": "gpt-emb", "provider": "pa", "upstream": "text-embedding-3-small", "circuit": {"enabled": False}},
            {"name": "gpt-sticky", "deployments": [{"name": "a", "provider": "pa", "upstream": "gpt-4o"},
                                                   {"name": "b", "provider": "pb", "upstream": "gpt-4o"}]},
            {"name": "gpt-lonely", "provider": "pa", "upstream": "gpt-4o",
             "circuit": {"failures": 2, "cooldown_ms": 30000}},
        ],
        "aliases": [{"name": "gpt-5", "target": "gpt-primary"}],
        "teams": [{"id": "eng"}, {"id": "eu", "allowed_regions": ["eu"]}],
        "routes": [
            {"id": "primary-then-backup", "match": {"models": ["gpt-primary", "gpt-5", "gpt-breaker"]},
             "fallback": ["gpt-backup"]},
            {"id": "slow-then-backup", "match": {"models": ["gpt-slow"]}, "fallback": ["gpt-backup"],
             "attempt_timeout_ms": 300, "total_timeout_ms": 5000},
            {"id": "claude-to-openai", "match": {"models": ["claude-primary"]}, "fallback": ["gpt-backup"]},
            {"id": "geo", "match": {"models": ["gpt-geo"]}, "fallback": ["gpt-primary"]},
            {"id": "sticky", "match": {"models": ["gpt-sticky"]}, "sticky": True},
            {"id": "emb-to-anthropic", "match": {"models": ["gpt-emb"]}, "fallback": ["claude-primary", "gpt-backup"]},
            {"id": "retry-same", "match": {"models": ["gpt-retry"]}, "retries": 2, "backoff_ms": 1,
             "max_retry_after_ms": 2000},
        ],
    }


@pytest.fixture
async def rig(fake_provider_factory, tmp_path: Path) -> AsyncIterator[Rig]:  # type: ignore[no-untyped-def]
    cfg = FakeProviderConfig(retry_after_ms=50)
    primary, backup = await fake_provider_factory(cfg), await fake_provider_factory(cfg)
    keys, records = {}, []
    for team in ("eng", "eu"):
        secret = new_secret()
        keys[team] = secret
        records.append(KeyRecord(id=f"vk_{team}", key_hash=hash_key(PEPPER, secret).hex(), team=team))
    doc = PolicyDocument.model_validate(policy(primary.base_url, backup.base_url))
    snapshot_file.save(tmp_path / "snapshot.pb", compile_snapshot(doc, records, version=3, now_ms=0))
    settings = DataPlaneSettings(node_id="fb-node", key_pepper=PEPPER, port=0, control_plane="", state_dir=tmp_path,
                                 tune_gc=False)
    sink = MemorySink()
    node = DataPlaneNode(settings, sink=sink, env={"FAKE_KEY": "fake-secret"})
    await node.start()
    try:
        yield Rig(f"http://127.0.0.1:{node.port}", keys, sink, node, primary, backup)
    finally:
        await node.stop()


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


@pytest.mark.parametrize(("fault", "cls"), [(529, "overloaded"), (429, "rate_limited"), (503, "upstream_5xx")])
async def test_primary_failing_all_run_every_request_served_by_backup(rig: Rig, fault: int, cls: str) -> None:
    rig.primary.add_fault(status=fault, count=None)
    n = 6
    for i in range(n):
        stream = i % 2 == 1
        r, raw = await rig.post(CHAT, chat("gpt-5" if i % 3 == 0 else "gpt-primary", stream=stream))
        assert r.status == 200, raw
        assert r.headers["x-interlock-route"] == "primary-then-backup"
        assert r.headers["x-interlock-deployment"] == "gpt-backup/pb"
        assert r.headers["x-interlock-fallback"] == "true"
        assert r.headers["x-interlock-attempts"] == f"2; gpt-primary/pa={cls}, gpt-backup/pb=200"
        if stream:
            assert b"data: [DONE]" in raw
        else:
            assert orjson.loads(raw)["choices"][0]["message"]["content"]
    assert rig.primary.requests_to(CHAT) == n and rig.backup.requests_to(CHAT) == n
    events = await rig.events(n)
    for ev in events:
        assert ev.status == 200 and ev.fallback and ev.route_rule == "primary-then-backup"
        assert [(a.deployment, a.status, a.error_class) for a in ev.attempts] == [
            ("gpt-primary/pa", fault, cls), ("gpt-backup/pb", 200, "")]
        assert ev.attempts[0].provider == "pa" and ev.attempts[1].upstream_model == "gpt-4o-mini"
        # billed once, at the backup's price, for the attempt that produced the answer
        assert (ev.model, ev.provider, ev.upstream_model) == ("gpt-backup", "pb", "gpt-4o-mini")
        assert Decimal(ev.cost_usd) == (Decimal(ev.input_tokens) * 1 + Decimal(ev.output_tokens) * 2) / 10**6


async def test_timeouts_fall_back_within_the_attempt_timeout(rig: Rig) -> None:
    rig.primary.add_fault(latency_ms=3000, count=None)
    for stream in (False, True):
        t0 = time.monotonic()
        r, raw = await rig.post(CHAT, chat("gpt-slow", stream=stream))
        assert r.status == 200, raw
        assert time.monotonic() - t0 < 2.0  # the 300 ms attempt timeout, not the provider's 3 s
        assert r.headers["x-interlock-attempts"] == "2; gpt-slow/pa=timeout, gpt-backup/pb=200"
    evs = await rig.events(2)
    assert all(ev.attempts[0].error_class == "timeout" and ev.attempts[0].status == 504 for ev in evs)
    assert all(250 <= ev.attempts[0].latency_ms < 1500 for ev in evs)


async def test_cross_dialect_fallback_anthropic_client_to_openai_provider(rig: Rig) -> None:
    rig.primary.add_fault(status=529, count=None, path="/v1/messages")
    body = {"model": "claude-primary", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    r, raw = await rig.post("/v1/messages", body)
    assert r.status == 200, raw
    msg = orjson.loads(raw)
    assert msg["type"] == "message" and msg["content"][0]["type"] == "text"  # Anthropic shape, from an OpenAI provider
    assert r.headers["x-interlock-attempts"] == "2; claude-primary/ant-a=overloaded, gpt-backup/pb=200"
    r, raw = await rig.post("/v1/messages", {**body, "stream": True})
    assert r.status == 200 and b"event: message_stop" in raw, raw
    assert r.headers["x-interlock-fallback"] == "true"
    evs = await rig.events(2)
    assert all(ev.dialect == "anthropic" and ev.model == "gpt-backup" and ev.output_tokens > 0 for ev in evs)
    assert rig.backup.requests_to(CHAT) == 2


async def test_region_restricted_team_never_reaches_another_region_even_when_its_only_deployment_fails(rig: Rig) -> None:
    # healthy: the eu team lands on the eu deployment although the us one has weight 100
    for _ in range(5):
        r, raw = await rig.post(CHAT, chat("gpt-geo"), team="eu")
        assert r.status == 200 and r.headers["x-interlock-deployment"] == "gpt-geo/eu", raw
    assert rig.primary.requests_to(CHAT) == 0
    # the eu deployment fails: the us deployment and the us fallback model are off limits
    rig.backup.add_fault(status=529, count=None)
    for _ in range(3):
        r, raw = await rig.post(CHAT, chat("gpt-geo"), team="eu")
        assert r.status == 529, raw
        assert r.headers["x-interlock-attempts"] == "1" and r.headers["x-interlock-deployment"] == "gpt-geo/eu"
    assert rig.primary.requests_to(CHAT) == 0
    # a team without limits falls back across regions
    rig.backup.clear_faults()
    rig.primary.add_fault(status=529, count=None)
    r, _ = await rig.post(CHAT, chat("gpt-geo"), team="eng")
    assert r.status == 200 and r.headers["x-interlock-deployment"] == "gpt-geo/eu"


async def test_circuit_opens_and_the_primary_is_no_longer_tried(rig: Rig) -> None:
    rig.primary.add_fault(status=500, count=None)
    for i in range(5):
        r, raw = await rig.post(CHAT, chat("gpt-breaker"))
        assert r.status == 200, raw
        expected = "2; gpt-breaker/pa=upstream_5xx, gpt-backup/pb=200" if i < 2 else "1"
        assert r.headers["x-interlock-attempts"] == expected
    assert rig.primary.requests_to(CHAT) == 2  # opened after 2 consecutive failures
    assert rig.node.proxy.breakers.state("gpt-breaker/pa") == "open"


async def test_retry_after_is_honoured_before_retrying_the_same_deployment(rig: Rig) -> None:
    rig.primary.add_fault(status=429, count=2)  # the fake sends retry-after-ms: 50
    t0 = time.monotonic()
    r, raw = await rig.post(CHAT, chat("gpt-retry"))
    elapsed = time.monotonic() - t0
    assert r.status == 200, raw
    assert r.headers["x-interlock-attempts"] == "3; gpt-retry/pa=rate_limited, gpt-retry/pa=rate_limited, gpt-retry/pa=200"
    assert elapsed >= 0.1  # two waits of >= 50 ms, not the 1 ms backoff
    (ev,) = await rig.events(1)
    assert [a.status for a in ev.attempts] == [429, 429, 200] and ev.fallback


async def test_all_circuits_open_answers_503_with_retry_after_in_the_clients_dialect(rig: Rig) -> None:
    rig.primary.add_fault(status=500, count=None)
    for _ in range(2):
        r, _ = await rig.post(CHAT, chat("gpt-lonely"))
        assert r.status == 500 and r.headers["x-interlock-attempts"] == "1"  # no fallback: the provider's answer
    r, raw = await rig.post(CHAT, chat("gpt-lonely"))
    assert r.status == 503 and 25 <= int(r.headers["retry-after"]) <= 30
    err = orjson.loads(raw)["error"]
    assert "circuit open: gpt-lonely/pa" in err["message"] and err["type"]
    assert rig.primary.requests_to(CHAT) == 2
    evs = await rig.events(3)
    assert evs[-1].status == 503 and not evs[-1].attempts and evs[-1].route_rule == "default"


async def test_sticky_sessions_keep_their_deployment_and_move_only_when_it_fails(rig: Rig) -> None:
    seen: dict[str, set[str]] = {}
    for i in range(10):
        for _ in range(3):
            # Claude Code's session header becomes the `session` tag, which stickiness keys on
            r, _ = await rig.post(CHAT, chat("gpt-sticky"), **{"x-claude-code-session-id": f"sess-{i}"})
            assert r.status == 200 and r.headers["x-interlock-route"] == "sticky"
            seen.setdefault(f"sess-{i}", set()).add(r.headers["x-interlock-deployment"])
    assert all(len(d) == 1 for d in seen.values()), seen  # every session stayed on one deployment
    assert set().union(*seen.values()) == {"gpt-sticky/a", "gpt-sticky/b"}  # and sessions spread over both
    on_a = next(s for s, d in seen.items() if d == {"gpt-sticky/a"})
    rig.primary.add_fault(status=529, count=None)  # a's provider fails: the session moves, the request succeeds
    r, _ = await rig.post(CHAT, chat("gpt-sticky"), **{"x-interlock-session-id": "unused", "x-claude-code-session-id": on_a})
    assert r.status == 200 and r.headers["x-interlock-deployment"] == "gpt-sticky/b"


async def test_team_with_no_allowed_deployment_gets_403_naming_the_limits(rig: Rig) -> None:
    r, raw = await rig.post(CHAT, chat("gpt-retry"), team="eu")  # us-only model, no fallback
    assert r.status == 403, raw
    msg = orjson.loads(raw)["error"]["message"]
    assert "may not reach any deployment of model 'gpt-retry' (team limits: regions eu)" in msg
    r, raw = await rig.post(CHAT, chat("gpt-primary"), team="eu")  # us primary, eu fallback: served in the eu
    assert r.status == 200 and r.headers["x-interlock-deployment"] == "gpt-backup/pb"
    assert r.headers["x-interlock-attempts"] == "1"  # the us deployment was never attempted
    assert rig.primary.requests_to(CHAT) == 0


async def test_a_fallback_the_request_cannot_use_is_skipped_not_returned(rig: Rig) -> None:
    # embeddings cannot be translated to Anthropic: that fallback is skipped, the next one serves
    rig.primary.add_fault(status=529, count=None, path="/v1/embeddings")
    r, raw = await rig.post("/v1/embeddings", {"model": "gpt-emb", "input": "hello"})
    assert r.status == 200, raw
    trail = r.headers["x-interlock-attempts"]
    assert trail.startswith("3; gpt-emb/pa=overloaded, claude-primary/ant-a=") and trail.endswith("gpt-backup/pb=200")
    rig.backup.add_fault(status=529, count=None, path="/v1/embeddings")
    r, raw = await rig.post("/v1/embeddings", {"model": "gpt-emb", "input": "hello"})
    assert r.status == 529, raw  # the last real failure, not the untranslatable fallback's 400


async def test_a_primary_the_request_cannot_use_is_skipped_for_a_fallback_that_can(rig: Rig) -> None:
    # embeddings cannot be translated to the Anthropic primary: the OpenAI fallback serves the request
    r, raw = await rig.post("/v1/embeddings", {"model": "claude-primary", "input": "hello"})
    assert r.status == 200, raw
    trail = r.headers["x-interlock-attempts"]
    assert trail.startswith("2; claude-primary/ant-a=") and trail.endswith("gpt-backup/pb=200"), trail
    assert rig.primary.requests_to("/v1/messages") == 0  # nothing was sent to the primary
    rig.backup.add_fault(status=529, count=None, path="/v1/embeddings")
    r, raw = await rig.post("/v1/embeddings", {"model": "claude-primary", "input": "hello"})
    assert r.status == 529, raw  # the real failure, not the unusable primary's 400
