"""OpenAI Responses dialect: usage from bodies and typed-SSE streams cut anywhere, error events, and a
provider cut mid-stream seen through the gateway."""

from __future__ import annotations

import aiohttp
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.dialects.base import ErrorKind
from dataplane.dialects.openai_responses import OpenAIResponsesDialect
from interlock.fakeprovider import build_reply
from interlock.fakeprovider.responses_api import parse_responses, response, stream
from tests.fixtures.gateway import Gateway, wait_events

BODY = {"model": "m", "input": [{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi there"}],
        "reasoning": {"effort": "high"}, "include": ["reasoning.encrypted_content"], "stream": True}


def rendered(**extra: object) -> tuple[bytes, dict]:
    turn = parse_responses({**BODY, **extra})
    reply = build_reply(turn, output_tokens=12, cached_tokens=3)
    return b"".join(stream(turn, reply, "r1", 0)), response(turn, reply, "r1", 0)["usage"]


def test_usage_from_a_complete_body() -> None:
    _, usage = rendered()
    u = OpenAIResponsesDialect().usage_from_body({"usage": usage})
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens, u.reasoning_tokens) == (
        usage["input_tokens"], usage["output_tokens"], 3, usage["output_tokens_details"]["reasoning_tokens"])
    assert u.reported and u.reasoning_tokens > 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), max_size=30))
def test_stream_usage_survives_any_chunking(cuts: list[int]) -> None:
    data, usage = rendered()
    scanner = OpenAIResponsesDialect().stream_scanner()
    out, pos = [], 0
    for n in cuts:
        out.append(scanner.feed(data[pos:pos + n]))
        pos += n
    out.append(scanner.feed(data[pos:]))
    assert b"".join(out) == data  # forwarded byte for byte
    assert scanner.usage.reported and scanner.usage.output_tokens == usage["output_tokens"]
    assert scanner.usage.input_tokens == usage["input_tokens"] and scanner.usage.reasoning_tokens > 0


def test_stream_cut_before_the_terminal_event_is_not_reported() -> None:
    data, _ = rendered()
    scanner = OpenAIResponsesDialect().stream_scanner()
    scanner.feed(data[: data.index(b"event: response.completed")])
    assert not scanner.usage.reported and scanner.events > 5  # the proxy estimates from the events relayed


def test_error_event_is_typed_and_raises_in_sdks() -> None:
    event = OpenAIResponsesDialect().stream_error_event(ErrorKind.UPSTREAM, "upstream cut")
    name, data = event.split(b"\n", 1)
    payload = orjson.loads(data.removeprefix(b"data: "))
    assert name == b"event: error" and event.endswith(b"\n\n")
    assert payload["type"] == "error" and payload["message"] == "upstream cut" and payload["error"]["type"] == "api_error"


async def test_provider_cut_mid_stream_ends_with_a_responses_error_event(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    fake_provider.add_fault(fail_after_chunks=5, path="/v1/responses")
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gateway.url}/v1/responses", data=orjson.dumps({**BODY, "model": "gpt-t"}),
                         headers={"authorization": f"Bearer {gateway.key}"})
        text = await r.read()
    assert r.status == 200 and text.count(b"event: response.") == 5
    assert text.rstrip().split(b"\n\n")[-1].startswith(b"event: error\ndata: {\"type\":\"error\"")
    (ev,) = await wait_events(gateway, 1)
    assert ev.status == 502 and ev.usage_estimated and ev.output_tokens >= 5
