"""BudgetService over a real gRPC channel to a real control-plane backend on a real etcd."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from controlplane.backend import ControlPlaneBackend, start_backend
from controlplane.policy.model import PolicyDocument
from interlock_contracts.budget_windows import window_key
from interlock_contracts.settings.controlplane import ControlPlaneSettings
from interlock_contracts.v1 import budget_pb2, budget_pb2_grpc, control_pb2, control_pb2_grpc
from tests.fixtures.etcd import EtcdServer

pytestmark = pytest.mark.integration
B = budget_pb2.LEASE_KIND_BUDGET
LIMIT_PICO = 2 * 10**12  # $2


def policy() -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": "m", "provider": "p", "price": {"input": "1", "output": "2"}}],
        "teams": [{"id": "t1"}],
        "budgets": [{"id": "team-month", "scope": "team", "scope_id": "t1", "window": "month", "limit_usd": "2",
                     "timezone": "Europe/Berlin"}],
        "rate_limits": [{"id": "slots", "scope": "team", "scope_id": "t1", "max_concurrent": 5,
                         "requests_per_minute": 100}],
    })


@pytest.fixture
async def backend(etcd_url: str, store_prefix: str) -> AsyncIterator[ControlPlaneBackend]:
    settings = ControlPlaneSettings(key_pepper=b"pepper", admin_token=b"t", store=etcd_url, etcd_prefix=store_prefix,
                                    grpc_port=0, heartbeat_s=0.2, budget_lease_ttl_s=2.0)
    b = await start_backend(settings)
    result = await b.service.apply(policy())
    deadline = time.monotonic() + 10
    while (b.publisher.current is None or b.publisher.current.snapshot.version < result.version):
        assert time.monotonic() < deadline, "policy was not published"
        await asyncio.sleep(0.02)
    yield b
    await b.close(0)


def month() -> str:
    return window_key("month", "Europe/Berlin", time.time())


def bop(want: int, settled: int = 0, overshoot: int = 0, limit_id: str = "team-month") -> budget_pb2.LeaseOp:
    return budget_pb2.LeaseOp(kind=B, limit_id=limit_id, window_key=month(), want_total=want, settled_delta=settled,
                              overshoot_delta=overshoot)


async def test_three_nodes_share_one_budget_over_grpc(backend: ControlPlaneBackend) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{backend.grpc_port}") as ch:
        stub = budget_pb2_grpc.BudgetServiceStub(ch)

        async def ask(name: str, seq: int) -> int:
            resp = await stub.Sync(budget_pb2.LeaseSyncRequest(node_id=name, seq=seq, ops=[bop(LIMIT_PICO)]))
            assert resp.lease_ttl_ms == 2000
            [g] = resp.grants
            assert g.status == budget_pb2.LEASE_STATUS_OK, g.error
            return g.lease

        for seq in range(1, 9):  # three nodes, each asking for the whole budget every tick, concurrently
            held = await asyncio.gather(*(ask(f"dp-{i}", seq) for i in range(3)))
        assert sum(held) == LIMIT_PICO and all(h > 0 for h in held)  # all of it, shared, never more

        # dp-0 settles what it used plus an overshoot and returns the rest in the same call, alongside a
        # concurrency-slot and a requests-per-minute lease: one batched call.
        minute = window_key("minute", "UTC", time.time())
        resp = await stub.Sync(budget_pb2.LeaseSyncRequest(node_id="dp-0", seq=100, ops=[
            bop(0, settled=held[0] + 5, overshoot=5),
            budget_pb2.LeaseOp(kind=budget_pb2.LEASE_KIND_CONCURRENCY, limit_id="slots", window_key="lifetime",
                               want_total=3),
            budget_pb2.LeaseOp(kind=budget_pb2.LEASE_KIND_REQUESTS, limit_id="slots", window_key=minute,
                               want_total=40),
        ]))
        g_budget, g_slots, g_rpm = resp.grants
        assert (g_budget.lease, g_budget.settled, g_budget.leased) == (0, held[0] + 5, LIMIT_PICO - held[0])
        assert g_budget.window_resets_unix_ms > time.time() * 1000
        assert (g_slots.lease, g_slots.limit) == (2, 5)  # first asker: half of what is left, rounded down
        assert (g_rpm.lease, g_rpm.limit) == (40, 100)
        rows = {(r.kind, r.limit_id): r.record for r in await backend.ledger.rows()}
        assert rows[B, "team-month"].overshoot == 5


async def test_unknown_limits_bad_node_ids_and_the_snapshot_stream_still_works(backend: ControlPlaneBackend) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{backend.grpc_port}") as ch:
        stub = budget_pb2_grpc.BudgetServiceStub(ch)
        resp = await stub.Sync(budget_pb2.LeaseSyncRequest(node_id="dp-1", seq=1, ops=[bop(5, limit_id="nope")]))
        assert resp.grants[0].status == budget_pb2.LEASE_STATUS_UNKNOWN_LIMIT
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Sync(budget_pb2.LeaseSyncRequest(node_id="bad/id", seq=1, ops=[bop(5)]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        control = control_pb2_grpc.ControlPlaneStub(ch)
        call = control.Subscribe()
        await call.write(control_pb2.NodeMessage(hello=control_pb2.Hello(node_id="dp-1")))
        first = await asyncio.wait_for(call.read(), 10)
        assert [b.id for b in first.snapshot.budget_policy.budgets] == ["team-month"]
        call.cancel()


async def test_store_outage_is_unavailable_then_recovers(
    backend: ControlPlaneBackend, etcd_server: EtcdServer
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{backend.grpc_port}") as ch:
        stub = budget_pb2_grpc.BudgetServiceStub(ch)
        etcd_server.stop()
        try:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Sync(budget_pb2.LeaseSyncRequest(node_id="dp-1", seq=1, ops=[bop(5)]), timeout=30)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            etcd_server.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = await stub.Sync(budget_pb2.LeaseSyncRequest(node_id="dp-1", seq=2, ops=[bop(5)]))
                break
            except grpc.aio.AioRpcError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        assert resp.grants[0].lease == 5


async def test_two_control_plane_replicas_never_over_grant(etcd_url: str, store_prefix: str) -> None:
    """Two control-plane backends on one etcd (replicas behind a load balancer), six nodes alternating between them."""
    settings = ControlPlaneSettings(key_pepper=b"pepper", admin_token=b"t", store=etcd_url, etcd_prefix=store_prefix,
                                    grpc_port=0, heartbeat_s=0.2, budget_lease_ttl_s=5.0)
    a, b = await start_backend(settings), await start_backend(settings)
    try:
        version = (await a.service.apply(policy())).version
        deadline = time.monotonic() + 10
        while any(x.publisher.current is None or x.publisher.current.snapshot.version < version for x in (a, b)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{a.grpc_port}") as ca, \
                grpc.aio.insecure_channel(f"127.0.0.1:{b.grpc_port}") as cb:
            stubs = [budget_pb2_grpc.BudgetServiceStub(ca), budget_pb2_grpc.BudgetServiceStub(cb)]

            async def ask(i: int, seq: int) -> int:
                resp = await stubs[(i + seq) % 2].Sync(
                    budget_pb2.LeaseSyncRequest(node_id=f"dp-{i}", seq=seq, ops=[bop(LIMIT_PICO)]))
                return resp.grants[0].lease

            for seq in range(1, 11):
                held = await asyncio.gather(*(ask(i, seq) for i in range(6)))
                assert sum(held) <= LIMIT_PICO
            assert sum(held) == LIMIT_PICO  # and the whole budget does get handed out
    finally:
        await b.close(0)
        await a.close(0)
