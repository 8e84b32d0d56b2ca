"""The real agent CLIs on providers of another API, through translation: Codex CLI (Responses API)
and Gemini CLI (streamGenerateContent) served by the fake's Anthropic and OpenAI-chat endpoints.
Uses the CLI harness of tests/fixtures/agents.py (pinned CLIs, strace: nothing but the gateway)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.agents import assert_only_gateway, generation_requests, run_codex, run_gemini
from tests.fixtures.fakeprovider import FakeProvider
from tests.fixtures.gateway import Gateway

pytestmark = pytest.mark.e2e


async def test_codex_on_an_anthropic_provider(agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path) -> None:
    run, events = await run_codex(agent_gateway, tmp_path, "hello from codex on claude", "claude-t")
    assert_only_gateway(run, agent_gateway)
    messages = [e["item"]["text"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == "agent_message"]
    assert len(messages) == 1 and messages[0].startswith("Echo:"), events
    [sent] = generation_requests(fake_provider)
    assert sent["path"] == "/v1/messages" and sent["body"]["stream"] is True
    assert "hello from codex on claude" in json.dumps(sent["body"]["messages"])
    assert "encrypted" not in json.dumps(sent["body"])  # reasoning settings and items never cross vendors
    [usage] = [e["usage"] for e in events if e["type"] == "turn.completed"]
    [ev] = agent_gateway.sink.events
    assert ev.status == 200 and ev.provider == "fa" and ev.endpoint == "/v1/responses" and not ev.usage_estimated
    assert ev.input_tokens == usage["input_tokens"] == sent["usage"]["input_tokens"]
    assert ev.output_tokens == usage["output_tokens"] > 0


async def test_codex_tool_round_trip_on_an_anthropic_provider(
        agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("the secret word is pelican\n")
    run, events = await run_codex(agent_gateway, tmp_path, "cat notes.txt # use tool", "claude-t")
    assert_only_gateway(run, agent_gateway)
    commands = [e["item"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == "command_execution"]
    assert len(commands) == 1 and "pelican" in commands[0]["aggregated_output"], events
    _, second = generation_requests(fake_provider)
    turns = second["body"]["messages"]
    [use] = [b for m in turns if m["role"] == "assistant" for b in m["content"] if b["type"] == "tool_use"]
    [result] = [b for m in turns if m["role"] == "user" for b in m["content"] if b["type"] == "tool_result"]
    assert result["tool_use_id"] == use["id"] and "pelican" in json.dumps(result)
    assert [e.status for e in agent_gateway.sink.events] == [200, 200]


@pytest.mark.parametrize(("model", "path", "provider"), [("claude-t", "/v1/messages", "fa"),
                                                         ("gpt-t", "/v1/chat/completions", "fo")])
async def test_gemini_cli_on_anthropic_and_openai_providers(
        agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path, model: str, path: str, provider: str) -> None:
    run, result = await run_gemini(agent_gateway, tmp_path, "hello from gemini cli translated", model, tags=None)
    assert result["response"].startswith("Echo:"), run.describe()
    assert_only_gateway(run, agent_gateway)
    sent = generation_requests(fake_provider)
    assert {s["path"] for s in sent} == {path}
    tokens = result["stats"]["models"][model]["tokens"]
    events = agent_gateway.sink.events
    assert all(e.provider == provider and e.status == 200 and not e.usage_estimated for e in events)
    assert events[-1].input_tokens == tokens["prompt"] and events[-1].output_tokens == tokens["candidates"]
