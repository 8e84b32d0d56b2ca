"""The real coding agents read a file holding an AWS key pair and a private key through their own tool and send
it back through a guarded gateway: with `redact` the fake provider never receives the secrets and the run
completes; with `block` the agent shows the gateway's refusal."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controlplane.policy.guardrails import Guardrail
from tests.fixtures.agents import (
    CODEX_CONFIG,
    GEMINI_MODEL,
    GEMINI_SETTINGS,
    agent_binary,
    agent_policy,
    base_env,
    claude_env,
    generation_requests,
    run_agent,
)
from tests.fixtures.fakeprovider import FakeProvider
from tests.fixtures.gateway import Gateway, running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

AWS_ID = "AKIAQ7ZL3XK5PW2MN4RT"
AWS_SECRET = "k9Vd3Qx7Lm2Pz8Rt5Wy1Bn4Hc6Jf0Gs2Ae7Ku9Mo"
KEY_BODY = "MIIEowIBAAKCAQEAx3v9Qk2Lp8Zr5Tn1Wm7Yc4Hb6Jd0Fs3Ag9Ke2Mo5Pu8Ri"
FILE = (f"AWS_ACCESS_KEY_ID={AWS_ID}\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
        f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\nQk2Lp8Zr5Tn1Wm7Yc4Hb6Jd0Fs3Ag9Ke2Mo5Pu8RiX1v9Qk2Lp8Zr5Tn1Wm7Y\n"
        "-----END RSA PRIVATE KEY-----\n")
SECRETS = (AWS_ID, AWS_SECRET, KEY_BODY)


@asynccontextmanager
async def guarded(fake: FakeProvider, action: str) -> AsyncIterator[Gateway]:
    g = Guardrail.model_validate({"id": "no-secrets", "detect": ["secrets"], "action": action})
    doc = agent_policy(fake.base_url).model_copy(update={"guardrails": [g]})
    with tempfile.TemporaryDirectory() as state:
        async with running_gateway(fake.base_url, Path(state), policy=doc) as gw:
            yield gw


def assert_never_received(fake: FakeProvider) -> None:
    sent = json.dumps(generation_requests(fake))
    for s in SECRETS:
        assert s not in sent
    assert "[REDACTED:aws-access-key-id]" in sent and "[REDACTED:aws-secret-access-key]" in sent
    assert "[REDACTED:private-key]" in sent


def outcomes(gw: Gateway) -> list[str]:
    return [o["action"] for e in gw.sink.events if e.guardrail_outcome for o in json.loads(e.guardrail_outcome)]


async def claude(gw: Gateway, tmp_path: Path) -> tuple[int, str]:
    with tempfile.TemporaryDirectory(dir="/tmp") as short:
        target = Path(short) / "use tool Read"  # the fake calls Read with the prompt as the path
        target.write_text(FILE)
        (tmp_path / "home").mkdir()
        (tmp_path / "work").mkdir()
        run = await run_agent([str(agent_binary("claude")), "-p", str(target), "--output-format", "json",
                               "--allowedTools", "Read"], claude_env(gw, tmp_path / "home"), tmp_path / "work", tmp_path)
    return run.returncode, run.stdout + run.stderr


async def codex(gw: Gateway, tmp_path: Path) -> tuple[int, str]:
    home, codex_home, work = tmp_path / "home", tmp_path / "codex", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir(exist_ok=True)
    (work / "creds.env").write_text(FILE)
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(model="gpt-t", base_url=gw.url))
    env = {**base_env(home), "CODEX_HOME": str(codex_home), "INTERLOCK_API_KEY": gw.key}
    run = await run_agent([str(agent_binary("codex")), "exec", "--json", "--skip-git-repo-check",
                           "cat creds.env # use tool"], env, work, tmp_path)
    return run.returncode, run.stdout + run.stderr


async def gemini(gw: Gateway, tmp_path: Path) -> tuple[int, str]:
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    (work / "use tool read_file").write_text(FILE)
    (home / ".gemini" / "settings.json").write_text(json.dumps(GEMINI_SETTINGS))
    env = {**base_env(home), "GOOGLE_GEMINI_BASE_URL": gw.url, "GEMINI_API_KEY": gw.key}
    run = await run_agent([str(agent_binary("gemini")), "-p", "use tool read_file", "-m", GEMINI_MODEL, "-o", "json"],
                          env, work, tmp_path)
    return run.returncode, run.stdout + run.stderr


AGENTS = {"claude-code": claude, "codex": codex, "gemini-cli": gemini}


@pytest.mark.parametrize("agent", sorted(AGENTS))
async def test_redact_the_provider_never_receives_the_secrets(
    fake_provider: FakeProvider, tmp_path: Path, agent: str
) -> None:
    async with guarded(fake_provider, "redact") as gw:
        code, out = await AGENTS[agent](gw, tmp_path)
        assert code == 0, out[-3000:]
        assert len(generation_requests(fake_provider)) >= 2, out[-3000:]  # the tool result went back
        assert_never_received(fake_provider)
        assert "redact" in outcomes(gw)
        # the agent's own first request (system prompt, tool definitions, prompt) raised nothing: no false positive
        assert gw.sink.events[0].guardrail_outcome == "", gw.sink.events[0].guardrail_outcome
        for ev in gw.sink.events:
            assert all(s not in str(ev) for s in SECRETS)


@pytest.mark.parametrize("agent", sorted(AGENTS))
async def test_block_the_agent_shows_the_refusal(fake_provider: FakeProvider, tmp_path: Path, agent: str) -> None:
    async with guarded(fake_provider, "block") as gw:
        _, out = await AGENTS[agent](gw, tmp_path)
        assert "no-secrets" in out, out[-3000:]  # the refusal, naming the guardrail, reached the user
        assert all(s not in json.dumps(generation_requests(fake_provider)) for s in SECRETS)
        assert "block" in outcomes(gw)
        blocked = [e for e in gw.sink.events if e.status == 400]
        assert blocked and all(e.input_tokens == e.output_tokens == 0 for e in blocked)
