"""Node status records from every subscribed node go to the store in one transaction per interval (issue 16),
on both store backends: the store ends up holding each node's latest acked version, in a handful of writes,
and records survive a store outage."""

from __future__ import annotations

import asyncio
import time

import pytest

from controlplane.errors import StoreUnavailable
from controlplane.node_status_writer import NodeStatusWriter
from controlplane.nodes import NodeRecord, NodeSession, read_node_status
from controlplane.store import KV
from controlplane.store.layout import NODES, encode
from interlock_contracts.v1 import control_pb2

pytestmark = pytest.mark.integration


async def stored_versions(kv: KV) -> dict[str, int]:
    return {s.node_id: s.version for s in await read_node_status(kv)}


async def eventually(kv: KV, want: dict[str, int], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if await stored_versions(kv) == want:
            return
        await asyncio.sleep(0.05)
    assert await stored_versions(kv) == want


async def test_150_nodes_acking_many_versions_cost_a_few_chunked_writes(kv: KV) -> None:
    writer = NodeStatusWriter(kv, min_interval_s=0.3)
    for version in range(1, 6):  # five versions acked by 150 nodes in quick succession
        for n in range(150):
            writer.put(NODES + f"n{n}", encode(NodeRecord(node_id=f"n{n}", version=version)))
        await asyncio.sleep(0)
    await eventually(kv, {f"n{n}": 5 for n in range(150)})
    # 150 records need two transactions (<= 100 operations each, under etcd's 128); the five rounds coalesce
    assert 2 <= writer.writes <= 4, writer.writes
    await writer.close()


class FlakyKV:
    """The real store behind it; the first `failures` commits fail as an outage would."""

    def __init__(self, kv: KV, failures: int):
        self._kv, self.failures = kv, failures

    async def commit(self, puts: dict[str, bytes]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("store down (test)")
        await self._kv.commit(puts)


async def test_records_survive_an_outage_and_the_newest_record_wins(kv: KV) -> None:
    flaky = FlakyKV(kv, failures=2)
    writer = NodeStatusWriter(flaky, min_interval_s=0.05, retry_s=0.1)  # type: ignore[arg-type]
    writer.put(NODES + "a", encode(NodeRecord(node_id="a", version=1)))
    writer.put(NODES + "b", encode(NodeRecord(node_id="b", version=1)))
    await asyncio.sleep(0.05)
    writer.put(NODES + "a", encode(NodeRecord(node_id="a", version=2)))  # handed in during the outage
    await eventually(kv, {"a": 2, "b": 1})
    assert flaky.failures == 0
    writer.put(NODES + "b", encode(NodeRecord(node_id="b", version=3)))
    await writer.close()  # shutdown writes what is pending
    assert await stored_versions(kv) == {"a": 2, "b": 3}


class CountingKV:
    def __init__(self, kv: KV):
        self._kv, self.ephemeral = kv, 0

    async def commit(self, puts: dict[str, bytes], deletes: list[str] | None = None) -> None:
        await self._kv.commit(puts, deletes or [])

    async def put_ephemeral(self, key: str, value: bytes, ttl_s: float) -> None:
        self.ephemeral += 1
        await self._kv.put_ephemeral(key, value, ttl_s)


async def test_acks_do_not_refresh_the_liveness_key_more_than_once_a_heartbeat(kv: KV) -> None:
    counting = CountingKV(kv)
    writer = NodeStatusWriter(counting, min_interval_s=0.02)  # type: ignore[arg-type]
    hello = control_pb2.Hello(node_id="n1", last_version=1)
    session = NodeSession(counting, time.time, hello, peer="p", ttl_s=3.0,  # type: ignore[arg-type]
                          writer=writer)
    session.start()
    for version in range(2, 22):  # 20 acks over ~0.5 s, each also touching liveness, as the stream does
        session.ack(control_pb2.Ack(version=version, accepted=True))
        session.touch()
        await asyncio.sleep(0.025)
    await eventually(kv, {"n1": 21})
    assert counting.ephemeral == 1  # the 3 s key is refreshed at most once per 1 s heartbeat
    status = await read_node_status(kv)
    assert status[0].connected
    await session.close(last_session=True)
    await writer.close()
    assert not (await read_node_status(kv))[0].connected
