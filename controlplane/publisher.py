"""Watch the store, compile snapshots, and fan them out to subscribers.

Only snapshots that compile are ever published: if the stored state stops
compiling (e.g. someone wrote to etcd directly), the errors are logged and kept
in `errors`, and subscribers keep the last good snapshot.

Each subscriber has a one-slot queue holding only the latest snapshot, so a
slow node skips intermediate versions instead of blocking others or growing
memory. The wire message is serialised once per snapshot, not once per node.

The publisher writes to the store in one case only: when policy content changed
without the version key (a direct etcd write), it rewrites the version key so
the change gets a version of its own instead of reusing one nodes already have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import suppress

from interlock_contracts.snapshot_state import SnapshotState
from interlock_contracts.v1 import control_pb2, policy_pb2

from .delta_history import DeltaHistory
from .errors import Conflict, PolicyInvalid, StoreUnavailable
from .key_deltas import KeyDeltaSource
from .store.base import KV
from .store.layout import POLICY, VERSION_KEY, compile_state, load_state, version_marker

log = logging.getLogger(__name__)


class Published:
    """One published version. `state` is the content indexed for deltas (interlock_contracts/snapshot_state.py); the
    full `snapshot` is built from it on first use when the version came from a key delta."""

    def __init__(self, state: SnapshotState, snapshot: policy_pb2.PolicySnapshot | None = None):
        self.state = state
        self.version, self.content_hash = state.version, state.content_hash
        self._snapshot = snapshot

    @property
    def snapshot(self) -> policy_pb2.PolicySnapshot:
        if self._snapshot is None:
            self._snapshot = self.state.to_snapshot()
        return self._snapshot

    @property
    def ident(self) -> tuple[int, str]:
        return self.version, self.content_hash


class Subscription:
    """One subscriber's latest unsent version: a slot, not a queue (only the latest matters). `wait` is a bare
    future plus a timer kept across waits (re-armed only when it fired or would fire too late), not a task and
    `asyncio.wait` per publish: at 100 streams that re-arm was a visible part of the control plane's CPU per
    mint (issue 16)."""

    __slots__ = ("_item", "_timer", "_timer_at", "_waiter", "closed")

    def __init__(self) -> None:
        self._item: Published | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.closed = False

    def offer(self, item: Published) -> None:
        self._item = item  # drops an older unsent snapshot
        self._wake()

    def close(self) -> None:
        """The stream is over (the node closed its side): `wait` returns at once from now on."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _expire(self) -> None:
        self._timer = None
        self._wake()

    async def wait(self, within_s: float) -> Published | None:
        """The latest offered item (taking it), or None once closed or after `within_s` seconds (or earlier,
        when a timer armed by an earlier wait fires: callers re-check their deadlines and wait again)."""
        if self._item is None and not self.closed and within_s > 0:
            loop = asyncio.get_running_loop()
            at = loop.time() + within_s
            if self._timer is None or self._timer_at > at:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer, self._timer_at = loop.call_at(at, self._expire), at
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        item, self._item = self._item, None
        return item

    async def get(self) -> Published:
        while True:
            item = await self.wait(3600.0)
            if item is not None:
                return item


