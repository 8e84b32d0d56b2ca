"""DataPlaneNode: builds one node from settings and injected collaborators; no globals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dataplane import gc_tuning
from dataplane.budget import metrics as budget_metrics
from dataplane.budget.allowance import AllowanceBook
from dataplane.budget.gate import BudgetGate, PoolTable
from dataplane.budget.lease_client import LeaseClient
from dataplane.budget.staleness import ControlPlaneContact
from dataplane.control_reporter import TripReporter
from dataplane.dialects.client_errors import GatewayError
from dataplane.dialects.registry import default_dialects
from dataplane.errors import DataPlaneError, SnapshotRejected
from dataplane.http.messages import Request, Responder
from dataplane.http.server import serve
from dataplane.loopguard.guard import LoopGuard, Trip
from dataplane.loopguard.stage import LoopStage
from dataplane.observe.access_log import AccessLog
from dataplane.observe.events import EventWatcher
from dataplane.observe.node import RequestObserver, node_registry
from dataplane.observe.tracing import Tracing
from dataplane.pipeline.guardrail_stage import Guardrails
from dataplane.pipeline.proxy import Proxy
from dataplane.pipeline.router import Router
from dataplane.pipeline.upstream import Upstream
from dataplane.providers.base import ProviderAdapter
from dataplane.providers.registry import default_providers
from dataplane.snapshot import file as snapshot_file
from dataplane.snapshot.control_channel import channel_credentials
from dataplane.snapshot.holder import PolicyHolder
from dataplane.snapshot.policy import env_and_file_credentials
from dataplane.snapshot.sync import SnapshotSync
from dataplane.translate.registry import default_translations
from interlock_contracts.settings.dataplane import DataPlaneSettings

if TYPE_CHECKING:
    from dataplane.dialects.base import Dialect
    from dataplane.usage.sink import UsageSink

log = logging.getLogger(__name__)


def _log_trip(trip: Trip) -> None:
    log.warning("loop breaker %s tripped on key %s (%s; no control plane: paused on this node only): %s",
                trip.breaker.id, trip.key_id, trip.breaker.action, trip.reason)


class DataPlaneNode:
    def __init__(
        self, settings: DataPlaneSettings, *, sink: UsageSink, env: Mapping[str, str],
        adapters: Mapping[str, ProviderAdapter] | None = None, dialects: Mapping[str, Dialect] | None = None,
    ):
        """`dialects`: the client APIs served (default: dataplane/dialects/registry.py)."""
        self.settings = settings
        self.sink = sink
        self.holder = PolicyHolder(adapters or default_providers(), env_and_file_credentials(env, settings.credentials))
        self.upstream = Upstream(pool_size=settings.upstream_pool_size, connect_timeout_s=settings.upstream_connect_timeout_s,
                                 impl=settings.upstream_client)
        dialects = dialects or default_dialects()
        now = time.time
        # Budgets and rate limits: local pools reserved on the request path, leases synced in the background.
        self.budget_table = PoolTable(AllowanceBook(settings.state_dir / "budget-allowance.json"))
        self.budget_gate = BudgetGate(self.budget_table, clock=now, wait_s=settings.budget_wait_s)
        self.leases: LeaseClient | None = None
        if settings.control_plane:
            self.leases = LeaseClient(self.budget_table, target=settings.control_plane, node_id=settings.node_id,
                                      tick_s=settings.budget_tick_s, credentials=channel_credentials(settings))
            self.budget_gate.attach(self.leases)
        self.guardrails = Guardrails()  # input/output guardrail stages; outcome counters for /metrics
        access = AccessLog(settings.access_log, settings.node_id) if settings.access_log != "off" else None
        self.registry, request_metrics = node_registry(
            metrics_on=settings.metrics, in_flight=lambda: self.router.in_flight,
            circuits=lambda: self.proxy.breakers.states(), sink=sink,
            policy_version=lambda: self.holder.policy.version if self.holder.policy else 0,
            snapshot_created_ms=lambda: self.holder.snapshot_created_ms, budget_section=self._budget_metrics,
            access=access)
        self.observer = RequestObserver(request_metrics, access) if (request_metrics or access) else None
        self.trips = TripReporter(settings.control_plane, settings.node_id, channel_credentials(settings)) \
            if settings.control_plane else None
        self.loop_guard = LoopGuard(clock=time.monotonic, report=self.trips or _log_trip)
        self.events = EventWatcher(
            circuits=self.proxy_breakers_states, refused=lambda: self.budget_table.refused,
            spool_bytes=lambda: int(getattr(sink, "spool_bytes", 0)), spool_alert_bytes=settings.spool_alert_bytes,
            send=self.trips.event) if self.trips is not None else None
        self.tracing = Tracing(sample=settings.trace_sample, node_id=settings.node_id,
                               endpoint=settings.otlp_endpoint) if settings.trace_sample > 0 else None
        self.proxy = Proxy(policy=self.holder.current, pepper=settings.key_pepper, upstream=self.upstream, sink=sink,
                           node_id=settings.node_id, clock=now, budgets=self.budget_gate, translations=default_translations(dialects),
                           observer=self.observer, loops=LoopStage(self.loop_guard), tracing=self.tracing,
                           guardrails=self.guardrails)
        self.router = Router(proxy=self.proxy, dialects=dialects, policy=self.holder.current, pepper=settings.key_pepper,
                             clock=now, ready=lambda: self.holder.policy is not None)
        self.router.metrics = self._render_metrics
        self.sync: SnapshotSync | None = None
        if settings.control_plane:
            self.sync = SnapshotSync(settings.control_plane, settings.node_id, self.holder.apply, settings.snapshot_path,
                                     listen_address=f"{settings.host}:{settings.port}", usage_sink=settings.usage_sink,
                                     credentials=channel_credentials(settings), holder=self.holder)
        if self.sync is not None and self.leases is not None:
            sync, leases = self.sync, self.leases
            contact = ControlPlaneContact([lambda: sync.last_contact_monotonic, lambda: leases.last_ok_monotonic])
            self.budget_gate.attach_contact(contact.age_s)
        if settings.tune_gc:
            self.holder.on_swap(lambda _policy: gc_tuning.freeze_long_lived())
        self._server: asyncio.Server | None = None
        self._port = 0
        self._sync_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._port, "DataPlaneNode.start() was not awaited"
        return self._port

    async def start(self, *, reuse_port: bool = False) -> None:
        await self.upstream.start()
        await self.sink.start()
        if self.sync is not None:
            self.sync.load_from_disk()
            self._sync_task = asyncio.get_running_loop().create_task(self.sync.run())
        if self.leases is not None:
            self._lease_task = asyncio.get_running_loop().create_task(self.leases.run(), name="budget-leases")
        else:
            self._load_disk_only()
        self._server = await serve(self.router, self.settings.host, self.settings.port, max_body=self.settings.max_body_bytes,
                                   on_error=self._on_error, render_error=self.router.render_error, reuse_port=reuse_port,
                                   limits=self.settings.http)
        self._port = int(self._server.sockets[0].getsockname()[1])
        if self.settings.credential_refresh_s > 0:
            self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_credentials(), name="credentials")
        if self.settings.tune_gc:
            gc_tuning.tune_for_proxy()
        if self.events is not None:
            self.events.start()
        log.info("data plane %s listening on %s:%d (policy v%s)", self.settings.node_id, self.settings.host, self.port,
                 self.holder.policy.version if self.holder.policy else "none")
        if warning := self.guardrails.startup_warning():
            log.warning("%s", warning)

    def proxy_breakers_states(self) -> list[tuple[str, str]]:
        return self.proxy.breakers.states()

    def _render_metrics(self) -> bytes:
        if self.observer is not None:
            self.observer.flush()  # the requests finished since the last batch count in this scrape
        return self.registry.render()

    def _budget_metrics(self) -> bytes:
        leases = self.leases
        return budget_metrics.render(self.budget_table, leases.failures if leases else 0,
                                     self.budget_table.online) + self.guardrails.counters.render()

    def _load_disk_only(self) -> None:
        try:
            snap = snapshot_file.load(self.settings.snapshot_path)
            if snap is not None:
                self.holder.apply(snap)
        except (DataPlaneError, SnapshotRejected) as exc:
            log.error("cannot use the snapshot on disk (%s); refusing traffic until a valid one arrives", exc)

    def _on_error(self, req: Request, resp: Responder, exc: BaseException) -> None:
        log.error("unhandled error serving %s %s: %s", req.method, req.path, type(exc).__name__, exc_info=exc)
        if not resp.started:
            d = self.router.dialect_for(req.path, req.headers)
            status, kind = (exc.status, exc.kind) if isinstance(exc, GatewayError) else (500, "internal")
            resp.send(status, "application/json", d.error_body(status, kind, "internal gateway error; it has been logged"))

    async def _refresh_credentials(self) -> None:
        """Rotated provider tokens (file/env refs) take effect without a policy change; see PolicyHolder."""
        while True:
            await asyncio.sleep(self.settings.credential_refresh_s)
            self.holder.refresh_credentials()

    async def stop(self) -> None:
        """Graceful: report not-ready, stop accepting, let in-flight requests (streams too) finish
        for up to drain_timeout_s, then close upstream connections and flush usage."""
        self.router.draining = True
        if self._server is not None:
            self._server.close()
        try:
            async with asyncio.timeout(self.settings.drain_timeout_s):
                await self.router.idle.wait()
        except TimeoutError:
            log.warning("drain timeout: %d requests still in flight are cut off", self.router.in_flight)
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            await asyncio.gather(self._refresh_task, return_exceptions=True)
        if self._lease_task is not None and self.leases is not None:
            self._lease_task.cancel()
            await asyncio.gather(self._lease_task, return_exceptions=True)
            await self.leases.close()
        if self.sync is not None:
            await self.sync.stop()
        await self.upstream.close()
        await self.sink.close()
        if self.observer is not None:
            await self.observer.aclose()
        if self.events is not None:
            await self.events.stop()
        if self.trips is not None:
            await self.trips.close()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)
