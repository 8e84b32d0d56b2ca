"""Malformed or unexpected input never crashes a translator: a request either translates or is refused
with Untranslatable (a 400 in the client's dialect); stream and response translators accept any JSON.

Property-based (hypothesis): bodies are built from each API's real field names with arbitrary JSON
values, so wrong types land exactly where the translators look."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.dialects.client_errors import GatewayError
from dataplane.translate.base import Untranslatable
from tests.translate_helpers import bind, params

KEYS = ["model", "messages", "system", "role", "content", "type", "text", "tools", "tool_choice", "name", "input",
        "input_schema", "id", "tool_use_id", "tool_calls", "function", "arguments", "parameters", "source", "data",
        "media_type", "url", "image_url", "max_tokens", "stop", "stop_sequences", "metadata", "user_id", "stream",
        "stream_options", "response_format", "json_schema", "schema", "contents", "parts", "functionCall",
        "functionResponse", "args", "response", "systemInstruction", "generationConfig", "functionDeclarations",
        "toolConfig", "functionCallingConfig", "mode", "allowedFunctionNames", "inlineData", "mimeType", "thought",
        "choices", "delta", "message", "finish_reason", "index", "usage", "content_block", "partial_json",
        "stop_reason", "error", "candidates", "is_error", "n", "temperature", "type"]
VALUES = ["user", "assistant", "system", "tool", "model", "text", "image", "tool_use", "tool_result", "thinking",
          "function", "base64", "url", "message_start", "content_block_start", "content_block_delta", "text_delta",
          "input_json_delta", "message_delta", "message_stop", "tool_calls", "stop", "json_schema", "auto", "any",
          "ANY", "OBJECT", "{", '{"a": 1}', ""]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(VALUES))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=30,
)
bodies = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8)

PAIRS = [("anthropic", "openai"), ("openai", "anthropic"), ("gemini", "openai"), ("gemini", "anthropic"),
         ("openai", "gemini"), ("anthropic", "gemini")]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(body=bodies, stream=st.booleans())
def test_any_request_body_translates_or_is_refused_cleanly(body: dict[str, Any], stream: bool) -> None:
    for client, provider in PAIRS:
        xl = bind(client, provider, params(stream=stream))
        try:
            out = xl.request(body)
        except Untranslatable as exc:
            assert exc.status == 400 and exc.message
            continue
        orjson.dumps(out)  # serialisable for the upstream


@FAST
@given(events=st.lists(st.tuples(st.sampled_from([None, "message_start", "error"]), json_values), max_size=12),
       body=json_values)
def test_any_provider_events_and_body_are_translated_without_crashing(events: list[Any], body: Any) -> None:
    for client, provider in PAIRS:
        xl = bind(client, provider, params(stream=True))
        try:
            xl.request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                        "contents": [{"role": "user", "parts": [{"text": "x"}]}], "max_tokens": 5})
        except Untranslatable:
            pass
        scanner = xl.scanner()
        try:
            for name, data in events:
                frame = (b"event: %s\n" % name.encode() if name else b"") + b"data: " + orjson.dumps(data) + b"\n\n"
                scanner.feed(frame)
            scanner.feed(b"data: [DONE]\n\n")
        except GatewayError as exc:  # reported to the client in-stream by the relay
            assert exc.status == 502 and "cannot translate" in exc.message
        for status in (200, 400, 529):
            orjson.loads(xl.response(status, orjson.dumps(body)))
