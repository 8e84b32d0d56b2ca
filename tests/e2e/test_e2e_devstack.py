"""`interlock dev` end to end: the in-process DevStack called with the official OpenAI SDK, usage landing in
ClickHouse (chDB) under the data directory, and the dev key surviving a restart on the same directory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
import openai

from ingest.schema import DEFAULT_DATABASE
from interlock.dev.settings import DevSettings
from interlock.dev.setup import FAKE_GPT
from interlock.dev.stack import DevStack
from tests.fixtures.cluster import free_port


def _settings(data_dir: Path) -> DevSettings:
    return DevSettings(data_dir=data_dir, host="127.0.0.1", port=free_port(), admin_port=free_port(),
                       grpc_port=free_port(), fake_provider_port=free_port(), with_usage=True)


def _env() -> dict[str, str]:
    # No real provider keys: the dev stack must serve only its fake models here.
    return {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}


def _rows(data_dir: Path) -> list[Sequence[Any]]:
    with clickhouse_connect.get_client(dsn=f"chdb://{data_dir}/clickhouse") as ch:
        rows = ch.query(
            f"SELECT requested_model, model, input_tokens, output_tokens, status, key_id, team_id "
            f"FROM {DEFAULT_DATABASE}.usage_events FINAL ORDER BY received_at"
        ).result_rows
    return list(rows)


async def _chat(stack: DevStack) -> openai.types.chat.ChatCompletion:
    assert stack.node is not None
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{stack.node.port}/v1", api_key=stack.virtual_key,
                                max_retries=0, timeout=10)
    try:
        return await client.chat.completions.create(model=FAKE_GPT, messages=[{"role": "user", "content": "hello"}])
    finally:
        await client.close()


async def test_devstack_usage_lands_in_clickhouse_and_key_persists(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    settings = _settings(data_dir)
    stack = DevStack(settings, env=_env())
    await stack.start()
    try:
        key = stack.virtual_key
        assert key and key in stack.banner()
        resp = await _chat(stack)
    finally:
        await stack.stop()
    assert resp.choices[0].message.content
    assert resp.usage is not None

    rows = _rows(data_dir)
    assert len(rows) == 1, rows
    requested, model, tin, tout, status, key_id, team = rows[0]
    assert (requested, model, status, team) == (FAKE_GPT, FAKE_GPT, 200, "dev")
    assert (tin, tout) == (resp.usage.prompt_tokens, resp.usage.completion_tokens)
    assert key_id

    # Restart on the same directory (and ports, like `interlock dev` run again): same key, one more usage row.
    stack2 = DevStack(settings, env=_env())
    await stack2.start()
    try:
        assert stack2.virtual_key == key
        resp2 = await _chat(stack2)
    finally:
        await stack2.stop()
    assert resp2.choices[0].message.content
    rows = _rows(data_dir)
    assert len(rows) == 2 and rows[1][5] == key_id, rows


async def test_devstack_restart_with_another_fake_provider_port(tmp_path: Path) -> None:
    """`interlock dev` run again with a different INTERLOCK_FAKE_PROVIDER_PORT (e.g. 9099 was taken) must still
    serve its built-in fake models: the stack starts the fake provider itself, so it knows where it is."""
    data_dir = tmp_path / "dev"
    stack = DevStack(_settings(data_dir), env=_env())
    await stack.start()
    await stack.stop()
    stack2 = DevStack(_settings(data_dir), env=_env())  # new free ports, fake provider included
    await stack2.start()
    try:
        resp = await _chat(stack2)
    finally:
        await stack2.stop()
    assert resp.choices[0].message.content



async def test_dev_policy_from_before_the_credential_rules_is_repointed(tmp_path: Path) -> None:
    """A data dir whose stored policy names the fake provider's key under secrets/ (before provider credentials
    moved to credentials/, away from the pepper; `apply` now refuses the old path) is re-pointed on start."""
    from controlplane.policy.model import PolicyDocument
    from interlock.dev.setup import bootstrap_policy, ensure_policy_and_key, load_secrets

    data_dir = tmp_path / "dev"
    (data_dir / "secrets").mkdir(parents=True)
    sec = load_secrets(data_dir)
    old = bootstrap_policy("http://127.0.0.1:1", (data_dir / "secrets" / "fake-provider-key").resolve(), {})
    (data_dir / "secrets" / "dev-virtual-key").write_text("vk_existing")

    class Service:  # the stored document as an older build left it; records what start-up applies
        def __init__(self) -> None:
            self.applied: list[PolicyDocument] = []

        async def get_document(self) -> tuple[PolicyDocument, int]:
            return old, 1

        async def apply(self, doc: PolicyDocument) -> None:
            self.applied.append(doc)

    svc = Service()
    assert await ensure_policy_and_key(svc, data_dir, "http://127.0.0.1:2", sec, {}) == "vk_existing"  # type: ignore[arg-type]
    [doc] = svc.applied
    fakes = [p for p in doc.providers if p.name.startswith("fake-")]
    assert fakes and all(p.credential == f"file:{sec.provider_key_path}" for p in fakes)
    assert all(p.base_url.startswith("http://127.0.0.1:2") for p in fakes)
