"""The real coding-agent CLIs, run non-interactively through the gateway to the fake provider.

The CLIs are the npm packages pinned in tests/agents/package.json, installed into
.cache/agents by scripts/install-agent-clis.sh (scripts/test.sh runs it). Each run is
traced with strace: every inet connect() must go to the gateway, so telemetry, update
checks, error reporting and plugin/marketplace fetches are proven off, not just configured off.
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

from tests.fixtures.fakeprovider import FakeProvider
from tests.fixtures.gateway import Gateway, start_gateway

ROOT = Path(__file__).resolve().parent.parent
AGENT_BIN = ROOT / ".cache" / "agents" / "node_modules" / ".bin"
INSTALL_HINT = "run `bash scripts/install-agent-clis.sh` (scripts/test.sh does) to install the pinned CLIs"
RUN_TIMEOUT_S = 120.0

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

_CONNECT = re.compile(r'connect\(\d+, \{sa_family=AF_INET6?, sin6?_port=htons\((\d+)\).*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")')


@dataclass
class AgentRun:
    returncode: int
    stdout: str
    stderr: str
    connects: list[tuple[str, int]]  # every inet connect() the CLI and its children attempted

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
    cmd = [strace_binary(), "-f", "-qq", "-e", "trace=connect", "-e", "signal=none", "-o", str(trace), *argv]
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
    for m in _CONNECT.finditer(trace.read_text()):
        connects.append((m.group(2) or m.group(3), int(m.group(1))))
    return AgentRun(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"), connects)


def assert_only_gateway(run: AgentRun, gw: Gateway) -> None:
    port = int(gw.url.rsplit(":", 1)[1])
    assert run.connects, "strace saw no connect(): the CLI never reached the gateway\n" + run.describe()
    others = [c for c in run.connects if c != ("127.0.0.1", port)]
    assert not others, f"the CLI contacted hosts other than the gateway: {others}\n" + run.describe()


@pytest.fixture
async def agent_gateway(fake_provider: FakeProvider) -> AsyncIterator[Gateway]:
    with tempfile.TemporaryDirectory() as state:
        gw = await start_gateway(fake_provider.base_url, Path(state))
        try:
            yield gw
        finally:
            await gw.node.stop()


def generation_requests(fake: FakeProvider) -> list[dict[str, Any]]:
    return [h for h in fake.stats()["history"] if h["method"] == "POST"]


# --- Claude Code ---------------------------------------------------------------------------

CLAUDE_MODEL = "claude-t"  # the gateway fixture's Anthropic-served model


def claude_env(gw: Gateway, home: Path) -> dict[str, str]:
    return {
        **base_env(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": gw.url,
        "ANTHROPIC_API_KEY": gw.key,  # the virtual key; sent as x-api-key
        # Every model slot points at a gateway model so no request names an unknown one.
        "ANTHROPIC_MODEL": CLAUDE_MODEL,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": CLAUDE_MODEL,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": CLAUDE_MODEL,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": CLAUDE_MODEL,
        "ANTHROPIC_SMALL_FAST_MODEL": CLAUDE_MODEL,
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


async def run_claude(gw: Gateway, tmp_path: Path, prompt: str, *extra: str) -> tuple[AgentRun, dict[str, Any]]:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir(exist_ok=True)
    argv = [str(agent_binary("claude")), "-p", prompt, "--output-format", "json", *extra]
    run = await run_agent(argv, claude_env(gw, home), work, tmp_path)
    assert run.returncode == 0, run.describe()
    return run, json.loads(run.stdout)


async def test_claude_code_answer_arrives_through_gateway(
    agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path
) -> None:
    run, result = await run_claude(agent_gateway, tmp_path, "hello from the interlock gateway test")

    assert result["is_error"] is False, run.describe()
    words = result["result"].split()
    # The fake provider's reply: "Echo:" + the prompt's words, padded to 20 words.
    assert words[:7] == ["Echo:", "hello", "from", "the", "interlock", "gateway", "test"], run.describe()
    assert len(words) == fake_provider.config.output_tokens
    assert_only_gateway(run, agent_gateway)

    sent = generation_requests(fake_provider)
    assert [h["path"] for h in sent] == ["/v1/messages"]
    body = sent[0]["body"]
    assert body["stream"] is True and body["model"] == CLAUDE_MODEL
    assert "system" in {m["role"] for m in body["messages"]}  # Claude Code's mid-conversation system message
    assert "claude-code-20250219" in sent[0]["headers"]["anthropic-beta"]  # betas pass through

    [event] = agent_gateway.sink.events
    assert event.status == 200 and event.key_id == agent_gateway.key_id and event.team_id == "eng"
    assert event.model == CLAUDE_MODEL and event.provider == "fa" and event.stream
    assert event.tags["session"] == result["session_id"]  # from x-claude-code-session-id
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
