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
    """Status of one subscribed node. The stream never waits on the store: records and liveness go to the
    shared NodeStatusWriter, which writes every node's in one store transaction per interval (coalesced to the
    latest state; store outages are logged and retried there, never raised here)."""

    def __init__(
        self, kv: KV, clock: Callable[[], float], hello: control_pb2.Hello, *, peer: str, ttl_s: float,
        writer: NodeStatusWriter, monotonic: Callable[[], float] = time.monotonic,
    ):
        self._kv = kv  # only for the disconnect record, written directly at close
        self._writer = writer
        self._clock = clock
        self._monotonic = monotonic
        self._ttl_s = ttl_s
        self.record = NodeRecord(
            node_id=hello.node_id, version=hello.last_version, content_hash=hello.last_content_hash,
            address=hello.listen_address or peer, software_version=hello.software_version,
            usage_sink=hello.usage_sink,
        )
        self._live_written = -math.inf  # monotonic time liveness was last handed to the writer

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def start(self) -> None:
        self._hand_record()
        self.touch()

    def ack(self, ack: control_pb2.Ack) -> None:
        if ack.accepted:
            update = {"version": ack.version, "content_hash": ack.content_hash}
        else:
            update = {"rejected_version": ack.version, "reject_reason": ack.reason[:MAX_REASON_CHARS]}
        self.record = self.record.model_copy(update=update)
        self._hand_record()

    def touch(self) -> None:
        """The node is alive (called per heartbeat interval): refresh its liveness key.

        The key lives ttl_s (3 heartbeats), so it is refreshed at most once per heartbeat, not on every ack:
        per-ack refreshes cost two store calls per node per second at 100 nodes (issue 16)."""
        now = self._monotonic()
        if now - self._live_written >= self._ttl_s / 3 * 0.9:  # a beat may come a hair early
            self._live_written = now
            self._writer.put_live(LIVE + self.record.node_id, _live_value(self._now_ms()), self._ttl_s)

    def _hand_record(self) -> None:
        rec = self.record.model_copy(update={"last_seen_unix_ms": self._now_ms()})
        self._writer.put(NODES + rec.node_id, encode(rec))

    async def close(self, *, last_session: bool, timeout_s: float = 2.0) -> None:
        """Stop writing; if no other stream serves this node, mark it disconnected now (best effort)."""
        if not last_session:
            return
        node_id = self.record.node_id
        self._writer.discard(NODES + node_id)
        self._writer.discard(LIVE + node_id)
        rec = self.record.model_copy(update={"last_seen_unix_ms": self._now_ms()})
        try:
            async with asyncio.timeout(timeout_s):
                await self._kv.commit({NODES + node_id: encode(rec)}, [LIVE + node_id])
        except (ControlPlaneError, TimeoutError) as exc:
            log.warning("node %s: could not record disconnect (%s); its liveness key will expire", node_id, exc)
