"""The control-plane gRPC port under TLS, mutual TLS and a node token: a real control plane (in-process backend on
the embedded store) and a real data-plane node syncing over it; strangers are refused on Subscribe AND
BudgetService.Sync; the token never shows up in logs or errors; plaintext off loopback is refused."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import grpc.aio
import pytest

from controlplane.backend import ControlPlaneBackend, start_backend
from controlplane.policy.model import PolicyDocument
from dataplane.node import DataPlaneNode
from dataplane.snapshot.control_channel import channel_credentials, open_channel
from dataplane.usage.sink import MemorySink
from interlock_contracts.budget_windows import window_key
from interlock_contracts.settings.common import SettingsError
from interlock_contracts.settings.controlplane import ControlPlaneSettings
from interlock_contracts.settings.dataplane import DataPlaneSettings
from interlock_contracts.v1 import budget_pb2, budget_pb2_grpc, control_pb2, control_pb2_grpc
from tests.fixtures.tls import Pki, make_pki

pytestmark = pytest.mark.integration
TOKEN = b"node-token-7f3a9c1e5b2d4680aa"  # distinctive, so a leak anywhere is easy to spot
PEPPER = b"security-test-pepper"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def policy() -> PolicyDocument:
    return PolicyDocument.model_validate({
        "providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
        "models": [{"name": "m", "provider": "p", "price": {"input": "1", "output": "2"}}],
        "teams": [{"id": "t1"}],
        "budgets": [{"id": "b", "scope": "team", "scope_id": "t1", "window": "month", "limit_usd": "2"}],
    })


def cp_settings(tmp_path: Path, **kw: object) -> ControlPlaneSettings:
    base = ControlPlaneSettings(key_pepper=PEPPER, admin_token=b"admin", store=f"sqlite:///{tmp_path}/policy.db",
                                grpc_port=0, heartbeat_s=0.2)
    return replace(base, **kw)  # type: ignore[arg-type]


async def started(settings: ControlPlaneSettings) -> tuple[ControlPlaneBackend, int]:
    b = await start_backend(settings)
    version = (await b.service.apply(policy())).version
    deadline = time.monotonic() + 10
    while b.publisher.current is None or b.publisher.current.snapshot.version < version:
        assert time.monotonic() < deadline, "policy was not published"
        await asyncio.sleep(0.02)
    return b, version


@pytest.fixture
async def tls_token_cp(tmp_path: Path, pki: Pki) -> AsyncIterator[tuple[ControlPlaneBackend, int]]:
    b, version = await started(cp_settings(tmp_path, grpc_tls_cert=pki.server.cert, grpc_tls_key=pki.server.key,
                                           node_token=TOKEN))
    yield b, version
    await b.close(0)


@pytest.fixture
async def mtls_cp(tmp_path: Path, pki: Pki) -> AsyncIterator[tuple[ControlPlaneBackend, int]]:
    b, version = await started(cp_settings(tmp_path, grpc_tls_cert=pki.server.cert, grpc_tls_key=pki.server.key,
                                           grpc_client_ca=pki.ca))
    yield b, version
    await b.close(0)


def dp_settings(tmp_path: Path, port: int, **kw: object) -> DataPlaneSettings:
    base = DataPlaneSettings(node_id="secure-node", key_pepper=PEPPER, port=0, control_plane=f"localhost:{port}",
                             state_dir=tmp_path / "dp", tune_gc=False, credential_refresh_s=0)
    return replace(base, **kw)  # type: ignore[arg-type]


def sync_request(node_id: str = "secure-node") -> budget_pb2.LeaseSyncRequest:
    op = budget_pb2.LeaseOp(kind=budget_pb2.LEASE_KIND_BUDGET, limit_id="b",
                            window_key=window_key("month", "UTC", time.time()), want_total=10**9)
    return budget_pb2.LeaseSyncRequest(node_id=node_id, ops=[op], seq=1)


async def subscribe_once(channel: grpc.aio.Channel) -> control_pb2.ControlMessage:
    call = control_pb2_grpc.ControlPlaneStub(channel).Subscribe()
    await call.write(control_pb2.NodeMessage(hello=control_pb2.Hello(node_id="probe")))
    async with asyncio.timeout(5):
        msg = await call.read()
    call.cancel()
    assert msg is not grpc.aio.EOF
    return msg  # type: ignore[no-any-return]


async def test_node_syncs_snapshot_and_leases_over_tls_with_token(
    tls_token_cp: tuple[ControlPlaneBackend, int], tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend, version = tls_token_cp
    settings = dp_settings(tmp_path, backend.grpc_port, control_plane_ca=pki.ca, node_token=TOKEN)
    node = DataPlaneNode(settings, sink=MemorySink(), env={})
    await node.start()
    try:
        assert node.sync is not None and node.leases is not None
        assert await node.sync.wait_for_version(version, timeout_s=10), "no snapshot over TLS"
        await node.leases.sync_once()  # the lease client's real BudgetService/Sync call, same credentials
        assert (node.leases.syncs, node.leases.failures) == (1, 0)
        # The same credentials obtain a real budget lease.
        async with open_channel(f"localhost:{backend.grpc_port}", channel_credentials(settings)) as ch:
            resp = await budget_pb2_grpc.BudgetServiceStub(ch).Sync(sync_request(), timeout=5)
        assert resp.grants[0].status == budget_pb2.LEASE_STATUS_OK and resp.grants[0].lease > 0
    finally:
        await node.stop()
    assert TOKEN.decode() not in caplog.text
    assert TOKEN.decode() not in repr(settings) and TOKEN.decode() not in repr(backend)


@pytest.mark.parametrize("token", [None, b"wrong-token", TOKEN + b"x", TOKEN[:-1]])
async def test_missing_or_wrong_token_is_refused_on_subscribe_and_sync(
    tls_token_cp: tuple[ControlPlaneBackend, int], tmp_path: Path, pki: Pki, token: bytes | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    backend, _ = tls_token_cp
    creds = channel_credentials(dp_settings(tmp_path, backend.grpc_port, control_plane_ca=pki.ca, node_token=token))
    before = await backend.ledger.rows()
    async with open_channel(f"localhost:{backend.grpc_port}", creds) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as sync_err:
            await budget_pb2_grpc.BudgetServiceStub(ch).Sync(sync_request(), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as sub_err:
            await subscribe_once(ch)
    for err in (sync_err.value, sub_err.value):
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "INTERLOCK_NODE_TOKEN" in (err.details() or "")
        assert TOKEN.decode() not in str(err) and TOKEN.decode() not in (err.debug_error_string() or "")
    # the refused Sync never reached the ledger: a correct node still gets the whole first share
    assert await backend.ledger.rows() == before
    assert TOKEN.decode() not in caplog.text
    assert "missing or invalid node token" in caplog.text  # the control plane says why it refused


async def test_node_with_wrong_token_gets_no_snapshot_and_logs_no_secret(
    tls_token_cp: tuple[ControlPlaneBackend, int], tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend, _ = tls_token_cp
    wrong = b"wrong-" + TOKEN
    node = DataPlaneNode(dp_settings(tmp_path, backend.grpc_port, control_plane_ca=pki.ca, node_token=wrong),
                         sink=MemorySink(), env={})
    await node.start()
    try:
        assert node.sync is not None and node.leases is not None
        assert not await node.sync.wait_for_version(1, timeout_s=1.0)
        await node.leases.sync_once()
        assert node.leases.failures >= 1 and node.leases.syncs == 0
    finally:
        await node.stop()
    assert "refused this node: UNAUTHENTICATED" in caplog.text  # the node says which settings to check
    assert wrong.decode() not in caplog.text and TOKEN.decode() not in caplog.text


async def test_plaintext_client_cannot_reach_a_tls_port(tls_token_cp: tuple[ControlPlaneBackend, int]) -> None:
    backend, _ = tls_token_cp
    async with grpc.aio.insecure_channel(f"127.0.0.1:{backend.grpc_port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await budget_pb2_grpc.BudgetServiceStub(ch).Sync(sync_request(), timeout=3)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_admits_only_nodes_with_a_cert_from_the_client_ca(
    mtls_cp: tuple[ControlPlaneBackend, int], tmp_path: Path, pki: Pki
) -> None:
    backend, version = mtls_cp
    port = backend.grpc_port
    good = dp_settings(tmp_path, port, control_plane_ca=pki.ca, control_plane_cert=pki.client.cert,
                       control_plane_key=pki.client.key)
    async with open_channel(f"localhost:{port}", channel_credentials(good)) as ch:
        assert (await subscribe_once(ch)).WhichOneof("msg") == "snapshot"
        resp = await budget_pb2_grpc.BudgetServiceStub(ch).Sync(sync_request(), timeout=5)
        assert resp.grants[0].status == budget_pb2.LEASE_STATUS_OK
    no_cert = dp_settings(tmp_path, port, control_plane_ca=pki.ca)
    rogue = dp_settings(tmp_path, port, control_plane_ca=pki.ca, control_plane_cert=pki.rogue_client.cert,
                        control_plane_key=pki.rogue_client.key)
    for settings in (no_cert, rogue):
        async with open_channel(f"localhost:{port}", channel_credentials(settings)) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as sync_err:
                await budget_pb2_grpc.BudgetServiceStub(ch).Sync(sync_request(), timeout=3)
            with pytest.raises(grpc.aio.AioRpcError) as sub_err:
                await subscribe_once(ch)
        assert sync_err.value.code() == sub_err.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails
    # and a real node with the right certificate syncs
    node = DataPlaneNode(good, sink=MemorySink(), env={})
    await node.start()
    try:
        assert node.sync is not None and await node.sync.wait_for_version(version, timeout_s=10)
    finally:
        await node.stop()


async def test_token_over_loopback_plaintext_works_and_is_still_checked(tmp_path: Path) -> None:
    backend, version = await started(cp_settings(tmp_path, node_token=TOKEN))
    try:
        port = backend.grpc_port
        creds = channel_credentials(dp_settings(tmp_path, port, control_plane=f"127.0.0.1:{port}", node_token=TOKEN))
        async with open_channel(f"127.0.0.1:{port}", creds) as ch:
            resp = await budget_pb2_grpc.BudgetServiceStub(ch).Sync(sync_request(), timeout=5)
            assert resp.grants[0].status == budget_pb2.LEASE_STATUS_OK
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:  # no token at all
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await budget_pb2_grpc.BudgetServiceStub(ch).Sync(sync_request(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await subscribe_once(ch)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await backend.close(0)
    assert version > 0


async def test_plaintext_on_a_network_address_is_refused_unless_allowed(tmp_path: Path, pki: Pki) -> None:
    exposed = cp_settings(tmp_path, grpc_host="0.0.0.0")
    with pytest.raises(SettingsError, match="INTERLOCK_GRPC_ALLOW_INSECURE") as err:
        await start_backend(exposed)
    assert "INTERLOCK_GRPC_TLS_CERT" in str(err.value)
    assert not (tmp_path / "policy.db").exists()  # refused before the store was opened
    # a token alone is not enough off loopback: it would cross the network in cleartext
    with pytest.raises(SettingsError):
        await start_backend(replace(exposed, node_token=TOKEN))
    env = {"INTERLOCK_KEY_PEPPER": "p", "INTERLOCK_ADMIN_TOKEN": "a", "INTERLOCK_GRPC_HOST": "0.0.0.0"}
    with pytest.raises(SettingsError, match="INTERLOCK_GRPC_ALLOW_INSECURE"):
        ControlPlaneSettings.from_env(env)
    assert ControlPlaneSettings.from_env({**env, "INTERLOCK_GRPC_ALLOW_INSECURE": "true"}).grpc_allow_insecure
    for ok in (replace(exposed, grpc_allow_insecure=True),
               replace(exposed, grpc_tls_cert=pki.server.cert, grpc_tls_key=pki.server.key, node_token=TOKEN)):
        backend = await start_backend(ok)
        await backend.close(0)


def test_settings_read_token_and_tls_files_and_hide_the_token(tmp_path: Path, pki: Pki) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(TOKEN + b"\n")
    dp = DataPlaneSettings.from_env({
        "INTERLOCK_KEY_PEPPER": "p", "INTERLOCK_CONTROL_PLANE": "cp.example:50051",
        "INTERLOCK_NODE_TOKEN_FILE": str(token_file), "INTERLOCK_CONTROL_PLANE_CA": str(pki.ca),
        "INTERLOCK_CONTROL_PLANE_CERT": str(pki.client.cert), "INTERLOCK_CONTROL_PLANE_KEY": str(pki.client.key),
    })
    assert dp.node_token == TOKEN and dp.control_plane_uses_tls
    assert TOKEN.decode() not in repr(dp)
    assert channel_credentials(dp) is not None
    # a token in cleartext to another host is refused, naming the setting that fixes it
    with pytest.raises(SettingsError, match="INTERLOCK_CONTROL_PLANE_CA") as err:
        DataPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER": "p", "INTERLOCK_CONTROL_PLANE": "cp.example:50051",
                                    "INTERLOCK_NODE_TOKEN": TOKEN.decode()})
    assert TOKEN.decode() not in str(err.value)
    with pytest.raises(SettingsError, match="INTERLOCK_CONTROL_PLANE_KEY"):
        channel_credentials(replace(dp, control_plane_key=None))
    with pytest.raises(SettingsError, match=re.escape("INTERLOCK_CONTROL_PLANE_CA='/nonexistent/ca.pem' is not a readable file")):
        DataPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER": "p", "INTERLOCK_CONTROL_PLANE_CA": "/nonexistent/ca.pem"})
    with pytest.raises(SettingsError, match="INTERLOCK_GRPC_TLS_KEY"):
        ControlPlaneSettings.from_env({"INTERLOCK_KEY_PEPPER": "p", "INTERLOCK_ADMIN_TOKEN": "a",
                                       "INTERLOCK_GRPC_TLS_CERT": str(pki.server.cert),
                                       "INTERLOCK_GRPC_TLS_KEY": str(tmp_path / "missing.key")})
    env = {"INTERLOCK_KEY_PEPPER": "p", "INTERLOCK_ADMIN_TOKEN": "a", "INTERLOCK_NODE_TOKEN": TOKEN.decode(),
           "INTERLOCK_ETCD_PASSWORD": "etcd-pw-x"}
    with pytest.raises(SettingsError, match="INTERLOCK_ETCD_USERNAME"):
        ControlPlaneSettings.from_env(env)
    cp = ControlPlaneSettings.from_env({**env, "INTERLOCK_ETCD_USERNAME": "interlock"})
    assert cp.node_token == TOKEN and cp.etcd_password == b"etcd-pw-x"
    assert TOKEN.decode() not in repr(cp) and "etcd-pw-x" not in repr(cp)
