"""Kafka-side building blocks of the ingest service: deterministic per-partition batches.

A batch is a contiguous run of one partition's records, identified by
(topic, partition, first offset, last offset); that identity is the ClickHouse
`insert_deduplication_token`, so inserting the same batch twice is a no-op.
Before a batch is inserted its *intent* is committed to Kafka as the metadata
of the partition's current offset ("up to offset L"); after a crash between
insert and commit the next owner reads the intent and rebuilds exactly the same
batch (same records, same token), so the replay is dropped by ClickHouse and
`spend_daily` (fed by inserts, not merges) is not double counted.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import TopicPartition
from google.protobuf.message import DecodeError

from ingest import wire
from ingest.rows import InvalidEvent, event_to_row
from interlock_contracts.v1 import usage_pb2

INTENT_PREFIX = "interlock-ingest/v1 last="

Record = Any  # aiokafka.structs.ConsumerRecord[bytes, bytes] (untyped upstream)


def encode_intent(last: int) -> str:
    return f"{INTENT_PREFIX}{last}"


def parse_intent(metadata: str | None) -> int | None:
    """The last offset of the batch in flight when `metadata` was committed, or None."""
    if not metadata or not metadata.startswith(INTENT_PREFIX):
        return None
    try:
        return int(metadata[len(INTENT_PREFIX) :])
    except ValueError:
        return None


@dataclass(frozen=True)
class PartitionBatch:
    tp: TopicPartition
    records: Sequence[Record]
    epoch: int  # assignment epoch of tp when cut: a batch from before a revocation is stale

    @property
    def first(self) -> int:
        return int(self.records[0].offset)

    @property
    def last(self) -> int:
        return int(self.records[-1].offset)

    @property
    def dedup_token(self) -> str:
        return f"{self.tp.topic}:{self.tp.partition}:{self.first}-{self.last}"


@dataclass
class Decoded:
    events: list[usage_pb2.UsageEvent] = field(default_factory=list)
    sources: list[Record] = field(default_factory=list)  # record of each event, same index
    poison: list[tuple[Record, str]] = field(default_factory=list)  # (record, reason)
    duplicates: int = 0  # same event_id twice in the batch: kept once
    # The events' values for ClickHouse to decode itself (ingest.wire), same order as `events`;
    # None when any event needs the Python row path, which then takes the whole batch.
    wire: list[bytes] | None = None


def decode_records(records: Iterable[Record]) -> Decoded:
    """Parse values; undecodable ones are poison; an event_id repeated within the batch is kept once.

    In-batch dedup is what keeps `spend_daily` exact for the producer's at-least-once
    redeliveries (keyed by event_id, so copies share a partition and usually a batch).
    """
    out = Decoded()
    seen: set[str] = set()
    from_string = usage_pb2.UsageEvent.FromString
    wire_value, zero_cost = wire.wire_value, wire.zero_cost_field()
    values: list[bytes] | None = []
    for rec in records:
        raw = rec.value or b""
        try:
            ev = from_string(raw)
        except DecodeError as exc:
            out.poison.append((rec, f"undecodable UsageEvent: {exc}"))
            continue
        if ev.event_id:
            if ev.event_id in seen:
                out.duplicates += 1
                continue
            seen.add(ev.event_id)
        out.events.append(ev)
        out.sources.append(rec)
        if values is not None:
            value = wire_value(ev, raw, zero_cost)
            if value is None:
                values = None
            else:
                values.append(value)
    out.wire = values if values else None
    return out


def find_rejected(decoded: Decoded) -> list[tuple[Record, str]]:
    """The records whose event `events_to_batch` would refuse, with the reason (the rare path)."""
    rejected: list[tuple[Record, str]] = []
    for ev, rec in zip(decoded.events, decoded.sources, strict=True):
        try:
            event_to_row(ev)
        except InvalidEvent as exc:
            rejected.append((rec, f"rejected: {exc}"))
    return rejected


@dataclass
class _Buffer:
    records: list[Record] = field(default_factory=list)
    since: float = 0.0  # monotonic time the oldest buffered record arrived
    replay_last: int | None = None  # an intent to honour: the next batch ends exactly here


class PartitionBuffers:
    """Records fetched but not yet cut into a batch, per partition; cuts by size, age or intent."""

    def __init__(self, batch_max: int, batch_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = batch_max
        self._age_s = batch_ms / 1000
        self._clock = clock
        self._bufs: dict[TopicPartition, _Buffer] = {}
        self._epochs: dict[TopicPartition, int] = {}

    def epoch(self, tp: TopicPartition) -> int:
        return self._epochs.get(tp, 0)

    def add(self, tp: TopicPartition, records: Sequence[Record]) -> None:
        if not records:
            return
        buf = self._bufs.setdefault(tp, _Buffer())
        if not buf.records:
            buf.since = self._clock()
        buf.records.extend(records)

    def set_replay(self, tp: TopicPartition, last: int) -> None:
        self._bufs.setdefault(tp, _Buffer()).replay_last = last

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Forget buffered records (never committed: safe) and make queued batches of `tps` stale."""
        for tp in tps:
            self._bufs.pop(tp, None)
            self._epochs[tp] = self.epoch(tp) + 1

    def size(self, tp: TopicPartition) -> int:
        buf = self._bufs.get(tp)
        return len(buf.records) if buf else 0

    def total(self) -> int:
        return sum(len(b.records) for b in self._bufs.values())

    def full(self, tp: TopicPartition) -> bool:
        return self.size(tp) >= self._max

    def cut(self, position: Callable[[TopicPartition], int | None], *, force: bool = False) -> list[PartitionBatch]:
        """At most one batch per partition that is due: full, old enough, its intent complete, or `force`."""
        now = self._clock()
        out: list[PartitionBatch] = []
        for tp, buf in self._bufs.items():
            if buf.replay_last is not None:
                n = self._replay_cut(tp, buf, position(tp))
                if n is None:
                    continue
            elif not buf.records:
                continue
            elif force or len(buf.records) >= self._max or now - buf.since >= self._age_s:
                n = min(len(buf.records), self._max)
            else:
                continue
            if n == 0:
                continue
            out.append(PartitionBatch(tp, buf.records[:n], self.epoch(tp)))
            del buf.records[:n]
            buf.since = now
        return out

    @staticmethod
    def _replay_cut(tp: TopicPartition, buf: _Buffer, pos: int | None) -> int | None:
        """How many records form the intent batch, or None while it is still incomplete."""
        last = buf.replay_last
        assert last is not None
        n = 0
        for rec in buf.records:
            if rec.offset > last:
                break
            n += 1
        complete = n < len(buf.records) or (n and buf.records[n - 1].offset == last) or (pos is not None and pos > last)
        if not complete:
            return None
        buf.replay_last = None  # honoured (or nothing left of it, e.g. aborted transactions)
        return n


def fetch_position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The next offset the fetcher will return for `tp`, without waiting (aiokafka only has an async getter)."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
        return int(state.position) if state is not None and state.has_valid_position else None
    except AttributeError:  # not assigned any more, or aiokafka internals moved: wait for a record past the intent
        return None


def dlq_headers(rec: Record, why: str) -> list[tuple[str, bytes]]:
    """Headers of a dead-lettered record: why, and where it came from."""
    return [("reason", why.encode()), ("source", f"{rec.topic}:{rec.partition}:{rec.offset}".encode())]


Handler = Callable[[set[TopicPartition]], Awaitable[None]]


class RebalanceHandler(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_revoked: Handler, on_assigned: Handler) -> None:
        self._on_revoked, self._on_assigned = on_revoked, on_assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._on_assigned(set(assigned))
