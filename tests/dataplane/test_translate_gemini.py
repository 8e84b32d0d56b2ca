"""Gemini client -> OpenAI provider, and -> Anthropic provider (composed through OpenAI chat):
request, response and stream translation (pure, no I/O). Outputs are validated with the official
google-genai SDK's GenerateContentResponse type."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from google.genai import types

from dataplane.dialects.base import Usage
from dataplane.translate.base import Untranslatable
from tests.translate_helpers import anthropic_sse, bind, gemini_chunks, openai_sse, params, relay
from tests.translate_helpers import openai_chunk as chunk

DECLS = [
    {"name": "read_file", "description": "Read a file",
     "parametersJsonSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
    {"name": "grep", "parameters": {"type": "OBJECT", "properties": {
        "pattern": {"type": "STRING", "description": "regex"},
        "paths": {"type": "ARRAY", "items": {"type": "STRING"}, "nullable": True}}, "required": ["pattern"],
        "propertyOrdering": ["pattern", "paths"]}},
]


def request(body: dict[str, Any], provider: str = "openai", **kw: Any) -> dict[str, Any]:
    return bind("gemini", provider, params(**kw)).request(body)


def test_gemini_cli_like_request_maps_to_chat() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "You are Gemini CLI."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "<session_context>cwd=/w</session_context>"}, {"text": "read a.py"}]},
            {"role": "model", "parts": [
                {"text": "thinking about files", "thought": True},
                {"functionCall": {"name": "read_file", "args": {"path": "a.py"}}, "thoughtSignature": "CiQBsig=="},
                {"functionCall": {"id": "fc-2", "name": "grep", "args": {"pattern": "x"}}}]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "fc-2", "name": "grep", "response": {"output": "a.py:1"}}},
                {"functionResponse": {"name": "read_file", "response": {"output": "print(1)"}}}]},
        ],
        "tools": [{"functionDeclarations": DECLS}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["grep"]}},
        "generationConfig": {"temperature": 1, "topP": 0.95, "topK": 64, "maxOutputTokens": 800,
                             "stopSequences": ["STOP"], "thinkingConfig": {"includeThoughts": True}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    out = request(body, "openai", model="gem-via-gpt", kind="openai")
    assert out["messages"] == [
        {"role": "system", "content": "You are Gemini CLI."},
        {"role": "user", "content": "<session_context>cwd=/w</session_context>\nread a.py"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": '{"path":"a.py"}'}},
            {"id": "fc-2", "type": "function", "function": {"name": "grep", "arguments": '{"pattern":"x"}'}}]},
        {"role": "tool", "tool_call_id": "fc-2", "content": '{"output":"a.py:1"}'},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"output":"print(1)"}'},
    ]
    assert out["tools"][0]["function"]["parameters"] == DECLS[0]["parametersJsonSchema"]
    assert out["tools"][1]["function"]["parameters"] == {"type": "object", "required": ["pattern"], "properties": {
        "pattern": {"type": "string", "description": "regex"},
        "paths": {"type": ["array", "null"], "items": {"type": "string"}}}}
    assert out["tool_choice"] == {"type": "function", "function": {"name": "grep"}}
    assert (out["temperature"], out["top_p"], out["max_completion_tokens"], out["stop"]) == (1, 0.95, 800, ["STOP"])
    raw = orjson.dumps(out)
    assert b"CiQBsig" not in raw and b"thinking about files" not in raw and b"topK" not in raw and b"safety" not in raw


def test_the_sdks_snake_case_and_json_mode_are_understood() -> None:
    body = {"system_instruction": {"parts": [{"text": "S"}]}, "contents": [{"parts": [{"text": "hi"}]}],
            "generation_config": {"response_mime_type": "application/json",
                                  "response_schema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}}}}
    out = request(body)
    assert out["messages"][0] == {"role": "system", "content": "S"}
    assert out["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "response", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}
    plain = request({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"responseMimeType": "application/json"}})
    assert plain["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(("body", "needle"), [
    ({"tools": [{"googleSearch": {}}]}, "'googleSearch' is hosted by Google"),
    ({"tools": [{"codeExecution": {}}]}, "codeExecution"),
    ({"cachedContent": "cachedContents/abc"}, "cachedContent"),
    ({"generationConfig": {"candidateCount": 2}}, "candidateCount"),
    ({"generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}}, "responseModalities"),
    ({"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "https://generativelanguage/f/1"}}]}]}, "fileData"),
    ({"contents": [{"role": "model", "parts": [{"executableCode": {"code": "print(1)"}}]}]}, "executableCode"),
])
def test_what_cannot_be_translated_is_refused_with_a_clear_400(body: dict[str, Any], needle: str) -> None:
    full = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], **body}
    for provider in ("openai", "anthropic"):
        with pytest.raises(Untranslatable) as exc:
            request(full, provider)
        assert exc.value.status == 400 and needle in exc.value.message


def test_chat_completion_becomes_a_gemini_response() -> None:
    completion = {"id": "chatcmpl-G", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Reading.", "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "read_file", "arguments": '{"path":"b.py"}'}}]}}],
        "usage": {"prompt_tokens": 300, "completion_tokens": 50, "total_tokens": 350,
                  "prompt_tokens_details": {"cached_tokens": 200}, "completion_tokens_details": {"reasoning_tokens": 20}}}
    xl = bind("gemini", "openai", params("gem"))
    r = types.GenerateContentResponse.model_validate(orjson.loads(xl.response(200, orjson.dumps(completion))))
    cand = r.candidates[0]  # type: ignore[index]
    assert cand.finish_reason == types.FinishReason.STOP and r.model_version == "gem"
    parts = cand.content.parts  # type: ignore[union-attr]
    assert parts[0].text == "Reading."  # type: ignore[index]
    fc = parts[1].function_call  # type: ignore[index]
    assert (fc.id, fc.name, fc.args) == ("call_9", "read_file", {"path": "b.py"})  # type: ignore[union-attr]
    u = r.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count, u.cached_content_token_count,  # type: ignore[union-attr]
            u.total_token_count) == (300, 30, 20, 200, 350)  # type: ignore[union-attr]


def test_provider_errors_become_google_errors() -> None:
    xl = bind("gemini", "anthropic", params())
    err = orjson.loads(xl.response(529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'))
    assert err == {"error": {"code": 529, "message": "Overloaded", "status": "UNAVAILABLE"}}
    err = orjson.loads(bind("gemini", "openai", params()).response(429, b'{"error":{"message":"slow"}}'))
    assert err["error"]["status"] == "RESOURCE_EXHAUSTED"


OPENAI_STREAM = [
    chunk({"role": "assistant", "content": ""}), chunk({"content": "Two "}), chunk({"content": "calls ✓"}),
    chunk({"tool_calls": [{"index": 0, "id": "call_A", "type": "function", "function": {"name": "read_file", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"path"'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "a"}'}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_B", "type": "function", "function": {"name": "grep", "arguments": '{"pattern":"q"}'}}]}),
    chunk({}, "tool_calls"),
    chunk(None, usage={"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}),
]


@pytest.mark.parametrize("step", [1, 9, 1 << 20])
def test_openai_stream_becomes_gemini_chunks_with_whole_function_calls(step: int) -> None:
    out, usage = relay(bind("gemini", "openai", params("gem", stream=True)), openai_sse(OPENAI_STREAM), step)
    chunks = gemini_chunks(out)
    texts = [p.text for c in chunks for p in c.candidates[0].content.parts if p.text]  # type: ignore[index, union-attr]
    calls = [p.function_call for c in chunks for p in c.candidates[0].content.parts if p.function_call]  # type: ignore[index, union-attr]
    assert "".join(texts) == "Two calls ✓"
    assert [(c.id, c.name, c.args) for c in calls] == [("call_A", "read_file", {"path": "a"}), ("call_B", "grep", {"pattern": "q"})]  # type: ignore[union-attr]
    last = chunks[-1]
    assert last.candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    assert all(c.candidates[0].finish_reason is None and c.usage_metadata is None for c in chunks[:-1])  # type: ignore[index]
    assert (last.usage_metadata.prompt_token_count, last.usage_metadata.candidates_token_count) == (40, 12)  # type: ignore[union-attr]
    assert usage == Usage(input_tokens=40, output_tokens=12, reported=True)


ANTHROPIC_STREAM = [
    {"type": "message_start", "message": {"id": "msg_G", "type": "message", "role": "assistant", "model": "c", "content": [],
                                          "stop_reason": None, "usage": {"input_tokens": 30, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Looking"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_X", "name": "read_file", "input": {}}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"path": "z"}'}},
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
]


@pytest.mark.parametrize("step", [2, 1 << 20])
def test_anthropic_stream_reaches_the_gemini_client_through_the_chat_pivot(step: int) -> None:
    xl = bind("gemini", "anthropic", params("gem", stream=True))
    sent = xl.request({"contents": [{"role": "user", "parts": [{"text": "x"}]}],
                       "tools": [{"functionDeclarations": DECLS}], "generationConfig": {"maxOutputTokens": 64}})
    assert xl.operation == "messages" and sent["stream"] is True and sent["max_tokens"] == 64
    assert sent["tools"][0] == {"name": "read_file", "description": "Read a file", "input_schema": DECLS[0]["parametersJsonSchema"]}
    assert "stream_options" not in sent
    out, usage = relay(xl, anthropic_sse(ANTHROPIC_STREAM), step)
    chunks = gemini_chunks(out)
    parts = [p for c in chunks for p in c.candidates[0].content.parts]  # type: ignore[index, union-attr]
    assert "".join(p.text or "" for p in parts) == "Looking"
    (fc,) = [p.function_call for p in parts if p.function_call]
    assert (fc.id, fc.name, fc.args) == ("toolu_X", "read_file", {"path": "z"})
    meta = chunks[-1].usage_metadata
    assert (meta.prompt_token_count, meta.candidates_token_count) == (30, 9)  # type: ignore[union-attr]
    assert usage == Usage(input_tokens=30, output_tokens=9, reported=True)


def test_anthropic_message_reaches_the_gemini_client_through_the_chat_pivot() -> None:
    xl = bind("gemini", "anthropic", params("gem"))
    sent = xl.request({"contents": [{"role": "user", "parts": [{"text": "x"}]}]})
    assert sent["max_tokens"] == 4096 and sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    msg = {"id": "msg_1", "content": [{"type": "text", "text": "hello"}], "stop_reason": "max_tokens",
           "usage": {"input_tokens": 3, "cache_read_input_tokens": 5, "output_tokens": 7}}
    r = types.GenerateContentResponse.model_validate(orjson.loads(xl.response(200, orjson.dumps(msg))))
    assert r.candidates[0].content.parts[0].text == "hello"  # type: ignore[index, union-attr]
    assert r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS  # type: ignore[index]
    u = r.usage_metadata
    assert (u.prompt_token_count, u.cached_content_token_count, u.candidates_token_count) == (8, 5, 7)  # type: ignore[union-attr]
