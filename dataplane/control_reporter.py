"""Sends loop-breaker trips (LoopService.Trip) and operational events to the control plane in the background,
retrying a few times: the local pause already protects this node; the report makes the pause policy-wide.
The node's link to the control plane, above the loop guard, events and channel it joins."""

from __future__ import annotations

import asyncio
import logging

import grpc

from dataplane.loopguard.guard import Trip
from dataplane.observe.events import NodeEvent
from dataplane.snapshot.control_channel import open_channel
from interlock_contracts.v1 import loop_pb2, loop_pb2_grpc

log = logging.getLogger(__name__)
ATTEMPTS = 5


class TripReporter:
    def __init__(self, target: str, node_id: str, credentials: grpc.ChannelCredentials | None) -> None:
        self._target = target
        self._node_id = node_id
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, trip: Trip) -> None:
        log.warning("loop breaker %s tripped on key %s (%s): %s", trip.breaker.id, trip.key_id, trip.breaker.action,
                    trip.reason)
        task = asyncio.get_running_loop().create_task(self._send(trip))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def event(self, ev: NodeEvent) -> None:
        """An operational event (dataplane/observe/events.py) for the control plane to alert on."""
        task = asyncio.get_running_loop().create_task(self._send_event(ev))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stub(self) -> loop_pb2_grpc.LoopServiceStub:
        if self._channel is None:
            self._channel = open_channel(self._target, self._credentials, ())
        return loop_pb2_grpc.LoopServiceStub(self._channel)

    async def _send_event(self, ev: NodeEvent) -> None:
        req = loop_pb2.NodeEvent(node_id=self._node_id, kind=ev.kind, subject=ev.subject, detail=ev.detail,
                                 episode=ev.episode, severity=ev.severity)
        for attempt in range(ATTEMPTS):
            try:
                await self._stub().Event(req, timeout=5.0)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.5 * 2 ** attempt)
        log.warning("node event %s (%s) not delivered to the control plane", ev.kind, ev.subject)

    async def _send(self, trip: Trip) -> None:
        stub = self._stub()
        req = loop_pb2.LoopTrip(node_id=self._node_id, key_id=trip.key_id, breaker_id=trip.breaker.id,
                                action=trip.breaker.action, reason=trip.reason)
        for attempt in range(ATTEMPTS):
            try:
                await stub.Trip(req, timeout=5.0)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    log.warning("loop breaker trip for %s refused by the control plane: %s", trip.key_id,
                                exc.details())
                    return
                await asyncio.sleep(0.5 * 2 ** attempt)
        log.error("loop breaker trip for key %s not delivered to the control plane; this node keeps it paused "
                  "locally", trip.key_id)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()
