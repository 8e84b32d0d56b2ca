"""Cross-API translation through the gateway with the official SDKs: an Anthropic client served by an
OpenAI-dialect provider and an OpenAI client served by an Anthropic-dialect provider (the fake provider)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import openai
import orjson
import pytest
from google.genai import errors, types

from controlplane.policy.model import Model, Price, Provider
from tests.fixtures.gateway import Gateway, gateway_policy, native_gemini, running_gateway, wait_events
from tests.fixtures.sdks import anthropic_client as anth
from tests.fixtures.sdks import genai_client as gem
from tests.fixtures.sdks import openai_client as oai

TOOL = {"name": "read_file", "description": "Read a file", "input_schema": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}


async def test_anthropic_sdk_on_an_openai_provider_non_stream(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    msg = await anth(gateway).messages.create(
        model="gpt-t", max_tokens=30, system=[{"type": "text", "text": "be brief"}],
        messages=[{"role": "user", "content": "hello translated world"}])
    sent = fake_provider.last_request
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["body"]["max_tokens"] == 30 and sent["body"]["model"] == "gpt-upstream"
    assert msg.type == "message" and msg.model == "gpt-t" and msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("Echo: hello translated world")
    (ev,) = await wait_events(gateway, 1)
    assert ev.status == 200 and ev.provider == "fo" and ev.requested_model == "gpt-t"
    assert (ev.input_tokens, ev.output_tokens) == (msg.usage.input_tokens, msg.usage.output_tokens)
    assert ev.output_tokens == len(msg.content[0].text.split())


async def test_anthropic_sdk_on_an_openai_provider_stream_with_tool_use(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    async with anth(gateway).messages.stream(
        model="gpt-t", max_tokens=100, tools=[TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "please use tool on README.md"}],
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use" and call.name == "read_file" and isinstance(call.input, dict)
    assert call.input == {"path": "please use tool on README.md"}
    sent = fake_provider.last_request["body"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["tools"][0]["function"]["parameters"] == TOOL["input_schema"]
    (ev,) = await wait_events(gateway, 1)
    assert ev.stream and not ev.usage_estimated
    assert (ev.input_tokens, ev.output_tokens) == (final.usage.input_tokens, final.usage.output_tokens)
    assert ev.output_tokens > 0 and ev.input_tokens > 0


async def test_anthropic_tool_loop_history_reaches_openai_provider_as_tool_messages(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    msg = await anth(gateway).messages.create(
        model="gpt-t", max_tokens=20, tools=[TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "system", "content": "you are an agent"},  # type: ignore[typeddict-item]
            {"role": "user", "content": "please use tool"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "c2lnbmF0dXJl"},
                {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "file body"},
                                         {"type": "text", "text": "summarise"}]},
        ])
    sent = fake_provider.last_request["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "user"]
    assert sent[2]["tool_calls"][0]["function"] == {"name": "read_file", "arguments": '{"path":"a"}'}
    assert sent[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "file body"}
    assert "c2lnbmF0dXJl" not in str(sent)  # an Anthropic signature never goes to another vendor
    assert msg.stop_reason == "end_turn" and msg.content[0].type == "text"


async def test_provider_error_reaches_the_anthropic_client_in_its_dialect(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    fake_provider.add_fault(status=429)
    with pytest.raises(anthropic.RateLimitError) as exc:
        await anth(gateway).messages.create(model="gpt-t", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    (ev,) = await wait_events(gateway, 1)
    assert ev.status == 429


async def test_untranslatable_request_is_a_400_in_the_clients_dialect(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(anthropic.BadRequestError) as exc:
        await anth(gateway).messages.create(
            model="gpt-t", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert "web_search_20250305" in exc.value.message and "OpenAI" in exc.value.message
    assert fake_provider.requests_to("/v1/chat/completions") == 0


OAI_TOOL = {"type": "function", "function": {"name": "read_file", "description": "Read a file",
                                             "parameters": TOOL["input_schema"]}}


async def test_openai_sdk_on_an_anthropic_provider_non_stream(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = await oai(gateway).chat.completions.create(
        model="claude-t", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello claude"}])
    sent = fake_provider.last_request
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["system"] == "be brief" and sent["body"]["max_tokens"] > 0
    assert c.object == "chat.completion" and c.model == "claude-t" and c.choices[0].finish_reason == "stop"
    assert (c.choices[0].message.content or "").startswith("Echo: hello claude")
    (ev,) = await wait_events(gateway, 1)
    assert ev.status == 200 and ev.provider == "fa" and not ev.usage_estimated
    assert c.usage is not None and (ev.input_tokens, ev.output_tokens) == (c.usage.prompt_tokens, c.usage.completion_tokens)


async def test_openai_sdk_on_an_anthropic_provider_stream_with_tool_call_and_usage(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    async with oai(gateway).chat.completions.stream(
        model="claude-t", tools=[OAI_TOOL], stream_options={"include_usage": True},  # type: ignore[list-item]
        messages=[{"role": "user", "content": "please use tool on setup.py"}],
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "read_file"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {"path": "please use tool on setup.py"}  # type: ignore[union-attr]
    assert fake_provider.last_request["body"]["tools"][0]["input_schema"] == TOOL["input_schema"]
    (ev,) = await wait_events(gateway, 1)
    assert ev.stream and not ev.usage_estimated and ev.provider == "fa"
    assert final.usage is not None and (ev.input_tokens, ev.output_tokens) == (final.usage.prompt_tokens,
                                                                               final.usage.completion_tokens)


async def test_openai_tool_loop_history_reaches_anthropic_as_tool_use_and_result(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    stream = await oai(gateway).chat.completions.create(
        model="claude-t", stream=True, tools=[OAI_TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "please use tool"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": '{"path":"a"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "file body"},
        ])
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).startswith("Echo:")
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    sent = fake_provider.last_request["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_1", "name": "read_file", "input": {"path": "a"}}]}
    assert sent[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "file body"}]}
    (ev,) = await wait_events(gateway, 1)
    assert ev.output_tokens > 0 and not ev.usage_estimated


async def test_provider_overload_reaches_the_openai_client_in_its_dialect(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    fake_provider.add_fault(status=529, count=None)
    with pytest.raises(openai.APIStatusError) as exc:
        await oai(gateway).chat.completions.create(model="claude-t", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 529 and exc.value.body["code"] == "overloaded"  # type: ignore[index]


async def test_openai_n_greater_than_one_is_refused_before_reaching_anthropic(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.BadRequestError) as exc:
        await oai(gateway).chat.completions.create(model="claude-t", n=2, messages=[{"role": "user", "content": "hi"}])
    assert "n > 1" in exc.value.message
    assert fake_provider.requests_to("/v1/messages") == 0


async def test_apis_without_a_translation_are_refused_in_the_clients_dialect(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    # count_tokens on a model of an API without a counting endpoint: a local estimate (tests/dataplane/test_count_tokens.py)
    counted = await anth(gateway).messages.count_tokens(model="gpt-t", messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens > 0
    with pytest.raises(openai.BadRequestError) as o_exc:
        await oai(gateway).embeddings.create(model="claude-t", input="hi")
    assert "'embeddings'" in o_exc.value.message
    assert fake_provider.stats()["total"] == 0


READ_DECL = types.FunctionDeclaration(name="read_file", description="Read a file",
                                      parameters_json_schema=TOOL["input_schema"])


@pytest.mark.parametrize(("model", "provider", "path"), [("gpt-t", "fo", "/v1/chat/completions"),
                                                         ("claude-t", "fa", "/v1/messages")])
async def test_google_genai_sdk_on_openai_and_anthropic_providers(  # type: ignore[no-untyped-def]
        gateway: Gateway, fake_provider, model: str, provider: str, path: str) -> None:
    r = await gem(gateway).aio.models.generate_content(
        model=model, contents="hello from gemini", config=types.GenerateContentConfig(
            system_instruction="be brief", max_output_tokens=30))
    assert fake_provider.last_request["path"] == path
    assert (r.text or "").startswith("Echo: hello from gemini") and r.model_version == model
    (ev,) = await wait_events(gateway, 1)
    assert ev.provider == provider and ev.status == 200 and not ev.usage_estimated
    meta = r.usage_metadata
    assert meta is not None and (ev.input_tokens, ev.output_tokens) == (meta.prompt_token_count, meta.candidates_token_count)


@pytest.mark.parametrize("model", ["gpt-t", "claude-t"])
async def test_google_genai_stream_with_function_call_on_foreign_providers(gateway: Gateway, fake_provider, model: str) -> None:  # type: ignore[no-untyped-def]
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[READ_DECL])],
                                         automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    chunks = [c async for c in await gem(gateway).aio.models.generate_content_stream(
        model=model, contents="please use tool on notes.md", config=config)]
    calls = [p.function_call for c in chunks for p in (c.candidates[0].content.parts or []) if p.function_call]  # type: ignore[index, union-attr]
    (fc,) = calls
    assert fc.name == "read_file" and fc.args == {"path": "please use tool on notes.md"} and fc.id
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP and last.usage_metadata is not None  # type: ignore[index]
    # the next turn sends the call and its response back; the provider sees a matched tool result
    history = [types.Content(role="user", parts=[types.Part(text="please use tool on notes.md")]),
               types.Content(role="model", parts=[types.Part(function_call=fc)]),
               types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
                   id=fc.id, name="read_file", response={"output": "notes body"}))])]
    r = await gem(gateway).aio.models.generate_content(model=model, contents=history, config=config)
    assert (r.text or "").startswith("Echo:")
    sent = orjson.dumps(fake_provider.last_request["body"]).decode()
    assert fc.id in sent and "notes body" in sent
    evs = await wait_events(gateway, 2)
    assert evs[0].stream and not evs[0].usage_estimated and evs[0].output_tokens == last.usage_metadata.candidates_token_count  # type: ignore[union-attr]


async def test_google_error_json_for_a_translated_provider_failure(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    fake_provider.add_fault(status=529, count=None)
    with pytest.raises(errors.APIError) as exc:
        await gem(gateway).aio.models.generate_content(model="claude-t", contents="x")
    assert exc.value.code == 529 and exc.value.status == "UNAVAILABLE"


SHELL_TOOL = {"type": "function", "name": "read_file", "description": "Read a file", "parameters": TOOL["input_schema"]}


@pytest.fixture
async def chat_only_gateway(fake_provider, tmp_path) -> AsyncIterator[Gateway]:  # type: ignore[no-untyped-def]
    """A Mistral-kind provider: OpenAI chat completions only, no Responses API."""
    doc = gateway_policy(
        fake_provider.base_url,
        providers=[Provider(name="fm", kind="mistral", base_url=f"{fake_provider.base_url}/v1", credential="env:FAKE_KEY")],
        models=[Model(name="mistral-t", provider="fm", price=Price(input="1", output="1"))])
    async with running_gateway(fake_provider.base_url, tmp_path, policy=doc) as gw:
        yield gw


@pytest.mark.parametrize(("model", "path"), [("claude-t", "/v1/messages"), ("mistral-t", "/v1/chat/completions")])
async def test_openai_responses_sdk_on_providers_without_the_responses_api(  # type: ignore[no-untyped-def]
        chat_only_gateway: Gateway, fake_provider, model: str, path: str) -> None:
    gw = chat_only_gateway
    r = await oai(gw).responses.create(model=model, instructions="be brief", input="hello responses", store=False)
    assert fake_provider.last_request["path"] == path
    assert r.status == "completed" and r.output_text.startswith("Echo: hello responses") and r.model == model
    async with oai(gw).responses.stream(model=model, input="please use tool on b.txt", tools=[SHELL_TOOL],  # type: ignore[list-item]
                                        store=False) as stream:
        kinds = [e.type async for e in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    (call,) = [o for o in final.output if o.type == "function_call"]
    assert call.name == "read_file" and orjson.loads(call.arguments) == {"path": "please use tool on b.txt"}  # type: ignore[union-attr]
    if path == "/v1/chat/completions":
        assert "stream_options" not in fake_provider.last_request["body"]  # Mistral refuses it
    evs = await wait_events(gw, 2)
    assert [e.provider for e in evs] == [("fa" if model == "claude-t" else "fm")] * 2
    assert final.usage is not None
    if model == "claude-t":
        assert not evs[1].usage_estimated and evs[1].output_tokens == final.usage.output_tokens > 0
    else:  # the fake, unlike Mistral's API, streams usage only when asked: the gateway estimates and says so
        assert evs[1].usage_estimated and evs[1].output_tokens > 0


@pytest.fixture
async def gemini_gateway(fake_provider, tmp_path) -> AsyncIterator[Gateway]:  # type: ignore[no-untyped-def]
    """Adds a native Gemini provider (the fake's /v1beta API) to the fixture policy."""
    doc = gateway_policy(fake_provider.base_url, providers=[native_gemini(fake_provider.base_url)],
                         models=[Model(name="gemini-t", provider="fg", price=Price(input="1", output="1"))])
    async with running_gateway(fake_provider.base_url, tmp_path, policy=doc) as gw:
        yield gw


async def test_openai_sdk_on_a_gemini_provider_with_a_signed_tool_round_trip(gemini_gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    gw = gemini_gateway
    client = oai(gw)
    stream = await client.chat.completions.create(
        model="gemini-t", stream=True, stream_options={"include_usage": True}, tools=[OAI_TOOL],  # type: ignore[list-item]
        reasoning_effort="low", messages=[{"role": "user", "content": "please use tool on c.md"}])
    chunks = [c async for c in stream]
    assert fake_provider.last_request["path"] == "/v1beta/models/gemini-t:streamGenerateContent"
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    (call,) = calls
    assert call.function.name == "read_file" and orjson.loads(call.function.arguments or "") == {"path": "please use tool on c.md"}  # type: ignore[union-attr]
    assert "__thought__" in (call.id or "")  # thinking (reasoning_effort -> thinkingConfig) signs the call
    assert fake_provider.last_request["body"]["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024}
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details.reasoning_tokens > 0  # type: ignore[union-attr]
    # next turn: the signature goes back to Gemini intact (the fake rejects altered ones)
    done = await client.chat.completions.create(model="gemini-t", tools=[OAI_TOOL], messages=[  # type: ignore[list-item]
        {"role": "user", "content": "please use tool on c.md"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "read_file", "arguments": call.function.arguments}}]},  # type: ignore[union-attr, typeddict-item]
        {"role": "tool", "tool_call_id": call.id, "content": "c body"}])  # type: ignore[typeddict-item]
    assert (done.choices[0].message.content or "").startswith("Echo:")
    parts = [p for c in fake_provider.last_request["body"]["contents"] for p in c["parts"]]
    assert any("thoughtSignature" in p and "functionCall" in p for p in parts)
    assert any(p.get("functionResponse", {}).get("response") == {"output": "c body"} for p in parts)
    evs = await wait_events(gw, 2)
    assert all(e.provider == "fg" and e.status == 200 and not e.usage_estimated for e in evs)
    assert evs[0].output_tokens == usage.completion_tokens and evs[0].reasoning_tokens > 0


async def test_anthropic_sdk_on_a_gemini_provider(gemini_gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    async with anth(gemini_gateway).messages.stream(
        model="gemini-t", max_tokens=50, messages=[{"role": "user", "content": "hello gemini from claude"}]) as s:
        final = await s.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text.startswith("Echo: hello gemini from claude")
    (ev,) = await wait_events(gemini_gateway, 1)
    assert ev.provider == "fg" and not ev.usage_estimated and ev.input_tokens == final.usage.input_tokens
