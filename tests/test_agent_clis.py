"""The real coding-agent CLIs, run non-interactively through the gateway to the fake provider.

The CLIs are the npm packages pinned in tests/agents/package.json, installed into
.cache/agents by scripts/install-agent-clis.sh (scripts/test.sh runs it). Each run is
traced with strace: every inet address a CLI connects or sends to (DNS lookups included) must
be the gateway's, so telemetry, update checks, error reporting and plugin/marketplace fetches
are proven off, not just configured off.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controlplane.policy.model import Model, PolicyDocument, Price, Provider
from tests.fixtures.fakeprovider import FakeProvider
from tests.fixtures.gateway import Gateway, gateway_policy, start_gateway

ROOT = Path(__file__).resolve().parent.parent
AGENT_BIN = ROOT / ".cache" / "agents" / "node_modules" / ".bin"
INSTALL_HINT = "run `bash scripts/install-agent-clis.sh` (scripts/test.sh does) to install the pinned CLIs"
RUN_TIMEOUT_S = 120.0

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

# An inet address in a traced connect()/sendto()/sendmsg() line (IPv4 or IPv6).
_ADDRESS = re.compile(r'sin6?_port=htons\((\d+)\).*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")')


@dataclass
class AgentRun:
    returncode: int
    stdout: str
    stderr: str
    connects: list[tuple[str, int]]  # every inet address the CLI and its children connected or sent to

    def describe(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"


def agent_binary(name: str) -> Path:
    path = AGENT_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed at {path}: {INSTALL_HINT}")
    return path


def strace_binary() -> str:
    path = shutil.which("strace")
    if path is None:
        pytest.fail(f"strace is needed to prove the CLIs contact nothing but the gateway: {INSTALL_HINT}")
    return path


def base_env(home: Path) -> dict[str, str]:
    """Nothing from the developer's environment but PATH: no real keys, proxies or configs leak in."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb",
            "CI": "1", "NO_COLOR": "1"}


