"""Follow key-only policy changes in O(change) (issue 16): read what changed, compile only that, publish a delta.

After every full compile the publisher starts a KeyDeltaSource at that store revision. It learns what changed
since without reading the whole policy: from a watch of its own on etcd (KV.watch_events: the events carry
the changed items; a ranged read filtered on mod_revision would make etcd read every value), or from the
embedded store's tombstones (KV.changes_since). If only virtual keys changed (a mint, revoke, prune or key create) under a new policy version,
it validates and compiles those keys alone (controlplane/policy/incremental.py), applies the resulting
delta to the published state in place and publishes it. Anything else (a policy edit, an unreadable or
invalid item, a write that skipped the version key, a store without changes_since) returns None and the
publisher does its full compile, which reports errors exactly as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Protocol

from pydantic import ValidationError

from interlock_contracts.snapshot_state import SnapshotState
from interlock_contracts.v1 import control_pb2

from .errors import StoreUnavailable
from .policy.incremental import KeyCompiler
from .policy.model import KeyRecord
from .store.base import KV, Changes, Entry
from .store.layout import HMAC_HEX_RE, KEYS, POLICY, VERSION_KEY, StoredState, item_key

log = logging.getLogger(__name__)


class PublishedVersion(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def state(self) -> SnapshotState: ...


class DeltaTarget(Protocol):
    """What a key delta is read against and published to (controlplane/publisher.py's SnapshotPublisher is one),
    declared here so this module does not import the publisher that imports it."""

    @property
    def kv(self) -> KV: ...

    @property
    def current(self) -> PublishedVersion | None: ...

    def wake(self) -> None: ...

    def publish_delta(self, state: SnapshotState, delta: control_pb2.PolicyDelta) -> None: ...


class KeyDeltaSource:
    def __init__(self, revision: int, compiler: KeyCompiler, known: set[str]):
        self._revision = revision
        self._compiler = compiler
        self._known = known  # every item under policy/ at _revision
        self._feed: asyncio.Task[None] | None = None  # etcd: the watch filling _pending
        self._pending: dict[str, Entry | None] = {}
        self._feed_revision = revision

    def close(self) -> None:
        if self._feed is not None:
            self._feed.cancel()

    @property
    def feeding(self) -> bool:
        """Its own watch is running: it sees (and wakes the publisher for) every change under policy/."""
        return self._feed is not None and not self._feed.done()

    async def _follow_events(self, kv: KV, wake: Callable[[], None]) -> None:
        # Events of one transaction are queued together by the watch, and this loop drains them without
        # yielding, so the refresher never sees half a transaction.
        async for key, entry in kv.watch_events(POLICY, self._revision):  # type: ignore[attr-defined]
            self._pending[key] = entry
            if entry is not None:
                self._feed_revision = max(self._feed_revision, entry.mod_revision)
            wake()

    async def _changes(self, kv: KV, wake: Callable[[], None]) -> Changes | None:
        if hasattr(kv, "watch_events"):
            if self._feed is None:
                self._feed = asyncio.get_running_loop().create_task(self._follow_events(kv, wake))
                self._feed.add_done_callback(lambda _: wake())  # the publisher's own watch may be paused on it
                await asyncio.sleep(0)
            if self._feed.done():
                with suppress(asyncio.CancelledError, StoreUnavailable):
                    if exc := self._feed.exception():
                        log.warning("key delta watch stopped (%s); recompiling in full", exc)
                return None
            pending, self._pending = self._pending, {}
            puts = {k: e for k, e in pending.items() if e is not None}
            return Changes(puts, {k for k, e in pending.items() if e is None}, self._feed_revision)
        changes_since = getattr(kv, "changes_since", None)
        if changes_since is None:
            return None
        changes: Changes = await changes_since(POLICY, self._revision, self._known)
        return changes

    @classmethod
    def follow(cls, state: StoredState) -> KeyDeltaSource:
        """Start from a state that just compiled (O(size): run it off the loop, next to the compile)."""
        known = {item_key(section, name) for section, items in state.sections.items() for name in items}
        known |= {item_key(KEYS, i) for i in state.keys}
        if state.version:
            known.add(VERSION_KEY)
        return cls(state.revision, KeyCompiler(state.document(), state.keys), known)

    async def refresh(self, publisher: DeltaTarget, clock: Callable[[], float] = time.time) -> bool | None:
        """True: published a delta; False: nothing changed; None: not a key-only change (compile in full)."""
        current = publisher.current
        if current is None:
            return None
        changes = await self._changes(publisher.kv, publisher.wake)
        if changes is None:
            return None
        if not changes.puts and not changes.deleted:
            self._revision = max(self._revision, changes.revision)
            return False
        puts: dict[str, KeyRecord] = {}
        version = 0
        for key, entry in changes.puts.items():
            if key == VERSION_KEY:
                version = entry.mod_revision
                continue
            section, _, name = key.removeprefix(POLICY).partition("/")
            if section != KEYS:
                return None
            try:
                record = KeyRecord.model_validate_json(entry.value)
            except ValidationError:
                return None
            if record.id != name or not HMAC_HEX_RE.match(record.key_hash):
                return None
            puts[name] = record
        deleted: set[str] = set()
        for key in changes.deleted:
            section, _, name = key.removeprefix(POLICY).partition("/")
            if section != KEYS or key == VERSION_KEY:
                return None
            deleted.add(name)
        if version <= current.version or self._compiler.errors(puts, deleted):
            return None  # a write that skipped the version key, or one that does not validate: the full path
        compiled = self._compiler.apply(puts, deleted)
        state = current.state
        delta = control_pb2.PolicyDelta(base_version=current.version, version=version,
                                        created_unix_ms=int(clock() * 1000))
        delta.upsert_keys.extend(compiled.keys[i] for i in sorted(compiled.keys))
        delta.removed_keys.extend(sorted(i for i in compiled.removed_keys if i in state.digests["key"]))
        delta.upsert_budgets.extend(compiled.budgets[i] for i in sorted(compiled.budgets))
        delta.removed_budgets.extend(sorted(i for i in compiled.removed_budgets if i in state.digests["budget"]))
        delta.upsert_rate_limits.extend(compiled.rates[i] for i in sorted(compiled.rates))
        delta.removed_rate_limits.extend(
            sorted(i for i in compiled.removed_rates if i in state.digests["rate_limit"]))
        state.apply(delta, fill_hash=True)
        self._known |= set(changes.puts)
        self._known -= changes.deleted
        self._revision = changes.revision
        publisher.publish_delta(state, delta)
        return True