class SnapshotPublisher:
    def __init__(self, kv: KV, *, clock: Callable[[], float] = time.time, retry_s: float = 1.0, resync_s: float = 60.0,
                 on_publish: Callable[[float], None] | None = None, batch_s: float = 0.25,
                 max_batch_s: float = 0.6, subs_per_batch: int = 40):
        self._kv = kv
        self.kv = kv
        self._on_publish = on_publish  # seconds from read to publish, for GET /metrics
        self._clock = clock
        self._retry_s = retry_s
        self._resync_s = resync_s  # safety net: re-read even without watch events
        # At most one publish per batch_s: under a stream of mints every node gets one delta (and sends one ack)
        # per batch instead of per mint, which is most of the control plane's CPU per mint at 100 nodes.
        self._batch_s = batch_s
        # The window widens with the subscriber count (batch_s per `subs_per_batch` subscribers, at most
        # max_batch_s): each publish costs one gRPC send per node (~0.07 ms of CPU each, mostly grpc.aio's
        # completion round trip and the loopback sendmsg), so at 100 nodes and 10 mints/s a 0.6 s window means
        # ~17 sends per mint instead of ~26 at 0.39 s, for ~0.2 s more propagation (p99 ~0.65 s; bar: p99 <= 1 s
        # and CPU per mint <= 5 ms in total, issue 16).
        self._max_batch_s = max(batch_s, max_batch_s)
        self._subs_per_batch = subs_per_batch
        self._subs: set[Subscription] = set()
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._watch_task: asyncio.Task[None] | None = None
        self._watch_from = 0
        self.current: Published | None = None
        self.history = DeltaHistory()  # what each subscriber is sent: a delta from its version, or everything
        self._keys_only: KeyDeltaSource | None = None  # follows key-only changes in O(change) (issue 16)
        self.full_compiles = 0  # observable: how versions were built (benchmarks, tests)
        self.key_deltas = 0
        self.errors: list[str] = []  # why the stored state is not what is published ([] = it is)

    # -- subscribers ----------------------------------------------------------

    def batch_window_s(self) -> float:
        """Seconds between publishes under a stream of changes, for the current subscriber count."""
        return min(self._max_batch_s, self._batch_s * max(1.0, len(self._subs) / self._subs_per_batch))

    def subscribe(self) -> Subscription:
        sub = Subscription()
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    # -- compile and publish ---------------------------------------------------

    async def refresh(self) -> bool:
        """Re-read and recompile; publish if it compiles and differs. Raises StoreUnavailable."""
        async with self._lock:
            started = time.monotonic()
            if self._keys_only is not None:
                outcome = await self._keys_only.refresh(self)
                if outcome is not None:
                    return outcome
                self._keys_only.close()
                self._keys_only = None  # not a key-only change: the full compile below, then follow again
            state = await load_state(self._kv)
            self._watch_from = max(self._watch_from, state.revision)
            try:
                # Off the event loop: with 100k keys a full compile takes seconds (see _compile).
                self.full_compiles += 1
                snapshot = await asyncio.to_thread(compile_state, state, int(self._clock() * 1000))
                follower = await asyncio.to_thread(KeyDeltaSource.follow, state)
            except PolicyInvalid as exc:
                if exc.errors != self.errors:
                    log.error("stored policy does not compile; still serving version %s: %s",
                              self.current.version if self.current else "none", "; ".join(exc.errors))
                self.errors = exc.errors
                return False
            self.errors = []
            current = self.current
            if snapshot.version == 0 and not (state.keys or any(state.sections.values())):
                return False  # nothing was ever written: nodes have nothing to apply yet
            if snapshot.version == 0 or (current and current.version == snapshot.version
                                         and current.content_hash != snapshot.content_hash):
                await self._bump_version(state.version)
                return False
            if current is not None:
                if (snapshot.version, snapshot.content_hash) == current.ident:
                    self._keys_only = follower
                    return False
                if snapshot.version < current.version:
                    return False  # a stale read must never roll nodes back
            await self._publish(snapshot)
            self._keys_only = follower
            if self._on_publish is not None:
                self._on_publish(time.monotonic() - started)
            return True

    async def _bump_version(self, seen: int) -> None:
        """The policy changed without its version key being rewritten (a direct etcd write). Nodes refuse
        new content under an applied version, so give the change a version; the watch then republishes."""
        log.warning("policy changed without a version bump (direct store write?); assigning a new version")
        now_ms = int(self._clock() * 1000)
        with suppress(Conflict):  # someone else bumped it: fine, the watch fires either way
            await self._kv.commit({VERSION_KEY: version_marker(now_ms, "publisher: unversioned change")},
                                  if_revision_of={VERSION_KEY: seen})

    async def _publish(self, snapshot: policy_pb2.PolicySnapshot) -> None:
        previous = self.current.state if self.current else None
        state, delta = await asyncio.to_thread(_index, snapshot, previous)
        item = Published(state, snapshot)
        self.history.publish(state, delta, snapshot)
        self.current = item
        for sub in self._subs:
            sub.offer(item)
        log.info("published policy version %d (%s) to %d subscriber(s)",
                 snapshot.version, snapshot.content_hash[:12], len(self._subs))

    def publish_delta(self, state: SnapshotState, delta: control_pb2.PolicyDelta) -> None:
        """A version built by applying `delta` to the current state in place (KeyDeltaSource)."""
        item = Published(state)
        self.key_deltas += 1
        self.history.publish(state, delta)
        self.current = item
        for sub in self._subs:
            sub.offer(item)
        log.debug("published policy version %d (%s) as a delta of %d key(s)",
                  state.version, state.content_hash[:12], len(delta.upsert_keys) + len(delta.removed_keys))

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Publish the stored policy (if the store is reachable) and follow changes from then on."""
        try:
            await self.refresh()
        except StoreUnavailable as exc:
            log.warning("policy store unavailable at start (%s); will retry", exc)
            self._dirty.set()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._refresher())]
        self._sync_watch()

    def _sync_watch(self) -> None:
        """Watch the store only while no key delta source watches it for us: on etcd both watches received every
        mint's events (issue 16). The source wakes the refresher on every event and when its watch ends, and
        the watch here resumes from the last revision read in full, so nothing is missed in between."""
        fed = self._keys_only is not None and self._keys_only.feeding
        running = self._watch_task is not None and not self._watch_task.done()
        if fed and running:
            assert self._watch_task is not None
            self._watch_task.cancel()
            self._watch_task = None
        elif not fed and not running:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())

    def wake(self) -> None:
        """Re-read soon (the key delta watch saw a change)."""
        self._dirty.set()

    async def stop(self) -> None:
        if self._keys_only is not None:
            self._keys_only.close()
        if self._watch_task is not None:
            self._tasks.append(self._watch_task)
            self._watch_task = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _watch(self) -> None:
        while True:  # store watches handle outages themselves; this only guards against bugs
            try:
                async for _ in self._kv.watch_prefix(POLICY, self._watch_from):
                    self._dirty.set()
                return  # the store was closed
            except Exception:
                log.exception("policy watch failed; restarting it")
                self._dirty.set()
                await asyncio.sleep(self._retry_s)

    async def _refresher(self) -> None:
        # One loop reacts to a flag rather than to each event: bursts of writes coalesce into one compile.
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the wakeup.
            with suppress(TimeoutError):
                async with asyncio.timeout(self._resync_s):
                    await self._dirty.wait()
            self._dirty.clear()
            try:
                published = await self.refresh()
                self._sync_watch()
                if published:
                    await asyncio.sleep(self.batch_window_s())
            except StoreUnavailable as exc:
                log.warning("cannot read policy (%s); still serving the last good snapshot", exc)
                self._sync_watch()
                await asyncio.sleep(self._retry_s)
                self._dirty.set()
            except Exception:  # a bug must not stop publishing for good
                log.exception("refreshing the policy snapshot failed; still serving the last good snapshot")
                self._sync_watch()
                await asyncio.sleep(self._retry_s)
                self._dirty.set()


def _index(snapshot: policy_pb2.PolicySnapshot,
           previous: SnapshotState | None) -> tuple[SnapshotState, control_pb2.PolicyDelta | None]:
    """Index the new snapshot (reusing the previous digests) and diff it against the previous one."""
    state = SnapshotState.from_snapshot(snapshot, reuse=previous)
    return state, (previous.delta_to(state) if previous is not None else None)
