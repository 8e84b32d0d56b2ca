"""Rotated provider credentials (file refs) take effect without a policy change."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import anthropic

from controlplane.policy.compiler import compile_snapshot
from controlplane.policy.model import KeyRecord, Model, PolicyDocument, Provider
from dataplane.node import DataPlaneNode
from dataplane.providers.registry import default_providers
from dataplane.snapshot import file as snapshot_file
from dataplane.snapshot.holder import PolicyHolder
from dataplane.snapshot.policy import env_and_file_credentials
from dataplane.usage.sink import MemorySink
from interlock_contracts.credential_refs import CredentialRules
from interlock_contracts.keys import hash_key, new_secret
from interlock_contracts.settings.dataplane import DataPlaneSettings
from interlock_contracts.v1 import policy_pb2
from tests.fixtures.fakeprovider import FakeProvider

PEPPER = b"rotation-test-pepper"


def _snapshot(token_file: Path) -> policy_pb2.PolicySnapshot:
    doc = PolicyDocument(
        providers=[Provider(name="vtx", kind="vertex_anthropic", base_url="https://us-east5-aiplatform.googleapis.com",
                            credential=f"file:{token_file}", options={"project": "p", "location": "us-east5"})],
        models=[Model(name="claude", provider="vtx", upstream="claude-sonnet-4@20250514")],
    )
    return compile_snapshot(doc, [], version=3, now_ms=0)


def test_a_rotated_token_file_is_picked_up_and_an_unchanged_one_costs_no_swap(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("ya29.first\n")
    holder = PolicyHolder(default_providers(), env_and_file_credentials({}, CredentialRules(dirs=(tmp_path,))))
    swaps: list[int] = []
    holder.on_swap(lambda p: swaps.append(p.version))
    holder.apply(_snapshot(token))
    first = holder.policy
    assert first is not None and ("authorization", "Bearer ya29.first") in first.providers["vtx"].headers

    assert holder.refresh_credentials() is False and holder.policy is first and swaps == [3]

    token.write_text("ya29.second\n")
    assert holder.refresh_credentials() is True
    assert holder.policy is not None and holder.policy.version == 3 and swaps == [3, 3]
    assert ("authorization", "Bearer ya29.second") in holder.policy.providers["vtx"].headers

    token.unlink()  # the sidecar failed: the provider becomes unavailable with the reason, nothing crashes
    assert holder.refresh_credentials() is True
    assert "is not available on this node" in holder.policy.providers["vtx"].unavailable


async def test_the_node_re_reads_a_rotated_token_in_the_background(fake_provider: FakeProvider, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("ya29.first")
    secret = new_secret()
    key = KeyRecord(id="vk_rot", key_hash=hash_key(PEPPER, secret).hex(), team="")
    doc = PolicyDocument(
        providers=[Provider(name="vtx", kind="vertex_anthropic", base_url=fake_provider.base_url,
                            credential=f"file:{token}", options={"project": "p", "location": "us-east5"})],
        models=[Model(name="claude", provider="vtx", upstream="claude-sonnet-4@20250514")],
    )
    snapshot_file.save(tmp_path / "snapshot.pb", compile_snapshot(doc, [key], version=1, now_ms=0))
    settings = DataPlaneSettings(node_id="n", key_pepper=PEPPER, port=0, control_plane="", state_dir=tmp_path,
                                 tune_gc=False, credential_refresh_s=0.05,
                                 credentials=CredentialRules(dirs=(tmp_path,)))
    node = DataPlaneNode(settings, sink=MemorySink(), env={})
    await node.start()
    try:
        client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{node.port}", api_key=secret, max_retries=0)
        hi: Any = [{"role": "user", "content": "hi"}]
        await client.messages.create(model="claude", max_tokens=8, messages=hi)
        seen = fake_provider.last_request
        assert seen is not None and seen["api_key_sha256"] == hashlib.sha256(b"ya29.first").hexdigest()
        token.write_text("ya29.second")
        for _ in range(100):
            await asyncio.sleep(0.05)
            await client.messages.create(model="claude", max_tokens=8, messages=hi)
            seen = fake_provider.last_request
            assert seen is not None
            if seen["api_key_sha256"] == hashlib.sha256(b"ya29.second").hexdigest():
                break
        else:
            raise AssertionError("the rotated token was never used")
    finally:
        await node.stop()
