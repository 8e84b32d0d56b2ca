"""Cloud providers end to end: official SDKs -> in-process gateway -> the fake provider answering at
Azure, Vertex AI and Bedrock URL shapes (Bedrock checks SigV4 with its own verifier)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from controlplane.policy.model import Model, PolicyDocument, Price, Provider, Team
from interlock.fakeprovider.bedrock import FAKE_AWS_SECRET
from tests.fixtures.fakeprovider import FakeProvider
from tests.fixtures.gateway import Gateway, running_gateway, wait_events
from tests.fixtures.sdks import anthropic_client as anth
from tests.fixtures.sdks import genai_client
from tests.fixtures.sdks import openai_client as oai

ENV = {
    "AZ_KEY": "az-secret", "VTX_TOKEN": "ya29.fake", "GEM_KEY": "gem-secret",
    "AWS_CREDS": f"AKIDFAKE:{FAKE_AWS_SECRET}", "AWS_WRONG": "AKIDFAKE:not-the-secret", "BRK_KEY": "bedrock-api-key",
    "AWS_STS": f"AKIDFAKE:{FAKE_AWS_SECRET}:sts-session-token",
}
PRICE = Price(input="1", output="2")


def policy(base: str) -> PolicyDocument:
    vertex = {"project": "acme", "location": "us-east5"}
    aws = {"region": "us-east-1"}
    providers = [
        Provider(name="az", kind="azure_openai", base_url=base, credential="env:AZ_KEY"),
        Provider(name="az-dep", kind="azure_openai", base_url=base, credential="env:AZ_KEY",
                 options={"api_version": "2024-10-21"}),
        Provider(name="mis", kind="mistral", base_url=f"{base}/v1", credential="env:AZ_KEY"),
        Provider(name="vtx-g", kind="vertex_gemini", base_url=base, credential="env:VTX_TOKEN", options=vertex),
        Provider(name="vtx-a", kind="vertex_anthropic", base_url=base, credential="env:VTX_TOKEN", options=vertex),
        Provider(name="gem", kind="gemini", base_url=base, credential="env:GEM_KEY"),
        Provider(name="brk-a", kind="bedrock_anthropic", base_url=base, credential="env:AWS_CREDS", options=aws),
        Provider(name="brk-bad", kind="bedrock_anthropic", base_url=base, credential="env:AWS_WRONG", options=aws),
        Provider(name="brk-conv", kind="bedrock", base_url=base, credential="env:AWS_CREDS", options=aws),
        Provider(name="brk-key", kind="bedrock", base_url=base, credential="env:BRK_KEY", options={"auth": "api_key"}),
        Provider(name="brk-sts", kind="bedrock", base_url=base, credential="env:AWS_STS", options=aws),
    ]
    models = [
        Model(name="az-gpt", provider="az", upstream="my-gpt4o", price=PRICE),
        Model(name="az-dep-gpt", provider="az-dep", upstream="gpt4o-east", price=PRICE),
        Model(name="mistral-large", provider="mis", upstream="mistral-large-latest", price=PRICE),
        Model(name="vtx-gemini", provider="vtx-g", upstream="gemini-2.5-flash", price=PRICE),
        Model(name="vtx-claude", provider="vtx-a", upstream="claude-sonnet-4@20250514", price=PRICE),
        Model(name="gem-flash", provider="gem", upstream="gemini-2.5-flash", price=PRICE),
        Model(name="brk-claude", provider="brk-a", upstream="us.anthropic.claude-sonnet-4-20250514-v1:0", price=PRICE),
        Model(name="brk-bad", provider="brk-bad", upstream="anthropic.claude-v2:1", price=PRICE),
        Model(name="brk-nova", provider="brk-conv", upstream="amazon.nova-pro-v1:0", price=PRICE, max_output_tokens=512),
        Model(name="brk-nova-key", provider="brk-key", upstream="amazon.nova-lite-v1:0", price=PRICE),
        Model(name="brk-nova-sts", provider="brk-sts", upstream="amazon.nova-lite-v1:0", price=PRICE),
        Model(name="az-emb", provider="az", upstream="my-embedding-deployment", price=PRICE),
    ]
    return PolicyDocument(providers=providers, models=models, teams=[Team(id="eng")])


@pytest.fixture
async def gw(fake_provider: FakeProvider, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(fake_provider.base_url, tmp_path, policy=policy(fake_provider.base_url), env=ENV) as g:
        yield g


def last(fake: FakeProvider) -> dict[str, Any]:
    req = fake.last_request
    assert req is not None
    return req


async def event(gw: Gateway, n: int) -> Any:
    """The test's n-th request's usage event (waits for it: events are emitted after the response)."""
    return (await wait_events(gw, n))[n - 1]


HI: Any = [{"role": "user", "content": "hello there"}]  # one literal for both SDKs' message types


async def test_azure_v1_and_deployments_api_through_the_openai_sdk(gw: Gateway, fake_provider: FakeProvider) -> None:
    client = oai(gw)
    r = await client.chat.completions.create(model="az-gpt", messages=HI)
    assert r.choices[0].message.content and r.usage and r.usage.completion_tokens > 0
    req = last(fake_provider)
    assert req["path"] == "/openai/v1/chat/completions" and req["body"]["model"] == "my-gpt4o"
    ev = await event(gw, 1)
    assert (ev.provider, ev.upstream_model, ev.output_tokens) == ("az", "my-gpt4o", r.usage.completion_tokens)

    stream = await client.chat.completions.create(model="az-dep-gpt", messages=HI, stream=True)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Echo: hello there")
    assert all(c.usage is None for c in chunks)  # the gateway asked for usage, the client did not: hidden
    req = last(fake_provider)
    assert req["path"] == "/openai/deployments/gpt4o-east/chat/completions"
    assert req["query"]["api-version"] == "2024-10-21"
    assert req["body"]["stream_options"] == {"include_usage": True}
    ev = await event(gw, 2)
    assert ev.stream and ev.output_tokens == len(text.split()) and not ev.usage_estimated


async def test_mistral_streams_without_stream_options(gw: Gateway, fake_provider: FakeProvider) -> None:
    stream = await oai(gw).chat.completions.create(model="mistral-large", messages=HI, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "stream_options" not in last(fake_provider)["body"]


async def test_vertex_anthropic_through_the_anthropic_sdk(gw: Gateway, fake_provider: FakeProvider) -> None:
    client = anth(gw)
    msg = await client.messages.create(model="vtx-claude", max_tokens=64, messages=HI,
                                       extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("Echo: hello there")
    req = last(fake_provider)
    assert req["path"] == ("/v1/projects/acme/locations/us-east5/publishers/anthropic/models/"
                           "claude-sonnet-4@20250514:rawPredict")
    assert req["body"]["anthropic_version"] == "vertex-2023-10-16" and "model" not in req["body"]
    assert req["api_key_sha256"] == hashlib.sha256(b"ya29.fake").hexdigest()  # the token came as a bearer token
    ev = await event(gw, 1)
    assert ev.output_tokens == msg.usage.output_tokens and ev.provider == "vtx-a"

    async with client.messages.stream(model="vtx-claude", max_tokens=64, messages=HI) as s:
        text = "".join([t async for t in s.text_stream])
        final = await s.get_final_message()
    assert text.startswith("Echo:") and final.usage.output_tokens > 0
    assert last(fake_provider)["path"].endswith(":streamRawPredict")
    ev = await event(gw, 2)
    assert ev.output_tokens == final.usage.output_tokens and not ev.usage_estimated


async def test_bedrock_invoke_signed_with_sigv4_streaming_and_not(gw: Gateway, fake_provider: FakeProvider) -> None:
    client = anth(gw)
    msg = await client.messages.create(model="brk-claude", max_tokens=64, messages=HI)
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("Echo: hello there")
    req = last(fake_provider)
    assert req["status"] == 200
    assert req["path"] == "/model/us.anthropic.claude-sonnet-4-20250514-v1:0/invoke"
    assert req["body"]["anthropic_version"] == "bedrock-2023-05-31"
    ev = await event(gw, 1)
    assert ev.input_tokens == msg.usage.input_tokens and ev.output_tokens == msg.usage.output_tokens

    async with client.messages.stream(model="brk-claude", max_tokens=64, messages=HI) as s:
        text = "".join([t async for t in s.text_stream])
        final = await s.get_final_message()
    assert text.startswith("Echo: hello there") and final.usage.output_tokens == len(text.split())
    assert last(fake_provider)["path"].endswith("/invoke-with-response-stream")
    ev = await event(gw, 2)
    assert ev.stream and not ev.usage_estimated and ev.output_tokens == final.usage.output_tokens
    assert ev.input_tokens == final.usage.input_tokens


async def test_bedrock_with_the_wrong_secret_fails_the_signature_check(gw: Gateway, fake_provider: FakeProvider) -> None:
    with pytest.raises(anthropic.PermissionDeniedError):
        await anth(gw).messages.create(model="brk-bad", max_tokens=8, messages=HI)
    assert last(fake_provider)["status"] == 403
    assert fake_provider.requests_to("/model/anthropic.claude-v2:1/invoke") == 1


@pytest.mark.parametrize("model, path", [
    ("gem-flash", "/v1beta/models/gemini-2.5-flash:"),
    ("vtx-gemini", "/v1/projects/acme/locations/us-east5/publishers/google/models/gemini-2.5-flash:"),
])
async def test_gemini_native_and_vertex_gemini_through_the_google_genai_sdk(
    gw: Gateway, fake_provider: FakeProvider, model: str, path: str,
) -> None:
    client = genai_client(gw, api_version="v1beta")
    r = await client.aio.models.generate_content(model=model, contents="hello there")
    assert r.text and r.text.startswith("Echo: hello there")
    req = last(fake_provider)
    assert req["path"] == path + "generateContent" and "model" not in req["body"]
    ev = await event(gw, 1)
    assert r.usage_metadata is not None and ev.output_tokens == r.usage_metadata.candidates_token_count

    text = "".join([c.text or "" async for c in await client.aio.models.generate_content_stream(
        model=model, contents="hello there")])
    assert text.startswith("Echo: hello there")
    req = last(fake_provider)
    assert req["path"] == path + "streamGenerateContent" and req["query"] == {"alt": "sse"}
    ev = await event(gw, 2)
    assert ev.stream and not ev.usage_estimated and ev.output_tokens == len(text.split())


CONVERSE_PATH = "/model/amazon.nova-pro-v1:0/converse"
WEATHER: Any = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


async def test_bedrock_converse_serves_anthropic_clients(gw: Gateway, fake_provider: FakeProvider) -> None:
    client = anth(gw)
    msg = await client.messages.create(model="brk-nova", max_tokens=64, system="be brief", messages=HI)
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("Echo: hello there")
    assert msg.model == "brk-nova" and msg.stop_reason == "end_turn"
    req = last(fake_provider)
    assert req["path"] == CONVERSE_PATH and req["status"] == 200
    assert req["body"]["system"] == [{"text": "be brief"}] and req["body"]["inferenceConfig"] == {"maxTokens": 64}
    ev = await event(gw, 1)
    assert (ev.input_tokens, ev.output_tokens) == (msg.usage.input_tokens, msg.usage.output_tokens) and ev.output_tokens > 0

    async with client.messages.stream(model="brk-nova", max_tokens=64, messages=HI) as s:
        text = "".join([t async for t in s.text_stream])
        final = await s.get_final_message()
    assert text.startswith("Echo: hello there") and final.usage.output_tokens == len(text.split())
    assert final.usage.input_tokens == msg.usage.input_tokens - 2  # no system prompt this time
    assert last(fake_provider)["path"] == CONVERSE_PATH + "-stream"
    ev = await event(gw, 2)
    assert ev.stream and not ev.usage_estimated and ev.output_tokens == final.usage.output_tokens

    # tool round trip: toolUse out, toolResult back
    ask: Any = [{"role": "user", "content": "use tool get_weather for Paris"}]
    call = await client.messages.create(model="brk-nova", max_tokens=64, messages=ask, tools=[WEATHER])
    use = call.content[0]
    assert call.stop_reason == "tool_use" and use.type == "tool_use" and use.name == "get_weather"
    assert last(fake_provider)["body"]["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"] == WEATHER["input_schema"]
    turns: Any = [*ask, {"role": "assistant", "content": [use.model_dump()]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}]
    answer = await client.messages.create(model="brk-nova", max_tokens=64, tools=[WEATHER], messages=turns)
    assert answer.stop_reason == "end_turn"
    sent = last(fake_provider)["body"]["messages"]
    assert sent[1]["content"][0]["toolUse"]["toolUseId"] == use.id
    assert sent[2]["content"][0]["toolResult"] == {"toolUseId": use.id, "content": [{"text": "sunny"}], "status": "success"}


async def test_bedrock_converse_serves_openai_clients_with_usage(gw: Gateway, fake_provider: FakeProvider) -> None:
    client = oai(gw)
    r = await client.chat.completions.create(model="brk-nova", messages=HI)
    assert r.choices[0].message.content and r.choices[0].message.content.startswith("Echo: hello there")
    assert r.usage and r.usage.completion_tokens > 0 and r.choices[0].finish_reason == "stop"
    assert last(fake_provider)["body"]["inferenceConfig"]["maxTokens"] == 512  # the policy's limit when none is sent
    stream = await client.chat.completions.create(model="brk-nova", messages=HI, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text.startswith("Echo: hello there") and usage is not None and usage.completion_tokens == len(text.split())
    ev = await event(gw, 2)
    assert ev.stream and not ev.usage_estimated and ev.output_tokens == usage.completion_tokens
    assert ev.input_tokens == usage.prompt_tokens

    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}]
    call = await client.chat.completions.create(model="brk-nova", tools=tools,
                                                messages=[{"role": "user", "content": "use tool get_weather"}])
    calls = call.choices[0].message.model_dump()["tool_calls"]
    assert call.choices[0].finish_reason == "tool_calls" and calls[0]["function"]["name"] == "get_weather"


async def test_bedrock_stream_cut_midway_reaches_the_client_as_an_error(gw: Gateway, fake_provider: FakeProvider) -> None:
    fake_provider.add_fault(fail_after_chunks=3, path="/model/")
    with pytest.raises(anthropic.APIError):
        async with anth(gw).messages.stream(model="brk-nova", max_tokens=64, messages=HI) as s:
            async for _ in s.text_stream:
                pass
    ev = await event(gw, 1)
    assert ev.usage_estimated  # the provider never sent its usage: estimated and marked so


async def test_azure_v1_responses_stream_and_embeddings(gw: Gateway, fake_provider: FakeProvider) -> None:
    client = oai(gw)
    stream = await client.responses.create(model="az-gpt", input="hello there", stream=True)
    events = [e async for e in stream]
    done = [e for e in events if e.type == "response.completed"]
    assert done and done[0].response.usage and done[0].response.usage.output_tokens > 0
    req = last(fake_provider)
    assert req["path"] == "/openai/v1/responses" and req["body"]["model"] == "my-gpt4o"
    assert "stream_options" not in req["body"]  # the Responses API rejects it
    ev = await event(gw, 1)
    assert ev.stream and not ev.usage_estimated and ev.output_tokens == done[0].response.usage.output_tokens

    emb = await client.embeddings.create(model="az-emb", input=["a b c", "d"])
    assert len(emb.data) == 2 and emb.usage.prompt_tokens > 0
    req = last(fake_provider)
    assert req["path"] == "/openai/v1/embeddings" and req["body"]["model"] == "my-embedding-deployment"
    ev = await event(gw, 2)
    assert ev.input_tokens == emb.usage.prompt_tokens


async def test_bedrock_api_key_auth_is_a_bearer_token_instead_of_sigv4(gw: Gateway, fake_provider: FakeProvider) -> None:
    msg = await anth(gw).messages.create(model="brk-nova-key", max_tokens=16, messages=HI)
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("Echo:")
    req = last(fake_provider)
    assert req["path"] == "/model/amazon.nova-lite-v1:0/converse"
    assert req["api_key_sha256"] == hashlib.sha256(b"bedrock-api-key").hexdigest()
    assert "x-amz-date" not in {k.lower() for k in req["headers"]}


async def test_bedrock_session_token_is_signed_and_never_recorded(gw: Gateway, fake_provider: FakeProvider) -> None:
    msg = await anth(gw).messages.create(model="brk-nova-sts", max_tokens=16, messages=HI)
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("Echo:")
    req = last(fake_provider)
    assert req["status"] == 200  # the fake verified the signature, which covers the session token header
    assert req["headers"]["x-amz-security-token"] == "[redacted]"
    assert b"sts-session-token" not in orjson.dumps(fake_provider.stats())


@pytest.mark.parametrize("model", ["brk-claude", "brk-nova"])
async def test_bedrock_errors_reach_anthropic_clients_in_their_shape(gw: Gateway, fake_provider: FakeProvider,
                                                                     model: str) -> None:
    fake_provider.add_fault(status=400, path="/model/")
    with pytest.raises(anthropic.BadRequestError) as exc:
        await anth(gw).messages.create(model=model, max_tokens=8, messages=HI)
    assert last(fake_provider)["status"] == 400
    body: Any = exc.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "Invalid request (injected by the fake provider)." in body["error"]["message"]
