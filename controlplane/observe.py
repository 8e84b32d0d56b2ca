"""The control plane's GET /metrics (Prometheus text, no authentication, like /healthz): data-plane nodes by
state, snapshot publish latency, ledger sync latency and outcome, connected subscribers, policy version.

Node figures are read from the store at scrape time (one prefix read); latencies are recorded by the
publisher and the budget servicer through the callbacks below.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response

from controlplane.service_types import NodeStatus
from interlock_contracts.metrics.exposition import CONTENT_TYPE, DURATION_BUCKETS, Registry

STALE_AFTER_S = 60.0  # a node not seen for this long counts as lost
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, *DURATION_BUCKETS[1:])


class ControlPlaneMetrics:
    def __init__(self, *, nodes: Callable[[], Awaitable[list[NodeStatus]]], subscribers: Callable[[], int],
                 published_version: Callable[[], int], clock: Callable[[], float] = time.time) -> None:
        self._nodes_source = nodes
        self._clock = clock
        self._node_counts: dict[tuple[str, ...], float] = {}
        self.registry = reg = Registry()
        self.publish = reg.histogram("interlock_cp_snapshot_publish_seconds", "Time to read, compile and publish "
                                     "a policy snapshot.", (), _FAST)
        self.ledger_sync = reg.histogram("interlock_cp_ledger_sync_seconds", "Budget ledger Sync calls from data "
                                         "planes, by outcome (ok, unavailable, contended).", ("outcome",), _FAST)
        reg.gauge("interlock_cp_nodes", "Data-plane nodes known to the store, by state: in_sync (connected, on "
                  "the published version), out_of_sync (connected, behind), lost (not seen for 60 s).",
                  ("state",), lambda: list(self._node_counts.items()))
        reg.gauge("interlock_cp_subscribers", "Data planes streaming snapshots from this replica.", (),
                  lambda: [((), float(subscribers()))])
        reg.gauge("interlock_cp_policy_version", "Version of the snapshot this replica publishes (0 = none).", (),
                  lambda: [((), float(published_version()))])
        self._published_version = published_version
        self.deliveries = reg.counter("interlock_cp_notification_deliveries", "Alert delivery attempts by "
                                      "destination kind and outcome (delivered, retry, dead).",
                                      ("destination_kind", "outcome"))

    def observe_delivery(self, kind: str, outcome: str) -> None:
        self.deliveries.inc((kind, outcome))

    def observe_publish(self, seconds: float) -> None:
        self.publish.observe((), seconds)

    def observe_sync(self, outcome: str, seconds: float) -> None:
        self.ledger_sync.observe((outcome,), seconds)

    async def render(self) -> bytes:
        counts = {"in_sync": 0.0, "out_of_sync": 0.0, "lost": 0.0}
        try:
            nodes = await self._nodes_source()
        except Exception:  # the store is down: keep the last figures, the scrape must still answer
            nodes = None
        if nodes is not None:
            now_ms, version = self._clock() * 1000, self._published_version()
            for n in nodes:
                if not n.connected and now_ms - n.last_seen_unix_ms > STALE_AFTER_S * 1000:
                    counts["lost"] += 1
                elif n.version != version:
                    counts["out_of_sync"] += 1
                else:
                    counts["in_sync"] += 1
            self._node_counts = {(k,): v for k, v in counts.items()}
        return self.registry.render()


def create_metrics_router(metrics: ControlPlaneMetrics) -> APIRouter:
    r = APIRouter()

    @r.get("/metrics", summary="Prometheus metrics (no authentication)", tags=["health"],
           response_class=Response)
    async def prom() -> Response:
        return Response(await metrics.render(), media_type=CONTENT_TYPE)

    return r
