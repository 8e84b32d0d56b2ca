"""Hostile or broken usage from an upstream ("NaN", 1e400, negatives, wrong types) through a real node: the
stream reaches the client whole, the event is recorded, and the cost is never negative or an exception."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.fixtures.gateway import Gateway, running_gateway, wait_events
from tests.fixtures.webapp import serving

HOSTILE: list[Any] = ["NaN", -5, [1], {"n": 1}, True, "12abc"]


def anthropic_stream(bad: Any) -> bytes:
    def ev(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    usage = {"input_tokens": bad, "cache_read_input_tokens": bad, "cache_creation_input_tokens": bad,
             "cache_creation": {"ephemeral_1h_input_tokens": bad}, "output_tokens": 1}
    return b"".join([
        ev("message_start", {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                                                                   "model": "x", "content": [], "usage": usage}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ev("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}}),
        ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        # 1e400 is not representable as a double: written raw, as a broken upstream would
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1e400}}\n\n',
        ev("message_stop", {"type": "message_stop"}),
    ])


@pytest.fixture
async def hostile(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Gateway, Any]]:
    bad = request.param

    async def messages(req: web.Request) -> web.StreamResponse:
        body = await req.json()
        if body.get("stream"):
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(req)
            await resp.write(anthropic_stream(bad))
            await resp.write_eof()
            return resp
        return web.json_response({"id": "m", "type": "message", "role": "assistant", "model": "x",
                                  "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                                  "usage": {"input_tokens": bad, "output_tokens": bad,
                                            "cache_creation_input_tokens": bad}})

    async def chat(req: web.Request) -> web.Response:
        return web.json_response({"id": "c", "object": "chat.completion", "created": 1, "model": "x",
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": bad, "completion_tokens": bad,
                                            "prompt_tokens_details": {"cached_tokens": bad}}})

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/chat/completions", chat)
    async with serving(app) as base:
        with tempfile.TemporaryDirectory() as state:
            async with running_gateway(base, Path(state)) as gw:
                yield gw, bad


@pytest.mark.parametrize("hostile", HOSTILE, indirect=True, ids=[repr(b) for b in HOSTILE])
async def test_hostile_usage_never_kills_the_answer_nor_the_bill(hostile: tuple[Gateway, Any]) -> None:
    gw, _bad = hostile
    msg = {"model": "claude-t", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gw.url}/v1/messages", json={**msg, "stream": True},
                          headers={"x-api-key": gw.key}) as r:
            streamed = await r.read()
        async with s.post(f"{gw.url}/v1/messages", json=msg, headers={"x-api-key": gw.key}) as r2:
            plain = await r2.json()
        async with s.post(f"{gw.url}/v1/messages", json=msg, headers={"x-api-key": gw.key}) as r3:
            await r3.read()
        # an Anthropic client on the OpenAI-API model: the hostile chat usage goes through translation too
        async with s.post(f"{gw.url}/v1/messages", json={**msg, "model": "gpt-t"}, headers={"x-api-key": gw.key}) as r4:
            translated = await r4.json()
    assert r.status == 200 and b"event: message_stop" in streamed and b"event: error" not in streamed
    assert r2.status == 200 and plain["content"][0]["text"] == "ok"
    assert r4.status == 200 and translated["usage"]["input_tokens"] >= 0, translated
    events = await wait_events(gw, 4)
    for ev in events:
        assert ev.status == 200 and Decimal(ev.cost_usd) >= 0
        assert ev.input_tokens >= 0 and ev.cache_write_1h_tokens >= 0
