"""A provider that ignores the output limit: the stream is cut at the reserved output (dataplane/pipeline/output_cap.py).

The fake provider is set to ignore max_tokens and answer 40 tokens; the client asks for 5, so the budget
reserves 5. Per client dialect, independently: what the client received (a terminal error event in its
dialect, at most 5 text events), what the fake says it produced (40), and what the usage event bills (<= 5).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from controlplane.policy.model import Budget, Model, Price
from interlock.fakeprovider import FakeProviderConfig
from tests.fixtures.fakeprovider import FakeProvider, StartFake
from tests.fixtures.gateway import Gateway, gateway_policy, native_gemini, running_gateway, wait_events

PRODUCED, ASKED = 40, 5
MSGS = [{"role": "user", "content": "write a long story"}]
# client dialect -> (path, body, how the terminal error event looks)
CASES: dict[str, tuple[str, dict[str, Any], bytes]] = {
    "openai-chat": ("/v1/chat/completions",
                    {"model": "gpt-t", "messages": MSGS, "max_tokens": ASKED, "stream": True}, b'data: {"error"'),
    "anthropic": ("/v1/messages",
                  {"model": "claude-t", "messages": MSGS, "max_tokens": ASKED, "stream": True}, b"event: error\n"),
    "responses": ("/v1/responses",
                  {"model": "gpt-t", "input": "write a long story", "max_output_tokens": ASKED, "stream": True},
                  b"event: error\n"),
    "gemini": ("/v1beta/models/gem-t:streamGenerateContent?alt=sse",
               {"contents": [{"parts": [{"text": "write a long story"}]}],
                "generationConfig": {"maxOutputTokens": ASKED}}, b'data: {"error"'),
}
TEXT_KEYS = (b'"content":"', b'"text":"', b'"delta":"', b'"partial_json":"')


@pytest.fixture
async def overrun(fake_provider_factory: StartFake, tmp_path: Path) -> AsyncIterator[tuple[Gateway, FakeProvider]]:
    fake = await fake_provider_factory(FakeProviderConfig(output_tokens=PRODUCED, ignore_max_tokens=True))
    doc = gateway_policy(fake.base_url, providers=[native_gemini(fake.base_url)],
                         models=[Model(name="gem-t", provider="fg", upstream="gemini-2.0-flash",
                                       price=Price(input="1", output="2"))])  # fmt: skip
    # optimistic with an allowance: this node has no control plane, and must still admit
    doc = doc.model_copy(update={"budgets": [Budget(id="b", scope="team", scope_id="eng", window="month",
                                                    limit_usd="10", offline_mode="optimistic",
                                                    optimistic_overshoot_usd="5")]})  # fmt: skip
    async with running_gateway(fake.base_url, tmp_path, policy=doc) as gw:
        yield gw, fake


def _text_events(body: bytes) -> int:
    events = [e for e in body.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
    return sum(1 for e in events if any(k in e and k + b'"' not in e for k in TEXT_KEYS)
               and b"error" not in e and b".done" not in e and b"completed" not in e)


@pytest.mark.parametrize("dialect", list(CASES))
async def test_stream_past_its_reservation_is_cut_and_billed_as_delivered(
    overrun: tuple[Gateway, FakeProvider], dialect: str
) -> None:
    gw, fake = overrun
    path, body, terminal = CASES[dialect]
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(gw.url + path, json=body, headers={"authorization": f"Bearer {gw.key}",
                                                               "x-api-key": gw.key})  # fmt: skip
    assert r.status_code == 200, r.text
    raw = r.content
    last = [e for e in raw.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()][-1]
    assert last.startswith(terminal) and b"budget reservation" in last, last  # the dialect's terminal error event
    assert b"[DONE]" not in raw
    delivered = _text_events(raw)
    assert 1 <= delivered <= ASKED
    produced = fake.stats()["last"]["usage"]["output_tokens"]
    assert produced == PRODUCED  # the fake really ran past the limit it was sent
    (ev,) = await wait_events(gw, 1)
    assert ev.output_tokens <= ASKED and ev.output_tokens == delivered
    assert ev.error_class == "budget_exceeded"


async def test_a_stream_within_its_reservation_is_not_cut(overrun: tuple[Gateway, FakeProvider]) -> None:
    gw, _ = overrun
    body = {"model": "gpt-t", "messages": MSGS, "max_tokens": PRODUCED, "stream": True,
            "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {gw.key}"})
    assert r.status_code == 200 and r.content.rstrip().endswith(b"data: [DONE]")
    chunks = [orjson.loads(e[6:]) for e in r.content.split(b"\n\n") if e.startswith(b"data: {")]
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == PRODUCED
    (ev,) = await wait_events(gw, 1)
    assert (ev.output_tokens, ev.status, ev.error_class) == (PRODUCED, 200, "")


async def test_a_tool_call_running_past_its_reservation_is_cut(overrun: tuple[Gateway, FakeProvider]) -> None:
    """The issue's case: tool-call arguments ignore max_tokens (the fake never truncates them)."""
    gw, fake = overrun
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}, "notes": {"type": "string"}},
        "required": ["query", "notes"]}}}
    body = {"model": "gpt-t", "messages": [{"role": "user", "content": "please use tool: " + "x " * 60}],
            "tools": [tool], "max_tokens": 2, "stream": True}
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {gw.key}"})
    events = [e for e in r.content.split(b"\n\n") if e.strip()]
    assert events[-1].startswith(b'data: {"error"') and b"budget reservation" in events[-1]
    args = [e for e in events if b'"arguments":"' in e and b'"arguments":""' not in e]
    assert 1 <= len(args) <= 2
    assert fake.stats()["last"]["usage"]["output_tokens"] > 2
    (ev,) = await wait_events(gw, 1)
    assert ev.output_tokens == len(args)


