"""Operational events a node reports to the control plane, which alerts on them (controlplane/alerts/):
a circuit breaker opened or closed, a rate limit refusing requests, the usage spool above a threshold.

Checked every `interval_s` from state the node already keeps (breaker states, refusal counters, spool bytes):
nothing on the request path. Each episode is reported once, with the time it began as its dedup part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dataplane.budget.index import BUDGET

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeEvent:
    kind: str
    subject: str
    detail: str
    episode: int
    severity: str


class EventWatcher:
    def __init__(self, *, circuits: Callable[[], Iterable[tuple[str, str]]], refused: Callable[[], dict[tuple[int, str], int]],
                 spool_bytes: Callable[[], int], spool_alert_bytes: int, send: Callable[[NodeEvent], Any],
                 clock: Callable[[], float] = time.time, interval_s: float = 5.0) -> None:
        self._circuits = circuits
        self._refused = refused
        self._spool_bytes = spool_bytes
        self._spool_alert = spool_alert_bytes
        self._send = send
        self._clock = clock
        self._interval = interval_s
        self._states: dict[str, str] = {}
        self._opened: dict[str, int] = {}
        self._last_refused: dict[tuple[int, str], int] = {}
        self._spool_episode = 0
        self._task: asyncio.Task[None] | None = None

    def check(self) -> list[NodeEvent]:
        now = int(self._clock() * 1000)
        out: list[NodeEvent] = []
        for dep, state in self._circuits():
            before = self._states.get(dep, "closed")
            self._states[dep] = state
            if state == "open" and before != "open" and before != "half_open":
                self._opened[dep] = now
                out.append(NodeEvent("circuit_open", dep, f"circuit breaker of deployment {dep} opened: it keeps "
                                     "failing, traffic goes to its fallbacks", now, "warning"))
            elif state == "closed" and before in ("open", "half_open") and dep in self._opened:
                out.append(NodeEvent("circuit_closed", dep, f"circuit breaker of deployment {dep} closed again",
                                     self._opened.pop(dep), "info"))
        refused = self._refused()
        for (kind, limit_id), n in refused.items():
            if kind == BUDGET:
                continue  # budget refusals are the budget thresholds' business
            if n > self._last_refused.get((kind, limit_id), n if not self._last_refused else 0):
                out.append(NodeEvent("rate_limit_saturated", limit_id, f"rate limit {limit_id} is refusing "
                                     "requests on this node", now - now % 600_000, "warning"))  # one per 10 min
        self._last_refused = dict(refused)
        spool = self._spool_bytes()
        if self._spool_alert and spool > self._spool_alert and not self._spool_episode:
            self._spool_episode = now
            out.append(NodeEvent("usage_spool_high", "usage", f"usage spool holds {spool >> 20} MiB not yet in "
                                 "Kafka (is Kafka down?)", now, "warning"))
        elif self._spool_episode and spool < self._spool_alert // 2:
            self._spool_episode = 0
        return out

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                for ev in self.check():
                    self._send(ev)
            except Exception:
                log.exception("event check failed")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
