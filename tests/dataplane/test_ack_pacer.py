"""Nodes coalesce accepted delta acks (dataplane/ack_pacer.py, issue 16): fewer acks for the control plane to
receive, the node's status still recorded exactly, a lone edit and every rejection acknowledged at once."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controlplane.budget.runkeys import RunKeySpec
from controlplane.grpc_server import build_server
from controlplane.nodes import read_node_status
from controlplane.policy.model import PolicyDocument
from controlplane.publisher import SnapshotPublisher
from controlplane.service import StorePolicyService
from controlplane.service_types import KeySpec
from controlplane.store import open_store
from dataplane.providers.registry import default_providers
from dataplane.snapshot.ack_pacer import AckPacer
from dataplane.snapshot.holder import PolicyHolder
from dataplane.snapshot.sync import SnapshotSync
from interlock_contracts.v1 import control_pb2

PEPPER = b"pepper"


async def until(check: Callable[[], bool], within_s: float) -> bool:
    for _ in range(int(within_s / 0.01)):
        if check():
            return True
        await asyncio.sleep(0.01)
    return check()


def ack(version: int, accepted: bool = True) -> control_pb2.Ack:
    return control_pb2.Ack(version=version, content_hash=f"h{version}", accepted=accepted,
                           reason="" if accepted else "bad")


def test_first_accepted_ack_goes_at_once_later_ones_are_held_and_only_the_newest_sent() -> None:
    pacer = AckPacer(1.0)
    assert [a.version for a in pacer.offer(ack(1), 10.0, coalescible=True)] == [1]
    assert pacer.deadline() is None
    assert pacer.offer(ack(2), 10.2, coalescible=True) == []
    assert pacer.offer(ack(3), 10.4, coalescible=True) == []
    assert pacer.deadline() == 11.0 and pacer.coalesced == 1
    assert pacer.due(10.9) == []
    assert [a.version for a in pacer.due(11.0)] == [3]
    assert pacer.deadline() is None and pacer.due(math.inf) == []
    # the next accepted ack waits for the interval that began with the held one's send
    assert pacer.offer(ack(4), 11.5, coalescible=True) == []
    assert [a.version for a in pacer.offer(ack(5), 12.0, coalescible=True)] == [5]  # supersedes 4
    assert pacer.deadline() is None


def test_held_ack_goes_once_no_newer_delta_came_for_quiet_s_but_a_steady_stream_stays_coalesced() -> None:
    pacer = AckPacer(5.0, quiet_s=1.0)
    assert [a.version for a in pacer.offer(ack(1), 0.0, coalescible=True)] == [1]
    # A steady stream, one delta per 0.6 s publish window: each newer delta pushes the quiet flush back.
    for i, t in enumerate((0.6, 1.2, 1.8, 2.4, 3.0), start=2):
        assert pacer.offer(ack(i), t, coalescible=True) == []
        assert pacer.deadline() == pytest.approx(t + 1.0)
        assert pacer.due(t + 0.59) == []
    assert pacer.offer(ack(7), 3.6, coalescible=True) == []
    assert pacer.offer(ack(8), 4.2, coalescible=True) == []
    assert pacer.deadline() == 5.0  # the interval ends first: 8 deltas, 2 acks
    assert [a.version for a in pacer.due(5.0)] == [8]
    # The run of edits ends: the last one is acked quiet_s after it came, not at the end of the next interval.
    assert pacer.offer(ack(9), 5.3, coalescible=True) == []
    assert pacer.deadline() == pytest.approx(6.3)
    assert pacer.due(6.2) == [] and [a.version for a in pacer.due(6.3)] == [9]
    with pytest.raises(ValueError):
        AckPacer(1.0, quiet_s=0)


def test_rejections_and_snapshot_acks_go_at_once_after_the_held_ack() -> None:
    pacer = AckPacer(1.0)
    pacer.offer(ack(1), 0.0, coalescible=True)
    assert pacer.offer(ack(2), 0.1, coalescible=True) == []
    sent = pacer.offer(ack(3, accepted=False), 0.2, coalescible=True)
    assert [(a.version, a.accepted) for a in sent] == [(2, True), (3, False)]  # in order, nothing held back
    assert pacer.offer(ack(4, accepted=False), 0.3, coalescible=True)[0].version == 4
    assert [a.version for a in pacer.offer(ack(5), 0.4, coalescible=False)] == [5]  # a full snapshot's ack
    assert pacer.deadline() is None


def test_interval_zero_acks_everything() -> None:
    pacer = AckPacer(0.0)
    assert [len(pacer.offer(ack(v), 5.0, coalescible=True)) for v in range(1, 5)] == [1, 1, 1, 1]
    with pytest.raises(ValueError):
        AckPacer(-1)


@pytest.mark.integration
async def test_coalesced_acks_over_real_grpc_still_record_the_nodes_exact_version(tmp_path: Path) -> None:
    kv = open_store(f"sqlite:///{tmp_path}/policy.db", "/acks")
    publisher = SnapshotPublisher(kv, retry_s=0.1, batch_s=0.05)
    service = StorePolicyService(kv, PEPPER, time.time)
    await service.apply(PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": "m1", "provider": "p"}], "teams": [{"id": "t1"}]}))
    parent = (await service.create_key(KeySpec(name="orchestrator", team="t1"))).record
    await publisher.start()
    server, servicer, port = build_server(publisher, kv, host="127.0.0.1", port=0, heartbeat_s=5.0)
    await server.start()
    holder = PolicyHolder(default_providers(), lambda _ref: None)
    # The default interval (5 s since issue 16's fourth round): a node's recorded status must still converge.
    sync = SnapshotSync(f"127.0.0.1:{port}", "n1", holder.apply, tmp_path / "n1" / "snapshot.pb", holder=holder)
    task = asyncio.get_running_loop().create_task(sync.run())
    try:
        assert publisher.current is not None
        assert await sync.wait_for_version(publisher.current.version, 10)
        assert await until(lambda: servicer.acks_received >= 1, 5.0)  # the full snapshot's ack
        await asyncio.sleep(5.1)  # a quiet interval

        # A lone mint after a quiet interval: acked at once (well before the 5 s interval could flush it).
        before = servicer.acks_received
        await service.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000, budget_usd="1"))
        started = time.monotonic()
        assert await until(lambda: servicer.acks_received > before, 2.5)
        assert time.monotonic() - started < 2.5

        # A burst: every delta applied, the acks held and coalesced into the newest one.
        deltas0, acks0 = sync.deltas_applied, servicer.acks_received
        for _ in range(6):
            await service.mint_run_key(RunKeySpec(parent=parent.id, ttl_ms=60_000, budget_usd="1"))
            await asyncio.sleep(0.08)  # past the publish batch: each mint its own delta
        final = (await kv.get("policy/version"))
        assert final is not None
        assert await sync.wait_for_version(final.mod_revision, 10)
        deltas = sync.deltas_applied - deltas0
        assert deltas >= 3
        # The node status the control plane records (read from the store, not from the node) reaches the exact
        # version and hash the node applied, though fewer acks than deltas were sent, and soon after the burst
        # (the quiet flush, ~1 s, plus the status writer's 1 s), not only when the 5 s interval ends.
        applied_at = time.monotonic()
        async with asyncio.timeout(10):
            while True:
                status = [s for s in await read_node_status(kv) if s.node_id == "n1"]
                if status and status[0].version == sync.applied_version:
                    break
                await asyncio.sleep(0.1)
        assert status[0].content_hash == sync.applied_hash
        assert time.monotonic() - applied_at < 3.5
        assert servicer.acks_received - acks0 < deltas
    finally:
        await sync.stop()
        task.cancel()
        await server.stop(0)
        await publisher.stop()
        await kv.close()
