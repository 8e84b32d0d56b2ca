"""OpenAI chat client -> Gemini provider, and Anthropic/Responses clients -> Gemini through chat:
request, response and stream translation (pure), validated with the openai SDK's types; thought
signatures survive the round trip inside tool call ids."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from dataplane.dialects.base import Usage
from dataplane.translate.base import Untranslatable
from dataplane.translate.chat_to_gemini_request import pack_id, unpack_id
from tests.translate_helpers import anthropic_final, bind, openai_final, params, relay

SIG = "CiQB0e2Kb+/sig==\n"  # any string, padding and slashes included


def gemini_sse(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)


def test_signature_packing_is_lossless_and_id_safe() -> None:
    packed = pack_id("call_7", SIG)
    assert unpack_id(packed) == ("call_7", SIG)
    assert all(c.isalnum() or c in "_-" for c in packed)
    assert pack_id("call_7", None) == "call_7" and unpack_id("call_7") == ("call_7", None)


def test_chat_request_maps_to_generate_content() -> None:
    body = {
        "model": "m", "max_completion_tokens": 300, "temperature": 0.2, "top_p": 0.9, "stop": ["X"], "seed": 4,
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "read"}},
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVB"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": pack_id("call_1", SIG), "type": "function", "function": {"name": "read", "arguments": '{"p":1}'}},
                {"id": "call_2", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": pack_id("call_1", SIG), "content": '{"ok": true}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "plain text"},
            {"role": "user", "content": "next"},
        ],
    }
    out = request_of(body)
    assert out["systemInstruction"] == {"parts": [{"text": "S"}]}
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "look"}, {"inlineData": {"mimeType": "image/png", "data": "iVB"}}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "read", "args": {"p": 1}, "id": "call_1"}, "thoughtSignature": SIG},
            {"functionCall": {"name": "read", "args": {}, "id": "call_2"}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "read", "response": {"ok": True}, "id": "call_1"}},
            {"functionResponse": {"name": "read", "response": {"output": "plain text"}, "id": "call_2"}},
            {"text": "next"}]},
    ]
    assert out["tools"] == [{"functionDeclarations": [{"name": "read", "parametersJsonSchema": {"type": "object"}}]}]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["read"]}}
    assert out["generationConfig"] == {"maxOutputTokens": 300, "temperature": 0.2, "topP": 0.9, "seed": 4,
                                       "stopSequences": ["X"], "responseMimeType": "application/json",
                                       "responseJsonSchema": {"type": "object"}}
    assert "model" not in out and "messages" not in out


def request_of(body: dict[str, Any]) -> dict[str, Any]:
    return bind("openai", "gemini", params(kind="gemini")).request(body)


@pytest.mark.parametrize(("extra", "needle"), [
    ({"n": 3}, "n > 1"), ({"logprobs": True}, "logprobs"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}, "data: URL"),
    ({"tools": [{"type": "custom", "custom": {"name": "apply_patch"}}]}, "'custom'"),
])
def test_what_gemini_cannot_express_is_refused(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(Untranslatable) as exc:
        request_of({"model": "m", "messages": [{"role": "user", "content": "x"}], **extra})
    assert needle in exc.value.message


def test_gemini_response_becomes_a_chat_completion_with_signed_call_ids() -> None:
    body = {"responseId": "R1", "modelVersion": "gemini-2.5", "candidates": [{"index": 0, "finishReason": "STOP", "content": {
        "role": "model", "parts": [{"text": "pondering", "thought": True}, {"text": "Reading."},
                                   {"functionCall": {"id": "fc1", "name": "read", "args": {"p": "a"}}, "thoughtSignature": SIG},
                                   {"functionCall": {"name": "read", "args": {}}}]}}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
                          "cachedContentTokenCount": 60, "totalTokenCount": 150}}
    xl = bind("openai", "gemini", params("my-gem", kind="gemini"))
    xl.request({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    c = ChatCompletion.model_validate(orjson.loads(xl.response(200, orjson.dumps(body))))
    m = c.choices[0].message
    assert m.content == "Reading." and c.choices[0].finish_reason == "tool_calls" and c.model == "my-gem"
    calls = m.tool_calls or []
    assert [unpack_id(t.id) for t in calls] == [("fc1", SIG), ("call_2", None)]
    assert orjson.loads(calls[0].function.arguments) == {"p": "a"}  # type: ignore[union-attr]
    u = c.usage
    assert u is not None and (u.prompt_tokens, u.completion_tokens, u.total_tokens) == (100, 50, 150)
    assert u.completion_tokens_details.reasoning_tokens == 30 and u.prompt_tokens_details.cached_tokens == 60  # type: ignore[union-attr]


def test_blocked_prompt_and_finish_reasons() -> None:
    xl = bind("openai", "gemini", params(kind="gemini"))
    blocked = orjson.loads(xl.response(200, b'{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":3}}'))
    assert blocked["choices"][0]["finish_reason"] == "content_filter"
    err = orjson.loads(xl.response(429, b'{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}'))
    assert err["error"]["message"] == "quota" and err["error"]["code"] == "rate_limit_exceeded"


CHUNKS = [
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "thinking", "thought": True}]}, "index": 0}],
     "usageMetadata": {"promptTokenCount": 40, "thoughtsTokenCount": 5}, "responseId": "S1"},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi "}]}, "index": 0}], "responseId": "S1"},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "there."}]}, "index": 0}], "responseId": "S1"},
    {"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"id": "fcA", "name": "read", "args": {"p": 1}}, "thoughtSignature": SIG},
        {"functionCall": {"id": "fcB", "name": "read", "args": {"p": 2}}}]}, "finishReason": "STOP", "index": 0}],
     "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12, "thoughtsTokenCount": 5, "totalTokenCount": 57},
     "responseId": "S1"},
]


@pytest.mark.parametrize("step", [3, 1 << 20])
@pytest.mark.parametrize("include_usage", [True, False])
def test_gemini_stream_becomes_chat_chunks(step: int, include_usage: bool) -> None:
    xl = bind("openai", "gemini", params("g", stream=True, kind="gemini"))
    body: dict[str, Any] = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    xl.request(body)
    out, usage = relay(xl, gemini_sse(CHUNKS), step)
    final, chunks = openai_final(out)
    assert final.choices[0].message.content == "Hi there." and final.choices[0].finish_reason == "tool_calls"
    calls = final.choices[0].message.tool_calls or []
    assert [unpack_id(t.id) for t in calls] == [("fcA", SIG), ("fcB", None)]
    assert (chunks[-1].usage is not None) is include_usage
    if include_usage:
        assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (40, 17)  # type: ignore[union-attr]
    assert usage == Usage(input_tokens=40, output_tokens=17, reasoning_tokens=5, reported=True)


def test_anthropic_client_on_gemini_through_the_chat_pivot() -> None:
    xl = bind("anthropic", "gemini", params("claude-on-gem", stream=True, kind="gemini"))
    sent = xl.request({"model": "m", "max_tokens": 64, "stream": True, "system": "S",
                       "messages": [{"role": "user", "content": "x"}],
                       "tools": [{"name": "read", "input_schema": {"type": "object"}}]})
    assert xl.operation == "generate" and sent["generationConfig"] == {"maxOutputTokens": 64}
    assert sent["systemInstruction"] == {"parts": [{"text": "S"}]}
    out, _ = relay(xl, gemini_sse(CHUNKS), 7)
    final = anthropic_final(out)
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert unpack_id(final.content[1].id) == ("fcA", SIG)  # type: ignore[union-attr]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (40, 17)
