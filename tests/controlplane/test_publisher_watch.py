"""On etcd the publisher keeps one watch on policy/, not two (issue 16): while the key delta source's own watch
follows the store, the publisher's is paused; every kind of change is still published, also after that
source's watch dies."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane.budget.runkeys import RunKeySpec
from controlplane.policy.model import PolicyDocument
from controlplane.publisher import SnapshotPublisher
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import open_store

pytestmark = pytest.mark.integration


def doc(*models: str) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": m, "provider": "p", "price": {"input": "1", "output": "2"}} for m in models],
        "teams": [{"id": "t"}],
    })


async def published(publisher: SnapshotPublisher, version: int, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while publisher.current is None or publisher.current.version < version:
        assert time.monotonic() < deadline, f"version {version} never published"
        await asyncio.sleep(0.02)


async def test_one_watch_while_key_deltas_follow_and_every_change_still_published(etcd_url: str,
                                                                                   store_prefix: str) -> None:
    kv = open_store(etcd_url, store_prefix)
    svc = StorePolicyService(kv, b"pepper", time.time)
    await svc.apply(doc("m1"))
    parent = (await svc.create_key(KeySpec(name="o", team="t"))).record
    publisher = SnapshotPublisher(kv, retry_s=0.1, batch_s=0.01)
    await publisher.start()
    try:
        assert publisher._watch_task is not None  # nothing follows key deltas yet: the publisher watches
        for _ in range(3):
            await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000))
        await published(publisher, (await kv.get("policy/version")).mod_revision)  # type: ignore[union-attr]
        assert publisher.key_deltas >= 1
        assert publisher._watch_task is None  # the key delta source's watch stands in for it

        full = publisher.full_compiles
        version = (await svc.apply(doc("m1", "m2"))).version  # not a key change: seen through the source
        await published(publisher, version)
        assert publisher.full_compiles == full + 1
        assert [m.name for m in publisher.current.snapshot.models] == ["m1", "m2"]  # type: ignore[union-attr]

        await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000))
        await published(publisher, (await kv.get("policy/version")).mod_revision)  # type: ignore[union-attr]
        source = publisher._keys_only
        assert source is not None and source.feeding
        source.close()  # its watch dies (as on a broken stream): the publisher must not go deaf
        await asyncio.sleep(0.3)
        await svc.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000))
        await published(publisher, (await kv.get("policy/version")).mod_revision)  # type: ignore[union-attr]
    finally:
        await publisher.stop()
        await kv.close()
