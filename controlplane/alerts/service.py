"""The alert loop of one control-plane replica: detect (budget thresholds from the ledger, lost or lagging
data planes), fire once across replicas, and deliver what is due from the shared outbox.

Every replica runs it; the store decides who fires (create-if-absent) and who delivers (a claim with a
deadline), so a replica that dies mid-retry leaves its entry to the next claim after the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import httpx
import orjson
from pydantic import ValidationError

from interlock_contracts.v1 import budget_pb2

from ..errors import ControlPlaneError
from ..policy.model import Budget, Destination
from ..service_types import NodeStatus
from ..store.base import KV
from ..store.layout import item_key
from . import outbox
from .events import AlertEvent, budget_threshold, node_event
from .formats import BUILDERS, Target
from .outbox import DeliveryRecord, OutboxItem

log = logging.getLogger(__name__)
Resolver = Callable[[str], str | None]


@dataclass(frozen=True)
class AlertSettings:
    tick_s: float = 2.0
    http_timeout_s: float = 5.0
    claim_s: float = 30.0  # an attempt's claim: longer than the HTTP timeout
    max_attempts: int = 8
    backoff_s: float = 1.0  # first retry; doubles, capped at backoff_max_s, with jitter
    backoff_max_s: float = 300.0
    concurrency: int = 16
    node_lost_s: float = 60.0
    keep_log_s: float = 30 * 86_400  # delivery records
    keep_fired_s: float = 400 * 86_400  # "already fired" decisions: longer than any window but lifetime
    prune_every_s: float = 3_600.0


class AlertService:
    def __init__(self, kv: KV, *, ledger_rows: Callable[[], Awaitable[list]], nodes: Callable[[], Awaitable[list[NodeStatus]]],  # type: ignore[type-arg]
                 published_version: Callable[[], int], resolve: Resolver, clock: Callable[[], float] = time.time,
                 settings: AlertSettings | None = None, replica: str = "",
                 on_delivery: Callable[[str, str], None] | None = None) -> None:
        self._kv = kv
        self._rows = ledger_rows
        self._nodes = nodes
        self._published_version = published_version
        self._resolve = resolve
        self._clock = clock
        self.settings = settings or AlertSettings()
        self.replica = replica or uuid.uuid4().hex[:12]
        self._on_delivery = on_delivery  # (destination kind, outcome) for GET /metrics
        self._fired: set[str] = set()  # dedup keys this replica knows are fired (saves a txn per tick)
        self._inflight: set[str] = set()
        self._sem = asyncio.Semaphore(self.settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=self.settings.http_timeout_s, follow_redirects=False)
        self._rng = random.Random()
        self._next_prune = 0

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- policy -----------------------------------------------------------------------------------------------

    async def _section(self, section: str, model: type[Budget] | type[Destination]) -> dict[str, Budget | Destination]:
        entries, _ = await self._kv.get_prefix(item_key(section, ""))
        out: dict[str, Budget | Destination] = {}
        for e in entries.values():
            try:
                item = model.model_validate_json(e.value)
            except ValidationError:
                continue
            out[item.id] = item
        return out

    async def destinations(self) -> dict[str, Destination]:
        return {k: v for k, v in (await self._section("destinations", Destination)).items()
                if isinstance(v, Destination)}

    def target(self, d: Destination) -> Target | None:
        url = d.url or (self._resolve(d.url_ref) if d.url_ref else None) or ""
        secret = (self._resolve(d.secret_ref) if d.secret_ref else None) or ""
        if (d.kind != "pagerduty" and not url) or (d.secret_ref and not secret):
            return None
        return Target(d.id, d.kind, url, secret)

    # -- detect and fire ----------------------------------------------------------------------------------------

    async def fire(self, event: AlertEvent, dests: list[str]) -> bool:
        if event.dedup_key in self._fired:
            return False
        won = await outbox.fire(self._kv, event, dests)
        self._fired.add(event.dedup_key)
        if len(self._fired) > 100_000:
            self._fired.clear()
        if won:
            log.info("alert fired: %s -> %s", event.dedup_key, ", ".join(dests))
        return won

    async def fire_kind(self, event: AlertEvent) -> bool:
        """Fire an event raised elsewhere (e.g. the loop breaker) to every destination that wants its kind."""
        ids = [d.id for d in self._wanting(await self.destinations(), event.kind)]
        return await self.fire(event, ids) if ids else False

    async def detect(self) -> None:
        dests = await self.destinations()
        if not dests:
            return
        await self._budget_thresholds(dests)
        await self._node_events(dests)

    def _wanting(self, dests: Mapping[str, Destination], kind: str) -> list[Destination]:
        return [d for d in dests.values() if "*" in d.events or kind in d.events]

    async def _budget_thresholds(self, dests: Mapping[str, Destination]) -> None:
        wanting = self._wanting(dests, "budget_threshold")
        if not wanting:
            return
        budgets = await self._section("budgets", Budget)
        now = self.now_ms()
        for row in await self._rows():
            b = budgets.get(row.limit_id)
            if row.kind != budget_pb2.LEASE_KIND_BUDGET or not isinstance(b, Budget) or row.record.limit <= 0:
                continue
            spent = row.record.settled
            pct = spent * 100 // row.record.limit
            by_threshold: dict[int, list[str]] = {}
            for d in wanting:
                for t in b.alert_thresholds or d.budget_thresholds:
                    if pct >= t:
                        by_threshold.setdefault(t, []).append(d.id)
            for t, ids in sorted(by_threshold.items()):
                ev = budget_threshold(b.id, row.window_key, t, spent, row.record.limit,
                                      f"{b.scope} {b.scope_id}", now)
                await self.fire(ev, ids)

    async def _node_events(self, dests: Mapping[str, Destination]) -> None:
        now = self.now_ms()
        version = self._published_version()
        for n in await self._nodes():
            if not n.connected and now - n.last_seen_unix_ms > self.settings.node_lost_s * 1000:
                kind, detail, episode = "node_lost", f"not seen for {(now - n.last_seen_unix_ms) // 1000}s", \
                    n.last_seen_unix_ms
            elif n.connected and version and n.version and n.version != version:
                kind, detail, episode = "node_out_of_sync", f"serves policy v{n.version}, published v{version}", \
                    version
            else:
                continue
            ids = [d.id for d in self._wanting(dests, kind)]
            await self.fire(node_event(kind, n.node_id, detail, episode, now), ids)

    # -- deliver ------------------------------------------------------------------------------------------------

    async def deliver_due(self) -> None:
        entries, _ = await self._kv.get_prefix(outbox.OUTBOX)
        if not entries:
            return
        dests = await self.destinations()
        now = self.now_ms()
        for key, entry in entries.items():
            if key in self._inflight:
                continue
            try:
                item = OutboxItem.decode(entry.value)
            except (ValueError, TypeError, KeyError):
                log.warning("alerts: dropping unreadable outbox entry %s", key)
                await self._kv.commit({}, [key])
                continue
            if item.next_ms > now or item.claim_until_ms > now:
                continue
            rev = await outbox.claim(self._kv, key, entry, item, self.replica, now + int(self.settings.claim_s * 1000))
            if rev is None:
                continue
            self._inflight.add(key)
            task = asyncio.create_task(self._attempt(key, rev, item, dests.get(item.destination)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _attempt(self, key: str, rev: int, item: OutboxItem, dest: Destination | None) -> None:
        try:
            async with self._sem:
                error = await self._send(item.event, dest)
            attempts = item.attempts + 1
            now = self.now_ms()
            if error is None or dest is None or attempts >= self.settings.max_attempts:
                status = "delivered" if error is None else "dead"
                rec = DeliveryRecord(item.event.dedup_key, item.destination, item.event.kind, item.event.severity,
                                     item.event.summary, status, attempts, item.event.created_ms, now, error or "")
                await outbox.finish(self._kv, key, rec)
                if status == "dead":
                    log.error("alert %s to %s dead-lettered after %d attempt(s): %s", item.event.dedup_key,
                              item.destination, attempts, error)
                self._count(dest, status)
                return
            delay = min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (attempts - 1))
            delay *= 0.5 + self._rng.random()
            await outbox.reschedule(self._kv, key, replace(item, attempts=attempts, next_ms=now + int(delay * 1000),
                                                           claimed_by="", claim_until_ms=0, last_error=error), rev)
            self._count(dest, "retry")
        except ControlPlaneError as exc:  # the store is down: the claim expires and someone retries
            log.warning("alerts: cannot record the outcome of %s: %s", key, exc)
        finally:
            self._inflight.discard(key)

    def _count(self, dest: Destination | None, outcome: str) -> None:
        if self._on_delivery is not None:
            self._on_delivery(dest.kind if dest else "unknown", outcome)

    async def _send(self, ev: AlertEvent, dest: Destination | None) -> str | None:
        """None when the destination accepted the event, else why not (never the URL or a secret)."""
        if dest is None:
            return "destination no longer in the policy"
        target = self.target(dest)
        if target is None:
            return f"destination {dest.id}: its url_ref/secret_ref does not resolve on this control plane"
        out = BUILDERS[dest.kind](target, ev, int(self._clock()))
        try:
            resp = await self._http.post(out.url, content=out.body, headers=out.headers)
        except httpx.TimeoutException:
            return f"timed out after {self.settings.http_timeout_s:g}s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"
        if 200 <= resp.status_code < 300:
            return None
        return f"HTTP {resp.status_code}"

    # -- read side -----------------------------------------------------------------------------------------------

    async def recent(self, limit: int = 50) -> list[DeliveryRecord]:
        """Pending and retrying entries first, then finished deliveries newest first."""
        pending, _ = await self._kv.get_prefix(outbox.OUTBOX)
        out = []
        for e in pending.values():
            try:
                it = OutboxItem.decode(e.value)
            except (ValueError, TypeError, KeyError):
                continue
            out.append(DeliveryRecord(it.event.dedup_key, it.destination, it.event.kind, it.event.severity,
                                      it.event.summary, "retrying" if it.attempts else "pending", it.attempts,
                                      it.event.created_ms, 0, it.last_error))
        done, _ = await self._kv.get_prefix(outbox.LOG)
        for k in sorted(done, reverse=True)[:limit]:
            out.append(DeliveryRecord.decode(done[k].value))
        return out[:limit]

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def prune(self) -> int:
        """Drop delivery records and fired decisions past their retention, at most 100 per transaction."""
        now = self.now_ms()
        dead: list[str] = []
        for prefix, keep_s in ((outbox.LOG, self.settings.keep_log_s), (outbox.FIRED, self.settings.keep_fired_s)):
            entries, _ = await self._kv.get_prefix(prefix)
            for k, e in entries.items():
                try:
                    created = int(orjson.loads(e.value)["created_ms"])
                except (ValueError, KeyError, TypeError):
                    continue
                if now - created > keep_s * 1000:
                    dead.append(k)
        for i in range(0, len(dead), 100):
            await self._kv.commit({}, dead[i:i + 100])
        return len(dead)

    async def tick(self) -> None:
        await self.detect()
        await self.deliver_due()
        if self.now_ms() >= self._next_prune:
            self._next_prune = self.now_ms() + int(self.settings.prune_every_s * 1000)
            await self.prune()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except ControlPlaneError as exc:
                log.warning("alerts: store unavailable: %s", exc)
            except Exception:
                log.exception("alerts: tick failed")
            await asyncio.sleep(self.settings.tick_s)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="alerts")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()
