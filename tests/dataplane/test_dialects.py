"""Stream usage scanning and dialect errors: pure functions, fed byte chunks split at awkward places."""

from __future__ import annotations

import orjson
import pytest

from dataplane.dialects.anthropic import AnthropicDialect
from dataplane.dialects.base import ErrorKind
from dataplane.dialects.openai import OpenAIDialect


def openai_stream(n: int, usage: bool) -> bytes:
    events = [{"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"w{i} "}}],
               "usage": None} for i in range(n)]
    if usage:
        events.append({"id": "c", "object": "chat.completion.chunk", "choices": [],
                       "usage": {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": 11 + n,
                                 "prompt_tokens_details": {"cached_tokens": 4}}})
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def anthropic_stream(out_tokens: int) -> bytes:
    ev = [
        ("message_start", {"type": "message_start", "message": {"id": "m", "usage": {
            "input_tokens": 7, "output_tokens": 1, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": out_tokens}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(b"event: %s\ndata: %s\n\n" % (n.encode(), orjson.dumps(d)) for n, d in ev)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_openai_usage_found_whatever_the_chunking(size: int) -> None:
    scanner = OpenAIDialect().stream_scanner()
    out = b"".join(scanner.feed(c) for c in chunked(openai_stream(20, usage=True), size))
    assert out == openai_stream(20, usage=True)  # pass-through is byte-exact
    u = scanner.usage
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reported) == (11, 20, 4, True)
    assert scanner.events == 22  # 20 deltas + usage + [DONE]


@pytest.mark.parametrize("size", [1, 13, 100_000])
def test_openai_injected_usage_chunk_is_hidden_from_the_client(size: int) -> None:
    scanner = OpenAIDialect().stream_scanner(strip_usage=True)
    out = b"".join(scanner.feed(c) for c in chunked(openai_stream(5, usage=True), size))
    assert out == openai_stream(5, usage=False)
    assert scanner.usage.output_tokens == 5 and scanner.usage.reported


def test_openai_stream_without_usage_reports_nothing() -> None:
    scanner = OpenAIDialect().stream_scanner()
    scanner.feed(openai_stream(3, usage=False))
    assert not scanner.usage.reported and scanner.events == 4


@pytest.mark.parametrize("size", [1, 9, 100_000])
def test_anthropic_usage_merges_start_and_delta(size: int) -> None:
    scanner = AnthropicDialect().stream_scanner()
    for c in chunked(anthropic_stream(42), size):
        assert scanner.feed(c) == c
    u = scanner.usage
    # total input = uncached + cache reads + cache writes; reads are also counted as cached
    assert (u.input_tokens, u.cached_input_tokens, u.output_tokens) == (14, 5, 42)


def test_anthropic_usage_is_provisional_until_message_delta() -> None:
    scanner = AnthropicDialect().stream_scanner()
    whole = anthropic_stream(42)
    scanner.feed(whole[: whole.index(b"event: message_delta")])
    assert scanner.usage.input_tokens == 14 and not scanner.usage.reported
    scanner.feed(whole[whole.index(b"event: message_delta") :])
    assert scanner.usage.reported and scanner.usage.output_tokens == 42


def test_non_stream_usage() -> None:
    o = OpenAIDialect().usage_from_body({"usage": {"prompt_tokens": 3, "completion_tokens": 4,
                                                   "completion_tokens_details": {"reasoning_tokens": 2}}})
    assert (o.input_tokens, o.output_tokens, o.reasoning_tokens) == (3, 4, 2)
    a = AnthropicDialect().usage_from_body({"usage": {"input_tokens": 3, "output_tokens": 9}})
    assert (a.input_tokens, a.output_tokens, a.reported) == (3, 9, True)
    assert not OpenAIDialect().usage_from_body({}).reported


def test_errors_use_each_dialects_shape() -> None:
    o = orjson.loads(OpenAIDialect().error_body(401, ErrorKind.AUTHENTICATION, "bad key"))
    assert o == {"error": {"message": "bad key", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    a = orjson.loads(AnthropicDialect().error_body(529, ErrorKind.OVERLOADED, "busy"))
    assert a == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    ev = AnthropicDialect().stream_error_event(ErrorKind.UPSTREAM, "cut")
    assert ev.startswith(b"event: error\ndata: ") and ev.endswith(b"\n\n")

