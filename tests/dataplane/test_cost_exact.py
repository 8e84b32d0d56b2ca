"""Cost exactness per provider: real usage payload shapes (non-stream and stream) for every token class,
priced from the snapshot's Price; each expected figure is the provider's published formula written out
by hand in pico-USD (1 USD per 1M tokens = 1,000,000 pico-USD per token).

Prices used (USD per 1M tokens, from the providers' price pages, see dataplane/price_catalog):
- Anthropic Claude Sonnet 4.5: input 3, 5-minute cache write 3.75 (1.25x), 1-hour write 6 (2x), cache read 0.30
  (0.1x), output 15; above 200k input tokens the whole request: input 6, writes 7.50 / 12, read 0.60, output 22.50.
- OpenAI gpt-4.1: input 2, cached input 0.50, output 8. gpt-4o-audio-preview: text input 2.50, output 10,
  audio input 40, audio output 80.
- Google Gemini 2.5 Pro: input 1.25, cached 0.125, output (thinking included) 10; above 200k input tokens:
  input 2.50, cached 0.25, output 15. Gemini 2.5 Flash: text input 0.30, audio input 1.00, output 2.50.
- AWS Bedrock Claude Sonnet 4.5 (Converse): input 3, cache write 3.75, cache read 0.30, output 15.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.dialects.anthropic import AnthropicDialect
from dataplane.dialects.base import Usage
from dataplane.dialects.gemini import GeminiDialect
from dataplane.dialects.openai import OpenAIDialect
from dataplane.dialects.openai_responses import OpenAIResponsesDialect
from dataplane.dialects.usage_fields import count
from dataplane.pricing import Price, format_usd, price_from_proto
from dataplane.translate.bedrock_converse import ConverseDialect
from interlock_contracts.v1 import policy_pb2

SONNET = policy_pb2.Price(
    input_per_mtok="3", output_per_mtok="15", cached_input_per_mtok="0.30", cache_write_per_mtok="3.75",
    cache_write_1h_per_mtok="6", above_input_tokens=200_000,
    above=policy_pb2.Price(input_per_mtok="6", output_per_mtok="22.50", cached_input_per_mtok="0.60",
                           cache_write_per_mtok="7.50", cache_write_1h_per_mtok="12"))
GPT41 = policy_pb2.Price(input_per_mtok="2", output_per_mtok="8", cached_input_per_mtok="0.50")
GPT4O_AUDIO = policy_pb2.Price(input_per_mtok="2.50", output_per_mtok="10", audio_input_per_mtok="40",
                               audio_output_per_mtok="80")
GEMINI_PRO = policy_pb2.Price(
    input_per_mtok="1.25", output_per_mtok="10", cached_input_per_mtok="0.125", above_input_tokens=200_000,
    above=policy_pb2.Price(input_per_mtok="2.50", output_per_mtok="15", cached_input_per_mtok="0.25"))
GEMINI_FLASH = policy_pb2.Price(input_per_mtok="0.30", output_per_mtok="2.50", cached_input_per_mtok="0.03",
                                audio_input_per_mtok="1")
BEDROCK_SONNET = policy_pb2.Price(input_per_mtok="3", output_per_mtok="15", cached_input_per_mtok="0.30",
                                  cache_write_per_mtok="3.75")


def sse(events: list[tuple[str | None, Any]], crlf: bool = False) -> bytes:
    nl = b"\r\n" if crlf else b"\n"
    out = b""
    for name, data in events:
        if name:
            out += b"event: " + name.encode() + nl
        out += b"data: " + orjson.dumps(data) + nl + nl
    return out


def scan(dialect: Any, stream: bytes) -> Usage:
    """Feed the stream in awkward 7-byte pieces, as the network may split it."""
    scanner = dialect.stream_scanner()
    for i in range(0, len(stream), 7):
        scanner.feed(stream[i:i + 7])
    assert scanner.usage.reported
    return scanner.usage


# --- real payload shapes -------------------------------------------------------------------------------

def anthropic_usage(inp: int, w5: int, w1: int, read: int, out: int) -> dict[str, Any]:
    return {"input_tokens": inp, "cache_creation_input_tokens": w5 + w1, "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
            "output_tokens": out, "service_tier": "standard"}


def anthropic_body(u: dict[str, Any]) -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "usage": u}


def anthropic_stream(u: dict[str, Any]) -> bytes:
    start = {**u, "output_tokens": 1}
    return sse([
        ("message_start", {"type": "message_start", "message": {**anthropic_body(start), "content": [],
                                                                "stop_reason": None}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": u["output_tokens"]}}),
        ("message_stop", {"type": "message_stop"}),
    ])


def chat_usage(prompt: int, cached: int, out: int, reasoning: int = 0, audio_in: int = 0,
               audio_out: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": audio_in},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": audio_out,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def chat_stream(u: dict[str, Any]) -> bytes:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1"}
    return sse([(None, {**base, "choices": [{"index": 0, "delta": {"content": "hi"}}], "usage": None}),
                (None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}),
                (None, {**base, "choices": [], "usage": u})]) + b"data: [DONE]\n\n"


def responses_usage(inp: int, cached: int, out: int, reasoning: int) -> dict[str, Any]:
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": inp + out}


def responses_stream(u: dict[str, Any]) -> bytes:
    resp = {"id": "resp_1", "object": "response", "status": "in_progress", "usage": None}
    return sse([("response.created", {"type": "response.created", "response": resp}),
                ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "hi"}),
                ("response.completed", {"type": "response.completed",
                                        "response": {**resp, "status": "completed", "usage": u}})])


def gemini_meta(prompt: int, cached: int, cands: int, thoughts: int, audio_in: int = 0) -> dict[str, Any]:
    meta: dict[str, Any] = {"promptTokenCount": prompt, "candidatesTokenCount": cands, "thoughtsTokenCount": thoughts,
                            "totalTokenCount": prompt + cands + thoughts,
                            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt - audio_in}]}
    if audio_in:
        meta["promptTokensDetails"].append({"modality": "AUDIO", "tokenCount": audio_in})
    if cached:
        meta["cachedContentTokenCount"] = cached
        meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    return meta


def gemini_stream(meta: dict[str, Any]) -> bytes:
    running = {"promptTokenCount": meta["promptTokenCount"], "candidatesTokenCount": 1,
               "totalTokenCount": meta["promptTokenCount"] + 1}
    return sse([(None, {"candidates": [{"content": {"parts": [{"text": "h"}], "role": "model"}}],
                        "usageMetadata": running}),
                (None, {"candidates": [{"content": {"parts": [{"text": "i"}], "role": "model"}, "finishReason": "STOP"}],
                        "usageMetadata": meta, "modelVersion": "gemini-2.5-pro"})], crlf=True)


def converse_usage(inp: int, read: int, write: int, out: int) -> dict[str, Any]:
    return {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + read + write + out,
            "cacheReadInputTokens": read, "cacheWriteInputTokens": write}


def converse_stream(u: dict[str, Any]) -> bytes:  # as decoded from AWS event-stream by the provider adapter
    return sse([("messageStart", {"role": "assistant"}),
                ("contentBlockDelta", {"delta": {"text": "hi"}, "contentBlockIndex": 0}),
                ("messageStop", {"stopReason": "end_turn"}),
                ("metadata", {"usage": u, "metrics": {"latencyMs": 10}})])


# --- the table: (case, dialect, usage object, where it goes, price, hand-computed pico-USD) ----------------

CASES: list[tuple[str, Any, str, dict[str, Any], policy_pb2.Price, int]] = [
    # Anthropic: 2,000 uncached x 3 + 10,000 5m-writes x 3.75 + 4,000 1h-writes x 6 + 50,000 reads x 0.30
    # + 800 output x 15  (USD/MTok = 1e6 pico/token)
    ("anthropic 5m+1h writes, reads", AnthropicDialect(), "anthropic", anthropic_usage(2_000, 10_000, 4_000, 50_000, 800),
     SONNET, 2_000 * 3_000_000 + 10_000 * 3_750_000 + 4_000 * 6_000_000 + 50_000 * 300_000 + 800 * 15_000_000),
    # above 200k input (150,000 + 60,000 + 0 + 10,000 = 220,000 > 200,000): the whole request at the long-context rates
    ("anthropic long context tier", AnthropicDialect(), "anthropic", anthropic_usage(150_000, 60_000, 0, 10_000, 1_000),
     SONNET, 150_000 * 6_000_000 + 60_000 * 7_500_000 + 10_000 * 600_000 + 1_000 * 22_500_000),
    # exactly 200,000 input is not above the threshold: base rates
    ("anthropic at the threshold", AnthropicDialect(), "anthropic", anthropic_usage(190_000, 0, 0, 10_000, 10),
     SONNET, 190_000 * 3_000_000 + 10_000 * 300_000 + 10 * 15_000_000),
    # OpenAI chat: prompt 10,000 of which 8,192 cached; 500 completion of which 300 reasoning (billed as output)
    ("openai chat cached + reasoning", OpenAIDialect(), "chat", chat_usage(10_000, 8_192, 500, reasoning=300),
     GPT41, (10_000 - 8_192) * 2_000_000 + 8_192 * 500_000 + 500 * 8_000_000),
    # gpt-4o-audio-preview: 1,000 prompt of which 600 audio; 400 completion of which 250 audio
    ("openai chat audio", OpenAIDialect(), "chat", chat_usage(1_000, 0, 400, audio_in=600, audio_out=250),
     GPT4O_AUDIO, 400 * 2_500_000 + 600 * 40_000_000 + 150 * 10_000_000 + 250 * 80_000_000),
    ("openai responses cached + reasoning", OpenAIResponsesDialect(), "responses", responses_usage(5_000, 4_096, 900, 700),
     GPT41, (5_000 - 4_096) * 2_000_000 + 4_096 * 500_000 + 900 * 8_000_000),
    # Gemini 2.5 Pro: prompt 30,000 of which 20,000 cached; 1,000 candidates + 3,000 thoughts at the output rate
    ("gemini thoughts + cached content", GeminiDialect(), "gemini", gemini_meta(30_000, 20_000, 1_000, 3_000),
     GEMINI_PRO, 10_000 * 1_250_000 + 20_000 * 125_000 + (1_000 + 3_000) * 10_000_000),
    # 250,000 prompt > 200,000: the whole request at the >200k rates
    ("gemini long context tier", GeminiDialect(), "gemini", gemini_meta(250_000, 100_000, 2_000, 1_000),
     GEMINI_PRO, 150_000 * 2_500_000 + 100_000 * 250_000 + 3_000 * 15_000_000),
    # Gemini 2.5 Flash audio input: 1,000 prompt of which 700 audio
    ("gemini audio input", GeminiDialect(), "gemini", gemini_meta(1_000, 0, 100, 0, audio_in=700),
     GEMINI_FLASH, 300 * 300_000 + 700 * 1_000_000 + 100 * 2_500_000),
    # Bedrock Converse: inputTokens excludes cache; 1,500 plain + 12,000 written + 30,000 read, 600 out
    ("bedrock cache read/write", ConverseDialect(), "converse", converse_usage(1_500, 30_000, 12_000, 600),
     BEDROCK_SONNET, 1_500 * 3_000_000 + 12_000 * 3_750_000 + 30_000 * 300_000 + 600 * 15_000_000),
]

_BODY = {"anthropic": anthropic_body, "chat": lambda u: {"id": "c", "object": "chat.completion", "choices": [],
                                                        "usage": u},
         "responses": lambda u: {"id": "r", "object": "response", "status": "completed", "usage": u},
         "gemini": lambda m: {"candidates": [], "usageMetadata": m}, "converse": lambda u: {"usage": u}}
_STREAM = {"anthropic": anthropic_stream, "chat": chat_stream, "responses": responses_stream, "gemini": gemini_stream,
           "converse": converse_stream}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("streamed", [False, True], ids=["body", "stream"])
def test_cost_equals_the_providers_formula(case: tuple[str, Any, str, dict[str, Any], policy_pb2.Price, int],
                                           streamed: bool) -> None:
    _name, dialect, shape, usage_obj, proto_price, expected_pico = case
    usage = scan(dialect, _STREAM[shape](usage_obj)) if streamed else dialect.usage_from_body(_BODY[shape](usage_obj))
    assert price_from_proto(proto_price).cost_pico(usage) == expected_pico


def test_anthropic_split_is_carried_in_the_usage() -> None:
    u = AnthropicDialect().usage_from_body(anthropic_body(anthropic_usage(2_000, 10_000, 4_000, 50_000, 800)))
    assert (u.input_tokens, u.cached_input_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens, u.output_tokens) \
        == (66_000, 50_000, 10_000, 4_000, 800)


def test_anthropic_undetailed_cache_write_is_the_5m_ttl() -> None:
    # older API versions send cache_creation_input_tokens without the cache_creation split
    u = AnthropicDialect().usage_from_body(anthropic_body({"input_tokens": 10, "cache_creation_input_tokens": 1000,
                                                           "cache_read_input_tokens": 0, "output_tokens": 5}))
    assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens, u.input_tokens) == (1000, 0, 1010)
    assert price_from_proto(SONNET).cost_pico(u) == 10 * 3_000_000 + 1000 * 3_750_000 + 5 * 15_000_000


def test_unset_class_prices_fall_back_to_the_base_price() -> None:
    # a policy naming only input/output prices bills cache writes at the input price and audio at text prices
    p = price_from_proto(policy_pb2.Price(input_per_mtok="1", output_per_mtok="2"))
    u = Usage(input_tokens=100, cached_input_tokens=10, cache_write_5m_tokens=20, cache_write_1h_tokens=30,
              audio_input_tokens=5, output_tokens=50, audio_output_tokens=7)
    assert p.cost_pico(u) == 100 * 1_000_000 + 50 * 2_000_000


def test_dearest_class_covers_every_split_and_tier() -> None:
    p = price_from_proto(SONNET)
    assert p.dearest_input_pico == 12_000_000  # the 1-hour write above 200k
    assert p.dearest_output_pico == 22_500_000
    audio = price_from_proto(GPT4O_AUDIO)
    assert (audio.dearest_input_pico, audio.dearest_output_pico) == (40_000_000, 80_000_000)


@pytest.mark.parametrize("bad", ["NaN", "1e400", -5, -1e9, 1e400, float("nan"), float("-inf"), [3], {"n": 1}, True,
                                 None, "12abc", "", 3.9e30])
def test_hostile_counts_never_raise_nor_go_negative(bad: Any) -> None:
    n = count(bad)
    assert 0 <= n <= 10**12
    bodies = [
        (AnthropicDialect(), anthropic_body({"input_tokens": bad, "cache_creation_input_tokens": bad,
                                             "cache_read_input_tokens": bad, "output_tokens": bad,
                                             "cache_creation": {"ephemeral_1h_input_tokens": bad}})),
        (OpenAIDialect(), {"usage": {"prompt_tokens": bad, "completion_tokens": bad,
                                     "prompt_tokens_details": {"cached_tokens": bad, "audio_tokens": bad}}}),
        (GeminiDialect(), {"usageMetadata": {"promptTokenCount": bad, "thoughtsTokenCount": bad,
                                             "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": bad}]}}),
        (ConverseDialect(), {"usage": {"inputTokens": bad, "cacheWriteInputTokens": bad, "outputTokens": bad}}),
    ]
    for dialect, body in bodies:
        u = dialect.usage_from_body(body)
        assert price_from_proto(SONNET).cost_pico(u) >= 0


def test_json_non_numbers_in_a_stream_do_not_stop_the_scan() -> None:
    raw = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":"NaN",'
           b'"cache_read_input_tokens":1e400,"output_tokens":-3}}}\n\n'
           b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":[1]}}\n\n')
    scanner = AnthropicDialect().stream_scanner()
    assert scanner.feed(raw) == raw
    assert scanner.usage.output_tokens == 0 and scanner.usage.input_tokens >= 0


def test_negative_usage_never_gives_negative_cost() -> None:
    p = Price(1, 1, 1, "v")
    assert p.cost_pico(Usage(input_tokens=-10, output_tokens=-10, cached_input_tokens=-5)) == 0
    assert format_usd(-5) == "0.000000000000"


def test_a_stream_the_scanner_cannot_read_becomes_an_upstream_error() -> None:
    from dataplane.dialects.client_errors import GatewayError
    from dataplane.pipeline.attempt import _feed

    class Broken:
        usage = Usage()
        events = 0

        def feed(self, chunk: bytes) -> bytes:
            raise ValueError("bad bytes")

    with pytest.raises(GatewayError) as exc:
        _feed(Broken(), b"data: {}\n\n")  # type: ignore[arg-type]
    assert exc.value.status == 502 and exc.value.kind == "upstream_error" and "incomplete" in exc.value.message
