"""Gemini dialect: model and stream from the URL, Google error JSON, usageMetadata from bodies and
CRLF-framed streams cut anywhere, and keys presented in the query string."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.gemini import GeminiDialect, split_target
from dataplane.pipeline.admission import presented_key
from interlock.fakeprovider import build_reply
from interlock.fakeprovider.gemini_api import parse_generate, response, stream

G = GeminiDialect()
BODY = {"contents": [{"role": "user", "parts": [{"text": "think about it"}]}],
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 256, "includeThoughts": True}}}


def rendered() -> tuple[bytes, dict]:
    turn = parse_generate(BODY, model="m", stream=True)
    reply = build_reply(turn, output_tokens=10, cached_tokens=2)
    return b"".join(stream(turn, reply, "r1", 0)), response(turn, reply, "r1", 0)["usageMetadata"]


@pytest.mark.parametrize("path, model, streams", [
    ("/v1beta/models/gemini-2.5-pro:generateContent", "gemini-2.5-pro", False),
    ("/v1/models/gemini-2.5-flash:streamGenerateContent", "gemini-2.5-flash", True),
    ("/v1beta/models/team:alias:countTokens", "team:alias", False),
    ("/v1beta/models/:generateContent", None, False),
    ("/v1/chat/completions", None, False),
])
def test_model_and_stream_come_from_the_path(path: str, model: str | None, streams: bool) -> None:
    body = {"model": "ignored", "stream": True}  # Gemini bodies never name these; a stray field changes nothing
    assert G.requested_model(path, body) == model and G.wants_stream(path, body) is streams
    assert split_target(path)[1] in ("generateContent", "streamGenerateContent", "countTokens", "")


def test_errors_are_google_rpc_errors() -> None:
    err = orjson.loads(G.error_body(429, ErrorKind.RATE_LIMIT, "slow down"))
    assert err == {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}
    event = G.stream_error_event(ErrorKind.UPSTREAM, "cut")
    assert orjson.loads(event.removeprefix(b"data: "))["error"] == {"code": 500, "message": "cut", "status": "INTERNAL"}


def test_every_error_kind_has_its_own_google_status() -> None:
    # A budget refusal (HTTP 402) is an exhausted quota to Google clients, not an INTERNAL error.
    err = orjson.loads(G.error_body(402, ErrorKind.BUDGET, "team budget exhausted"))["error"]
    assert err == {"code": 402, "message": "team budget exhausted", "status": "RESOURCE_EXHAUSTED"}
    kinds = [v for k, v in vars(ErrorKind).items() if k.isupper()]
    internal = [k for k in kinds if orjson.loads(G.error_body(0, k, "x"))["error"]["status"] == "INTERNAL"]
    assert sorted(internal) == [ErrorKind.INTERNAL, ErrorKind.UPSTREAM]


def test_usage_metadata_thoughts_are_output_and_reasoning() -> None:
    u = G.usage_from_body({"usageMetadata": {"promptTokenCount": 100, "cachedContentTokenCount": 40,
                                             "candidatesTokenCount": 7, "thoughtsTokenCount": 30,
                                             "toolUsePromptTokenCount": 5, "totalTokenCount": 142}})
    assert (u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens) == (105, 40, 37, 30)
    assert u.reported and not G.usage_from_body({"totalTokens": 9}).reported  # countTokens: nothing billed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=120), max_size=40))
def test_stream_usage_survives_any_chunking_including_split_crlf(cuts: list[int]) -> None:
    data, meta = rendered()
    assert b"\r\n\r\n" in data
    scanner = G.stream_scanner()
    out, pos = [], 0
    for n in cuts:
        out.append(scanner.feed(data[pos:pos + n]))
        pos += n
    out.append(scanner.feed(data[pos:]))
    assert b"".join(out) == data
    u = scanner.usage
    assert u.reported and (u.input_tokens, u.cached_input_tokens) == (meta["promptTokenCount"], 2)
    assert (u.output_tokens, u.reasoning_tokens) == (meta["candidatesTokenCount"] + meta["thoughtsTokenCount"],
                                                     meta["thoughtsTokenCount"])


def test_stream_without_a_finish_reason_is_a_running_total() -> None:
    data, meta = rendered()
    events = data.split(b"\r\n\r\n")
    scanner = G.stream_scanner()
    scanner.feed(b"\r\n\r\n".join(events[:3]) + b"\r\n\r\n")
    third = orjson.loads(events[2].removeprefix(b"data: "))["usageMetadata"]
    assert third["candidatesTokenCount"] < meta["candidatesTokenCount"]
    assert not scanner.usage.reported
    assert scanner.usage.output_tokens == third["candidatesTokenCount"] + third["thoughtsTokenCount"]
    assert scanner.usage.input_tokens == meta["promptTokenCount"]  # the proxy keeps this when estimating


@pytest.mark.parametrize("headers, query, expected", [
    ({}, "alt=sse&key=vk_abc", "vk_abc"),
    ({}, "key=a%2Bb%3D", "a+b="),
    ({}, "monkey=1&alt=sse", None),
    ({"x-goog-api-key": "hdr"}, "key=q", "hdr"),
    ({"authorization": "Bearer tok"}, "key=q", "tok"),
    ({}, "", None),
])
def test_presented_key_from_query(headers: dict[str, str], query: str, expected: str | None) -> None:
    assert presented_key(headers, query) == expected
