"""Bedrock Converse translation, pure: Anthropic requests -> Converse, Converse responses and stream
events -> Anthropic (OpenAI clients reuse the Anthropic<->OpenAI modules on top)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.providers.eventstream import EventStreamToSSE
from dataplane.translate.anthropic_to_converse_request import translate_request
from dataplane.translate.base import DONE, Params, Untranslatable
from dataplane.translate.bedrock_converse import ConverseDialect, OpenAIToConverse
from dataplane.translate.converse_to_anthropic_response import ConverseToAnthropicStream, translate_response
from dataplane.translate.sse import EventParser
from interlock.fakeprovider.eventstream import encode_message

P = Params(client_model="claude-on-bedrock", stream=False, created=1_700_000_000, provider_kind="bedrock",
           max_output_tokens=4096)


def test_claude_code_shaped_request_maps_block_by_block() -> None:
    body = {
        "model": "x", "max_tokens": 1000, "temperature": 0.2, "top_k": 5, "stop_sequences": ["END"], "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 512},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"},
                                         {"type": "text", "text": "fix the bug"}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "look at a.py", "signature": "sig=="},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.py"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "print(1)"}],
                 "is_error": True},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}]},
            {"role": "user", "content": "and then?"},
        ],
        "tools": [{"name": "Read", "description": "read a file", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
    }
    out = translate_request(body, P)
    assert out["system"] == [{"text": "You are Claude Code."}, {"cachePoint": {"type": "default"}}, {"text": "# Environment"}]
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]  # consecutive users merged
    assert out["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "look at a.py", "signature": "sig=="}}},
        {"toolUse": {"toolUseId": "toolu_1", "name": "Read", "input": {"path": "a.py"}}}]
    assert out["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "toolu_1", "content": [{"text": "print(1)"}], "status": "error"}},
        {"image": {"format": "png", "source": {"bytes": "iVBOR"}}}, {"text": "and then?"}]
    assert out["inferenceConfig"] == {"maxTokens": 1000, "temperature": 0.2, "stopSequences": ["END"]}
    assert out["additionalModelRequestFields"] == {"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 512}}
    assert out["toolConfig"] == {"tools": [{"toolSpec": {"name": "Read", "description": "read a file",
                                                         "inputSchema": {"json": {"type": "object"}}}}],
                                 "toolChoice": {"any": {}}}
    assert "model" not in out and "stream" not in out


@pytest.mark.parametrize("body, problem", [
    ({"messages": [], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "hosted by Anthropic"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]}]},
     "not URLs"),
    ({"messages": [], "mcp_servers": [{"url": "https://mcp"}]}, "mcp_servers"),
])
def test_what_converse_cannot_express_is_a_clear_400(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(Untranslatable, match=problem) as exc:
        translate_request(body, P)
    assert exc.value.status == 400


def test_response_maps_content_stop_reason_and_usage_with_cache() -> None:
    body = {"output": {"message": {"role": "assistant", "content": [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s1"}}},
        {"text": "Hello"}, {"toolUse": {"toolUseId": "t1", "name": "Read", "input": {"p": 1}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 7, "totalTokens": 117, "cacheReadInputTokens": 100}}
    out = translate_response(body, P)
    assert out["content"] == [{"type": "thinking", "thinking": "hmm", "signature": "s1"}, {"type": "text", "text": "Hello"},
                              {"type": "tool_use", "id": "t1", "name": "Read", "input": {"p": 1}}]
    assert out["stop_reason"] == "tool_use" and out["model"] == "claude-on-bedrock" and out["id"].startswith("msg_")
    assert out["usage"] == {"input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100,
                            "output_tokens": 7}
    usage = ConverseDialect().usage_from_body(body)
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reported) == (110, 100, 7, True)


def _sse(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    wire = b"".join(encode_message({":message-type": "event", ":event-type": n}, orjson.dumps(d))
                    for n, d in events)
    return EventStreamToSSE(unwrap_chunks=False).feed(wire)


def test_stream_events_become_an_anthropic_stream_with_usage_at_the_end() -> None:
    sse = _sse([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Hi"}}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t9", "name": "Bash"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"cmd\":"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "\"ls\"}"}}}),
        ("contentBlockStop", {"contentBlockIndex": 2}),
        ("messageStop", {"stopReason": "tool_use"}),
        ("metadata", {"usage": {"inputTokens": 3, "outputTokens": 9, "cacheReadInputTokens": 4}, "metrics": {}}),
    ])
    scanner = ConverseDialect().stream_scanner()
    scanner.feed(sse)
    assert (scanner.usage.input_tokens, scanner.usage.output_tokens, scanner.usage.reported) == (7, 9, True)
    tr = ConverseToAnthropicStream(P)
    out = [e for name, data in EventParser().feed(sse) for e in tr.feed(name, data)]
    types = [d["type"] for _, d in out]
    assert types == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"]
    assert out[1][1]["content_block"]["type"] == "thinking" and out[3][1]["delta"] == {"type": "signature_delta",
                                                                                       "signature": "sig"}
    assert out[8][1]["content_block"] == {"type": "tool_use", "id": "t9", "name": "Bash", "input": {}}
    assert "".join(d["delta"]["partial_json"] for _, d in out[9:11]) == '{"cmd":"ls"}'
    assert out[12][1]["delta"]["stop_reason"] == "tool_use"
    assert out[12][1]["usage"] == {"input_tokens": 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4,
                                   "output_tokens": 9}


def test_openai_clients_get_chunks_usage_and_done_through_the_anthropic_stage() -> None:
    session = OpenAIToConverse().open(P)
    req = session.request({"model": "m", "messages": [{"role": "system", "content": "sys"},
                                                      {"role": "user", "content": "hi"}],
                           "stream": True, "stream_options": {"include_usage": True}})
    assert req["system"] == [{"text": "sys"}] and req["messages"] == [{"role": "user", "content": [{"text": "hi"}]}]
    sse = _sse([("messageStart", {"role": "assistant"}),
                ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
                ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
                ("contentBlockStop", {"contentBlockIndex": 0}), ("messageStop", {"stopReason": "max_tokens"}),
                ("metadata", {"usage": {"inputTokens": 5, "outputTokens": 2}})])
    stream = session.stream()
    out = [d for name, data in EventParser().feed(sse) for _, d in stream.feed(name, data)]
    assert out[-1] is DONE
    chunks = [d for d in out if d is not DONE]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hello"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["usage"]["prompt_tokens"] == 5 and chunks[-1]["usage"]["completion_tokens"] == 2


def test_an_aws_exception_mid_stream_ends_the_anthropic_stream_with_an_error_event() -> None:
    wire = encode_message({":message-type": "exception", ":exception-type": "modelStreamErrorException"},
                          b'{"message":"boom"}')
    sse = EventStreamToSSE(unwrap_chunks=False).feed(wire)
    tr = ConverseToAnthropicStream(P)
    out = [e for name, data in EventParser().feed(sse) for e in tr.feed(name, data)]
    assert out == [("error", {"type": "error", "error": {"type": "api_error", "message": "modelStreamErrorException: boom"}})]
