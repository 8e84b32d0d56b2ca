"""SnapshotSync against a real grpc.aio control-plane server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from dataplane.errors import SnapshotFileError, SnapshotRejected
from dataplane.snapshot import file as snapshot_file
from dataplane.snapshot.sync import SnapshotSync
from interlock_contracts.snapshot_hash import snapshot_content_hash
from interlock_contracts.v1 import control_pb2, control_pb2_grpc, policy_pb2
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.integration
WAIT_S = 5.0


def make_snapshot(version: int) -> policy_pb2.PolicySnapshot:
    s = policy_pb2.PolicySnapshot(version=version, created_unix_ms=1_700_000_000_000 + version, key_hash_scheme="hmac-sha256")
    s.providers.add(name="openai", kind="openai", base_url="https://api.openai.example", credential_ref="env:OPENAI_API_KEY")
    s.models.add(name=f"model-v{version}", provider="openai", upstream_name="gpt-x")
    s.keys.add(id="vk_0001", key_hash=bytes(range(32)), team_id="core")
    s.content_hash = snapshot_content_hash(s)
    return s


class FakeControlPlane(control_pb2_grpc.ControlPlaneServicer):
    """Sends the current snapshot to a node that is behind, then whatever the test pushes."""

    def __init__(self) -> None:
        self.current: policy_pb2.PolicySnapshot | None = None
        self.silent = False  # accept the stream but never send anything
        self.hellos: list[control_pb2.Hello] = []
        self.acks: asyncio.Queue[control_pb2.Ack] = asyncio.Queue()
        self._streams: set[asyncio.Queue[control_pb2.ControlMessage]] = set()

    def publish(self, snapshot: policy_pb2.PolicySnapshot) -> None:
        self.current = snapshot
        self.push(control_pb2.ControlMessage(snapshot=snapshot))

    def push(self, msg: control_pb2.ControlMessage) -> None:
        for q in self._streams:
            q.put_nowait(msg)

    async def next_ack(self) -> control_pb2.Ack:
        return await asyncio.wait_for(self.acks.get(), WAIT_S)

    async def answer(self, snapshot: policy_pb2.PolicySnapshot) -> control_pb2.Ack:
        """Publish `snapshot` and return the node's ack for it."""
        self.publish(snapshot)
        return await self.next_ack()

    async def Subscribe(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        first = await context.read()
        self.hellos.append(first.hello)
        outbox: asyncio.Queue[control_pb2.ControlMessage] = asyncio.Queue()
        self._streams.add(outbox)
        reader = asyncio.create_task(self._read_acks(context))
        try:
            if self.silent:
                await asyncio.Event().wait()
            if self.current is not None and self.current.version != first.hello.last_version:
                await context.write(control_pb2.ControlMessage(snapshot=self.current))
            while True:
                await context.write(await outbox.get())
        finally:
            self._streams.discard(outbox)
            reader.cancel()

    async def _read_acks(self, context: grpc.aio.ServicerContext) -> None:
        while (msg := await context.read()) is not grpc.aio.EOF:
            self.acks.put_nowait(msg.ack)


class Server:
    """A control-plane server that can be stopped and restarted on the same port."""

    def __init__(self, cp: FakeControlPlane) -> None:
        self.cp = cp
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        control_pb2_grpc.add_ControlPlaneServicer_to_server(self.cp, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


class Applier:
    def __init__(self) -> None:
        self.applied: list[int] = []
        self.reject: dict[int, str] = {}
        self.crash: set[int] = set()

    def __call__(self, snapshot: policy_pb2.PolicySnapshot) -> None:
        if snapshot.version in self.reject:
            raise SnapshotRejected(self.reject[snapshot.version])
        if snapshot.version in self.crash:
            raise KeyError("bug in the applier")
        self.applied.append(snapshot.version)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(FakeControlPlane())
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def applier() -> Applier:
    return Applier()


@pytest.fixture
def make_sync(tmp_path: Path, applier: Applier) -> Callable[..., SnapshotSync]:
    def make(target: str, **kwargs: Any) -> SnapshotSync:
        kwargs.setdefault("backoff_min_s", 0.01)
        kwargs.setdefault("backoff_max_s", 0.05)
        return SnapshotSync(target, "node-1", applier, tmp_path / "state" / "snapshot.pb", listen_address="10.0.0.7:8080", **kwargs)

    return make


@contextlib.asynccontextmanager
async def running_at(server: Server, sync: SnapshotSync, version: int) -> AsyncIterator[None]:
    """`sync` running, having applied (and acked) snapshot `version`."""
    server.cp.publish(make_snapshot(version))
    async with running(sync):
        await server.cp.next_ack()
        yield


@contextlib.asynccontextmanager
async def running(sync: SnapshotSync) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sync.run())
    try:
        yield task
    finally:
        await sync.stop()
        await asyncio.wait_for(task, WAIT_S)  # run() returns normally after stop()


async def until(condition: Callable[[], bool]) -> None:
    # Polling on purpose: the conditions are plain attributes, as health checks read them.
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def saved_version(sync_path: Path) -> int:
    s = snapshot_file.load(sync_path)
    return s.version if s else 0


async def test_initial_snapshot_applied_acked_and_saved(
    server: Server, make_sync: Callable[..., SnapshotSync], applier: Applier, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s5 = make_snapshot(5)
    server.cp.publish(s5)
    sync = make_sync(server.target, software_version="9.9.9")
    assert not sync.has_snapshot
    async with running(sync):
        assert await sync.wait_for_version(5, WAIT_S)
        ack = await server.cp.next_ack()
        assert (ack.version, ack.content_hash, ack.accepted, ack.reason) == (5, s5.content_hash, True, "")
        assert sync.connected and sync.has_snapshot
        assert (sync.applied_version, sync.applied_hash, sync.updates_applied) == (5, s5.content_hash, 1)
    assert applier.applied == [5]
    assert snapshot_file.load(tmp_path / "state" / "snapshot.pb") == s5
    hello = server.cp.hellos[0]
    assert (hello.node_id, hello.last_version, hello.last_content_hash) == ("node-1", 0, "")
    assert (hello.listen_address, hello.software_version) == ("10.0.0.7:8080", "9.9.9")
    assert bytes(range(32)).hex() not in caplog.text and "model-v5" not in caplog.text  # no snapshot contents in logs


async def test_update_applied_and_saved(server: Server, make_sync: Callable[..., SnapshotSync], applier: Applier, tmp_path: Path) -> None:
    sync = make_sync(server.target)
    async with running_at(server, sync, 5):
        ack = await server.cp.answer(make_snapshot(6))
        assert (ack.version, ack.accepted) == (6, True)
        assert sync.applied_version == 6 and sync.updates_applied == 2
        assert saved_version(tmp_path / "state" / "snapshot.pb") == 6
    assert applier.applied == [5, 6]


async def test_bad_hash_rejected_with_reason_and_not_saved(
    server: Server, make_sync: Callable[..., SnapshotSync], applier: Applier, tmp_path: Path
) -> None:
    sync = make_sync(server.target)
    async with running_at(server, sync, 5):
        bad = make_snapshot(6)
        bad.keys[0].revoked = True  # altered after hashing
        server.cp.publish(bad)
        ack = await server.cp.next_ack()
        assert (ack.version, ack.accepted) == (6, False)
        assert "content hash mismatch" in ack.reason
        assert sync.applied_version == 5 and sync.updates_rejected == 1
        server.cp.publish(make_snapshot(7))  # the stream survives a rejection
        assert (await server.cp.next_ack()).accepted
    assert applier.applied == [5, 7]
    assert saved_version(tmp_path / "state" / "snapshot.pb") == 7


async def test_applier_rejection_acked_with_reason(
    server: Server, make_sync: Callable[..., SnapshotSync], applier: Applier, tmp_path: Path
) -> None:
    applier.reject[6] = "provider kind 'mystery' is not supported by this node"
    sync = make_sync(server.target)
    async with running_at(server, sync, 5):
        ack = await server.cp.answer(make_snapshot(6))
        assert (ack.version, ack.accepted, ack.reason) == (6, False, applier.reject[6])
        assert sync.applied_version == 5 and sync.updates_rejected == 1
    assert saved_version(tmp_path / "state" / "snapshot.pb") == 5


async def test_applier_crash_is_a_rejection_not_a_disconnect(
    server: Server, make_sync: Callable[..., SnapshotSync], applier: Applier
) -> None:
    applier.crash.add(5)
    server.cp.publish(make_snapshot(5))
    sync = make_sync(server.target)
    async with running(sync):
        ack = await server.cp.next_ack()
        assert not ack.accepted and "KeyError" in ack.reason
        server.cp.publish(make_snapshot(6))
        assert (await server.cp.next_ack()).accepted
        assert len(server.cp.hellos) == 1  # same stream throughout


async def test_older_version_ignored(server: Server, make_sync: Callable[..., SnapshotSync], applier: Applier, tmp_path: Path) -> None:
    sync = make_sync(server.target)
    async with running_at(server, sync, 5):
        ack = await server.cp.answer(make_snapshot(3))
        assert (ack.version, ack.accepted) == (3, False)
        assert "older than the applied version 5" in ack.reason
        assert sync.applied_version == 5
    assert applier.applied == [5]
    assert saved_version(tmp_path / "state" / "snapshot.pb") == 5


async def test_current_version_resent_is_acked_without_reapplying(
    server: Server, make_sync: Callable[..., SnapshotSync], applier: Applier
) -> None:
    sync = make_sync(server.target)
    async with running_at(server, sync, 5):
        ack = await server.cp.answer(make_snapshot(5))
        assert (ack.version, ack.accepted) == (5, True)
    assert applier.applied == [5] and sync.updates_applied == 1


async def test_heartbeat_updates_last_contact(server: Server, make_sync: Callable[..., SnapshotSync]) -> None:
    clock = FakeClock()
    sync = make_sync(server.target, clock=clock)
    assert sync.last_contact_monotonic is None
    async with running(sync):
        await until(lambda: sync.connected)
        clock.now = 250.0
        server.cp.push(control_pb2.ControlMessage(heartbeat=control_pb2.Heartbeat(current_version=0, server_time_unix_ms=1)))
        await until(lambda: sync.last_contact_monotonic == 250.0)


async def test_control_plane_restart_keeps_snapshot_then_catches_up(
    server: Server, make_sync: Callable[..., SnapshotSync], applier: Applier
) -> None:
    s6 = make_snapshot(6)
    server.cp.publish(s6)
    sync = make_sync(server.target)
    async with running(sync):
        await server.cp.next_ack()
        assert sync.connected

        await server.stop()
        await until(lambda: not sync.connected)
        await asyncio.sleep(0.2)  # several failed reconnects
        assert sync.applied_version == 6 and applier.applied == [6]

        server.cp.current = make_snapshot(8)  # policy changed while the control plane was away
        await server.start()  # same port
        assert await sync.wait_for_version(8, WAIT_S)
        assert (await server.cp.next_ack()).version == 8
        assert sync.connected
    assert applier.applied == [6, 8]
    assert (server.cp.hellos[-1].last_version, server.cp.hellos[-1].last_content_hash) == (6, s6.content_hash)


async def test_idle_stream_is_reconnected(server: Server, make_sync: Callable[..., SnapshotSync]) -> None:
    server.cp.silent = True  # a wedged control plane: the TCP connection is fine, nothing arrives
    sync = make_sync(server.target, idle_timeout_s=0.2)
    async with running(sync):
        await until(lambda: len(server.cp.hellos) >= 3)


async def test_boot_from_disk_with_control_plane_down(make_sync: Callable[..., SnapshotSync], applier: Applier, tmp_path: Path) -> None:
    s4 = make_snapshot(4)
    snapshot_file.save(tmp_path / "state" / "snapshot.pb", s4)
    sync = make_sync(f"127.0.0.1:{free_port()}")
    assert sync.load_from_disk()
    assert (sync.applied_version, sync.applied_hash, applier.applied) == (4, s4.content_hash, [4])
    async with running(sync):
        await asyncio.sleep(0.3)  # keeps retrying, never raises
        assert not sync.connected and sync.applied_version == 4


async def test_save_failure_keeps_serving(server: Server, applier: Applier, tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the state dir should be")
    sync = SnapshotSync(server.target, "node-1", applier, tmp_path / "blocked" / "snapshot.pb", backoff_min_s=0.01, backoff_max_s=0.05)
    server.cp.publish(make_snapshot(5))
    async with running(sync):
        ack = await server.cp.next_ack()
        assert ack.accepted and sync.applied_version == 5 and sync.save_failures == 1


def test_load_from_disk_missing_file(make_sync: Callable[..., SnapshotSync], applier: Applier) -> None:
    sync = make_sync("127.0.0.1:1")
    assert not sync.load_from_disk()
    assert applier.applied == [] and not sync.has_snapshot


def test_load_from_disk_rejected_by_applier(make_sync: Callable[..., SnapshotSync], applier: Applier, tmp_path: Path) -> None:
    snapshot_file.save(tmp_path / "state" / "snapshot.pb", make_snapshot(4))
    applier.reject[4] = "written by a newer node"
    sync = make_sync("127.0.0.1:1")
    assert not sync.load_from_disk()
    assert sync.applied_version == 0 and sync.updates_applied == 0


def test_corrupt_file_applies_nothing(make_sync: Callable[..., SnapshotSync], applier: Applier, tmp_path: Path) -> None:
    path = tmp_path / "state" / "snapshot.pb"
    snapshot_file.save(path, make_snapshot(4))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(SnapshotFileError):
        snapshot_file.load(path)
    sync = make_sync("127.0.0.1:1")
    assert not sync.load_from_disk()
    assert applier.applied == [] and sync.applied_version == 0


async def test_stop_is_clean_and_idempotent(server: Server, make_sync: Callable[..., SnapshotSync]) -> None:
    sync = make_sync(server.target)
    await sync.stop()  # before run: no-op
    task = asyncio.create_task(sync.run())
    await until(lambda: sync.connected)
    await sync.stop()
    await sync.stop()
    await asyncio.wait_for(task, WAIT_S)
    assert task.done() and not task.cancelled() and task.exception() is None
    assert not sync.connected


async def test_run_twice_concurrently_is_refused(make_sync: Callable[..., SnapshotSync]) -> None:
    sync = make_sync(f"127.0.0.1:{free_port()}")
    async with running(sync):
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            await sync.run()


async def test_wait_for_version_times_out(make_sync: Callable[..., SnapshotSync]) -> None:
    assert not await make_sync("127.0.0.1:1").wait_for_version(1, 0.05)


def test_backoff_is_jittered_and_capped(applier: Applier, tmp_path: Path) -> None:
    sync = SnapshotSync("x:1", "n", applier, tmp_path / "s.pb", rng=random.Random(7))
    for attempt in range(40):
        cap = min(5.0, 0.1 * 2**attempt)
        delays = [sync.backoff_delay(attempt) for _ in range(20)]
        assert all(0.1 <= d <= cap for d in delays)
    assert max(sync.backoff_delay(50) for _ in range(50)) > 2.5  # grows toward the cap
    with pytest.raises(ValueError):
        SnapshotSync("x:1", "n", applier, tmp_path / "s.pb", backoff_min_s=0)
