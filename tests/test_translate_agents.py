"""The real agent CLIs on providers of another API, through translation: Codex CLI (Responses API)
and Gemini CLI (streamGenerateContent) served by the fake's Anthropic and OpenAI-chat endpoints.
Reuses the CLI harness of tests/test_agent_clis.py (pinned CLIs, strace: nothing but the gateway)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fakeprovider import FakeProvider
from tests.fixtures.gateway import Gateway, start_gateway
from tests.test_agent_clis import (
    CODEX_CONFIG,
    GEMINI_SETTINGS,
    agent_binary,
    agent_policy,
    assert_only_gateway,
    base_env,
    generation_requests,
    run_agent,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
async def agent_gateway(fake_provider: FakeProvider) -> AsyncIterator[Gateway]:
    with tempfile.TemporaryDirectory() as state:
        gw = await start_gateway(fake_provider.base_url, Path(state), policy=agent_policy(fake_provider.base_url))
        try:
            yield gw
        finally:
            await gw.node.stop()


async def run_codex(gw: Gateway, tmp_path: Path, prompt: str, model: str) -> list[dict[str, Any]]:
    home, codex_home, work = tmp_path / "home", tmp_path / "codex", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(model=model, base_url=gw.url))
    env = {**base_env(home), "CODEX_HOME": str(codex_home), "INTERLOCK_API_KEY": gw.key}
    argv = [str(agent_binary("codex")), "exec", "--json", "--skip-git-repo-check", prompt]
    run = await run_agent(argv, env, work, tmp_path)
    assert run.returncode == 0, run.describe()
    assert_only_gateway(run, gw)
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


async def test_codex_on_an_anthropic_provider(agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path) -> None:
    events = await run_codex(agent_gateway, tmp_path, "hello from codex on claude", "claude-t")
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
    events = await run_codex(agent_gateway, tmp_path, "cat notes.txt # use tool", "claude-t")
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
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps({**GEMINI_SETTINGS, "model": {"name": model}}))
    env = {**base_env(home), "GOOGLE_GEMINI_BASE_URL": agent_gateway.url, "GEMINI_API_KEY": agent_gateway.key}
    argv = [str(agent_binary("gemini")), "-p", "hello from gemini cli translated", "-m", model, "-o", "json"]
    run = await run_agent(argv, env, work, tmp_path)
    assert run.returncode == 0, run.describe()
    result = json.loads(run.stdout[run.stdout.index("{"):])
    assert result["response"].startswith("Echo:"), run.describe()
    assert_only_gateway(run, agent_gateway)
    sent = generation_requests(fake_provider)
    assert {s["path"] for s in sent} == {path}
    tokens = result["stats"]["models"][model]["tokens"]
    events = agent_gateway.sink.events
    assert all(e.provider == provider and e.status == 200 and not e.usage_estimated for e in events)
    assert events[-1].input_tokens == tokens["prompt"] and events[-1].output_tokens == tokens["candidates"]