async def run_agent(argv: list[str], env: dict[str, str], cwd: Path, trace_dir: Path) -> AgentRun:
    trace = trace_dir / "connect.trace"
    cmd = [strace_binary(), "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-e", "signal=none", "-o", str(trace), *argv]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        os.killpg(proc.pid, 9)  # the CLI and its children; the session was started for this run
        await proc.wait()
        pytest.fail(f"{argv[0]} did not finish within {RUN_TIMEOUT_S:.0f}s (a blocked network call?)")
    connects = []
    for m in _ADDRESS.finditer(trace.read_text()):
        connects.append((m.group(2) or m.group(3), int(m.group(1))))
    return AgentRun(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"), connects)


def assert_only_gateway(run: AgentRun, gw: Gateway) -> None:
    port = int(gw.url.rsplit(":", 1)[1])
    assert run.connects, "strace saw no inet connect(): the CLI never reached the gateway\n" + run.describe()
    others = [c for c in run.connects if c != ("127.0.0.1", port)]
    assert not others, f"the CLI contacted hosts other than the gateway: {others}\n" + run.describe()


CLAUDE_MODEL = "claude-t"  # served by the fixture's Anthropic provider
CODEX_MODEL = "gpt-t"  # the fixture's OpenAI-compatible provider
GEMINI_MODEL = "gemini-t"


def agent_policy(fake_base: str) -> PolicyDocument:
    """The gateway fixture's policy plus a native Gemini provider, all pointing at the fake."""
    doc = gateway_policy(fake_base).model_dump()
    doc["providers"].append(Provider(name="fg", kind="gemini", base_url=fake_base, credential="env:FAKE_KEY").model_dump())
    doc["models"].append(Model(name=GEMINI_MODEL, provider="fg", price=Price(input="0.1", output="0.4")).model_dump())
    return PolicyDocument.model_validate(doc)


@pytest.fixture
async def agent_gateway(fake_provider: FakeProvider) -> AsyncIterator[Gateway]:
    with tempfile.TemporaryDirectory() as state:
        gw = await start_gateway(fake_provider.base_url, Path(state), policy=agent_policy(fake_provider.base_url))
        try:
            yield gw
        finally:
            await gw.node.stop()


def generation_requests(fake: FakeProvider) -> list[dict[str, Any]]:
    return [h for h in fake.stats()["history"] if h["method"] == "POST"]


# --- Claude Code ---------------------------------------------------------------------------

def claude_env(gw: Gateway, home: Path, model: str = CLAUDE_MODEL) -> dict[str, str]:
    return {
        **base_env(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": gw.url,
        "ANTHROPIC_API_KEY": gw.key,  # the virtual key; sent as x-api-key
        "ANTHROPIC_CUSTOM_HEADERS": "x-interlock-tags: agent=claude-code",
        # Every model slot points at a gateway model so no request names an unknown one.
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        # No telemetry, error reporting, auto-update, feature flags or marketplace installs.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_UPDATES": "1",
        "DISABLE_GROWTHBOOK": "1",
        "CLAUDE_CODE_DISABLE_FEATURE_FLAGS": "1",
        "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
        "DISABLE_INSTALLATION_CHECKS": "1",
    }


async def run_claude(
    gw: Gateway, tmp_path: Path, prompt: str, *extra: str, model: str = CLAUDE_MODEL
) -> tuple[AgentRun, dict[str, Any]]:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir(exist_ok=True)
    argv = [str(agent_binary("claude")), "-p", prompt, "--output-format", "json", *extra]
    run = await run_agent(argv, claude_env(gw, home, model), work, tmp_path)
    assert run.returncode == 0, run.describe()
    return run, json.loads(run.stdout)


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

CODEX_CONFIG = """\
model = "{model}"
model_provider = "interlock"
check_for_update_on_startup = false

[model_providers.interlock]
name = "Interlock"
base_url = "{base_url}/v1"
env_key = "INTERLOCK_API_KEY"
wire_api = "responses"
http_headers = {{ "x-interlock-tags" = "agent=codex" }}

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

# Each of these otherwise reaches out at startup (github.com, api.github.com, chatgpt.com).
[features]
plugins = false
remote_plugin = false
apps = false
plugin_sharing = false
tool_suggest = false
"""


async def run_codex(gw: Gateway, tmp_path: Path, prompt: str) -> tuple[AgentRun, list[dict[str, Any]]]:
    home, codex_home, work = tmp_path / "home", tmp_path / "codex", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(model=CODEX_MODEL, base_url=gw.url))
    env = {**base_env(home), "CODEX_HOME": str(codex_home), "INTERLOCK_API_KEY": gw.key}
    argv = [str(agent_binary("codex")), "exec", "--json", "--skip-git-repo-check", prompt]
    run = await run_agent(argv, env, work, tmp_path)
    assert run.returncode == 0, run.describe()
    return run, [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


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

GEMINI_SETTINGS = {
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
    "model": {"name": GEMINI_MODEL},
}


async def run_gemini(gw: Gateway, tmp_path: Path, prompt: str) -> tuple[AgentRun, dict[str, Any]]:
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir(exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(GEMINI_SETTINGS))
    env = {
        **base_env(home),
        "GOOGLE_GEMINI_BASE_URL": gw.url,
        "GEMINI_API_KEY": gw.key,  # sent as x-goog-api-key
        # Gemini CLI sends no session id; attribution comes from the gateway's tags header.
        "GEMINI_CLI_CUSTOM_HEADERS": "x-interlock-tags: agent=gemini-cli",
    }
    argv = [str(agent_binary("gemini")), "-p", prompt, "-m", GEMINI_MODEL, "-o", "json"]
    run = await run_agent(argv, env, work, tmp_path)
    assert run.returncode == 0, run.describe()
    return run, json.loads(run.stdout[run.stdout.index("{"):])


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