class _Ctx:
    pass


def test_cut_mid_chunk_delivers_the_prefix_then_ends() -> None:
    """Several events in one chunk: those within the limit are delivered, the stream ends at the next write."""
    from dataplane.dialects.base import Usage
    from dataplane.dialects.client_errors import GatewayError
    from dataplane.pipeline.output_cap import OutputCap

    cap = OutputCap(2)
    ctx: Any = _Ctx()
    ev = [b'data: {"choices":[{"delta":{"content":"w%d "}}]}\n\n' % i for i in range(4)]
    role = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    assert cap.chunk(ctx, role + ev[0][:10]) == role  # a partial event waits for its end
    assert cap.chunk(ctx, ev[0][10:] + ev[1] + ev[2] + ev[3]) == ev[0] + ev[1]
    assert cap.cut and not cap.blocked
    with pytest.raises(GatewayError) as info:
        cap.chunk(ctx, ev[0])
    assert info.value.status == 402 and cap.blocked
    billed = cap.bill(Usage(input_tokens=3, output_tokens=0, reported=False))
    assert (billed.input_tokens, billed.output_tokens) == (3, 2)
    assert cap.bill(Usage(output_tokens=1, reported=True)).output_tokens == 1  # never above what was reported


class _Inner:
    """An output guardrail stand-in: redacts 'secret', blocks on 'BLOCK' (the OutputGuard contract)."""

    def __init__(self) -> None:
        self.blocked = False

    def body(self, ctx: Any, status: int, payload: bytes) -> bytes:
        return payload.replace(b"secret", b"[R]")

    def chunk(self, ctx: Any, data: bytes) -> bytes:
        if b"BLOCK" in data:
            from dataplane.dialects.client_errors import GatewayError

            self.blocked = True
            raise GatewayError(400, "invalid_request", "blocked by guardrail")
        return data.replace(b"secret", b"[R]")

    def flush(self, ctx: Any) -> bytes:
        return b""

    def bill(self, usage: Any) -> Any:
        from dataclasses import replace

        return replace(usage, output_tokens=99)


def test_chained_after_an_output_guardrail() -> None:
    """The cap counts what the guardrail released; a guardrail block is billed by the guardrail."""
    from dataplane.dialects.base import Usage
    from dataplane.dialects.client_errors import GatewayError
    from dataplane.pipeline.output_cap import OutputCap

    ctx: Any = _Ctx()
    inner = _Inner()
    cap = OutputCap(3, inner)
    assert cap.body(ctx, 200, b'{"a":"secret"}') == b'{"a":"[R]"}'
    assert cap.chunk(ctx, b'data: {"delta":{"text":"a secret"}}\n\n') == b'data: {"delta":{"text":"a [R]"}}\n\n'
    with pytest.raises(GatewayError):
        cap.chunk(ctx, b'data: {"delta":{"text":"BLOCK"}}\n\n')
    assert cap.blocked and cap.bill(Usage()).output_tokens == 99


class _Holder(_Inner):
    """A guardrail that holds everything back until the end (a possible secret never settled)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = b""

    def chunk(self, ctx: Any, data: bytes) -> bytes:
        self.held += data
        return b""

    def flush(self, ctx: Any) -> bytes:
        return self.held


def test_a_cut_found_at_the_end_bills_only_what_was_written() -> None:
    from dataplane.dialects.client_errors import GatewayError
    from dataplane.pipeline.output_cap import OutputCap

    cap = OutputCap(2, _Holder())
    ctx: Any = _Ctx()
    ev = [b'data: {"choices":[{"delta":{"content":"w%d "}}]}\n\n' % i for i in range(3)]
    assert cap.chunk(ctx, b"".join(ev)) == b""
    with pytest.raises(GatewayError):
        cap.flush(ctx)  # nothing released at the end is written: the error event ends the stream
    assert cap.delivered == 0 and cap.blocked
