"""The control plane on a locked-down etcd (real binary): TLS with client-certificate auth and etcd users.

The right CA + client certificate + user/password work end to end (a whole control plane publishes a policy);
a wrong password, a missing client certificate, an untrusted CA or plaintext are refused with StoreUnavailable
that never contains the password; an auth token etcd has forgotten is replaced by logging in again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace

import pytest

from controlplane.backend import etcd_security, start_backend
from controlplane.errors import StoreUnavailable
from controlplane.policy.model import PolicyDocument
from controlplane.store import open_store
from controlplane.store.etcd_security import EtcdSecurity
from interlock_contracts.settings.controlplane import ControlPlaneSettings
from tests.fixtures.etcd import AUTH_TOKEN_TTL_S, ETCD_ROOT_PASSWORD, EtcdServer

pytestmark = pytest.mark.integration


def settings_for(server: EtcdServer) -> ControlPlaneSettings:
    tls = server.tls
    assert tls is not None
    return ControlPlaneSettings(
        key_pepper=b"pepper", admin_token=b"admin", store=f"etcd://127.0.0.1:{server.client_port}",
        etcd_prefix=f"/sec-{uuid.uuid4().hex[:8]}", grpc_port=0, heartbeat_s=0.2,
        etcd_ca_cert=tls.ca, etcd_cert=tls.client_cert, etcd_key=tls.client_key,
        etcd_username="root", etcd_password=ETCD_ROOT_PASSWORD.encode(),
    )


async def test_control_plane_runs_on_etcd_with_tls_client_certs_and_a_user(
    etcd_tls_server: EtcdServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(etcd_tls_server)
    backend = await start_backend(settings)
    try:
        doc = PolicyDocument.model_validate({"providers": [{"name": "p", "base_url": "http://127.0.0.1:9"}],
                                             "models": [{"name": "m", "provider": "p"}]})
        version = (await backend.service.apply(doc)).version
        deadline = time.monotonic() + 10
        while backend.publisher.current is None or backend.publisher.current.snapshot.version < version:
            assert time.monotonic() < deadline, "the policy written over TLS was not published (watch broken?)"
            await asyncio.sleep(0.02)
    finally:
        await backend.close(0)
    # the data really is in that etcd, under the prefix
    keys = etcd_tls_server.etcdctl("get", "--prefix", "--keys-only", settings.etcd_prefix,
                                   user=f"root:{ETCD_ROOT_PASSWORD}")
    assert settings.etcd_prefix in keys
    assert ETCD_ROOT_PASSWORD not in caplog.text
    assert ETCD_ROOT_PASSWORD not in repr(settings) and ETCD_ROOT_PASSWORD not in repr(etcd_security(settings))


@pytest.mark.parametrize("change", ["wrong-password", "no-client-cert", "untrusted-ca", "plaintext", "no-user"])
async def test_etcd_refuses_clients_missing_any_credential(etcd_tls_server: EtcdServer, change: str) -> None:
    settings = settings_for(etcd_tls_server)
    tls = etcd_tls_server.tls
    assert tls is not None
    sec = etcd_security(settings)
    assert sec is not None
    sec = {
        "wrong-password": replace(sec, password="not-" + ETCD_ROOT_PASSWORD),
        "no-client-cert": replace(sec, cert_chain=None, private_key=None),
        "untrusted-ca": replace(sec, ca_cert=(tls.ca.parent / "rogue-ca.pem").read_bytes()),
        "plaintext": EtcdSecurity(username="root", password=ETCD_ROOT_PASSWORD),
        "no-user": replace(sec, username=None, password=None),  # the cert's CN is no etcd user
    }[change]
    kv = open_store(settings.store, settings.etcd_prefix, etcd_security=sec)
    try:
        with pytest.raises(StoreUnavailable) as err:
            async with asyncio.timeout(20):
                await kv.commit({"k": b"v"})
    finally:
        await kv.close()
    assert ETCD_ROOT_PASSWORD not in str(err.value)


async def test_a_forgotten_auth_token_is_replaced_by_logging_in_again(etcd_tls_server: EtcdServer) -> None:
    settings = settings_for(etcd_tls_server)
    kv = open_store(settings.store, settings.etcd_prefix, etcd_security=etcd_security(settings))
    try:
        await kv.commit({"a": b"1"})
        await asyncio.sleep(AUTH_TOKEN_TTL_S + 1.5)  # idle: etcd drops the token
        await kv.commit({"b": b"2"})  # a write, not only reads, survives the re-login
        entries, _ = await kv.get_prefix("")
        assert {k: e.value for k, e in entries.items()} == {"a": b"1", "b": b"2"}
    finally:
        await kv.close()
