"""Proxy behaviour seen from both sides: what the client gets and which usage event is recorded."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson
import pytest

from interlock.fakeprovider.config import FakeProviderConfig
from tests.fixtures.gateway import Gateway, running_gateway, wait_events


def chat(model: str = "fast", **extra: object) -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hello gateway"}], **extra})


async def test_event_records_who_what_and_exact_cost(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gateway.url}/v1/chat/completions", data=chat(),
                         headers={"authorization": f"Bearer {gateway.key}"})
        body = await r.json()
    assert r.status == 200 and r.headers["x-interlock-request-id"]
    assert fake_provider.last_request["body"]["model"] == "gpt-upstream"  # alias -> model -> upstream name
    (ev,) = await wait_events(gateway, 1)
    u = body["usage"]
    assert (ev.key_id, ev.team_id, ev.requested_model, ev.alias, ev.model, ev.upstream_model, ev.provider) == (
        "vk_fixture", "eng", "fast", "fast", "gpt-t", "gpt-upstream", "fo")
    assert (ev.input_tokens, ev.output_tokens) == (u["prompt_tokens"], u["completion_tokens"]) == (4, 20)
    assert Decimal(ev.cost_usd) == (Decimal(4) * 1 + Decimal(20) * 2) / Decimal(10**6)
    assert ev.tags["cost-center"] == "42" and ev.policy_version == 7 and ev.status == 200
    assert ev.event_id == r.headers["x-interlock-request-id"] and gateway.key not in str(ev)


@asynccontextmanager
async def streaming_slowly(fake_provider_factory, tmp_path: Path, chunks: int) -> AsyncIterator[Gateway]:  # type: ignore[no-untyped-def]
    """A gateway before a fake whose streams send `chunks` tokens 20 ms apart."""
    fake = await fake_provider_factory(FakeProviderConfig(output_tokens=chunks, chunk_delay_ms=20))
    async with running_gateway(fake.base_url, tmp_path) as gw:
        yield gw


@pytest.fixture
async def slow_gateway(fake_provider_factory, tmp_path: Path) -> AsyncIterator[Gateway]:  # type: ignore[no-untyped-def]
    async with streaming_slowly(fake_provider_factory, tmp_path, 200) as gw:  # 4 s: abandoned long before the end
        yield gw


async def test_abandoned_openai_stream_is_billed_for_what_was_produced(slow_gateway: Gateway) -> None:
    gateway = slow_gateway
    headers = {"authorization": f"Bearer {gateway.key}"}
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gateway.url}/v1/chat/completions", data=chat(stream=True), headers=headers)
        seen = 0
        async for line in r.content:
            seen += line.startswith(b"data:")
            if seen == 5:
                break
        r.close()  # the client walks away mid-stream
    (ev,) = await wait_events(gateway, 1)
    assert ev.client_disconnected and ev.usage_estimated and ev.stream
    assert 5 <= ev.output_tokens < 200  # billed for the part produced, not the whole answer
    assert ev.input_tokens > 0 and Decimal(ev.cost_usd) > 0


async def test_abandoned_anthropic_stream_keeps_the_providers_input_count(slow_gateway: Gateway) -> None:
    gateway = slow_gateway
    headers = {"x-api-key": gateway.key}
    body = orjson.dumps({"model": "claude-t", "max_tokens": 500, "stream": True,
                         "messages": [{"role": "user", "content": "x" * 400}]})
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gateway.url}/v1/messages", data=body, headers=headers)
        async for line in r.content:
            if b"content_block_delta" in line:
                break
        r.close()
    (ev,) = await wait_events(gateway, 1)
    assert ev.client_disconnected and ev.usage_estimated
    assert ev.input_tokens == 100  # from message_start: 400 bytes / 4, reported by the provider
    assert 1 <= ev.output_tokens < 200


async def test_upstream_cut_mid_stream_ends_with_an_error_event_in_dialect(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    fake_provider.add_fault(fail_after_chunks=4)
    headers = {"x-api-key": gateway.key}
    body = orjson.dumps({"model": "claude-t", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gateway.url}/v1/messages", data=body, headers=headers)
        text = await r.read()  # the gateway terminates the chunked response properly
    assert r.status == 200 and b"event: error" in text and b'"type":"api_error"' in text
    (ev,) = await wait_events(gateway, 1)
    assert ev.status == 502 and ev.error_class and ev.usage_estimated


async def test_provider_429_passes_through_with_retry_after(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    fake_provider.add_fault(status=429)
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gateway.url}/v1/chat/completions", data=chat(),
                         headers={"authorization": f"Bearer {gateway.key}"})
        body = await r.json()
    assert r.status == 429 and "retry-after" in r.headers and body["error"]["type"]
    (ev,) = await wait_events(gateway, 1)
    assert ev.status == 429 and ev.error_class == "rate_limited" and ev.cost_usd == "0.000000000000"


async def test_anthropic_headers_are_forwarded_and_provider_key_is_the_nodes(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    body = orjson.dumps({"model": "claude-t", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gateway.url}/v1/messages?beta=true", data=body,
                         headers={"x-api-key": gateway.key, "anthropic-beta": "tools-2024", "anthropic-version": "2023-06-01"})
    assert r.status == 200
    sent = {k.lower(): v for k, v in fake_provider.last_request["headers"].items()}
    assert sent["anthropic-beta"] == "tools-2024"
    assert gateway.key not in str(fake_provider.last_request)  # the virtual key never goes upstream


async def test_oversized_body_is_refused_in_the_clients_dialect(fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with running_gateway(fake_provider.base_url, tmp_path, max_body=1000) as gw, aiohttp.ClientSession() as s:
        r = await s.post(f"{gw.url}/v1/messages", data=b"x" * 5000, headers={"x-api-key": gw.key})
        body = await r.json()
    assert r.status == 413 and body["type"] == "error" and body["error"]["type"] == "request_too_large"


async def test_keep_alive_and_pipelined_requests_answer_in_order(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.node.port)
    req = (b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n" b"GET /nope HTTP/1.1\r\nhost: x\r\n\r\n"
           b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    writer.write(req)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    statuses = re.findall(rb"HTTP/1.1 (\d+)", data)
    assert statuses == [b"200", b"404", b"200"]


async def test_shutdown_drains_an_in_flight_stream(fake_provider_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 50 chunks (1 s): still in flight while stop() begins, and drained to the end.
    async with streaming_slowly(fake_provider_factory, tmp_path, 50) as gateway:
        body = orjson.dumps({"model": "claude-t", "max_tokens": 500, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        async with aiohttp.ClientSession() as s:
            r = await s.post(f"{gateway.url}/v1/messages", data=body, headers={"x-api-key": gateway.key})
            first = await r.content.readline()
            stopping = asyncio.create_task(gateway.node.stop())
            for _ in range(500):  # stop() closes the listener in the step that sets `draining`
                if gateway.node.router.draining:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(OSError):  # no new connections while draining
                await asyncio.open_connection("127.0.0.1", gateway.node.port)
            rest = await r.read()
            await stopping
        assert first.startswith(b"event: message_start") and rest.rstrip().endswith(b'{"type":"message_stop"}')


async def test_tags_from_header_and_session_land_in_the_event(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gateway.url}/v1/chat/completions", data=chat(metadata={"feature": "review"}),
                         headers={"authorization": f"Bearer {gateway.key}", "x-interlock-tags": "agent=codex,task=T-9",
                                  "session_id": "sess-1"})
    assert r.status == 200
    (ev,) = await wait_events(gateway, 1)
    assert dict(ev.tags) == {"cost-center": "42", "feature": "review", "agent": "codex", "task": "T-9", "session": "sess-1"}


async def test_team_required_tags_are_enforced_in_the_clients_dialect(fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = orjson.dumps({"model": "claude-t", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    async with running_gateway(fake_provider.base_url, tmp_path, required_tags=["task"]) as gw:
        async with aiohttp.ClientSession() as s:
            refused = await s.post(f"{gw.url}/v1/messages", data=body, headers={"x-api-key": gw.key})
            err = await refused.json()
            ok = await s.post(f"{gw.url}/v1/messages", data=body,
                              headers={"x-api-key": gw.key, "x-interlock-tags": "task=T-1"})
        assert refused.status == 400 and err["error"]["type"] == "invalid_request_error"
        assert "task" in err["error"]["message"] and "x-interlock-tags" in err["error"]["message"]
        assert ok.status == 200
        assert fake_provider.requests_to("/v1/messages") == 1  # the refused request never reached the provider
