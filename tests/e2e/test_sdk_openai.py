"""The official `openai` SDK through the gateway (base URL + virtual key only) against the fake provider:
Responses API (as Codex CLI uses it), embeddings, chat with tools, model retrieval — and the usage
event each request leaves behind."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fixtures.gateway import Gateway, wait_events
from tests.fixtures.sdks import openai_client as client

pytestmark = pytest.mark.e2e

FN_TOOL = {"type": "function", "name": "read_file", "description": "Read a file", "strict": False,
           "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
GRAMMAR_TOOL = {"type": "custom", "name": "apply_patch", "description": "Apply a patch",
                "format": {"type": "grammar", "syntax": "lark", "definition": "start: /[\\s\\S]+/"}}
HOSTED_TOOL = {"type": "web_search"}


def codex_request(**extra: object) -> dict:
    """The shape Codex CLI sends: developer instructions, encrypted reasoning, no storage, cache key."""
    return dict(
        model="gpt-t", instructions="You are a coding agent.",
        input=[{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandbox: read-only"}]},
               {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello codex world"}]}],
        tools=[FN_TOOL, GRAMMAR_TOOL, HOSTED_TOOL], tool_choice="auto", parallel_tool_calls=False,
        reasoning={"effort": "medium", "summary": "auto"}, include=["reasoning.encrypted_content"],
        store=False, prompt_cache_key="conv-123",
    ) | extra


async def test_responses_create_passes_codex_fields_through_and_bills_reasoning(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    r = await client(gateway).responses.create(**codex_request())
    sent = fake_provider.last_request
    assert sent["path"] == "/v1/responses" and sent["body"]["model"] == "gpt-upstream"
    for field in ("instructions", "input", "tools", "reasoning", "include", "store", "prompt_cache_key"):
        assert sent["body"][field] == codex_request()[field], field  # untouched: grammar + hosted tool included
    kinds = [o.type for o in r.output]
    assert kinds == ["reasoning", "message"] and r.output[0].encrypted_content
    assert r.output_text.startswith("Echo: hello codex world")
    (ev,) = await wait_events(gateway, 1)
    assert ev.endpoint == "/v1/responses" and ev.dialect == "openai" and ev.status == 200
    assert r.usage is not None and r.usage.output_tokens_details.reasoning_tokens > 0
    assert (ev.input_tokens, ev.output_tokens, ev.reasoning_tokens) == (
        r.usage.input_tokens, r.usage.output_tokens, r.usage.output_tokens_details.reasoning_tokens)
    assert ev.output_tokens == len(r.output_text.split()) + ev.reasoning_tokens


async def test_responses_encrypted_reasoning_round_trips_on_the_next_turn(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    first = await c.responses.create(**codex_request())
    items = [o.model_dump(exclude_none=True) for o in first.output]
    follow = codex_request()
    follow["input"] = [*follow["input"], *items, {"role": "user", "content": "and now?"}]  # type: ignore[list-item]
    await c.responses.create(**follow)
    sent = fake_provider.last_request["body"]["input"]
    assert sent[2]["type"] == "reasoning" and sent[2]["encrypted_content"] == first.output[0].encrypted_content


async def test_responses_stream_function_call_and_usage(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    req = codex_request()
    req["input"] = [{"role": "user", "content": "please use tool read_file"}]
    async with client(gateway).responses.stream(**req) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    call = final.output[-1]
    assert call.type == "function_call" and call.name == "read_file" and "path" in call.arguments
    assert "stream_options" not in fake_provider.last_request["body"]  # the Responses API rejects chat's option
    (ev,) = await wait_events(gateway, 1)
    assert ev.stream and not ev.usage_estimated and final.usage is not None
    assert (ev.input_tokens, ev.output_tokens) == (final.usage.input_tokens, final.usage.output_tokens)


async def test_responses_stream_custom_grammar_tool(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    req = codex_request(tool_choice={"type": "custom", "name": "apply_patch"})
    async with client(gateway).responses.stream(**req) as stream:
        final = await stream.get_final_response()
    call = final.output[-1]
    assert call.type == "custom_tool_call" and call.name == "apply_patch" and call.input


async def test_responses_errors_are_openai_errors(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    with pytest.raises(openai.NotFoundError) as missing:
        await c.responses.create(model="no-such-model", input="hi")
    assert "no-such-model" in missing.value.message
    fake_provider.add_fault(status=429, path="/v1/responses")
    with pytest.raises(openai.RateLimitError):
        await c.responses.create(model="gpt-t", input="hi")
    events = await wait_events(gateway, 2)
    assert [e.status for e in events] == [404, 429] and events[1].error_class == "rate_limited"


async def test_embeddings_default_base64_and_float_decode_to_the_same_vectors(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    texts = ["first text to embed", "second"]
    b64 = await c.embeddings.create(model="gpt-t", input=texts)  # the SDK asks for base64 by default
    assert fake_provider.last_request["body"]["encoding_format"] == "base64"
    flt = await c.embeddings.create(model="gpt-t", input=texts, encoding_format="float")
    assert fake_provider.last_request["body"]["encoding_format"] == "float"
    assert len(b64.data) == 2 and [d.embedding for d in b64.data] == [d.embedding for d in flt.data]
    assert len(b64.data[0].embedding) == 256 and b64.data[0].embedding != b64.data[1].embedding
    ev1, ev2 = await wait_events(gateway, 2)
    assert ev1.endpoint == "/v1/embeddings" and ev1.input_tokens == b64.usage.prompt_tokens > 0
    assert ev2.input_tokens == ev1.input_tokens and ev1.output_tokens == 0 and float(ev1.cost_usd) > 0


async def test_chat_with_tools_stream_and_not(gateway: Gateway) -> None:
    c = client(gateway)
    tools: list[Any] = [{"type": "function", "function": {"name": "read_file", "parameters": FN_TOOL["parameters"]}}]
    msgs: list[Any] = [{"role": "user", "content": "please use tool now"}]
    done = await c.chat.completions.create(model="gpt-t", messages=msgs, tools=tools)
    (call,) = done.choices[0].message.tool_calls or []
    assert done.choices[0].finish_reason == "tool_calls" and call.type == "function"
    assert call.function.name == "read_file"
    stream = await c.chat.completions.create(model="gpt-t", messages=msgs, tools=tools, stream=True)
    args = ""
    async for ch in stream:
        for delta in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
            args += (delta.function.arguments or "") if delta.function else ""
    assert args == call.function.arguments
    ev1, ev2 = await wait_events(gateway, 2)
    assert ev2.stream and not ev2.usage_estimated and ev2.output_tokens == ev1.output_tokens == done.usage.completion_tokens  # type: ignore[union-attr]


async def test_models_retrieve_and_list(gateway: Gateway) -> None:
    c = client(gateway)
    model = await c.models.retrieve("gpt-t")
    assert model.id == "gpt-t" and model.owned_by == "fo"
    assert {m.id async for m in c.models.list()} >= {"gpt-t", "claude-t", "fast"}
    with pytest.raises(openai.NotFoundError):
        await c.models.retrieve("nope")


async def test_embeddings_errors_reach_the_sdk_in_openai_shape(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    with pytest.raises(openai.BadRequestError) as bad:
        await c.embeddings.create(model="gpt-t", input="")  # refused by the provider, relayed as is
    assert bad.value.param == "input"  # type: ignore[attr-defined]
    fake_provider.add_fault(status=529, path="/v1/embeddings")
    with pytest.raises(openai.APIStatusError) as overloaded:
        await c.embeddings.create(model="gpt-t", input="x")
    assert overloaded.value.status_code == 529
    events = await wait_events(gateway, 2)
    assert [(e.status, e.error_class) for e in events] == [(400, "upstream_4xx"), (529, "overloaded")]
    assert all(e.input_tokens == 0 and e.cost_usd == "0.000000000000" for e in events)


async def test_responses_codex_tool_loop_without_storage(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    """store=false: every turn resends the whole transcript (reasoning, calls, outputs) as input items."""
    c = client(gateway)
    req = codex_request()
    req["input"] = [*req["input"][:1], {"role": "user", "content": "please use tool read_file"}]
    first = await c.responses.create(**req)
    call = first.output[-1]
    assert call.type == "function_call"
    transcript = [*req["input"], *(o.model_dump(exclude_none=True) for o in first.output),
                  {"type": "function_call_output", "call_id": call.call_id, "output": "README contents"}]
    done = await c.responses.create(**{**req, "input": transcript})
    assert done.output[-1].type == "message" and done.output_text.startswith("Echo:")
    sent = fake_provider.last_request["body"]["input"]
    assert [i.get("type", "message") for i in sent] == ["message", "message", "reasoning", "function_call",
                                                         "function_call_output"]
    ev1, ev2 = await wait_events(gateway, 2)
    assert ev2.input_tokens > ev1.input_tokens and done.usage is not None
    assert (ev2.input_tokens, ev2.output_tokens) == (done.usage.input_tokens, done.usage.output_tokens)
