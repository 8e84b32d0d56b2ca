"""OpenAI Responses client (Codex CLI's only API) -> OpenAI chat provider, and -> Anthropic provider
(composed through chat): request, response and stream translation (pure). Outputs are validated with
the official openai SDK's Response and ResponseStreamEvent types."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from dataplane.dialects.base import Usage
from dataplane.translate.base import Untranslatable
from tests.translate_helpers import adapter, anthropic_sse, openai_sse, params, parse, relay
from tests.translate_helpers import openai_chunk as chunk

from dataplane.dialects.registry import default_dialects  # isort: skip
from dataplane.translate.registry import default_translations  # isort: skip

_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}
SHELL = {"type": "function", "name": "shell", "description": "Run a command", "strict": False,
         "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}}}


def bind(provider: str, **kw: Any):  # type: ignore[no-untyped-def]
    d, p = default_dialects(), params(**kw)
    return default_translations(d).bind(d["openai_responses"], "responses", adapter(provider, p), p)


def codex_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-5-codex", "instructions": "You are Codex.", "store": False, "stream": True,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "sess-1", "reasoning": {"effort": "medium"},
        "tools": [SHELL, APPLY_PATCH, {"type": "web_search"}], "tool_choice": "auto", "parallel_tool_calls": False,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAABencrypted"},
            {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"command":["ls"]}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "a.py"},
            {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Done!"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Patched."}]},
        ],
        **extra,
    }


def test_codex_request_maps_to_chat() -> None:
    out = bind("openai", stream=True, kind="openai_compatible").request(codex_body(max_output_tokens=900))
    assert out["messages"] == [
        {"role": "system", "content": "You are Codex."},
        {"role": "system", "content": "<permissions>"},
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": '{"command":["ls"]}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a.py"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "Done!"},
        {"role": "assistant", "content": "Patched."},
    ]
    names = [t["function"]["name"] for t in out["tools"]]
    assert names == ["shell", "apply_patch"]  # the hosted web_search is left out
    patch = out["tools"][1]["function"]
    assert patch["parameters"]["required"] == ["input"] and "start: begin_patch" in patch["description"]
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is False and out["max_tokens"] == 900
    assert out["stream_options"] == {"include_usage": True}
    raw = orjson.dumps(out)
    assert b"gAAAAABencrypted" not in raw and b"prompt_cache_key" not in raw and b"reasoning" not in raw


@pytest.mark.parametrize(("extra", "needle"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "web_search_call"),
    ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input_image"),
])
def test_state_kept_at_openai_and_hosted_calls_are_refused(extra: dict[str, Any], needle: str) -> None:
    for provider in ("openai", "anthropic"):
        with pytest.raises(Untranslatable) as exc:
            bind(provider).request(codex_body(**extra))
        assert needle in exc.value.message


def test_chat_completion_becomes_a_response_with_custom_and_function_calls() -> None:
    xl = bind("openai", model="codex-on-chat")
    xl.request(codex_body(stream=False))
    completion = {"id": "chatcmpl-R", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Applying.", "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch\\n"}'}},
            {"id": "call_10", "type": "function", "function": {"name": "shell", "arguments": '{"command":["make"]}'}}]}}],
        "usage": {"prompt_tokens": 500, "completion_tokens": 60, "total_tokens": 560,
                  "prompt_tokens_details": {"cached_tokens": 400}, "completion_tokens_details": {"reasoning_tokens": 10}}}
    r = Response.model_validate(orjson.loads(xl.response(200, orjson.dumps(completion))))
    assert r.status == "completed" and r.model == "codex-on-chat" and r.output_text == "Applying."
    kinds = [(o.type, getattr(o, "call_id", None)) for o in r.output]
    assert kinds == [("message", None), ("custom_tool_call", "call_9"), ("function_call", "call_10")]
    assert r.output[1].input == "*** Begin Patch\n"  # type: ignore[union-attr]
    assert r.output[2].arguments == '{"command":["make"]}'  # type: ignore[union-attr]
    u = r.usage
    assert u is not None and (u.input_tokens, u.input_tokens_details.cached_tokens, u.output_tokens,
                              u.output_tokens_details.reasoning_tokens) == (500, 400, 60, 10)


STREAM = [
    chunk({"role": "assistant", "content": ""}), chunk({"content": "Let me "}), chunk({"content": "patch."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_P", "type": "function", "function": {"name": "apply_patch", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"input": "*** Begin'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' Patch"}'}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_S", "type": "function", "function": {"name": "shell", "arguments": '{"command":'}}]}),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": ' ["ls"]}'}}]}),
    chunk({}, "tool_calls"),
    chunk(None, usage={"prompt_tokens": 70, "completion_tokens": 21, "total_tokens": 91}),
]


@pytest.mark.parametrize("step", [1, 11, 1 << 20])
def test_chat_stream_becomes_the_responses_event_sequence(step: int) -> None:
    xl = bind("openai", stream=True)
    xl.request(codex_body())
    out, usage = relay(xl, openai_sse(STREAM), step)
    events = [_EVENT.validate_python(d) for _, d in parse(out)]
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Let me patch."  # type: ignore[union-attr]
    assert "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta") == '{"command": ["ls"]}'  # type: ignore[union-attr]
    done = [e.item for e in events if e.type == "response.output_item.done"]  # type: ignore[union-attr]
    assert [i.type for i in done] == ["message", "custom_tool_call", "function_call"]
    assert done[1].input == "*** Begin Patch" and done[2].arguments == '{"command": ["ls"]}'  # type: ignore[union-attr]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (70, 21)
    assert [o.type for o in final.output] == ["message", "custom_tool_call", "function_call"]
    assert usage == Usage(input_tokens=70, output_tokens=21, reported=True)
    assert all(n == d["type"] for n, d in parse(out))  # typed SSE framing (event: <type>)


def test_anthropic_stream_reaches_the_responses_client_through_the_chat_pivot() -> None:
    xl = bind("anthropic", stream=True)
    sent = xl.request(codex_body())
    assert xl.operation == "messages" and sent["system"] == "You are Codex.\n\n<permissions>"
    assert [t["name"] for t in sent["tools"]] == ["shell", "apply_patch"]
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    events = [
        {"type": "message_start", "message": {"id": "msg_A", "type": "message", "role": "assistant", "content": [],
                                              "model": "c", "usage": {"input_tokens": 11, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "apply_patch", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"input": "*** Begin Patch"}'}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 6}},
        {"type": "message_stop"},
    ]
    out, usage = relay(xl, anthropic_sse(events), 5)
    parsed = [_EVENT.validate_python(d) for _, d in parse(out)]
    final = parsed[-1].response  # type: ignore[union-attr]
    assert parsed[-1].type == "response.completed"
    (call,) = final.output
    assert call.type == "custom_tool_call" and call.input == "*** Begin Patch" and call.call_id == "toolu_1"  # type: ignore[union-attr]
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (11, 6)
    assert usage == Usage(input_tokens=11, output_tokens=6, reported=True)


def test_length_finish_is_an_incomplete_response() -> None:
    xl = bind("openai", stream=True)
    xl.request(codex_body())
    out, _ = relay(xl, openai_sse([chunk({"content": "cut"}), chunk({}, "length"), chunk(None, usage={"prompt_tokens": 1})]), 64)
    last = _EVENT.validate_python(parse(out)[-1][1])
    assert last.type == "response.incomplete" and last.response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]


def test_providers_that_refuse_stream_options_do_not_get_them() -> None:
    d, p = default_dialects(), params(stream=True)
    from dataplane.providers.registry import default_providers
    xl = default_translations(d).bind(d["openai_responses"], "responses", default_providers()["mistral"], p)
    assert xl.request(codex_body())["stream"] is True and "stream_options" not in xl.request(codex_body())
    assert "stream_options" in bind("openai", stream=True).request(codex_body())
