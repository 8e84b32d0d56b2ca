"""The official `google-genai` SDK through the gateway against the fake provider (a `gemini`-kind provider):
generate_content, generate_content_stream, count_tokens, function calling with ids and thought
signatures returned intact, thinkingConfig, model listing, `?key=` auth, Google error JSON — and the
usage event each request leaves behind."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from google import genai
from google.genai import errors, types

from controlplane.policy.model import Model, Price
from tests.fixtures.gateway import Gateway, gateway_policy, native_gemini, running_gateway, wait_events
from tests.fixtures.sdks import genai_client as client

pytestmark = pytest.mark.e2e

GET_WEATHER = types.FunctionDeclaration(
    name="get_weather", description="Weather for a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
THINK = types.ThinkingConfig(thinking_budget=512, include_thoughts=True)


@pytest.fixture
async def gateway(fake_provider, tmp_path: Path) -> AsyncIterator[Gateway]:  # type: ignore[no-untyped-def]
    doc = gateway_policy(fake_provider.base_url, providers=[native_gemini(fake_provider.base_url)], models=[
        Model(name="gemini-t", provider="fg", upstream="gemini-upstream", price=Price(input="1", output="4", cached_input="0.25"))])
    async with running_gateway(fake_provider.base_url, tmp_path, policy=doc) as gw:
        yield gw


async def test_generate_content_model_from_path_and_usage(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    r = await client(gateway).aio.models.generate_content(
        model="gemini-t", contents="hello gemini world",
        config=types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=30))
    assert r.text is not None and r.text.startswith("Echo: hello gemini world")
    sent = fake_provider.last_request
    assert sent["path"] == "/v1beta/models/gemini-upstream:generateContent" and "model" not in sent["body"]
    assert r.sdk_http_response is not None
    assert sent["body"]["systemInstruction"]["parts"][0]["text"] == "be brief"
    assert gateway.key not in str(sent)  # the virtual key never goes upstream
    (ev,) = await wait_events(gateway, 1)
    meta = r.usage_metadata
    assert meta is not None and ev.dialect == "gemini" and ev.requested_model == "gemini-t"
    assert ev.endpoint.endswith("/models/{model}:generateContent") and ev.upstream_model == "gemini-upstream"
    assert (ev.input_tokens, ev.output_tokens) == (meta.prompt_token_count, meta.candidates_token_count)


async def test_stream_with_thinking_reports_thoughts_as_reasoning(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    chunks = [c async for c in await client(gateway).aio.models.generate_content_stream(
        model="gemini-t", contents="think then answer", config=types.GenerateContentConfig(thinking_config=THINK))]
    sent = fake_provider.last_request
    assert sent["path"] == "/v1beta/models/gemini-upstream:streamGenerateContent" and sent["query"]["alt"] == "sse"
    assert sent["body"]["generationConfig"]["thinkingConfig"] == {"thinking_budget": 512, "include_thoughts": True}
    parts = [p for c in chunks for p in c.candidates[0].content.parts]  # type: ignore[index,union-attr]
    assert parts[0].thought and any(p.thought_signature for p in parts)
    meta = chunks[-1].usage_metadata
    assert meta is not None and meta.thoughts_token_count
    (ev,) = await wait_events(gateway, 1)
    assert ev.stream and not ev.usage_estimated and ev.reasoning_tokens == meta.thoughts_token_count
    assert ev.output_tokens == (meta.candidates_token_count or 0) + meta.thoughts_token_count
    assert ev.input_tokens == meta.prompt_token_count


async def test_function_call_id_and_thought_signature_round_trip(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[GET_WEATHER])], thinking_config=THINK)
    question = types.Content(role="user", parts=[types.Part(text="please use tool for Paris")])
    first = await c.aio.models.generate_content(model="gemini-t", contents=[question], config=config)
    (call,) = first.function_calls or []
    assert call.name == "get_weather" and call.id and call.args == {"city": "please use tool for Paris"}
    model_turn = first.candidates[0].content  # type: ignore[index]
    signed = [p for p in model_turn.parts if p.function_call]  # type: ignore[union-attr]
    assert signed[0].thought_signature
    answer = types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        id=call.id, name=call.name, response={"temp_c": 21}))])
    done = await c.aio.models.generate_content(model="gemini-t", contents=[question, model_turn, answer], config=config)  # type: ignore[list-item]
    assert done.text and not done.function_calls
    back = fake_provider.last_request["body"]["contents"][1]["parts"]
    fc = next(p for p in back if "functionCall" in p)
    assert fc["functionCall"]["id"] == call.id  # with the signature intact: the provider verified it
    assert base64.urlsafe_b64decode(fc["thoughtSignature"]) == signed[0].thought_signature
    ev1, ev2 = await wait_events(gateway, 2)
    assert ev2.input_tokens > ev1.input_tokens  # the call and its result are input on the second turn



async def test_streamed_function_call_picked_by_name_and_result_answered(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    get_time = types.FunctionDeclaration(name="get_time", description="Local time in a city",
                                         parameters_json_schema=GET_WEATHER.parameters_json_schema)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[get_time, GET_WEATHER])], thinking_config=THINK)
    question = types.Content(role="user", parts=[types.Part(text="Paris: use tool get_weather")])
    chunks = [ch async for ch in await c.aio.models.generate_content_stream(
        model="gemini-t", contents=[question], config=config)]
    parts = [p for ch in chunks for p in ch.candidates[0].content.parts]  # type: ignore[index,union-attr]
    calls = [p for p in parts if p.function_call]
    assert len(calls) == 1 and calls[0].thought_signature  # the call arrives whole, signed
    call = calls[0].function_call
    assert call is not None and call.name == "get_weather" and call.id  # named in the prompt, not the first declared
    assert call.args == {"city": "Paris: use tool get_weather"}
    model_turn = types.Content(role="model", parts=parts)
    result = types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        id=call.id, name=call.name, response={"forecast": "sunny and 21 C"}))])
    answer = [ch async for ch in await c.aio.models.generate_content_stream(
        model="gemini-t", contents=[question, model_turn, result], config=config)]
    text = "".join(ch.text or "" for ch in answer)
    assert text.startswith("Echo: sunny and 21 C") and not any(ch.function_calls for ch in answer)
    sent = fake_provider.last_request
    assert sent["query"]["alt"] == "sse" and sent["status"] == 200
    back = sent["body"]["contents"][2]["parts"][0]["functionResponse"]
    assert (back["id"], back["name"], back["response"]) == (call.id, "get_weather", {"forecast": "sunny and 21 C"})
    ev1, ev2 = await wait_events(gateway, 2)
    assert ev1.stream and ev2.stream and ev2.input_tokens > ev1.input_tokens
    final = answer[-1].usage_metadata
    assert final is not None and ev2.input_tokens == final.prompt_token_count
    assert ev2.output_tokens == (final.candidates_token_count or 0) + (final.thoughts_token_count or 0)

async def test_count_tokens_matches_generate_prompt_count(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    counted = await c.aio.models.count_tokens(model="gemini-t", contents="count these few words please")
    assert fake_provider.last_request["path"] == "/v1beta/models/gemini-upstream:countTokens"
    made = await c.aio.models.generate_content(model="gemini-t", contents="count these few words please")
    assert made.usage_metadata is not None and counted.total_tokens == made.usage_metadata.prompt_token_count
    ev1, _ = await wait_events(gateway, 2)
    assert ev1.endpoint.endswith("/models/{model}:countTokens") and ev1.status == 200


async def test_errors_are_google_errors(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    with pytest.raises(errors.ClientError) as missing:
        await c.aio.models.generate_content(model="nope", contents="x")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"
    fake_provider.add_fault(status=429, path="/v1beta/models/")
    with pytest.raises(errors.ClientError) as limited:
        await c.aio.models.generate_content(model="gemini-t", contents="x")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    bad = genai.Client(api_key="not-a-key", http_options=types.HttpOptions(base_url=gateway.url))
    with pytest.raises(errors.ClientError) as denied:
        await bad.aio.models.generate_content(model="gemini-t", contents="x")
    assert denied.value.code == 401 and denied.value.status == "UNAUTHENTICATED"


async def test_key_in_query_and_model_listing(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    body = orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "hi via query key"}]}]})
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gateway.url}/v1beta/models/gemini-t:generateContent?key={gateway.key}", data=body)
        assert r.status == 200 and (await r.json())["candidates"]
        no_sse = await s.post(f"{gateway.url}/v1beta/models/gemini-t:streamGenerateContent?key={gateway.key}", data=body)
        err = await no_sse.json()
        embed = await s.post(f"{gateway.url}/v1beta/models/gemini-t:embedContent?key={gateway.key}", data=body)
        unknown = await embed.json()
    assert embed.status == 404 and unknown["error"]["status"] == "NOT_FOUND" and "embedContent" in unknown["error"]["message"]
    assert no_sse.status == 400 and err["error"]["status"] == "INVALID_ARGUMENT" and "alt=sse" in err["error"]["message"]
    assert gateway.key not in str(fake_provider.last_request)
    names = [m.name async for m in await client(gateway).aio.models.list()]
    assert "models/gemini-t" in names and "models/claude-t" in names
    one = await client(gateway).aio.models.get(model="gemini-t")
    assert one.name == "models/gemini-t"
