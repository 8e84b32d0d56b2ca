"""Token counting on every route, through a real node to the fake provider: Anthropic count_tokens, Gemini
countTokens and OpenAI /v1/responses/input_tokens on models served by another API. Translated to the
provider's own counting endpoint where it has one (the fake's own count is the truth), else a
conservative local estimate marked in a header and in the event. Counting is never billed. When a
fallback cannot serve a request, the client gets the primary's real failure, not the fallback's 400."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from controlplane.policy.model import CircuitBreaker, Model, Price
from tests.fixtures.fakeprovider import FakeProvider
from tests.fixtures.gateway import Gateway, gateway_policy, native_gemini, running_gateway, wait_events
from tests.fixtures.sdks import anthropic_client as anth
from tests.fixtures.sdks import genai_client as gem

MESSAGES = [{"role": "user", "content": "count these words for me please"}]
SYSTEM = "you are terse"


@pytest.fixture
async def gw(fake_provider: FakeProvider) -> AsyncIterator[Gateway]:
    base = fake_provider.base_url
    policy = gateway_policy(base, providers=[native_gemini(base)], models=[
        Model(name="gemini-t", provider="fg", upstream="gemini-upstream", price=Price(input="1", output="2")),
        # Anthropic primary (failing in the tests below) with an OpenAI-API fallback
        Model(name="claude-fails", provider="fa", upstream="claude-up", price=Price(input="3", output="15"),
              circuit=CircuitBreaker(enabled=False), fallback=["gpt-t"]),
        Model(name="claude-breaker", provider="fa", upstream="claude-up", price=Price(input="3", output="15"),
              circuit=CircuitBreaker(failures=1, cooldown_ms=600_000), fallback=["gpt-t"]),
        Model(name="gpt-breaker", provider="fo", upstream="gpt-up", price=Price(input="1", output="2"),
              circuit=CircuitBreaker(failures=1, cooldown_ms=600_000), fallback=["claude-t"]),
    ])
    with tempfile.TemporaryDirectory() as state:
        async with running_gateway(base, Path(state), policy=policy) as g:
            yield g


async def post(gw: Gateway, path: str, body: dict[str, Any], family: str) -> tuple[int, dict[str, str], Any]:
    headers = {"content-type": "application/json"}
    if family == "anthropic":
        headers |= {"x-api-key": gw.key, "anthropic-version": "2023-06-01"}
    elif family == "gemini":
        headers["x-goog-api-key"] = gw.key
    else:
        headers["authorization"] = f"Bearer {gw.key}"
    async with aiohttp.ClientSession() as s, s.post(gw.url + path, data=orjson.dumps(body), headers=headers) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, orjson.loads(await r.read())


def count_requests(fake: FakeProvider) -> list[dict[str, Any]]:
    return [h for h in fake.stats()["history"] if h["method"] == "POST"]


async def test_anthropic_count_tokens_on_a_gemini_model_uses_countTokens(gw: Gateway, fake_provider: FakeProvider) -> None:
    status, headers, body = await post(gw, "/v1/messages/count_tokens",
                                       {"model": "gemini-t", "system": SYSTEM, "messages": MESSAGES}, "anthropic")
    [sent] = count_requests(fake_provider)
    assert sent["path"] == "/v1beta/models/gemini-upstream:countTokens" and sent["status"] == 200
    inner = sent["body"]["generateContentRequest"]
    assert inner["model"] == "models/gemini-upstream" and inner["systemInstruction"]["parts"][0]["text"] == SYSTEM
    # the fake's own count of what it was sent (it counts exactly what generateContent would bill as prompt)
    async with aiohttp.ClientSession() as s, s.post(
            f"{fake_provider.base_url}/v1beta/models/gemini-upstream:countTokens", json=sent["body"],
            headers={"x-goog-api-key": "k"}) as r:
        truth = (await r.json())["totalTokens"]
    assert status == 200 and body == {"input_tokens": truth} and headers["x-interlock-token-count"] == "provider"
    (ev,) = await wait_events(gw, 1)
    assert (ev.counted_tokens, ev.count_estimated, ev.input_tokens, ev.cost_usd) == (truth, False, 0, "0.000000000000")


async def test_gemini_count_tokens_on_an_anthropic_model_uses_count_tokens(
        gw: Gateway, fake_provider: FakeProvider) -> None:
    req = {"contents": [{"role": "user", "parts": [{"text": "count these words"}]}],
           "systemInstruction": {"parts": [{"text": SYSTEM}]}}
    status, headers, body = await post(gw, "/v1beta/models/claude-t:countTokens", req, "gemini")
    [sent] = count_requests(fake_provider)
    assert sent["path"] == "/v1/messages/count_tokens" and sent["body"]["system"] == SYSTEM
    assert "max_tokens" not in sent["body"] and sent["body"]["model"] == "claude-t"
    async with aiohttp.ClientSession() as s, s.post(f"{fake_provider.base_url}/v1/messages/count_tokens",
                                                    json=sent["body"], headers={"x-api-key": "k"}) as r:
        truth = (await r.json())["input_tokens"]
    assert status == 200 and body == {"totalTokens": truth} and headers["x-interlock-token-count"] == "provider"
    (ev,) = await wait_events(gw, 1)
    assert ev.counted_tokens == truth and not ev.count_estimated


async def test_openai_input_tokens_on_an_anthropic_model(gw: Gateway, fake_provider: FakeProvider) -> None:
    status, headers, body = await post(gw, "/v1/responses/input_tokens",
                                       {"model": "claude-t", "instructions": SYSTEM, "input": "count me"}, "openai")
    [sent] = count_requests(fake_provider)
    assert sent["path"] == "/v1/messages/count_tokens"
    assert status == 200 and body["object"] == "response.input_tokens" and body["input_tokens"] > 0
    assert headers["x-interlock-token-count"] == "provider"
    (ev,) = await wait_events(gw, 1)
    assert ev.counted_tokens == body["input_tokens"] and ev.endpoint == "/v1/responses/input_tokens"


@pytest.mark.parametrize(("path", "body", "family", "field"), [
    ("/v1/messages/count_tokens", {"model": "gpt-t", "system": SYSTEM, "messages": MESSAGES}, "anthropic",
     "input_tokens"),
    ("/v1beta/models/gpt-t:countTokens", {"contents": [{"parts": [{"text": "count me"}]}]}, "gemini", "totalTokens"),
    ("/v1/responses/input_tokens", {"model": "gpt-t", "input": "count me"}, "openai", "input_tokens"),
])
async def test_no_counting_endpoint_gives_a_marked_conservative_estimate(
        gw: Gateway, fake_provider: FakeProvider, path: str, body: dict[str, Any], family: str, field: str) -> None:
    status, headers, answer = await post(gw, path, body, family)
    assert status == 200 and headers["x-interlock-token-count"] == "estimated"
    assert fake_provider.stats()["total"] == 0  # an OpenAI-compatible server has no counting endpoint: not called
    n = answer[field]
    assert n >= len(orjson.dumps(body)) // 4  # never below the ~4 bytes/token a real tokenizer averages
    (ev,) = await wait_events(gw, 1)
    assert (ev.counted_tokens, ev.count_estimated, ev.status, ev.input_tokens) == (n, True, 200, 0)
    assert ev.cost_usd == "0.000000000000"


async def test_fallback_with_529_answers_from_the_fallback_never_a_misleading_400(
        gw: Gateway, fake_provider: FakeProvider) -> None:
    fake_provider.add_fault(status=529, count=None, path="/v1/messages/count_tokens")
    status, headers, body = await post(gw, "/v1/messages/count_tokens",
                                       {"model": "claude-fails", "messages": MESSAGES}, "anthropic")
    assert status == 200 and body["input_tokens"] > 0, body  # the OpenAI-API fallback's (estimated) answer
    assert headers["x-interlock-token-count"] == "estimated"
    (ev,) = await wait_events(gw, 1)
    assert [(a.provider, a.status) for a in ev.attempts] == [("fa", 529), ("fo", 200)] and ev.count_estimated


async def test_open_circuit_and_a_fallback_that_cannot_serve_gives_the_real_failure(
        gw: Gateway, fake_provider: FakeProvider) -> None:
    # embeddings: the Anthropic-API fallback cannot serve them. The primary fails with 529...
    fake_provider.add_fault(status=529, count=None, path="/v1/embeddings")
    status, _, body = await post(gw, "/v1/embeddings", {"model": "gpt-breaker", "input": "hi"}, "openai")
    assert status == 529, body  # the primary's real failure, not "served by a provider speaking the anthropic API"
    # ...which opened its circuit: now the real failure is the open circuit (503), still not the fallback's 400
    status, headers, body = await post(gw, "/v1/embeddings", {"model": "gpt-breaker", "input": "hi"}, "openai")
    assert status == 503 and "circuit open" in body["error"]["message"] and "retry-after" in headers, body
    assert "speaking the" not in body["error"]["message"]


async def test_count_tokens_never_bills_even_natively(gw: Gateway, fake_provider: FakeProvider) -> None:
    status, headers, body = await post(gw, "/v1/messages/count_tokens",
                                       {"model": "claude-t", "messages": MESSAGES}, "anthropic")
    assert status == 200 and headers["x-interlock-token-count"] == "provider"
    (ev,) = await wait_events(gw, 1)
    assert ev.counted_tokens == body["input_tokens"] and ev.input_tokens == 0 and ev.cost_usd == "0.000000000000"


async def test_official_sdks_count_on_models_of_other_apis(gw: Gateway, fake_provider: FakeProvider) -> None:
    """The SDKs Claude Code and Gemini CLI are built on: their count calls get answers on every model."""
    a = anth(gw)
    on_gemini = await a.messages.count_tokens(model="gemini-t", system=SYSTEM, messages=MESSAGES)  # type: ignore[arg-type]
    on_openai = await a.messages.count_tokens(model="gpt-t", messages=MESSAGES)  # type: ignore[arg-type]
    g = gem(gw)
    on_claude = await g.aio.models.count_tokens(model="claude-t", contents="count these words")
    on_gpt = await g.aio.models.count_tokens(model="gpt-t", contents="count these words")
    assert min(on_gemini.input_tokens, on_openai.input_tokens) > 0
    assert min(on_claude.total_tokens or 0, on_gpt.total_tokens or 0) > 0
    events = await wait_events(gw, 4)
    assert [(e.provider, e.count_estimated) for e in events] == [("fg", False), ("fo", True), ("fa", False),
                                                                 ("fo", True)]
    assert [h["path"] for h in count_requests(fake_provider)] == ["/v1beta/models/gemini-upstream:countTokens",
                                                                  "/v1/messages/count_tokens"]
