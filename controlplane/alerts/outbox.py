"""The durable outbox: an event is fired once (create-if-absent on its dedup key, in the same transaction as
one outbox entry per destination) and each entry is delivered at least once, from whichever replica claims it.

Keys (under the store's root):
    alerts/fired/<dedup>             the event; its existence is the "already fired" decision
    alerts/outbox/<dest>/<dedup>     pending delivery: attempts, next attempt, claim (replica, until)
    alerts/log/<ms>-<dest>-<dedup>   the outcome: delivered, or dead (retries exhausted / destination removed)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from urllib.parse import quote

import orjson

from ..errors import Conflict
from ..store.base import KV, Entry
from .events import AlertEvent

FIRED = "alerts/fired/"
OUTBOX = "alerts/outbox/"
LOG = "alerts/log/"


def _q(s: str) -> str:
    return quote(s, safe="")


def outbox_key(dest: str, dedup: str) -> str:
    return f"{OUTBOX}{_q(dest)}/{_q(dedup)}"


@dataclass(frozen=True)
class OutboxItem:
    event: AlertEvent
    destination: str
    attempts: int = 0
    next_ms: int = 0
    claimed_by: str = ""
    claim_until_ms: int = 0
    last_error: str = ""

    def encode(self) -> bytes:
        d = asdict(self)
        return orjson.dumps(d)

    @classmethod
    def decode(cls, raw: bytes) -> OutboxItem:
        d = orjson.loads(raw)
        d["event"] = AlertEvent(**d["event"])
        return cls(**d)


@dataclass(frozen=True)
class DeliveryRecord:
    dedup_key: str
    destination: str
    kind: str
    severity: str
    summary: str
    status: str  # "delivered" | "dead" (| "pending" / "retrying" when listed from the outbox)
    attempts: int
    created_ms: int
    finished_ms: int
    last_error: str = ""

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: bytes) -> DeliveryRecord:
        return cls(**orjson.loads(raw))


async def fire(kv: KV, event: AlertEvent, destinations: list[str]) -> bool:
    """Record the event and queue it for every destination, once: False if it was already fired (by this or
    another replica). One transaction: either the decision and all its deliveries exist, or none."""
    if not destinations:
        return False
    fired = FIRED + _q(event.dedup_key)
    puts = {fired: event.encode()}
    for d in destinations:
        puts[outbox_key(d, event.dedup_key)] = OutboxItem(event, d, next_ms=event.created_ms).encode()
    try:
        await kv.commit(puts, if_revision_of={fired: 0})
    except Conflict:
        return False
    return True


async def claim(kv: KV, key: str, entry: Entry, item: OutboxItem, replica: str, until_ms: int) -> int | None:
    """Take the entry for one delivery attempt; the store revision of the claim, or None if another got it."""
    try:
        return await kv.commit({key: replace(item, claimed_by=replica, claim_until_ms=until_ms).encode()},
                               if_revision_of={key: entry.mod_revision})
    except Conflict:
        return None


def log_key(rec: DeliveryRecord) -> str:
    return f"{LOG}{rec.finished_ms:013d}-{_q(rec.destination)}-{_q(rec.dedup_key)}"


async def finish(kv: KV, key: str, rec: DeliveryRecord) -> None:
    """Delivered or dead: the outcome is recorded and the entry removed together. Unguarded on purpose: if the
    claim had expired and another replica delivered too, both outcomes are kept (at least once)."""
    await kv.commit({log_key(rec): rec.encode()}, [key])


async def reschedule(kv: KV, key: str, item: OutboxItem, revision_guard: int | None) -> None:
    guard = {key: revision_guard} if revision_guard else None
    try:
        await kv.commit({key: item.encode()}, if_revision_of=guard)
    except Conflict:
        pass  # someone else owns it now
