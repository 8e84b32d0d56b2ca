"""OpenAI client -> Anthropic provider: request, response and stream translation (pure, no I/O).

Stream transcripts follow what api.anthropic.com sends (message_start with provisional usage, ping,
thinking with signature_delta, text and tool_use blocks, message_delta with the final usage,
message_stop); outputs are validated against the official openai SDK's chunk type and accumulated
with its ChatCompletionStreamState."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from dataplane.dialects.base import Usage
from dataplane.translate.base import Untranslatable
from dataplane.translate.openai_to_anthropic_request import DEFAULT_MAX_TOKENS
from tests.translate_helpers import anthropic_sse, bind, openai_final, params, parse, relay

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "now"}}]


def request(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return bind("openai", "anthropic", params(**kw)).request(body)


def test_chat_request_maps_system_tools_tool_messages_and_options() -> None:
    body = {
        "model": "m", "max_completion_tokens": 900, "temperature": 1.7, "top_p": 0.5, "stop": "END", "user": "u-42",
        "seed": 3, "presence_penalty": 0.1, "tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False,
        "messages": [
            {"role": "developer", "content": "You are Cline."},
            {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4A"}}]},
            {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            {"role": "user", "content": "thanks"},
            {"role": "assistant", "content": ""},
        ],
    }
    out = request(body)
    assert out["system"] == "You are Cline.\n\nBe terse."
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "image", "source": {
            "type": "base64", "media_type": "image/jpeg", "data": "/9j/4A"}}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "call_2", "name": "now", "input": {}}]},
        {"role": "user", "content": [  # tool results and the next user text merge into one user turn
            {"type": "tool_result", "tool_use_id": "call_1", "content": "rain"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
            {"type": "text", "text": "thanks"}]},
    ]  # the empty assistant message is dropped: Anthropic refuses empty turns
    assert out["max_tokens"] == 900 and out["temperature"] == 1.0 and out["top_p"] == 0.5
    assert out["stop_sequences"] == ["END"] and out["metadata"] == {"user_id": "u-42"}
    assert out["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": TOOLS[0]["function"]["parameters"]},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert "seed" not in out and "presence_penalty" not in out and "stream" not in out


def test_max_tokens_defaults_from_policy_then_constant() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert request(body, max_output=8192)["max_tokens"] == 8192
    assert request(body)["max_tokens"] == DEFAULT_MAX_TOKENS


def test_json_schema_is_emulated_with_a_forced_tool_and_returned_as_text() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}}
    xl = bind("openai", "anthropic", params())
    out = xl.request(body)
    assert out["tools"][0]["name"] == "reply" and out["tools"][0]["input_schema"] == schema
    assert out["tool_choice"] == {"type": "tool", "name": "reply"}
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "stop_reason": "tool_use",
           "content": [{"type": "tool_use", "id": "toolu_1", "name": "reply", "input": {"answer": "42"}}],
           "usage": {"input_tokens": 10, "output_tokens": 5}}
    completion = ChatCompletion.model_validate(orjson.loads(xl.response(200, orjson.dumps(msg))))
    assert completion.choices[0].message.content == '{"answer":"42"}' and completion.choices[0].finish_reason == "stop"
    assert not completion.choices[0].message.tool_calls


def test_json_object_and_json_schema_with_tools_become_a_system_instruction() -> None:
    base = {"model": "m", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "x"}]}
    assert request({**base, "response_format": {"type": "json_object"}})["system"].endswith("valid JSON object and nothing else.")
    out = request({**base, "tools": TOOLS, "response_format": {"type": "json_schema", "json_schema": {
        "name": "r", "schema": {"type": "object"}}}})
    assert out["system"].startswith("S\n\n") and '{"type":"object"}' in out["system"] and "tool_choice" not in out


@pytest.mark.parametrize(("extra", "needle"), [
    ({"n": 2}, "n > 1"), ({"logprobs": True}, "logprobs"), ({"modalities": ["text", "audio"]}, "audio"),
    ({"functions": [{"name": "f"}]}, "legacy"), ({"web_search_options": {}}, "web_search_options"),
    ({"tools": [{"type": "custom", "custom": {"name": "apply_patch"}}]}, "'custom'"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "input_audio"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "'function'"),
])
def test_what_anthropic_cannot_express_is_refused_with_a_clear_400(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(Untranslatable) as exc:
        request({"model": "m", "messages": [{"role": "user", "content": "x"}], **extra})
    assert exc.value.status == 400 and needle in exc.value.message


def test_message_with_thinking_text_and_tools_becomes_a_chat_completion() -> None:
    msg = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "stop_reason": "tool_use",
           "stop_sequence": None, "content": [
               {"type": "thinking", "thinking": "user wants weather", "signature": "EqQBsig"},
               {"type": "text", "text": "Looking."},
               {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
               {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}}],
           "usage": {"input_tokens": 50, "cache_creation_input_tokens": 30, "cache_read_input_tokens": 900,
                     "output_tokens": 70}}
    xl = bind("openai", "anthropic", params("my-claude"))
    xl.request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    raw = xl.response(200, orjson.dumps(msg))
    c = ChatCompletion.model_validate(orjson.loads(raw))
    assert c.id == "chatcmpl-msg_01" and c.model == "my-claude" and c.created == 1_700_000_000
    m = c.choices[0].message
    assert m.content == "Looking." and c.choices[0].finish_reason == "tool_calls"
    assert [(t.id, t.function.name, orjson.loads(t.function.arguments)) for t in m.tool_calls or []] == [  # type: ignore[union-attr]
        ("toolu_1", "get_weather", {"city": "Oslo"}), ("toolu_2", "now", {})]
    assert b"EqQBsig" not in raw and b"user wants weather" not in raw
    assert c.usage is not None and (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (980, 70, 1050)
    assert c.usage.prompt_tokens_details.cached_tokens == 900  # type: ignore[union-attr]


@pytest.mark.parametrize(("stop", "finish"), [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
                                              ("refusal", "content_filter"), ("pause_turn", "stop")])
def test_stop_reason_mapping(stop: str, finish: str) -> None:
    msg = {"id": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": stop, "usage": {}}
    out = orjson.loads(bind("openai", "anthropic", params()).response(200, orjson.dumps(msg)))
    assert out["choices"][0]["finish_reason"] == finish


def test_provider_errors_become_openai_errors() -> None:
    xl = bind("openai", "anthropic", params())
    over = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert orjson.loads(xl.response(529, orjson.dumps(over))) == {
        "error": {"message": "Overloaded", "type": "api_error", "param": None, "code": "overloaded"}}
    bad = {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens"}}
    assert orjson.loads(xl.response(400, orjson.dumps(bad)))["error"]["type"] == "invalid_request_error"


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


def delta(i: int, **d: Any) -> dict[str, Any]:
    return ev("content_block_delta", index=i, delta=d)


TRANSCRIPT = [
    ev("message_start", message={"id": "msg_S", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                                 "content": [], "stop_reason": None, "stop_sequence": None,
                                 "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0,
                                           "cache_read_input_tokens": 400, "output_tokens": 1}}),
    ev("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""}),
    ev("ping"),
    delta(0, type="thinking_delta", thinking="weather in two cities"),
    delta(0, type="signature_delta", signature="EqQBCkYsig"),
    ev("content_block_stop", index=0),
    ev("content_block_start", index=1, content_block={"type": "text", "text": ""}),
    delta(1, type="text_delta", text="Checking "), delta(1, type="text_delta", text="both ☂."),
    ev("content_block_stop", index=1),
    ev("content_block_start", index=2, content_block={"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}),
    delta(2, type="input_json_delta", partial_json=""),
    delta(2, type="input_json_delta", partial_json='{"city": "Os'), delta(2, type="input_json_delta", partial_json='lo"}'),
    ev("content_block_stop", index=2),
    ev("content_block_start", index=3, content_block={"type": "tool_use", "id": "toolu_B", "name": "get_weather", "input": {}}),
    delta(3, type="input_json_delta", partial_json='{"city": "Rome"}'),
    ev("content_block_stop", index=3),
    ev("message_delta", delta={"stop_reason": "tool_use", "stop_sequence": None}, usage={"output_tokens": 88}),
    ev("message_stop"),
]


@pytest.mark.parametrize("step", [1, 5, 333, 1 << 20])
@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_thinking_text_and_parallel_tools(step: int, include_usage: bool) -> None:
    xl = bind("openai", "anthropic", params("my-claude", stream=True))
    body: dict[str, Any] = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    assert "stream_options" not in xl.request(body)  # Anthropic always reports usage; nothing to ask for
    out, usage = relay(xl, anthropic_sse(TRANSCRIPT), step)
    final, chunks = openai_final(out)
    assert b"EqQBCkYsig" not in out and b"two cities" not in out
    assert final.model == "my-claude" and final.id == "chatcmpl-msg_S"
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking both ☂."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_A", "get_weather", {"city": "Oslo"}), ("toolu_B", "get_weather", {"city": "Rome"})]
    if include_usage:
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None
        assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (412, 88)
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    # the event's usage is scanned from the provider's bytes: input includes the cache reads
    assert usage == Usage(input_tokens=412, output_tokens=88, cached_input_tokens=400, reported=True)


def test_stream_json_schema_emulation_streams_the_tool_input_as_content() -> None:
    xl = bind("openai", "anthropic", params(stream=True))
    xl.request({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}})
    events = [TRANSCRIPT[0],
              ev("content_block_start", index=0, content_block={"type": "tool_use", "id": "t", "name": "r", "input": {}}),
              delta(0, type="input_json_delta", partial_json='{"a":'), delta(0, type="input_json_delta", partial_json=" 1}"),
              ev("content_block_stop", index=0),
              ev("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 4}), ev("message_stop")]
    final, _ = openai_final(relay(xl, anthropic_sse(events), 7)[0])
    assert final.choices[0].message.content == '{"a": 1}' and final.choices[0].finish_reason == "stop"


def test_stream_error_event_becomes_an_openai_error_chunk() -> None:
    events = [TRANSCRIPT[0], ev("error", error={"type": "overloaded_error", "message": "Overloaded"})]
    out, _ = relay(bind("openai", "anthropic", params(stream=True)), anthropic_sse(events), 4)
    assert parse(out)[-1][1] == {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None}}
