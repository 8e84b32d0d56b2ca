"""Data-plane node status: what each node acknowledged, and whether it is connected.

Two keys per node (see store.layout): a persistent record of the last known
status, and an ephemeral liveness key on a TTL. A node whose control-plane
stream died, or whose control plane died, shows as disconnected once the TTL
lapses, but its last acknowledged version stays visible.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import suppress

from pydantic import BaseModel, ValidationError

from interlock_contracts.v1 import control_pb2

from .errors import ControlPlaneError
from .node_status_writer import NodeStatusWriter
from .service_types import NodeStatus
from .store.base import KV
from .store.layout import LIVE, NODES, encode

log = logging.getLogger(__name__)
MAX_REASON_CHARS = 1000  # the reason is node-supplied; keep stored records bounded


class NodeRecord(BaseModel):
    node_id: str
    version: int = 0
    content_hash: str = ""
    address: str = ""
    software_version: str = ""
    rejected_version: int = 0
    reject_reason: str = ""
    last_seen_unix_ms: int = 0
    usage_sink: str = ""  # "" = a node too old to report it


def _live_value(now_ms: int) -> bytes:
    return json.dumps({"last_seen_unix_ms": now_ms}).encode()


async def read_node_status(kv: KV) -> list[NodeStatus]:
    records, _ = await kv.get_prefix(NODES)
    live, _ = await kv.get_prefix(LIVE)
    out = []
    for key in sorted(records):
        node_id = key.removeprefix(NODES)
        try:
            rec = NodeRecord.model_validate_json(records[key].value)
        except ValidationError:
            log.warning("ignoring unreadable node record %s", key)
            continue
        seen = rec.last_seen_unix_ms
        beat = live.get(LIVE + node_id)
        if beat is not None:
            with suppress(ValueError, TypeError, AttributeError):
                seen = max(seen, int(json.loads(beat.value)["last_seen_unix_ms"]))
        out.append(
            NodeStatus(
                node_id=node_id, version=rec.version, content_hash=rec.content_hash, connected=beat is not None,
                last_seen_unix_ms=seen, address=rec.address, rejected_version=rec.rejected_version,
                reject_reason=rec.reject_reason, usage_sink=rec.usage_sink,
            )
        )
    return out


class NodeSession:
    """Status of one subscribed node, persisted by a background loop so the stream never waits on the
    store: writes coalesce to the latest state, and store outages are logged and retried, never raised."""

    def __init__(
        self, kv: KV, clock: Callable[[], float], hello: control_pb2.Hello, *, peer: str, ttl_s: float,
        retry_s: float = 1.0, min_interval_s: float = 1.0, writer: NodeStatusWriter | None = None,
    ):
        self._kv = kv
        self._writer = writer  # shared by every session: one store transaction for all nodes' records
        # At most one status write per interval: with a mint every 100 ms, 100 nodes acking each version
        # would otherwise cost the control plane 1,000 store writes a second (issue 16).
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._ttl_s = ttl_s
        self._retry_s = retry_s
        self.record = NodeRecord(
            node_id=hello.node_id, version=hello.last_version, content_hash=hello.last_content_hash,
            address=hello.listen_address or peer, software_version=hello.software_version,
            usage_sink=hello.usage_sink,
        )
        self._record_dirty = True
        self._live_dirty = True
        self._live_written = -math.inf  # monotonic time of the last liveness write
        self._wake = asyncio.Event()
        self._wake.set()
        self._healthy = True
        self._task: asyncio.Task[None] | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def start(self) -> None:
        if self._writer is not None:  # no task per node: the shared writer does the store work (issue 16)
            self._hand_record()
            self.touch()
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    def ack(self, ack: control_pb2.Ack) -> None:
        if ack.accepted:
            update = {"version": ack.version, "content_hash": ack.content_hash}
        else:
            update = {"rejected_version": ack.version, "reject_reason": ack.reason[:MAX_REASON_CHARS]}
        self.record = self.record.model_copy(update=update)
        self._record_dirty = True
        if self._writer is not None:
            self._hand_record()
            return
        self._wake.set()

    def touch(self) -> None:
        """The node is alive (called per heartbeat): refresh its liveness key."""
        self._live_dirty = True
        if self._writer is not None:
            # The key lives ttl_s (3 heartbeats): refreshed at most once per heartbeat, not on every ack.
            if time.monotonic() - self._live_written >= self._ttl_s / 3 * 0.9:  # a beat may come a hair early
                self._live_dirty = False
                self._live_written = time.monotonic()
                self._writer.put_live(LIVE + self.record.node_id, _live_value(self._now_ms()), self._ttl_s)
            return
        self._wake.set()

    def _hand_record(self) -> None:
        assert self._writer is not None
        self._record_dirty = False
        rec = self.record.model_copy(update={"last_seen_unix_ms": self._now_ms()})
        self._writer.put(NODES + rec.node_id, encode(rec))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
                if not self._healthy:
                    log.info("node %s: status writes recovered", self.record.node_id)
                self._healthy = True
                await asyncio.sleep(self._min_interval_s)  # acks arriving meanwhile coalesce into one write
            except ControlPlaneError as exc:
                if self._healthy:  # log the transition, not every retry
                    log.warning("node %s: cannot record status (%s); retrying", self.record.node_id, exc)
                self._healthy = False
                await asyncio.sleep(self._retry_s)
                self._wake.set()

    async def _flush(self) -> None:
        node_id = self.record.node_id
        if self._record_dirty:
            self._record_dirty = False
            rec = self.record.model_copy(update={"last_seen_unix_ms": self._now_ms()})
            try:
                await self._kv.commit({NODES + node_id: encode(rec)})
            except ControlPlaneError:
                self._record_dirty = True
                raise
        # The liveness key lives ttl_s (3 heartbeats): refreshing it more than once a heartbeat, on every ack, cost
        # two store calls per node per second at 100 nodes (issue 16). Heartbeats keep touching it meanwhile.
        if self._live_dirty and time.monotonic() - self._live_written >= self._ttl_s / 3:
            self._live_dirty = False
            try:
                await self._kv.put_ephemeral(LIVE + node_id, _live_value(self._now_ms()), self._ttl_s)
                self._live_written = time.monotonic()
            except ControlPlaneError:
                self._live_dirty = True
                raise

    async def close(self, *, last_session: bool, timeout_s: float = 2.0) -> None:
        """Stop writing; if no other stream serves this node, mark it disconnected now (best effort)."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if not last_session:
            return
        node_id = self.record.node_id
        if self._writer is not None:
            self._writer.discard(NODES + node_id)
            self._writer.discard(LIVE + node_id)
        rec = self.record.model_copy(update={"last_seen_unix_ms": self._now_ms()})
        try:
            async with asyncio.timeout(timeout_s):
                await self._kv.commit({NODES + node_id: encode(rec)}, [LIVE + node_id])
        except (ControlPlaneError, TimeoutError) as exc:
            log.warning("node %s: could not record disconnect (%s); its liveness key will expire", node_id, exc)
