"""The fake provider, driven by the official SDKs (and raw HTTP where no SDK is installed)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from click.testing import CliRunner

from interlock.fakeprovider import (
    FakeProviderConfig,
    FaultRule,
    estimate_tokens,
    nginx_conf,
    start_fake_provider,
    write_recorded_responses,
)
from interlock.fakeprovider.config import OptionError
from interlock.fakeprovider.reply import reply_words
from tests.fixtures.fakeprovider import FakeProvider
from tests.fixtures.ports import free_port

PROMPT = "hello there friend"
# 20 words: "Echo:", the 3 prompt words, then 16 lorem words.
EXPECTED_20 = (
    "Echo: hello there friend lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
    "eiusmod tempor incididunt ut labore et"
)
USER: Any = [{"role": "user", "content": PROMPT}]  # Any: shared by both SDKs' TypedDicts
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "days", "unit"],
        },
    },
}


_clients: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []


def oai(fake: FakeProvider, **kw: Any) -> openai.AsyncOpenAI:
    kw = {"api_key": "sk-test", "max_retries": 0, **kw}
    _clients.append(client := openai.AsyncOpenAI(base_url=fake.openai_base_url, **kw))
    return client


def ant(fake: FakeProvider, **kw: Any) -> anthropic.AsyncAnthropic:
    kw = {"api_key": "sk-ant-test", "max_retries": 0, **kw}
    _clients.append(client := anthropic.AsyncAnthropic(base_url=fake.base_url, **kw))
    return client


@pytest.fixture(autouse=True)
async def _close_sdk_clients() -> AsyncIterator[None]:
    # Close SDK connection pools inside the test's loop; GC after the loop closes warns loudly.
    yield
    while _clients:
        await _clients.pop().close()


def body_of(exc: openai.APIStatusError | anthropic.APIStatusError) -> dict[str, Any]:
    assert isinstance(exc.body, dict)
    return exc.body


def body_text(msg: anthropic.types.Message) -> str:
    block = msg.content[0]
    assert block.type == "text"
    return block.text


async def raw_events(resp: aiohttp.ClientResponse) -> list[tuple[str | None, str]]:
    """Parse an SSE body into (event name, data) pairs, checking the framing."""
    text = (await resp.read()).decode()
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block:
            continue
        name, data = None, ""
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            else:
                assert field == "data", line
                data = value
        out.append((name, data))
    return out


# --- pure pieces ----------------------------------------------------------


def test_token_estimate_and_words_are_deterministic() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("é" * 3) == 2  # 6 UTF-8 bytes, not 3 characters
    assert " ".join(reply_words(PROMPT, 20)) == EXPECTED_20
    assert reply_words("x" * 100, 1) == ["Echo:"]
    assert reply_words("a b c d e f g h i j k l m n o p q r s t u v w x y z", 5) == ["Echo:", "a", "b", "c", "d"]


def test_config_and_fault_rules_validate() -> None:
    with pytest.raises(ValueError):
        FakeProviderConfig(output_tokens=0)
    with pytest.raises(OptionError):
        FaultRule()  # no effect at all
    with pytest.raises(OptionError):
        FaultRule(status=302)
    with pytest.raises(OptionError):
        FaultRule.from_json({"status": 529, "bogus": 1})
    with pytest.raises(OptionError):
        FaultRule.from_json({"status": "529"})
    with pytest.raises(OptionError):
        FaultRule.from_json({"status": 529, "path": 5})
    assert FaultRule.from_json({"latency_ms": 5, "count": None}).count is None
    assert "sk-secret" not in repr(FakeProviderConfig(api_key="sk-secret"))


# --- OpenAI ------------------------------------------------------------------


async def test_openai_non_stream(fake_provider: FakeProvider) -> None:
    messages = [{"role": "system", "content": "You are terse."}, *USER]
    r = await oai(fake_provider).chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == "gpt-4o-mini"
    assert abs(r.created - time.time()) < 60
    choice = r.choices[0]
    assert (choice.index, choice.finish_reason, choice.message.role) == (0, "stop", "assistant")
    assert choice.message.content == EXPECTED_20
    # input = ceil(bytes("You are terse.\nhello there friend") / 4) = ceil(33 / 4)
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (9, 20, 29)
    assert r.usage.prompt_tokens_details and r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details and r.usage.completion_tokens_details.reasoning_tokens == 0


async def test_openai_stream_with_usage_matches_non_stream(fake_provider: FakeProvider) -> None:
    stream = await oai(fake_provider).chat.completions.create(
        model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert "".join(content) == EXPECTED_20
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(content) == 20  # one token per content chunk
    assert usage_chunk.usage.prompt_tokens == estimate_tokens(PROMPT)
    assert all(c.usage is None for c in chunks[:-1])


async def test_openai_stream_wire_format_without_usage(fake_provider: FakeProvider) -> None:
    body = {"model": "m", "messages": USER, "stream": True}
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{fake_provider.base_url}/v1/chat/completions",
            json=body,
            headers={"authorization": "Bearer k", "x-fake-output-tokens": "3"},
        ) as resp,
    ):
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
        events = await raw_events(resp)
    assert events[-1] == (None, "[DONE]")
    payloads = [orjson.loads(d) for _, d in events[:-1]]
    assert len(payloads) == 1 + 3 + 1  # role, 3 content deltas, finish; no usage chunk unless asked
    assert all("usage" not in p for p in payloads)
    assert payloads[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


async def test_openai_output_tokens_header_and_max_tokens(fake_provider: FakeProvider) -> None:
    client = oai(fake_provider)
    r = await client.chat.completions.create(model="m", messages=USER, extra_headers={"x-fake-output-tokens": "50"})
    assert r.usage and r.usage.completion_tokens == 50
    assert len((r.choices[0].message.content or "").split()) == 50
    r = await client.chat.completions.create(model="m", messages=USER, max_tokens=7)
    assert r.choices[0].finish_reason == "length" and r.usage and r.usage.completion_tokens == 7
    assert r.choices[0].message.content == " ".join(EXPECTED_20.split()[:7])


async def test_openai_tool_call_non_stream_and_stream(fake_provider: FakeProvider) -> None:
    client = oai(fake_provider)
    messages: list[Any] = [{"role": "user", "content": "Please use tool for Paris"}]
    r = await client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call: Any = choice.message.tool_calls[0] if choice.message.tool_calls else None
    assert call.type == "function" and call.function.name == "get_weather"
    args = orjson.loads(call.function.arguments)
    assert args == {"city": "Please use tool for Paris", "days": 1, "unit": "c"}
    assert r.usage and r.usage.completion_tokens == estimate_tokens("get_weather" + call.function.arguments)

    stream = await client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL], stream=True)
    chunks = [c async for c in stream]
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].id and deltas[0].id.startswith("call_") and deltas[0].type == "function"
    assert deltas[0].function and deltas[0].function.name == "get_weather"
    streamed_args = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert orjson.loads(streamed_args) == args
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # After the tool result the model answers with text, so agent loops terminate.
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = await client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    assert r2.choices[0].finish_reason == "stop" and (r2.choices[0].message.content or "").startswith(
        "Echo: Please use tool"
    )
    # Without the trigger phrase, tools are offered but not used; tool_choice="required" forces one.
    r3 = await client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL])
    assert r3.choices[0].message.tool_calls is None
    r4 = await client.chat.completions.create(model="m", messages=USER, tools=[WEATHER_TOOL], tool_choice="required")
    assert r4.choices[0].finish_reason == "tool_calls"


async def test_openai_embeddings_float_and_base64(fake_provider: FakeProvider) -> None:
    client = oai(fake_provider)
    plain = await client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float"
    )
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    decoded = await client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert fake_provider.last_request and fake_provider.last_request["body"]["encoding_format"] == "base64"
    assert [d.embedding for d in decoded.data] == [d.embedding for d in plain.data]
    assert len(plain.data[0].embedding) == 256 and plain.data[0].embedding != plain.data[1].embedding
    assert math.isclose(sum(x * x for x in plain.data[0].embedding), 1.0, rel_tol=1e-5)
    assert plain.usage.prompt_tokens == estimate_tokens("alpha") + estimate_tokens("beta")
    small = await client.embeddings.create(model="e", input="alpha", dimensions=8)
    assert len(small.data[0].embedding) == 8

    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{fake_provider.openai_base_url}/embeddings",
            json={"model": "e", "input": "alpha", "encoding_format": "base64"},
            headers={"authorization": "Bearer k"},
        ) as resp,
    ):
        raw = base64.b64decode((await resp.json())["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == plain.data[0].embedding


async def test_models_list_in_both_dialects(fake_provider: FakeProvider) -> None:
    ids = [m.id async for m in oai(fake_provider).models.list()]
    assert "gpt-4o-mini" in ids and ids == list(fake_provider.config.models)
    page = await ant(fake_provider).models.list()
    assert [m.id for m in page.data] == ids and page.data[0].type == "model"
    model = await oai(fake_provider).models.retrieve("gpt-4o")
    assert model.id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        await oai(fake_provider).models.retrieve("nope")


# --- errors and faults ---------------------------------------------------------


async def test_openai_status_injection_maps_to_sdk_errors(fake_provider: FakeProvider) -> None:
    client = oai(fake_provider)
    with pytest.raises(openai.RateLimitError) as rate:
        await client.chat.completions.create(model="m", messages=USER, extra_headers={"x-fake-status": "429"})
    assert rate.value.response.headers["retry-after"] == "1"  # ceil(20 ms) in whole seconds
    assert rate.value.response.headers["retry-after-ms"] == "20"
    assert rate.value.body == {
        "message": body_of(rate.value)["message"],
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    with pytest.raises(openai.InternalServerError) as overloaded:
        await client.chat.completions.create(
            model="m", messages=USER, stream=True, extra_headers={"x-fake-status": "529"}
        )
    assert overloaded.value.status_code == 529 and "retry-after" in overloaded.value.response.headers
    with pytest.raises(openai.InternalServerError) as server:
        await client.chat.completions.create(model="m", messages=USER, extra_headers={"x-fake-status": "500"})
    assert server.value.status_code == 500 and "retry-after" not in server.value.response.headers
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="m", messages=USER, extra_headers={"x-fake-status": "400"})
    assert body_of(bad.value)["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as invalid:
        await client.chat.completions.create(model="m", messages=[])
    assert body_of(invalid.value)["param"] == "messages"


async def test_anthropic_status_injection_maps_to_sdk_errors(fake_provider: FakeProvider) -> None:
    client = ant(fake_provider)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        await client.messages.create(model="c", max_tokens=50, messages=USER, extra_headers={"x-fake-status": "529"})
    assert overloaded.value.status_code == 529
    assert overloaded.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded (injected by the fake provider)."},
    }
    assert overloaded.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.RateLimitError) as rate:
        await client.messages.create(model="c", max_tokens=50, messages=USER, extra_headers={"x-fake-status": "429"})
    assert body_of(rate.value)["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.InternalServerError) as api:
        await client.messages.create(
            model="c", max_tokens=50, messages=USER, stream=True, extra_headers={"x-fake-status": "500"}
        )
    assert body_of(api.value)["error"]["type"] == "api_error"

    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{fake_provider.base_url}/v1/messages", json={"model": "c", "messages": USER}, headers={"x-api-key": "k"}
        ) as resp,
    ):  # max_tokens is required by the real API
        assert resp.status == 400
        body = await resp.json()
    assert (
        body["type"] == "error"
        and body["error"]["type"] == "invalid_request_error"
        and "max_tokens" in body["error"]["message"]
    )


async def test_fault_schedule_via_admin_endpoint_and_sdk_retries(fake_provider: FakeProvider) -> None:
    base = fake_provider.base_url
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/_fake/faults", json={"status": 529, "count": 2, "path": "/v1/messages"}) as resp:
            assert resp.status == 200 and (await resp.json())["faults"][0]["remaining"] == 2
        async with s.delete(f"{base}/_fake/faults") as resp:
            assert (await resp.json())["faults"] == []
        async with s.post(f"{base}/_fake/faults", json=[{"status": 529, "count": 2, "path": "/v1/messages"}]) as resp:
            assert resp.status == 200
        async with s.post(f"{base}/_fake/faults", json={"status": 99}) as resp:
            assert resp.status == 400

        # The chat path doesn't match the rule, so it is untouched.
        await oai(fake_provider).chat.completions.create(model="m", messages=USER)
        # The SDK retries the two scheduled 529s (honouring retry-after-ms) and then succeeds.
        msg = await ant(fake_provider, max_retries=2).messages.create(model="c", max_tokens=50, messages=USER)
        assert body_text(msg) == EXPECTED_20

        async with s.get(f"{base}/_fake/stats") as resp:
            stats = await resp.json()
    assert stats["by_path"] == {"/v1/chat/completions": 1, "/v1/messages": 3}
    assert [r["status"] for r in stats["history"]] == [200, 529, 529, 200]
    assert stats["history"][1]["fault"]["status"] == 529 and stats["history"][3]["fault"] is None
    assert stats["faults"] == []


async def test_bad_fake_header_is_400_and_keeps_the_fault(fake_provider: FakeProvider) -> None:
    fake_provider.add_fault(status=503)
    with pytest.raises(openai.BadRequestError) as bad:
        await oai(fake_provider).chat.completions.create(
            model="m", messages=USER, extra_headers={"x-fake-output-tokens": "lots"}
        )
    assert "x-fake-output-tokens" in bad.value.message
    assert fake_provider.stats()["faults"][0]["remaining"] == 1
    with pytest.raises(openai.InternalServerError) as unavailable:
        await oai(fake_provider).chat.completions.create(model="m", messages=USER)
    assert unavailable.value.status_code == 503
    # A forever-rule applies until cleared; header x-fake-status: 200 overrides it per request.
    fake_provider.add_fault(status=500, count=None)
    ok = await oai(fake_provider).chat.completions.create(
        model="m", messages=USER, extra_headers={"x-fake-status": "200"}
    )
    assert ok.choices[0].message.content == EXPECTED_20
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await oai(fake_provider).chat.completions.create(model="m", messages=USER)


async def test_mid_stream_cut_raises_on_the_client(fake_provider: FakeProvider) -> None:
    stream = await oai(fake_provider).chat.completions.create(
        model="m", messages=USER, stream=True, extra_headers={"x-fake-fail-after-chunks": "3"}
    )
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "Echo:", " hello"]  # exactly 3 events arrived before the cut

    fake_provider.add_fault(fail_after_chunks=4, path="/v1/messages")
    texts: list[str] = []
    with pytest.raises(Exception) as cut:  # the SDK may or may not wrap the transport error
        async with ant(fake_provider).messages.stream(model="c", max_tokens=50, messages=USER) as s:
            async for text in s.text_stream:
                texts.append(text)
    assert isinstance(cut.value, anthropic.APIConnectionError) or "incomplete chunked read" in str(cut.value)
    assert texts == ["Echo:"]  # message_start, content_block_start, ping, one delta

    with pytest.raises(openai.APIConnectionError):  # non-stream: half the announced body, then a reset
        await oai(fake_provider).chat.completions.create(
            model="m", messages=USER, extra_headers={"x-fake-fail-after-chunks": "0"}
        )
    # The server survives cuts.
    ok = await oai(fake_provider).chat.completions.create(model="m", messages=USER)
    assert ok.choices[0].message.content == EXPECTED_20


async def test_latency_and_chunk_delay(fake_provider: FakeProvider) -> None:
    client = oai(fake_provider)
    start = time.monotonic()
    await client.chat.completions.create(model="m", messages=USER, extra_headers={"x-fake-latency-ms": "200"})
    assert time.monotonic() - start >= 0.2
    start = time.monotonic()
    stream = await client.chat.completions.create(
        model="m",
        messages=USER,
        stream=True,
        extra_headers={"x-fake-chunk-delay-ms": "20", "x-fake-output-tokens": "5"},
    )
    stamps = [time.monotonic() async for _ in stream]
    assert len(stamps) == 7 and stamps[-1] - start >= 6 * 0.02  # 7 events, 6 gaps


async def test_auth_required_key_and_redaction(fake_provider_factory: Any) -> None:
    fake = await fake_provider_factory(FakeProviderConfig(api_key="sk-right"))
    with pytest.raises(openai.AuthenticationError) as wrong:
        await oai(fake, api_key="sk-wrong").models.list()
    assert body_of(wrong.value)["code"] == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError):
        await ant(fake, api_key="sk-wrong").messages.create(model="c", max_tokens=5, messages=USER)
    # Anthropic accepts a Bearer token as well as x-api-key.
    bearer = ant(fake, api_key=None, auth_token="sk-right")
    assert (await bearer.messages.create(model="c", max_tokens=5, messages=USER)).usage.output_tokens == 5
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{fake.base_url}/v1/chat/completions", json={"model": "m", "messages": USER}) as resp,
    ):
        assert resp.status == 401 and (await resp.json())["error"]["type"] == "invalid_request_error"

    ok = await oai(fake, api_key="sk-right").chat.completions.create(model="m", messages=USER)
    assert ok.choices[0].message.content == EXPECTED_20
    last = fake.last_request
    assert last["headers"]["authorization"] == "[redacted]"
    assert last["api_key_sha256"] == hashlib.sha256(b"sk-right").hexdigest()
    assert b"sk-right" not in orjson.dumps(fake.stats()) and b"sk-wrong" not in orjson.dumps(fake.stats())


async def test_access_log_omits_query_keys(caplog: pytest.LogCaptureFixture) -> None:
    runner, base = await start_fake_provider(access_log=logging.getLogger("fake.access"))
    try:
        with caplog.at_level(logging.INFO, logger="fake.access"):
            async with (
                aiohttp.ClientSession() as s,
                s.post(
                    f"{base}/v1beta/models/g:generateContent?key=AIza-secret",
                    json={"contents": [{"parts": [{"text": "hi"}]}]},
                ) as resp,
            ):
                assert resp.status == 200
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert "generateContent" in caplog.text and "AIza-secret" not in caplog.text


# --- Anthropic -------------------------------------------------------------------


async def test_anthropic_non_stream_and_cached_tokens(fake_provider: FakeProvider) -> None:
    client = ant(fake_provider)
    msg = await client.messages.create(model="claude-x", max_tokens=100, system="You are terse.", messages=USER)
    assert (msg.type, msg.role, msg.model, msg.stop_reason, msg.stop_sequence) == (
        "message",
        "assistant",
        "claude-x",
        "end_turn",
        None,
    )
    assert msg.id.startswith("msg_") and msg.content[0].type == "text" and msg.content[0].text == EXPECTED_20
    u = msg.usage
    assert (u.input_tokens, u.output_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens) == (9, 20, 0, 0)

    cached = await client.messages.create(
        model="c", max_tokens=100, system="You are terse.", messages=USER, extra_headers={"x-fake-cached-tokens": "4"}
    )
    assert (cached.usage.input_tokens, cached.usage.cache_read_input_tokens) == (5, 4)  # Anthropic excludes cache reads
    short = await client.messages.create(model="c", max_tokens=3, messages=USER)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3


async def test_anthropic_stream_exact_event_sequence(fake_provider: FakeProvider) -> None:
    body = {"model": "c", "max_tokens": 100, "stream": True, "messages": USER}
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{fake_provider.base_url}/v1/messages",
            json=body,
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "x-fake-output-tokens": "3"},
        ) as resp,
    ):
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["request-id"].startswith("req_")
        events = await raw_events(resp)
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [orjson.loads(d) for _, d in events]
    assert all(d["type"] == n for n, d in zip(names, data, strict=True))
    assert data[0]["message"]["usage"] == {
        "input_tokens": 5,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    }
    assert [d["delta"] for d in data[3:6]] == [{"type": "text_delta", "text": t} for t in ("Echo:", " hello", " there")]
    assert data[7] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    }


async def test_anthropic_sdk_stream_usage(fake_provider: FakeProvider) -> None:
    async with ant(fake_provider).messages.stream(model="c", max_tokens=100, messages=USER) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == EXPECTED_20 and len(texts) == final.usage.output_tokens == 20
    assert final.usage.input_tokens == estimate_tokens(PROMPT) and final.stop_reason == "end_turn"


async def test_anthropic_tool_use(fake_provider: FakeProvider) -> None:
    tool: Any = {"name": "get_weather", "description": "w", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    client = ant(fake_provider)
    messages: list[Any] = [{"role": "user", "content": [{"type": "text", "text": "use tool please"}]}]
    msg = await client.messages.create(model="c", max_tokens=100, messages=messages, tools=[tool])
    block = msg.content[0]
    assert msg.stop_reason == "tool_use" and block.type == "tool_use" and block.name == "get_weather"
    assert block.input == {"city": "use tool please", "days": 1, "unit": "c"}
    async with client.messages.stream(model="c", max_tokens=100, messages=messages, tools=[tool]) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == block.input
    assert final.usage.output_tokens == msg.usage.output_tokens
    messages += [
        {"role": "assistant", "content": [block.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]},
    ]
    after = await client.messages.create(model="c", max_tokens=100, messages=messages, tools=[tool])
    assert after.stop_reason == "end_turn"


# --- Gemini ------------------------------------------------------------------------


async def test_gemini_generate_and_stream(fake_provider: FakeProvider) -> None:
    base = f"{fake_provider.base_url}/v1beta/models/gemini-2.0-flash"
    body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}], "generationConfig": {"maxOutputTokens": 100}}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}:generateContent", json=body, headers={"x-goog-api-key": "g"}) as resp:
            assert resp.status == 200
            full = await resp.json()
        async with s.post(f"{base}:streamGenerateContent?alt=sse&key=g", json=body) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = await raw_events(resp)
        async with s.post(f"{base}:streamGenerateContent", json=body, headers={"x-goog-api-key": "g"}) as resp:
            array = await resp.json()  # without alt=sse the stream is one JSON array
        async with s.post(f"{base}:generateContent", json=body) as resp:
            assert resp.status == 403 and (await resp.json())["error"]["status"] == "PERMISSION_DENIED"
        async with s.post(f"{base}:generateContent?key=g", json=body, headers={"x-fake-status": "429"}) as resp:
            assert resp.status == 429 and (await resp.json())["error"]["status"] == "RESOURCE_EXHAUSTED"

    cand = full["candidates"][0]
    assert cand["content"] == {"role": "model", "parts": [{"text": EXPECTED_20}]} and cand["finishReason"] == "STOP"
    assert full["usageMetadata"] == {"promptTokenCount": 5, "candidatesTokenCount": 20, "totalTokenCount": 25}
    chunks = [orjson.loads(d) for _, d in events]
    assert len(chunks) == 20 and chunks[0]["responseId"] != array[0]["responseId"]
    assert [{**c, "responseId": None} for c in chunks] == [{**c, "responseId": None} for c in array]
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == EXPECTED_20
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP" and "finishReason" not in chunks[0]["candidates"][0]
    assert chunks[-1]["usageMetadata"] == full["usageMetadata"]



async def test_gemini_named_function_call_then_result_echo(fake_provider: FakeProvider) -> None:
    base = f"{fake_provider.base_url}/v1beta/models/gemini-2.5-pro"
    decls = [{"name": name, "parametersJsonSchema": {"type": "object", "properties": {"path": {"type": "string"}},
                                                     "required": ["path"]}} for name in ("list_directory", "read_file")]
    question = {"role": "user", "parts": [{"text": "notes.txt: use tool read_file"}]}
    body = {"contents": [question], "tools": [{"functionDeclarations": decls}],
            "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    headers = {"x-goog-api-key": "g"}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}:generateContent", json=body, headers=headers) as resp:
            full = await resp.json()
        async with s.post(f"{base}:streamGenerateContent?alt=sse", json=body, headers=headers) as resp:
            chunks = [orjson.loads(d) for _, d in await raw_events(resp)]
        parts = full["candidates"][0]["content"]["parts"]
        result = {"role": "user", "parts": [{"functionResponse": {
            "id": parts[-1]["functionCall"]["id"], "name": "read_file", "response": {"output": "pelicans fly south"}}}]}
        after = {**body, "contents": [question, full["candidates"][0]["content"], result]}
        async with s.post(f"{base}:streamGenerateContent?alt=sse", json=after, headers=headers) as resp:
            answer = [orjson.loads(d) for _, d in await raw_events(resp)]
        tampered = {**after, "contents": [question, {"role": "model", "parts": [
            {**parts[-1], "thoughtSignature": base64.b64encode(bytes(range(64))).decode()}]}, result]}
        async with s.post(f"{base}:generateContent", json=tampered, headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["status"] == "INVALID_ARGUMENT"

    # The named declaration is called (not the first one), with an id and, thinking being on, a signature.
    assert parts[0]["thought"] is True
    call = parts[-1]
    assert call["functionCall"]["name"] == "read_file" and call["functionCall"]["args"] == {"path": "notes.txt: use tool read_file"}
    assert call["functionCall"]["id"].startswith("call_") and call["thoughtSignature"]
    streamed = [p for c in chunks for p in c["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert len(streamed) == 1 and streamed[0]["functionCall"]["name"] == "read_file" and streamed[0]["thoughtSignature"]
    assert streamed[0]["functionCall"]["args"] == call["functionCall"]["args"]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    # Given the result, the answer is text about it: no further call.
    text = "".join(p["text"] for c in answer for p in c["candidates"][0]["content"]["parts"] if not p.get("thought"))
    assert text.startswith("Echo: pelicans fly south")
    assert not any("functionCall" in p for c in answer for p in c["candidates"][0]["content"]["parts"])
    assert answer[-1]["usageMetadata"]["promptTokenCount"] > full["usageMetadata"]["promptTokenCount"]

# --- fixtures, CLI, recorded responses ------------------------------------------------


async def test_instances_are_isolated(fake_provider: FakeProvider, fake_provider_factory: Any) -> None:
    other = await fake_provider_factory()
    await oai(other).chat.completions.create(model="m", messages=USER)
    assert other.requests_to("/v1/chat/completions") == 1 and fake_provider.stats()["total"] == 0
    other.reset()
    assert other.stats()["total"] == 0


def test_cli_write_nginx(tmp_path: Path) -> None:
    from interlock.cli.main import cli

    result = CliRunner().invoke(cli, ["fake-provider", "--write-nginx", str(tmp_path), "--nginx-port", "9123"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nginx.conf").read_text().count("listen 127.0.0.1:9123;") == 1
    assert orjson.loads((tmp_path / "openai_chat.json").read_bytes())["object"] == "chat.completion"


def test_cli_serves_until_sigint() -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        "from interlock.cli.main import main; main()",
        "fake-provider",
        "--port",
        str(port),
        "--output-tokens",
        "4",
        "--ignore-max-tokens",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        r = client.chat.completions.create(model="m", messages=USER)
        assert r.choices[0].message.content == "Echo: hello there friend"
        capped = client.chat.completions.create(model="m", messages=USER, max_tokens=1)  # ignored, as asked
        assert capped.usage is not None and capped.usage.completion_tokens == 4
        assert capped.choices[0].finish_reason == "stop"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_recorded_responses_are_valid_sdk_payloads(tmp_path: Path) -> None:
    files = write_recorded_responses(tmp_path)
    chat = orjson.loads(files["openai_chat.json"].read_bytes())
    assert 900 <= files["openai_chat.json"].stat().st_size <= 1300  # ~1 KB
    assert chat["usage"]["completion_tokens"] == len(chat["choices"][0]["message"]["content"].split())
    sse = files["openai_chat_stream.sse"].read_text().split("\n\n")
    payloads = [orjson.loads(e.removeprefix("data: ")) for e in sse if e and e != "data: [DONE]"]
    content = [
        p["choices"][0]["delta"]["content"]
        for p in payloads
        if p["choices"] and p["choices"][0]["delta"].get("content")
    ]
    assert len(content) == 20 == payloads[-1]["usage"]["completion_tokens"]
    assert sse[-2] == "data: [DONE]"
    assert files["anthropic_messages_stream.sse"].read_text().startswith("event: message_start\n")


@pytest.mark.integration
async def test_nginx_serves_recorded_responses_to_post(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    files = write_recorded_responses(tmp_path / "www")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path / "www", port, user="root" if os.geteuid() == 0 else None, workers="1"))
    proc = await asyncio.create_subprocess_exec(
        nginx,
        "-p",
        str(tmp_path),
        "-c",
        str(conf),
        "-e",
        "stderr",
        "-g",
        "daemon off;",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            for _ in range(100):  # wait for the listener
                try:
                    async with s.get(f"{base}/nothing"):
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.05)
            async with s.post(f"{base}/v1/chat/completions", json={"model": "m", "messages": USER}) as resp:
                assert resp.status == 200 and resp.headers["content-type"] == "application/json"
                assert await resp.read() == files["openai_chat.json"].read_bytes()
            big = {"model": "m", "messages": USER, "pad": "x" * 100_000}  # forces nginx to spool/discard a large body
            async with s.post(f"{base}/v1/chat/completions", json=big) as resp:
                assert resp.status == 200 and await resp.read() == files["openai_chat.json"].read_bytes()
            async with s.post(f"{base}/v1/messages", json={}, headers={"x-fake-stream": "1"}) as resp:
                assert resp.status == 200 and resp.headers["content-type"] == "text/event-stream"
                assert await resp.read() == files["anthropic_messages_stream.sse"].read_bytes()
            async with s.get(f"{base}/openai_chat.json") as resp:
                assert resp.status == 404  # the files are only reachable through the API paths
        # And the official SDK accepts what nginx serves, streamed or not, over keep-alive.
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        _clients.append(client)
        r = await client.chat.completions.create(model="m", messages=USER)
        assert r.usage and r.usage.completion_tokens == len((r.choices[0].message.content or "").split())
        stream = await client.chat.completions.create(
            model="m", messages=USER, stream=True, extra_headers={"x-fake-stream": "1"}
        )
        chunks = [c async for c in stream]
        assert chunks[-1].usage and chunks[-1].usage.completion_tokens == 20
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
