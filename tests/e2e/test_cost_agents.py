"""Exact cost with the real agent CLIs (pinned, see tests/fixtures/agents.py) through the gateway to the fake
provider, which models Anthropic prompt caching and keeps its own record of every token class it reported.

- Claude Code over a multi-turn session (a tool round trip, then a resumed session) writes and reads the
  prompt cache: the sum of the events' costs equals Anthropic's formula applied to the fake's own record.
- Token counting across APIs: Claude Code (`/context`) and Gemini CLI (media prompts) on models served by a
  provider of another API get answers, and the event says whether the count is the provider's or the
  gateway's estimate.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from controlplane.policy.model import CircuitBreaker, Model, Price
from tests.fixtures.agents import (
    CLAUDE_MODEL,
    CODEX_MODEL,
    GEMINI_MODEL,
    agent_binary,
    agent_policy,
    assert_only_gateway,
    claude_env,
    run_agent,
    run_claude,
    run_gemini,
)
from tests.fixtures.fakeprovider import TEST_CONFIG, FakeProvider, StartFake
from tests.fixtures.gateway import Gateway, running_gateway, wait_events

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

# Claude Sonnet 4.5 list prices, USD per 1M tokens (the catalog's): input 3, 5-minute cache write 3.75,
# 1-hour cache write 6, cache read 0.30, output 15.
SONNET = Price(input="3", output="15", cached_input="0.30", cache_write="3.75", cache_write_1h="6")
PICO = {"input": 3_000_000, "w5": 3_750_000, "w1": 6_000_000, "read": 300_000, "output": 15_000_000}  # per token


def anthropic_formula_pico(u: dict[str, int]) -> int:
    """Anthropic's invoice for one response, from the fake's record: its input_tokens counts every input token
    (uncached + cache reads + writes), its output_tokens excludes thinking, which is billed as output."""
    read, w5, w1 = u["cached_tokens"], u["cache_write_5m_tokens"], u["cache_write_1h_tokens"]
    uncached = u["input_tokens"] - read - w5 - w1
    return (uncached * PICO["input"] + w5 * PICO["w5"] + w1 * PICO["w1"] + read * PICO["read"]
            + (u["output_tokens"] + u["reasoning_tokens"]) * PICO["output"])


@pytest.fixture
async def cache_rig(fake_provider_factory: StartFake) -> AsyncIterator[tuple[Gateway, FakeProvider]]:
    fake = await fake_provider_factory(replace(TEST_CONFIG, prompt_cache=True))
    policy = agent_policy(fake.base_url)
    policy = policy.model_copy(update={"models": [
        m.model_copy(update={"price": SONNET}) if m.name == CLAUDE_MODEL else m for m in policy.models]})
    with tempfile.TemporaryDirectory() as state:
        async with running_gateway(fake.base_url, Path(state), policy=policy) as gw:
            yield gw, fake


def generations(fake: FakeProvider) -> list[dict[str, Any]]:
    return [h for h in fake.stats()["history"] if h["method"] == "POST" and h["path"] == "/v1/messages"]


async def test_claude_code_session_cost_equals_anthropic_formula_on_the_fakes_record(
        cache_rig: tuple[Gateway, FakeProvider], tmp_path: Path) -> None:
    gw, fake = cache_rig
    with tempfile.TemporaryDirectory(dir="/tmp") as short:
        target = Path(short) / "use tool Read"
        target.write_text("the secret word is pelican\n")
        run, first = await run_claude(gw, tmp_path, str(target), "--allowedTools", "Read")
        assert first["is_error"] is False and first["num_turns"] == 2, run.describe()
        # a third turn in the same session: its prompt starts with everything cached so far
        home, work = tmp_path / "home", tmp_path / "work"
        argv = [str(agent_binary("claude")), "-p", "and now say hello", "--output-format", "json",
                "--resume", first["session_id"]]
        again = await run_agent(argv, claude_env(gw, home), work, tmp_path)
        assert again.returncode == 0, again.describe()
    assert_only_gateway(run, gw)

    served = [h for h in generations(fake) if h["status"] == 200]
    assert len(served) >= 3
    usages = [h["usage"] for h in served]
    writes = sum(u["cache_write_5m_tokens"] + u["cache_write_1h_tokens"] for u in usages)
    reads = sum(u["cached_tokens"] for u in usages)
    assert writes > 0 and reads > 0, usages  # Claude Code marks cache breakpoints: both really happened

    events = [e for e in await wait_events(gw, len(served)) if e.endpoint == "/v1/messages" and e.status == 200]
    assert len(events) == len(served)
    expected_pico = sum(anthropic_formula_pico(u) for u in usages)
    got = sum(Decimal(e.cost_usd) for e in events)
    assert got == Decimal(expected_pico) / 10**12, (got, expected_pico)
    # and class by class, the events carry what the fake reported
    assert sum(e.cached_input_tokens for e in events) == reads
    assert sum(e.cache_write_5m_tokens + e.cache_write_1h_tokens for e in events) == writes
    assert sum(e.input_tokens for e in events) == sum(u["input_tokens"] for u in usages)
    # what a flat input price would have billed instead (the bug this fixes) differs
    flat = sum(u["input_tokens"] * PICO["input"] - u["cached_tokens"] * (PICO["input"] - PICO["read"])
               + (u["output_tokens"] + u["reasoning_tokens"]) * PICO["output"] for u in usages)
    assert flat != expected_pico


# a 1x1 PNG: Gemini CLI counts tokens (countTokens) before sending a prompt that carries media
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63f8cfc0"
                    "f01f0005000201a0f3b6c70000000049454e44ae426082")


@pytest.mark.parametrize(("model", "provider", "count_path"), [
    (CLAUDE_MODEL, "fa", "/v1/messages/count_tokens"),  # Anthropic provider: its count_tokens
    (CODEX_MODEL, "fo", None),  # OpenAI-compatible provider: no counting endpoint, the gateway estimates
], ids=["anthropic-provider", "openai-provider"])
async def test_gemini_cli_counts_tokens_on_a_model_of_another_api(
        agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path, model: str, provider: str,
        count_path: str | None) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "dot.png").write_bytes(PNG)
    run, result = await run_gemini(agent_gateway, tmp_path, "describe @dot.png", model=model)
    assert result["response"].split()[0] == "Echo:", run.describe()
    assert_only_gateway(run, agent_gateway)
    events = agent_gateway.sink.events
    counts = [e for e in events if e.endpoint.endswith(":countTokens")]
    assert counts, [(e.endpoint, e.status) for e in events]  # the CLI did count, through the gateway
    sent = [h for h in fake_provider.stats()["history"] if h["path"] == count_path]
    for e in counts:
        assert e.status == 200 and e.provider == provider and e.counted_tokens > 0
        assert e.count_estimated is (count_path is None) and e.cost_usd == "0.000000000000"
    assert len(sent) == (len(counts) if count_path else 0)


@pytest.mark.parametrize(("model", "provider", "count_path"), [
    (GEMINI_MODEL, "fg", f"/v1beta/models/{GEMINI_MODEL}:countTokens"),  # Gemini provider: its countTokens
    (CODEX_MODEL, "fo", None),  # OpenAI-compatible provider: no counting endpoint, the gateway estimates
], ids=["gemini-provider", "openai-provider"])
async def test_claude_code_context_counts_tokens_on_a_model_of_another_api(
        agent_gateway: Gateway, fake_provider: FakeProvider, tmp_path: Path, model: str, provider: str,
        count_path: str | None) -> None:
    """`claude -p /context` sizes the system prompt, tools and memory with count_tokens calls."""
    run, result = await run_claude(agent_gateway, tmp_path, "/context", model=model)
    assert result["is_error"] is False, run.describe()
    assert_only_gateway(run, agent_gateway)
    counts = [e for e in agent_gateway.sink.events if e.endpoint == "/v1/messages/count_tokens"]
    assert len(counts) >= 3, [(e.endpoint, e.status) for e in agent_gateway.sink.events]
    for e in counts:
        assert e.status == 200 and e.provider == provider and e.counted_tokens > 0, (e.status, e.error_class)
        assert e.count_estimated is (count_path is None) and e.cost_usd == "0.000000000000"
    sent = [h for h in fake_provider.stats()["history"] if h["path"] == count_path]
    assert len(sent) == (len(counts) if count_path else 0)
    assert fake_provider.stats()["total"] == len(sent)  # counting only: nothing generated, nothing billed


async def test_claude_code_context_when_the_anthropic_primary_answers_529(
        fake_provider: FakeProvider, tmp_path: Path) -> None:
    """The primary (Anthropic API) is overloaded and the fallback speaks the OpenAI API: Claude Code's counts
    come from the fallback (estimated), never the misleading 'cannot be translated' 400."""
    policy = agent_policy(fake_provider.base_url)
    policy = policy.model_copy(update={"models": [*policy.models, Model(
        name="claude-flaky", provider="fa", upstream="claude-up", price=SONNET, fallback=[CODEX_MODEL],
        circuit=CircuitBreaker(enabled=False))]})
    fake_provider.add_fault(status=529, count=None, path="/v1/messages/count_tokens")
    with tempfile.TemporaryDirectory() as state:
        async with running_gateway(fake_provider.base_url, Path(state), policy=policy) as gw:
            run, result = await run_claude(gw, tmp_path, "/context", model="claude-flaky")
            assert result["is_error"] is False, run.describe()
            counts = [e for e in gw.sink.events if e.endpoint == "/v1/messages/count_tokens"]
    assert counts
    for e in counts:
        assert e.status == 200 and e.count_estimated and e.counted_tokens > 0
        assert [(a.provider, a.status) for a in e.attempts] == [("fa", 529), ("fo", 200)]
    assert {h["status"] for h in fake_provider.stats()["history"]} == {529}  # the primary really failed each time
