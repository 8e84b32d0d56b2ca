"""The official `anthropic` SDK through the gateway against the fake provider: tools, extended thinking
(signatures returned intact on the next turn), cache_control untouched, count_tokens, the beta client
(`?beta=true` + anthropic-beta header), errors — and the usage event each request leaves behind."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.fixtures.gateway import Gateway, wait_events
from tests.fixtures.sdks import anthropic_client as client

pytestmark = pytest.mark.e2e

TOOL: Any = {"name": "read_file", "description": "Read a file", "input_schema": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


async def test_messages_with_tools_round_trip(gateway: Gateway) -> None:
    c = client(gateway)
    first = await c.messages.create(model="claude-t", max_tokens=200, tools=[TOOL],
                                    messages=[{"role": "user", "content": "please use tool read_file"}])
    (use,) = first.content
    assert first.stop_reason == "tool_use" and use.type == "tool_use" and use.name == "read_file"
    done = await c.messages.create(model="claude-t", max_tokens=200, tools=[TOOL], messages=[
        {"role": "user", "content": "please use tool read_file"},
        {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "file body"}]}])
    assert done.stop_reason == "end_turn" and done.content[0].type == "text"
    ev1, ev2 = await wait_events(gateway, 2)
    assert (ev1.input_tokens, ev1.output_tokens) == (first.usage.input_tokens, first.usage.output_tokens)
    assert ev2.input_tokens == done.usage.input_tokens > ev1.input_tokens  # the tool round trip is input


async def test_thinking_stream_signature_comes_back_intact_and_is_billed(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    question: Any = {"role": "user", "content": [
        {"type": "text", "text": "think about this", "cache_control": {"type": "ephemeral"}}]}
    async with c.messages.stream(model="claude-t", max_tokens=2048, thinking=THINKING, messages=[question]) as stream:
        kinds = {event.type async for event in stream}
        first = await stream.get_final_message()
    assert "thinking" in kinds and "signature" in kinds
    thinking, text = first.content
    assert thinking.type == "thinking" and thinking.signature and text.type == "text"
    sent = fake_provider.last_request["body"]
    assert sent["thinking"] == THINKING and sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    (ev,) = await wait_events(gateway, 1)
    assert ev.stream and not ev.usage_estimated and ev.output_tokens == first.usage.output_tokens
    assert ev.output_tokens == len(text.text.split()) + len(thinking.thinking.split())  # thinking is billed output
    # Next turn: the signed thinking block goes back verbatim (the provider verifies it).
    follow = await c.messages.create(model="claude-t", max_tokens=2048, thinking=THINKING, messages=[
        question, {"role": "assistant", "content": first.content}, {"role": "user", "content": "and then?"}])  # type: ignore[list-item]
    assert follow.content[0].type == "thinking"
    assert fake_provider.last_request["body"]["messages"][1]["content"][0]["signature"] == thinking.signature


async def test_altered_thinking_signature_is_refused_in_anthropic_dialect(gateway: Gateway) -> None:
    forged: Any = [{"type": "thinking", "thinking": "hm", "signature": "Zm9yZ2Vk"}, {"type": "text", "text": "x"}]
    with pytest.raises(anthropic.BadRequestError) as err:
        await client(gateway).messages.create(model="claude-t", max_tokens=2048, thinking=THINKING, messages=[
            {"role": "user", "content": "a"}, {"role": "assistant", "content": forged}, {"role": "user", "content": "b"}])
    assert "signature" in err.value.message and err.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


async def test_count_tokens_matches_the_messages_input_count(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    msgs: Any = [{"role": "user", "content": "how many tokens is this sentence?"}]
    counted = await c.messages.count_tokens(model="claude-t", messages=msgs, system="be brief")
    assert fake_provider.last_request["path"] == "/v1/messages/count_tokens"
    created = await c.messages.create(model="claude-t", max_tokens=20, messages=msgs, system="be brief")
    assert counted.input_tokens == created.usage.input_tokens > 0
    ev1, _ = await wait_events(gateway, 2)
    assert ev1.endpoint == "/v1/messages/count_tokens" and ev1.status == 200 and ev1.cost_usd == "0.000000000000"


async def test_beta_client_passes_betas_and_query_through(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    c = client(gateway)
    msg = await c.beta.messages.create(model="claude-t", max_tokens=50, betas=["interleaved-thinking-2025-05-14"],
                                       messages=[{"role": "user", "content": "hello beta"}])
    sent = fake_provider.last_request
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14" and headers["anthropic-version"]
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("Echo: hello beta")
    counted = await c.beta.messages.count_tokens(model="claude-t", betas=["token-counting-2024-11-01"],
                                                 messages=[{"role": "user", "content": "hello beta"}])
    assert counted.input_tokens == msg.usage.input_tokens
    sent = fake_provider.last_request
    assert sent["path"] == "/v1/messages/count_tokens"
    assert "token-counting-2024-11-01" in {k.lower(): v for k, v in sent["headers"].items()}["anthropic-beta"]


async def test_provider_overload_is_an_anthropic_error(gateway: Gateway, fake_provider) -> None:  # type: ignore[no-untyped-def]
    fake_provider.add_fault(status=529, path="/v1/messages")
    with pytest.raises(anthropic.APIStatusError) as err:
        await client(gateway).messages.create(model="claude-t", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 529 and err.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    (ev,) = await wait_events(gateway, 1)
    assert ev.status == 529 and ev.error_class == "overloaded"
