"""Admission runs on every route that reaches a provider, and refusals are in each client's dialect.

A data-plane node (in process, snapshot from disk: no control plane, so no lease) with a team budget far
below any request's worst case: every generating endpoint must answer 402 in its own dialect before
anything reaches the fake provider; token counting is free and passes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import Budget, KeyRecord
from dataplane.node import DataPlaneNode
from dataplane.snapshot import file as snapshot_file
from dataplane.usage.sink import MemorySink
from interlock_contracts.keys import hash_key, new_secret
from interlock_contracts.settings.dataplane import DataPlaneSettings
from tests.fixtures.gateway import PEPPER, Gateway, gateway_policy

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
# path -> (body, dialect family of the expected error shape)
GENERATING: dict[str, tuple[dict[str, Any], str]] = {
    "/v1/chat/completions": ({"model": "gpt-t", **CHAT}, "openai"),
    "/v1/responses": ({"model": "gpt-t", "input": "hi", "max_output_tokens": 5}, "openai"),
    "/v1/embeddings": ({"model": "gpt-t", "input": "hi"}, "openai"),
    "/v1/messages": ({"model": "claude-t", **CHAT}, "anthropic"),
    "/v1beta/models/gpt-t:generateContent": ({"contents": [{"parts": [{"text": "hi"}]}]}, "gemini"),
    "/v1beta/models/gpt-t:streamGenerateContent?alt=sse": ({"contents": [{"parts": [{"text": "hi"}]}]}, "gemini"),
    "/v1/models/gpt-t:generateContent": ({"contents": [{"parts": [{"text": "hi"}]}]}, "gemini"),
}
FREE = {
    "/v1/messages/count_tokens": {"model": "claude-t", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/responses/input_tokens": {"model": "gpt-t", "input": "hi"},
}


@pytest.fixture
async def broke_gateway(fake_provider, tmp_path: Path) -> AsyncIterator[Gateway]:  # type: ignore[no-untyped-def]
    secret = new_secret()
    key = KeyRecord(id="vk_broke", key_hash=hash_key(PEPPER, secret).hex(), team="eng")
    doc = gateway_policy(fake_provider.base_url).model_copy(update={"budgets": [
        Budget(id="tiny", scope="team", scope_id="eng", window="month", limit_usd="0.000000000001")]})
    snapshot_file.save(tmp_path / "snapshot.pb", compile_snapshot(doc, [key], version=3, now_ms=0))
    settings = DataPlaneSettings(node_id="t-broke", key_pepper=PEPPER, port=0, control_plane="", state_dir=tmp_path,
                                 tune_gc=False)
    sink = MemorySink()
    node = DataPlaneNode(settings, sink=sink, env={"FAKE_KEY": "fake-secret"})
    await node.start()
    try:
        yield Gateway(f"http://127.0.0.1:{node.port}", secret, key.id, sink, node)
    finally:
        await node.stop()


def test_every_proxied_endpoint_is_covered(broke_gateway: Gateway) -> None:
    router = broke_gateway.node.router
    served = {ep.path for ep in router.endpoints()}
    tested = {p.split("?")[0].replace("gpt-t", "{model}") for p in (*GENERATING, *FREE)}
    assert served <= tested | {"/v1beta/models/{model}:countTokens", "/v1/models/{model}:countTokens",
                               "/v1/models/{model}:streamGenerateContent"}, served - tested


async def test_budget_refusal_on_every_generating_route_in_the_clients_dialect(broke_gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    gw = broke_gateway
    async with aiohttp.ClientSession() as s:
        for path, (body, family) in GENERATING.items():
            headers = {"authorization": f"Bearer {gw.key}", "content-type": "application/json"}
            if family == "anthropic":
                headers["anthropic-version"] = "2023-06-01"
            async with s.post(gw.url + path, data=orjson.dumps(body), headers=headers) as r:
                doc = await r.json(content_type=None)
                assert r.status == 402, (path, doc)
                assert r.headers["x-interlock-limit-id"] == "tiny" and int(r.headers["retry-after"]) > 0
                assert r.headers["x-interlock-limit-scope"] == "team:eng"
                assert r.headers["x-interlock-budget-remaining-usd"] == "0.000000000001"
            if family == "openai":
                assert doc["error"]["type"] == "insufficient_quota" and doc["error"]["code"] == "budget_exceeded"
                msg = doc["error"]["message"]
            elif family == "anthropic":
                assert doc["type"] == "error" and doc["error"]["type"] == "billing_error"
                msg = doc["error"]["message"]
            else:
                assert doc["error"]["status"] == "RESOURCE_EXHAUSTED" and doc["error"]["code"] == 402
                msg = doc["error"]["message"]
            assert "team 'eng' budget 'tiny' (month " in msg and "cannot cover this request" in msg and "$0.000000000001 of $0.000000000001 is left" in msg
            assert "resets " in msg
    assert fake_provider.stats()["total"] == 0  # nothing reached the provider
    assert len(gw.sink.events) == len(GENERATING) and {e.status for e in gw.sink.events} == {402}


async def test_token_counting_is_free(broke_gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    gw = broke_gateway
    async with aiohttp.ClientSession() as s:
        for path, body in FREE.items():
            async with s.post(gw.url + path, data=orjson.dumps(body),
                              headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"}) as r:
                assert r.status == 200, await r.text()
    # the OpenAI-compatible server has no counting endpoint: input_tokens is counted locally, not sent
    assert fake_provider.stats()["total"] == len(FREE) - 1
