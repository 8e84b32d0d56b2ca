"""The fake provider takes a client dropping a stream in its stride: one info line, no traceback,
and it keeps serving."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from tests.fixtures.fakeprovider import FakeProvider

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def test_a_dropped_stream_logs_one_line_not_a_traceback(fake_provider: FakeProvider,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    headers = {"authorization": "Bearer x", "x-fake-chunk-delay-ms": "20", "x-fake-output-tokens": "200"}
    async with httpx.AsyncClient(base_url=fake_provider.openai_base_url, timeout=10) as client:
        async with client.stream("POST", "/chat/completions", json=BODY, headers=headers) as resp:
            assert resp.status_code == 200
            async for _ in resp.aiter_bytes():
                break  # first chunk, then hang up
        # the server notices on its next write; give it a few chunk delays
        for _ in range(100):
            if any("client disconnected mid-stream" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.02)
        assert any("client disconnected mid-stream" in r.getMessage() for r in caplog.records), caplog.text
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
        ok = await client.post("/chat/completions", json={**BODY, "stream": False}, headers={"authorization": "Bearer x"})
        assert ok.status_code == 200
