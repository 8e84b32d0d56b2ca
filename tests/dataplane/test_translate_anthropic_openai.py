"""Anthropic client -> OpenAI provider: request, response and stream translation (pure, no I/O).

Stream transcripts follow what api.openai.com sends (role chunk, content/tool-call deltas, finish
chunk, usage chunk with `choices: []`, `[DONE]`); outputs are validated against the official
anthropic SDK's event types and accumulated with its MessageStream logic."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.dialects.base import Usage
from dataplane.translate.base import Untranslatable
from tests.translate_helpers import anthropic_final, bind, openai_sse, params, parse, relay
from tests.translate_helpers import openai_chunk as chunk

TOOLS = [
    {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
     "cache_control": {"type": "ephemeral"}},
    {"name": "Bash", "input_schema": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
]


def request(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return bind("anthropic", "openai", params(**kw)).request(body)


def test_claude_code_like_request_maps_system_tools_history_and_options() -> None:
    body = {
        "model": "m", "max_tokens": 32000, "temperature": 1, "top_p": 0.9, "top_k": 5, "stop_sequences": ["END"],
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Be careful."}],
        "tools": TOOLS, "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user_" + "a" * 64 + "_account__session_4f9c"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "system", "content": "<reminder>todo list is empty</reminder>"},
            {"role": "user", "content": [{"type": "text", "text": "fix the bug", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "let me look", "signature": "EqQBCkYIBxgCKkBsig"},
                {"type": "text", "text": "Reading both."},
                {"type": "tool_use", "id": "toolu_A", "name": "Read", "input": {"path": "a.py"}},
                {"type": "tool_use", "id": "toolu_B", "name": "Bash", "input": {"cmd": "ls"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_A", "content": [{"type": "text", "text": "print(1)"}]},
                {"type": "tool_result", "tool_use_id": "toolu_B", "content": "boom", "is_error": True},
                {"type": "text", "text": "go on"}]},
        ],
    }
    out = request(body, kind="openai")
    assert out["max_completion_tokens"] == 32000 and "max_tokens" not in out  # api.openai.com wants the new name
    assert (out["temperature"], out["top_p"], out["stop"]) == (1, 0.9, ["END"]) and "top_k" not in out
    assert out["messages"] == [
        {"role": "system", "content": "You are Claude Code.\n\nBe careful."},
        {"role": "system", "content": "<reminder>todo list is empty</reminder>"},
        {"role": "user", "content": "fix the bug"},
        {"role": "assistant", "content": "Reading both.", "tool_calls": [
            {"id": "toolu_A", "type": "function", "function": {"name": "Read", "arguments": '{"path":"a.py"}'}},
            {"id": "toolu_B", "type": "function", "function": {"name": "Bash", "arguments": '{"cmd":"ls"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_A", "content": "print(1)"},
        {"role": "tool", "tool_call_id": "toolu_B", "content": "[tool error] boom"},
        {"role": "user", "content": "go on"},
    ]
    assert out["tools"] == [
        {"type": "function", "function": {"name": "Read", "description": "Read a file", "parameters": TOOLS[0]["input_schema"]}},
        {"type": "function", "function": {"name": "Bash", "parameters": TOOLS[1]["input_schema"]}},
    ]
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is False
    assert out["user"].startswith("sha256:") and len(out["user"]) <= 64  # Claude Code's id is longer than OpenAI allows
    assert "thinking" not in out and "EqQBCkYIBxgCKkBsig" not in orjson.dumps(out).decode()
    assert "cache_control" not in orjson.dumps(out).decode()
    assert request(body)["max_tokens"] == 32000  # OpenAI-compatible servers get max_tokens


def test_images_and_documents_become_openai_parts_and_tool_images_move_to_the_user_turn() -> None:
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
    body = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look"}, img,
                                     {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                                     {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                                     "data": "JVBER"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Shot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [img, {"type": "text", "text": "ok"}]}]},
    ]}
    msgs = request(body)["messages"]
    assert msgs[0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBER"}},
    ]
    assert msgs[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "Shot", "arguments": "{}"}}]}
    assert msgs[2] == {"role": "tool", "tool_call_id": "t1", "content": "ok"}
    assert msgs[3] == {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]}


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "any"}, "required"), ({"type": "none"}, "none"),
    ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
])
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    out = request({"model": "m", "max_tokens": 5, "tools": TOOLS, "tool_choice": choice,
                   "messages": [{"role": "user", "content": "x"}]})
    assert out["tool_choice"] == expected and "parallel_tool_calls" not in out


def test_stream_request_always_asks_for_usage() -> None:
    out = request({"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}, stream=True)
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(("body", "needle"), [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305"),
    ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "hosted by Anthropic"),
    ({"mcp_servers": [{"type": "url", "url": "https://mcp", "name": "x"}]}, "mcp_servers"),
    ({"messages": [{"role": "user", "content": [{"type": "search_result", "source": "s"}]}]}, "search_result"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}, "'file'"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "role 'tool'"),
])
def test_what_openai_cannot_express_is_refused_with_a_clear_400(body: dict[str, Any], needle: str) -> None:
    full = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], **body}
    with pytest.raises(Untranslatable) as exc:
        request(full)
    assert exc.value.status == 400 and needle in exc.value.message


def test_completion_with_parallel_tool_calls_and_cached_usage() -> None:
    completion = {
        "id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
            "role": "assistant", "content": "Checking.", "refusal": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "Read", "arguments": '{"path": "a"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "Bash", "arguments": ""}},
                {"id": "call_3", "type": "function", "function": {"name": "Bash", "arguments": '{"cmd": "ls'}}]}}],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 40, "total_tokens": 1040,
                  "prompt_tokens_details": {"cached_tokens": 800}},
    }
    xl = bind("anthropic", "openai", params("claude-via-gpt"))
    msg = orjson.loads(xl.response(200, orjson.dumps(completion)))
    from anthropic.types import Message
    Message.model_validate(msg)
    assert msg["model"] == "claude-via-gpt" and msg["stop_reason"] == "tool_use" and msg["id"] == "msg_chatcmpl-9"
    assert msg["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "a"}},
        {"type": "tool_use", "id": "call_2", "name": "Bash", "input": {}},
        {"type": "tool_use", "id": "call_3", "name": "Bash", "input": {"_unparsed_arguments": '{"cmd": "ls'}},
    ]
    assert msg["usage"] == {"input_tokens": 200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 800,
                            "output_tokens": 40}


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"),
                                              ("content_filter", "refusal"), (None, "end_turn")])
def test_finish_reason_mapping(finish: str | None, stop: str) -> None:
    body = {"id": "x", "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "hi"}}]}
    msg = orjson.loads(bind("anthropic", "openai", params()).response(200, orjson.dumps(body)))
    assert msg["stop_reason"] == stop


def test_provider_errors_become_anthropic_errors() -> None:
    xl = bind("anthropic", "openai", params())
    err = {"error": {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error",
                     "param": "messages", "code": "context_length_exceeded"}}
    assert orjson.loads(xl.response(400, orjson.dumps(err))) == {
        "type": "error", "error": {"type": "invalid_request_error", "message": err["error"]["message"]}}
    assert orjson.loads(xl.response(429, b'{"error":{"message":"slow down"}}'))["error"]["type"] == "rate_limit_error"
    assert orjson.loads(xl.response(503, b"<html>bad gateway</html>"))["error"] == {
        "type": "api_error", "message": "<html>bad gateway</html>"}


USAGE = {"prompt_tokens": 120, "completion_tokens": 33, "total_tokens": 153,
         "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0}}

TEXT_THEN_PARALLEL_TOOLS = [
    chunk({"role": "assistant", "content": "", "refusal": None}),
    chunk({"content": "Let me "}), chunk({"content": "vérifie ✓."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function", "function": {"name": "Read", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"pa'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'th": "a.py"}'}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_B", "type": "function", "function": {"name": "Bash", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"cmd": "ls -la"}'}}]}),
    chunk({}, "tool_calls"),
    chunk(None, usage=USAGE),
]


@pytest.mark.parametrize("step", [1, 7, 64, 1 << 20])  # byte-level splits, including mid-event and mid-UTF-8
def test_stream_text_and_parallel_tool_calls(step: int) -> None:
    xl = bind("anthropic", "openai", params("claude-x", stream=True))
    out, usage = relay(xl, openai_sse(TEXT_THEN_PARALLEL_TOOLS), step)
    names = [n for n, _ in parse(out)]
    assert names == ["message_start",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    final = anthropic_final(out)
    assert final.model == "claude-x" and final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "Let me vérifie ✓."  # type: ignore[union-attr]
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == ("call_A", "Read", {"path": "a.py"})  # type: ignore[union-attr]
    assert (final.content[2].id, final.content[2].input) == ("call_B", {"cmd": "ls -la"})  # type: ignore[union-attr]
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (20, 100, 33)
    # the usage event is read from the provider's own bytes: OpenAI semantics, cached included in input
    assert usage == Usage(input_tokens=120, output_tokens=33, cached_input_tokens=100, reported=True)


def test_stream_servers_reusing_index_0_for_parallel_calls_get_separate_blocks() -> None:
    chunks = [
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "c1", "function": {"name": "A", "arguments": "{}"}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "c2", "function": {"name": "B", "arguments": '{"x":1}'}}]}),
        chunk({}, "tool_calls", usage=USAGE),  # usage on the finish chunk (some compatible servers)
    ]
    out, _ = relay(bind("anthropic", "openai", params(stream=True)), openai_sse(chunks), 1 << 20)
    final = anthropic_final(out)
    assert [(b.id, b.name, b.input) for b in final.content] == [("c1", "A", {}), ("c2", "B", {"x": 1})]  # type: ignore[union-attr]
    assert [n for n, _ in parse(out)][-2:] == ["message_delta", "message_stop"]


def test_stream_without_usage_still_closes_the_message_at_done() -> None:
    chunks = [chunk({"role": "assistant", "content": "hi"}), chunk({}, "length")]
    out, usage = relay(bind("anthropic", "openai", params(stream=True)), openai_sse(chunks), 5)
    final = anthropic_final(out)
    assert final.stop_reason == "max_tokens" and final.content[0].text == "hi"  # type: ignore[union-attr]
    assert not usage.reported  # the proxy estimates and marks it, as for any stream without usage


def test_stream_error_event_becomes_an_anthropic_error_event() -> None:
    upstream = openai_sse([chunk({"role": "assistant", "content": "par"})], done=False)
    upstream += b'data: {"error":{"message":"The server had an error","type":"server_error"}}\n\n'
    out, _ = relay(bind("anthropic", "openai", params(stream=True)), upstream, 3)
    name, data = parse(out)[-1]
    assert name == "error" and data == {"type": "error", "error": {"type": "api_error", "message": "The server had an error"}}


def test_stream_of_the_fake_provider_is_byte_identical_across_splits() -> None:
    whole, _ = relay(bind("anthropic", "openai", params(stream=True)), openai_sse(TEXT_THEN_PARALLEL_TOOLS), 1 << 20)
    pieces, _ = relay(bind("anthropic", "openai", params(stream=True)), openai_sse(TEXT_THEN_PARALLEL_TOOLS), 3)
    assert whole == pieces


def test_servers_that_finish_tool_calls_with_stop_still_give_tool_use() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "Read", "arguments": "{}"}}
    body = {"id": "x", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "tool_calls": [call]}}]}
    msg = orjson.loads(bind("anthropic", "openai", params()).response(200, orjson.dumps(body)))
    assert msg["stop_reason"] == "tool_use"
    chunks = [chunk({"role": "assistant", "tool_calls": [{"index": 0, **call}]}), chunk({}, "stop"), chunk(None, usage=USAGE)]
    out, _ = relay(bind("anthropic", "openai", params(stream=True)), openai_sse(chunks), 1 << 20)
    assert anthropic_final(out).stop_reason == "tool_use"
