"""The real coding-agent CLIs, run non-interactively through the gateway to the fake provider.

The harness (pinned CLIs from tests/agents/package.json, strace of every run, the agent gateway
fixture) is tests/fixtures/agents.py: every inet address a CLI connects or sends to (DNS lookups
included) must be the gateway's, so telemetry, update checks, error reporting and
plugin/marketplace fetches are proven off, not just configured off.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.fixtures.agents import (
    CLAUDE_MODEL,
    CODEX_MODEL,
    GEMINI_MODEL,
    assert_only_gateway,
    generation_requests,
    run_claude,
    run_codex,
    run_gemini,
)
from tests.fixtures.fakeprovider import FakeProvider
from tests.fixtures.gateway import Gateway

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


# --- Claude Code ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("model", "provider", "upstream_path"),
    [(CLAUDE_MODEL, "fa", "/v1/messages"), (CODEX_MODEL, "fo", "/v1/chat/completions")],
    ids=["anthropic-provider", "openai-provider-translated"],
)
async def test_claude_code_answer_arrives_through_gateway(
    agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path, model: str, provider: str, upstream_path: str
) -> None:
    run, result = await run_claude(agent_gateway, tmp_path, "hello from the interlock gateway test", model=model)

    assert result["is_error"] is False, run.describe()
    words = result["result"].split()
    # The fake provider's reply: "Echo:" + the prompt's words, padded to 20 words. Translation
    # joins Claude Code's text blocks into one string, so there the echo starts with its reminders.
    echo = ["Echo:", "hello", "from", "the", "interlock", "gateway", "test"] if provider == "fa" else ["Echo:"]
    assert words[:len(echo)] == echo, run.describe()
    assert len(words) == fake_provider.config.output_tokens
    assert_only_gateway(run, agent_gateway)

    sent = generation_requests(fake_provider)
    assert [h["path"] for h in sent] == [upstream_path]
    body = sent[0]["body"]
    assert body["stream"] is True
    if provider == "fa":
        assert body["model"] == CLAUDE_MODEL
        assert "system" in {m["role"] for m in body["messages"]}  # Claude Code's mid-conversation system message
        assert "claude-code-20250219" in sent[0]["headers"]["anthropic-beta"]  # betas pass through
    else:  # translated to an OpenAI chat request for the provider's upstream model
        assert body["model"] == "gpt-upstream" and body["messages"][0]["role"] == "system"
        assert "hello from the interlock gateway test" in json.dumps([m for m in body["messages"] if m["role"] == "user"])

    [event] = agent_gateway.sink.events
    assert event.status == 200 and event.key_id == agent_gateway.key_id and event.team_id == "eng"
    assert event.model == model and event.provider == provider and event.stream
    assert event.tags["session"] == result["session_id"]  # from x-claude-code-session-id
    assert event.tags["agent"] == "claude-code"  # ANTHROPIC_CUSTOM_HEADERS
    assert event.input_tokens == sent[0]["usage"]["input_tokens"] == result["usage"]["input_tokens"]
    assert event.output_tokens == result["usage"]["output_tokens"] == len(words)


async def test_claude_code_tool_round_trip(agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path) -> None:
    # The fake answers "use tool <Name>" with a call to that tool, its first string argument
    # being the prompt's first 40 characters: so the prompt is the path of the file to read.
    with tempfile.TemporaryDirectory(dir="/tmp") as short:
        target = Path(short) / "use tool Read"
        assert len(str(target)) <= 40
        target.write_text("the secret word is pelican\n")
        run, result = await run_claude(agent_gateway, tmp_path, str(target), "--allowedTools", "Read")

    assert result["is_error"] is False and result["num_turns"] == 2, run.describe()
    assert result["result"].startswith("Echo:")
    first, second = generation_requests(fake_provider)
    assert first["usage"] and second["usage"]
    tool_uses = [b for m in second["body"]["messages"] if m["role"] == "assistant" for b in m["content"]
                 if b.get("type") == "tool_use"]
    assert [(t["name"], t["input"]["file_path"]) for t in tool_uses] == [("Read", str(target))]
    results = [b for m in second["body"]["messages"] if m["role"] == "user" and isinstance(m["content"], list)
               for b in m["content"] if b.get("type") == "tool_result"]
    assert len(results) == 1 and results[0]["tool_use_id"] == tool_uses[0]["id"]
    assert "the secret word is pelican" in json.dumps(results[0]["content"])
    assert_only_gateway(run, agent_gateway)

    events = agent_gateway.sink.events
    assert [e.status for e in events] == [200, 200]
    assert {e.tags["session"] for e in events} == {result["session_id"]}
    assert [e.input_tokens for e in events] == [first["usage"]["input_tokens"], second["usage"]["input_tokens"]]
    assert events[1].input_tokens > events[0].input_tokens  # the second turn carries the tool result


# --- Codex CLI -----------------------------------------------------------------------------

async def test_codex_answer_arrives_through_gateway(
    agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path
) -> None:
    run, events = await run_codex(agent_gateway, tmp_path, "hello from the codex gateway test")

    messages = [e["item"]["text"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == "agent_message"]
    assert len(messages) == 1, run.describe()
    words = messages[0].split()
    assert words[:7] == ["Echo:", "hello", "from", "the", "codex", "gateway", "test"], run.describe()
    assert len(words) == fake_provider.config.output_tokens
    assert_only_gateway(run, agent_gateway)

    [sent] = generation_requests(fake_provider)
    assert sent["path"] == "/v1/responses" and sent["body"]["stream"] is True
    assert "developer" in {item.get("role") for item in sent["body"]["input"]}  # Codex's system prompt

    [thread] = [e["thread_id"] for e in events if e["type"] == "thread.started"]
    [usage] = [e["usage"] for e in events if e["type"] == "turn.completed"]
    [event] = agent_gateway.sink.events
    assert event.status == 200 and event.key_id == agent_gateway.key_id and event.endpoint == "/v1/responses"
    assert event.model == CODEX_MODEL and event.provider == "fo" and event.stream
    assert event.tags["session"] == thread  # from Codex's session-id header
    assert event.tags["agent"] == "codex"  # the provider's http_headers
    assert event.input_tokens == usage["input_tokens"] == sent["usage"]["input_tokens"]
    assert event.output_tokens == usage["output_tokens"]
    assert event.reasoning_tokens == usage["reasoning_output_tokens"]



async def test_codex_tool_round_trip(agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path) -> None:
    # The fake answers "use tool" with a call to Codex's first tool, exec_command, whose `cmd`
    # is the prompt itself: a shell command with the trigger in a comment.
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("the secret word is pelican\n")
    run, events = await run_codex(agent_gateway, tmp_path, "cat notes.txt # use tool")

    commands = [e["item"] for e in events if e["type"] == "item.completed" and e["item"]["type"] == "command_execution"]
    assert len(commands) == 1 and "pelican" in commands[0]["aggregated_output"], run.describe()
    first, second = generation_requests(fake_provider)
    items = second["body"]["input"]
    [call] = [i for i in items if i.get("type") == "function_call"]
    [output] = [i for i in items if i.get("type") == "function_call_output"]
    assert call["name"] == "exec_command" and json.loads(call["arguments"]) == {"cmd": "cat notes.txt # use tool"}
    assert output["call_id"] == call["call_id"] and "the secret word is pelican" in output["output"]
    # The reasoning item comes back with its encrypted content intact (the fake verifies it).
    assert [i["encrypted_content"] for i in items if i.get("type") == "reasoning"]
    assert second["status"] == 200
    assert_only_gateway(run, agent_gateway)

    [thread] = [e["thread_id"] for e in events if e["type"] == "thread.started"]
    gw_events = agent_gateway.sink.events
    assert [e.status for e in gw_events] == [200, 200]
    assert {e.tags["session"] for e in gw_events} == {thread}
    assert [e.input_tokens for e in gw_events] == [first["usage"]["input_tokens"], second["usage"]["input_tokens"]]


# --- Gemini CLI ----------------------------------------------------------------------------

async def test_gemini_cli_answer_arrives_through_gateway(
    agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path
) -> None:
    run, result = await run_gemini(agent_gateway, tmp_path, "hello from the gemini gateway test")

    words = result["response"].split()
    assert words[:7] == ["Echo:", "hello", "from", "the", "gemini", "gateway", "test"], run.describe()
    assert len(words) == fake_provider.config.output_tokens
    assert_only_gateway(run, agent_gateway)

    [sent] = generation_requests(fake_provider)
    assert sent["path"] == f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent" and sent["query"] == {"alt": "sse"}

    tokens = result["stats"]["models"][GEMINI_MODEL]["tokens"]
    [event] = agent_gateway.sink.events
    assert event.status == 200 and event.key_id == agent_gateway.key_id and event.dialect == "gemini"
    assert event.model == GEMINI_MODEL and event.provider == "fg" and event.stream
    assert event.tags["agent"] == "gemini-cli"
    assert event.input_tokens == tokens["prompt"] == sent["usage"]["input_tokens"]
    assert tokens["candidates"] == len(words)
    # Thoughts are billed as output: the gateway counts them in output_tokens and reasoning_tokens.
    assert event.output_tokens == tokens["candidates"] + tokens["thoughts"]
    assert event.reasoning_tokens == tokens["thoughts"]



async def test_gemini_cli_tool_round_trip(agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path) -> None:
    # The fake answers "use tool <name>" with a functionCall of that declared function, its
    # string arguments being the prompt: so the prompt is also the (workspace-relative) file name.
    # Given the functionResponse, it answers with text echoing the result.
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "use tool read_file").write_text("the secret word is pelican\n")
    run, result = await run_gemini(agent_gateway, tmp_path, "use tool read_file")

    words = result["response"].split()
    assert words[:6] == ["Echo:", "the", "secret", "word", "is", "pelican"], run.describe()
    assert result["stats"]["tools"]["byName"]["read_file"]["success"] == 1, run.describe()
    assert_only_gateway(run, agent_gateway)

    first, second = generation_requests(fake_provider)
    assert {h["path"] for h in (first, second)} == {f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent"}
    assert first["status"] == second["status"] == 200
    declared = [d["name"] for t in first["body"]["tools"] for d in t.get("functionDeclarations", ())]
    assert "read_file" in declared and declared[0] != "read_file"  # picked by name, not the first one
    model_turn, user_turn = second["body"]["contents"][-2:]
    [call_part] = [p for p in model_turn["parts"] if "functionCall" in p]
    call = call_part["functionCall"]
    assert model_turn["role"] == "model" and call["name"] == "read_file"
    assert call["args"] == {"file_path": "use tool read_file"} and call["id"]
    assert call_part["thoughtSignature"]  # thinking is on: the signed call came back (the fake verifies it)
    [answer] = [p["functionResponse"] for p in user_turn["parts"] if "functionResponse" in p]
    assert user_turn["role"] == "user" and (answer["id"], answer["name"]) == (call["id"], "read_file")
    assert "the secret word is pelican" in json.dumps(answer["response"])

    tokens = result["stats"]["models"][GEMINI_MODEL]["tokens"]
    events = agent_gateway.sink.events
    assert [e.status for e in events] == [200, 200]
    assert {e.tags["agent"] for e in events} == {"gemini-cli"} and all(e.provider == "fg" and e.stream for e in events)
    assert [e.input_tokens for e in events] == [first["usage"]["input_tokens"], second["usage"]["input_tokens"]]
    assert events[1].input_tokens > events[0].input_tokens  # the second turn carries the call and its result
    assert sum(e.input_tokens for e in events) == tokens["prompt"]
    assert sum(e.output_tokens for e in events) == tokens["candidates"] + tokens["thoughts"]
    assert sum(e.reasoning_tokens for e in events) == tokens["thoughts"]
