"""Snapshot publishing over a real grpc.aio server, with real grpc.aio client streams on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from controlplane.errors import StoreUnavailable
from controlplane.grpc_server import start_control_plane_grpc
from controlplane.policy.model import PolicyDocument
from controlplane.publisher import Published, SnapshotPublisher, Subscription
from controlplane.service import StorePolicyService
from controlplane.service_types import NodeStatus
from controlplane.store import KV, open_store
from controlplane.store.layout import VERSION_KEY
from interlock_contracts.snapshot_state import SnapshotState
from interlock_contracts.v1 import control_pb2, control_pb2_grpc, policy_pb2
from tests.fixtures.etcd import EtcdServer

pytestmark = pytest.mark.integration
HEARTBEAT_S = 0.2


def policy(*model_names: str) -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": n, "provider": "p"} for n in model_names or ("m1",)],
    })


@dataclass
class ControlPlane:
    kv: KV
    service: StorePolicyService
    publisher: SnapshotPublisher
    target: str


async def _start(kv: KV) -> tuple[ControlPlane, Callable[[], Awaitable[None]]]:
    publisher = SnapshotPublisher(kv, retry_s=0.1)
    service = StorePolicyService(
        kv, b"pepper", time.time, published=lambda: publisher.current.snapshot if publisher.current else None
    )
    await publisher.start()
    server, port = await start_control_plane_grpc(publisher, kv, port=0, heartbeat_s=HEARTBEAT_S)

    async def stop() -> None:
        await server.stop(0)
        await publisher.stop()
        await kv.close()

    return ControlPlane(kv, service, publisher, f"127.0.0.1:{port}"), stop


@pytest.fixture
async def cp(tmp_path, store_prefix: str) -> AsyncIterator[ControlPlane]:
    plane, stop = await _start(open_store(f"sqlite:///{tmp_path}/policy.db", store_prefix))
    yield plane
    await stop()


class Node:
    """A minimal data-plane side of the Subscribe stream. Messages are read by a background task, so
    waiting for one with a timeout never cancels the call."""

    def __init__(self, target: str, node_id: str, last: policy_pb2.PolicySnapshot | None = None):
        self.channel = grpc.aio.insecure_channel(target)
        self._outbox: asyncio.Queue[control_pb2.NodeMessage | None] = asyncio.Queue()
        self._inbox: asyncio.Queue[control_pb2.ControlMessage] = asyncio.Queue()
        hello = control_pb2.Hello(node_id=node_id, listen_address=f"{node_id}:8080", software_version="test")
        if last is not None:
            hello.last_version, hello.last_content_hash = last.version, last.content_hash
        self._outbox.put_nowait(control_pb2.NodeMessage(hello=hello))
        self.call = control_pb2_grpc.ControlPlaneStub(self.channel).Subscribe(self._requests())
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _requests(self) -> AsyncIterator[control_pb2.NodeMessage]:
        while (msg := await self._outbox.get()) is not None:
            yield msg

    async def _read(self) -> None:
        async for msg in self.call:
            self._inbox.put_nowait(msg)

    async def next_message(self, within_s: float = 5.0) -> control_pb2.ControlMessage:
        return await asyncio.wait_for(self._inbox.get(), within_s)

    async def next_snapshot(self, within_s: float = 5.0) -> policy_pb2.PolicySnapshot:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            msg = await self.next_message(max(0.0, deadline - loop.time()))
            if msg.WhichOneof("msg") == "snapshot":
                return msg.snapshot

    def ack(self, snap: policy_pb2.PolicySnapshot, accepted: bool = True, reason: str = "") -> None:
        ack = control_pb2.Ack(version=snap.version, content_hash=snap.content_hash, accepted=accepted, reason=reason)
        self._outbox.put_nowait(control_pb2.NodeMessage(ack=ack))

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        self.call.cancel()
        self._reader.cancel()
        with suppress(asyncio.CancelledError, grpc.RpcError):
            await self._reader
        await self.channel.close()


async def eventually(check: Callable[[], Awaitable[Any]], within_s: float = 5.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def status_of(cp: ControlPlane, node_id: str) -> NodeStatus | None:
    try:
        return next((n for n in await cp.service.node_status() if n.node_id == node_id), None)
    except StoreUnavailable:
        return None  # e.g. etcd still coming back after an outage test


async def test_subscriber_gets_current_snapshot_then_updates(cp: ControlPlane) -> None:
    v1 = (await cp.service.apply(policy("m1"))).version
    await eventually(lambda: _published(cp, v1))
    node = Node(cp.target, "n1")
    try:
        first = await node.next_snapshot()
        assert first.version == v1 and [m.name for m in first.models] == ["m1"]
        assert first.content_hash == (await cp.service.current_snapshot()).content_hash
        v2 = (await cp.service.apply(policy("m1", "m2"))).version
        second = await node.next_snapshot()
        assert second.version == v2 > v1 and [m.name for m in second.models] == ["m1", "m2"]
    finally:
        await node.close()


async def test_node_that_is_up_to_date_only_gets_heartbeats(cp: ControlPlane) -> None:
    v1 = (await cp.service.apply(policy())).version
    await eventually(lambda: _published(cp, v1))
    node = Node(cp.target, "n1", last=await cp.service.current_snapshot())
    try:
        for _ in range(3):
            msg = await node.next_message()
            assert msg.WhichOneof("msg") == "heartbeat" and msg.heartbeat.current_version == v1
    finally:
        await node.close()


async def test_acks_and_rejections_land_in_node_status(cp: ControlPlane) -> None:
    await cp.service.apply(policy())
    node = Node(cp.target, "edge-1")
    try:
        snap = await node.next_snapshot()
        node.ack(snap)
        st = await eventually(lambda: _status_where(cp, "edge-1", lambda s: s.version == snap.version))
        assert st.connected and st.content_hash == snap.content_hash and st.address == "edge-1:8080"
        assert st.last_seen_unix_ms > 0

        await cp.service.apply(policy("m1", "m2"))
        bad = await node.next_snapshot()
        node.ack(bad, accepted=False, reason="provider kind 'p' unsupported")
        st = await eventually(lambda: _status_where(cp, "edge-1", lambda s: s.rejected_version == bad.version))
        assert st.reject_reason == "provider kind 'p' unsupported" and st.version == snap.version
    finally:
        await node.close()
    st = await eventually(lambda: _status_where(cp, "edge-1", lambda s: not s.connected))
    assert st.version == snap.version  # the last known state survives the disconnect


async def test_twenty_subscribers_all_receive_an_update_fast(cp: ControlPlane) -> None:
    await cp.service.apply(policy("m1"))
    nodes = [Node(cp.target, f"n{i}") for i in range(20)]
    try:
        await asyncio.gather(*(n.next_snapshot() for n in nodes))
        await eventually(lambda: _async(cp.publisher.subscriber_count == 20))
        start = time.perf_counter()
        version = (await cp.service.apply(policy("m1", "m2"))).version
        got = await asyncio.gather(*(n.next_snapshot() for n in nodes))
        elapsed = time.perf_counter() - start
        print(f"\napply -> 20 subscribers received version {version}: {elapsed * 1000:.1f} ms")
        assert {s.version for s in got} == {version}
        assert elapsed < 5  # generous: the printed number is the measurement
    finally:
        await asyncio.gather(*(n.close() for n in nodes))


async def test_invalid_state_written_directly_is_never_published(cp: ControlPlane) -> None:
    good = (await cp.service.apply(policy("m1"))).version
    node = Node(cp.target, "n1")
    try:
        assert (await node.next_snapshot()).version == good
        # A dangling provider reference, written behind the service's back, with a version bump.
        await cp.kv.commit({"policy/models/m9": b'{"name":"m9","provider":"ghost"}', VERSION_KEY: b"{}"})
        await eventually(lambda: _async(bool(cp.publisher.errors)))
        assert any("provider 'ghost'" in e for e in cp.publisher.errors)
        # status stays answerable: the service reports the snapshot still being served
        assert (await cp.service.current_snapshot()).version == good
        with pytest.raises(TimeoutError):
            await node.next_snapshot(within_s=4 * HEARTBEAT_S)
        late = Node(cp.target, "n2")  # a node arriving now still gets the last good snapshot
        try:
            assert (await late.next_snapshot()).version == good
        finally:
            await late.close()
        fixed = (await cp.service.apply(policy("m1", "m2"))).version  # replacing the broken item fixes it
        assert (await node.next_snapshot()).version == fixed
        assert cp.publisher.errors == []
    finally:
        await node.close()


async def test_unversioned_direct_write_gets_a_new_version(cp: ControlPlane) -> None:
    v1 = (await cp.service.apply(policy("m1"))).version
    node = Node(cp.target, "n1")
    try:
        assert (await node.next_snapshot()).version == v1
        await cp.kv.commit({"policy/models/m2": b'{"name":"m2","provider":"p"}'})  # no version bump
        snap = await node.next_snapshot()
        assert snap.version > v1 and [m.name for m in snap.models] == ["m1", "m2"]
    finally:
        await node.close()


async def test_first_message_must_be_hello(cp: ControlPlane) -> None:
    async with grpc.aio.insecure_channel(cp.target) as channel:
        async def requests() -> AsyncIterator[control_pb2.NodeMessage]:
            yield control_pb2.NodeMessage(ack=control_pb2.Ack(version=1))

        call = control_pb2_grpc.ControlPlaneStub(channel).Subscribe(requests())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_slow_subscriber_holds_only_the_latest_snapshot() -> None:
    async def run() -> None:
        sub = Subscription()
        for v in range(1, 101):
            sub.offer(Published(SnapshotState(version=v)))
        assert (await sub.get()).version == 100
        assert await sub.wait(0.01) is None  # nothing older is left behind

    asyncio.run(run())


async def test_subscription_keeps_one_timer_across_waits() -> None:
    """A wait woken by an offer leaves its timer armed for the next wait (issue 16: no timer per publish per
    stream); a wait never sleeps past its own deadline, and may return None earlier, when that timer fires."""
    sub = Subscription()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, sub.offer, Published(SnapshotState(version=1)))
    assert (await sub.wait(0.3)) is not None
    timer = sub._timer
    assert timer is not None and not timer.cancelled()
    t0 = loop.time()
    assert await sub.wait(5.0) is None  # the first wait's timer (0.3 s) fires first
    assert loop.time() - t0 < 1.0
    t0 = loop.time()
    assert await sub.wait(0.05) is None and loop.time() - t0 < 0.5  # a nearer deadline re-arms
    sub.close()
    assert sub._timer is None and await sub.wait(5.0) is None


async def test_streams_survive_an_etcd_outage(etcd_server: EtcdServer, store_prefix: str) -> None:
    etcd_server.start()
    plane, stop = await _start(open_store(etcd_server.url, store_prefix))
    node = Node(plane.target, "n1")
    try:
        await plane.service.apply(policy("m1"))
        snap = await node.next_snapshot()
        etcd_server.stop()
        node.ack(snap)  # the status write fails; the stream must not
        for _ in range(5):
            assert (await node.next_message()).WhichOneof("msg") == "heartbeat"
        etcd_server.start()
        st = await eventually(lambda: _status_where(plane, "n1", lambda s: s.version == snap.version), within_s=20)
        assert st.connected
        v2 = (await plane.service.apply(policy("m1", "m2"))).version
        assert (await node.next_snapshot(within_s=20)).version == v2
    finally:
        etcd_server.start()
        await node.close()
        await stop()


# -- helpers -------------------------------------------------------------------


async def _async(value: Any) -> Any:
    return value


async def _published(cp: ControlPlane, version: int) -> bool:
    return cp.publisher.current is not None and cp.publisher.current.snapshot.version >= version


async def _status_where(cp: ControlPlane, node_id: str, pred: Callable[[NodeStatus], bool]) -> NodeStatus | None:
    st = await status_of(cp, node_id)
    return st if st is not None and pred(st) else None


async def test_start_backend_wires_store_service_publisher_and_grpc(tmp_path) -> None:
    from controlplane.backend import start_backend
    from interlock_contracts.settings.controlplane import ControlPlaneSettings

    settings = ControlPlaneSettings(key_pepper=b"pepper", admin_token=b"token", store=f"sqlite:///{tmp_path}/p.db",
                                    grpc_port=0, heartbeat_s=HEARTBEAT_S)
    backend = await start_backend(settings)
    node = Node(f"127.0.0.1:{backend.grpc_port}", "n1")
    try:
        version = (await backend.service.apply(policy())).version
        snap = await node.next_snapshot()
        assert snap.version == version
        node.ack(snap)
        await eventually(lambda: _backend_status(backend, snap.version))
    finally:
        await node.close()
        await backend.close()


async def _backend_status(backend: Any, version: int) -> bool:
    return any(n.version == version and n.connected for n in await backend.service.node_status())


async def test_heartbeats_go_only_when_nothing_else_was_sent(tmp_path, store_prefix: str) -> None:
    """Under a stream of changes the deltas/snapshots stand in for heartbeats (issue 16: at 100 nodes those were
    20 gRPC messages a second for nothing); a quiet stream still gets one every heartbeat_s, and the node stays
    marked connected throughout."""
    kv = open_store(f"sqlite:///{tmp_path}/policy.db", store_prefix)
    publisher = SnapshotPublisher(kv, retry_s=0.1, batch_s=0.05)
    service = StorePolicyService(kv, b"pepper", time.time)
    await service.apply(policy())
    await publisher.start()
    server, port = await start_control_plane_grpc(publisher, kv, port=0, heartbeat_s=1.0)
    plane = ControlPlane(kv, service, publisher, f"127.0.0.1:{port}")
    node = Node(plane.target, "n1")
    try:
        await node.next_snapshot()
        assert (await node.next_message()).WhichOneof("msg") == "heartbeat"  # the first one, right away
        kinds = []
        for i in range(25):  # 2.5 s of changes, one every 0.1 s
            await service.apply(policy(*(f"m{j}" for j in range(1, i + 3))))
            await asyncio.sleep(0.1)
            while not node._inbox.empty():
                kinds.append(node._inbox.get_nowait().WhichOneof("msg"))
        assert kinds.count("snapshot") >= 5 and "heartbeat" not in kinds, kinds
        t0 = time.monotonic()
        msg = await node.next_message()
        while msg.WhichOneof("msg") != "heartbeat":
            msg = await node.next_message()
        assert time.monotonic() - t0 < 1.5
        st = await eventually(lambda: _status_where(plane, "n1", lambda s: s.connected))
        assert st.connected
    finally:
        await node.close()
        await server.stop(0)
        await publisher.stop()
        await kv.close()
