"""Wire the control-plane backend: store -> policy service -> publisher -> gRPC server.

The admin API takes `backend.service` (a PolicyService); data planes connect to
`backend.grpc_port`. Everything is owned by the returned object, nothing is global.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc
from fastapi import APIRouter

from dataplane.snapshot.policy import env_and_file_credentials
from interlock_contracts.settings.controlplane import ControlPlaneSettings

from .alerts.api import create_alerts_router
from .alerts.service import AlertService, AlertSettings
from .budget.admin_routes import create_budget_router
from .budget.ledger import Ledger
from .budget.limits import PublishedLimits
from .budget.pruner import RunKeyPruner
from .budget.servicer import BudgetServicer
from .explain_api import create_explain_router
from .grpc_auth import read_pem, server_security
from .grpc_server import ControlPlaneServicer, build_server, start_control_plane_grpc
from .loop.api import create_loop_router
from .loop.servicer import LoopServicer
from .observe import ControlPlaneMetrics, create_metrics_router
from .publisher import SnapshotPublisher
from .service import StorePolicyService
from .store import open_store
from .store.base import KV
from .store.etcd_security import EtcdSecurity

__all__ = ["ControlPlaneBackend", "start_backend", "start_control_plane_grpc"]
log = logging.getLogger(__name__)


@dataclass
class ControlPlaneBackend:
    kv: KV
    service: StorePolicyService
    publisher: SnapshotPublisher
    server: grpc.aio.Server
    grpc_port: int
    servicer: ControlPlaneServicer
    ledger: Ledger  # budget leases (BudgetService on the same gRPC port)
    pruner: RunKeyPruner | None = None  # deletes ended per-run keys
    metrics: ControlPlaneMetrics | None = None  # GET /metrics (controlplane/observe.py)
    alerts: AlertService | None = None  # budget thresholds and events -> destinations (controlplane/alerts/)

    def budget_router(self) -> APIRouter:
        """Admin routes for budgets and per-run keys (mount via create_admin_app(extra_routers=...))."""
        return create_budget_router(self.service, self.ledger, self.service.current_snapshot)

    def admin_routers(self, key_pepper: bytes) -> list[APIRouter]:
        """Every admin route besides policy that each control plane serves (`interlock controlplane` and
        `interlock dev` alike): explain, budgets and per-run keys. Mount via create_admin_app(extra_routers=...)."""
        routers = [create_explain_router(self.service, key_pepper), self.budget_router()]
        if self.metrics is not None:
            routers.append(create_metrics_router(self.metrics))
        if self.alerts is not None:
            routers.append(create_alerts_router(self.alerts))
        routers.append(create_loop_router(self.service))
        return routers

    async def close(self, grace_s: float = 1.0) -> None:
        if self.alerts is not None:
            await self.alerts.stop()
        await self.server.stop(grace_s)
        await self.servicer.drain()  # let disconnect records land before the store closes
        await self.ledger.close()
        if self.pruner is not None:
            await self.pruner.stop()
        await self.publisher.stop()
        await self.kv.close()


async def start_backend(
    settings: ControlPlaneSettings, *, clock: Callable[[], float] = time.time, kv: KV | None = None,
    alert_settings: AlertSettings | None = None, env: Mapping[str, str] | None = None,
) -> ControlPlaneBackend:
    """Open the store named by settings (or use `kv`), start publishing and serve gRPC."""
    security = server_security(settings)  # first: a refused configuration must not touch the store
    kv = kv if kv is not None else open_store(settings.store, settings.etcd_prefix, etcd_security=etcd_security(settings))
    # the closures read the publisher and service built just below
    metrics = ControlPlaneMetrics(
        nodes=lambda: service.node_status(), subscribers=lambda: publisher.subscriber_count, clock=clock,
        published_version=lambda: publisher.current.version if publisher.current else 0)
    publisher = SnapshotPublisher(kv, clock=clock, on_publish=metrics.observe_publish)
    service = StorePolicyService(
        kv, settings.key_pepper, clock, published=lambda: publisher.current.snapshot if publisher.current else None,
        credential_rules=settings.credentials,
    )
    ledger = Ledger(kv, clock=clock, lease_ttl_s=settings.budget_lease_ttl_s, reconcile_s=settings.budget_reconcile_s,
                    limits=PublishedLimits(lambda: publisher.current.state if publisher.current else None))
    alerts = AlertService(kv, ledger_rows=ledger.rows, nodes=service.node_status, clock=clock,
                          published_version=lambda: publisher.current.version if publisher.current else 0,
                          resolve=env_and_file_credentials(os.environ if env is None else env),
                          settings=alert_settings, on_delivery=metrics.observe_delivery)
    await publisher.start()
    try:
        server, servicer, port = build_server(
            publisher, kv, host=settings.grpc_host, port=settings.grpc_port, heartbeat_s=settings.heartbeat_s,
            clock=clock, services=[BudgetServicer(ledger, clock, metrics.observe_sync).register,
                      LoopServicer(service, alerts, clock).register], security=security,
        )
        await server.start()
    except BaseException:
        await publisher.stop()
        await kv.close()
        raise
    pruner = None
    if settings.run_key_prune_after_s > 0:
        pruner = RunKeyPruner(service, older_than_s=settings.run_key_prune_after_s)
        pruner.start()
    alerts.start()
    log.info("control plane gRPC on %s:%d (%s)", settings.grpc_host, port, security.describe)
    return ControlPlaneBackend(kv, service, publisher, server, port, servicer, ledger, pruner, metrics, alerts)


def etcd_security(settings: ControlPlaneSettings) -> EtcdSecurity | None:
    """TLS and user auth for etcd from settings; None = plaintext, no auth (a local dev etcd)."""
    ca, cert, key = settings.etcd_ca_cert, settings.etcd_cert, settings.etcd_key
    if ca is None and cert is None and not settings.etcd_username:
        return None
    password = settings.etcd_password.decode() if settings.etcd_password else None
    return EtcdSecurity(
        ca_cert=read_pem(ca, "ETCD_CA_CERT") if ca else None,
        cert_chain=read_pem(cert, "ETCD_CERT") if cert else None,
        private_key=read_pem(key, "ETCD_KEY") if key else None,
        username=settings.etcd_username or None,
        password=password,
    )
