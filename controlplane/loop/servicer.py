"""LoopService.Trip: a node's loop breaker tripped on a key (dataplane/loopguard/).

pause: the key is paused in the policy (every node refuses it with 429 until `interlock keys resume`);
revoke: per-run keys are revoked (a key that is not a run key is paused instead: revoking a person's key
because an agent looped would be the wrong blast radius); alert: nothing changes. Each trip also fires a
loop_breaker alert (once per key and pause episode)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Protocol

import grpc

from interlock_contracts.v1 import loop_pb2, loop_pb2_grpc

from ..alerts.events import AlertEvent
from ..audit import Actor
from ..errors import NotFound, StoreUnavailable
from ..policy.model import KeyRecord

log = logging.getLogger(__name__)
NODE_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
NODE_EVENT_KINDS = frozenset({"circuit_open", "circuit_closed", "rate_limit_saturated", "usage_spool_high"})


class KeyControl(Protocol):
    async def set_paused(self, key_id: str, paused: bool, reason: str = "", *,
                         actor: str | Actor = "admin") -> tuple[KeyRecord, bool]: ...

    async def revoke_key(self, key_id: str, *, actor: str | Actor = "admin") -> KeyRecord: ...

    async def list_keys(self) -> list[KeyRecord]: ...


class Alerter(Protocol):
    async def fire_kind(self, event: AlertEvent) -> bool: ...


class LoopServicer(loop_pb2_grpc.LoopServiceServicer):
    def __init__(self, keys: KeyControl, alerts: Alerter | None, clock: Callable[[], float]) -> None:
        self._keys = keys
        self._alerts = alerts
        self._clock = clock

    async def Trip(self, request: loop_pb2.LoopTrip, context: grpc.aio.ServicerContext) -> loop_pb2.LoopTripAck:
        if not NODE_RE.match(request.node_id) or not request.key_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node_id and key_id are required")
        actor = f"loop-breaker@{request.node_id}"
        reason = request.reason[:500]
        applied = False
        try:
            record = await self._key(request.key_id) if request.action == "revoke" else None
            if record is not None and record.parent:  # a per-run key: revoked for good
                applied = not record.revoked
                await self._keys.revoke_key(request.key_id, actor=actor)
            elif request.action in ("pause", "revoke"):
                _, applied = await self._keys.set_paused(request.key_id, True, reason, actor=actor)
        except NotFound:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"key {request.key_id} does not exist")
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"policy store unavailable: {exc}")
        if applied or request.action == "alert":
            log.warning("loop breaker %s tripped on key %s (%s, from %s): %s", request.breaker_id, request.key_id,
                        request.action, request.node_id, reason)
            if self._alerts is not None:
                now = int(self._clock() * 1000)
                # one alert per key and minute for "alert" (it keeps serving); one per pause episode otherwise
                episode = now // 60_000 if request.action == "alert" else now
                await self._alerts.fire_kind(AlertEvent(
                    f"loop_breaker:{request.key_id}:{episode}", "loop_breaker",
                    "warning" if request.action == "alert" else "critical",
                    f"loop breaker {request.breaker_id} tripped on key {request.key_id} ({request.action}): {reason}",
                    now, {"key_id": request.key_id, "breaker_id": request.breaker_id, "action": request.action,
                          "node_id": request.node_id}))
        return loop_pb2.LoopTripAck(applied=applied)

    async def Event(self, request: loop_pb2.NodeEvent, context: grpc.aio.ServicerContext) -> loop_pb2.NodeEventAck:
        if not NODE_RE.match(request.node_id) or request.kind not in NODE_EVENT_KINDS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown event kind {request.kind!r} or node id")
        fired = False
        if self._alerts is not None:
            now = int(self._clock() * 1000)
            severity = request.severity if request.severity in ("info", "warning", "critical") else "warning"
            fired = await self._alerts.fire_kind(AlertEvent(
                f"{request.kind}:{request.node_id}:{request.subject[:200]}:{request.episode}", request.kind, severity,
                f"data plane {request.node_id}: {request.detail[:500]}", now,
                {"node_id": request.node_id, "subject": request.subject[:200]}))
        return loop_pb2.NodeEventAck(fired=fired)

    async def _key(self, key_id: str) -> KeyRecord | None:
        return next((k for k in await self._keys.list_keys() if k.id == key_id), None)

    def register(self, server: grpc.aio.Server) -> None:
        loop_pb2_grpc.add_LoopServiceServicer_to_server(self, server)
