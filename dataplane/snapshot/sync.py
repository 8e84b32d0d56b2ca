"""Keep the node's policy in step with the control plane over ControlPlane/Subscribe.

The node says Hello with the version it already has, then applies each snapshot
the control plane streams and answers with an Ack. The last applied snapshot is
kept on disk so a restarted node can serve before (or without) the control
plane. Failures never escape `run()`: the node keeps serving its last good
snapshot and reconnects with jittered exponential backoff, forever.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import grpc
import grpc.aio

from dataplane.errors import SnapshotFileError, SnapshotRejected
from dataplane.snapshot import file as snapshot_file
from dataplane.snapshot import state_sum
from dataplane.snapshot.ack_pacer import AckPacer
from dataplane.snapshot.control_channel import open_channel
from dataplane.snapshot.delta_log import DeltaLog
from interlock_contracts.snapshot_state import DeltaMismatch, SnapshotState
from interlock_contracts.v1 import control_pb2, control_pb2_grpc, policy_pb2

if TYPE_CHECKING:
    from dataplane.snapshot.holder import PolicyHolder

Applier = Callable[[policy_pb2.PolicySnapshot], None]
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
_CREDENTIAL_SETTINGS = "INTERLOCK_NODE_TOKEN / INTERLOCK_CONTROL_PLANE_CA / _CERT / _KEY"


class SnapshotSync:
    """Subscribes to the control plane and hands verified snapshots to `applier`.

    `applier` runs on the event loop and must swap the policy in atomically; it
    raises SnapshotRejected to refuse a snapshot (the reason goes back in the Ack).
    """

    # Keepalive makes a vanished control plane (host down, network partition, no RST)
    # visible within ~8 s instead of the kernel's TCP timeout. The control plane's
    # server must allow pings this often (grpc.http2.min_ping_interval_without_data_ms
    # <= 5000) or keep sending heartbeats at least as often, else it answers with GOAWAY.
    CHANNEL_OPTIONS: ClassVar[tuple[tuple[str, int], ...]] = (
        ("grpc.keepalive_time_ms", 5_000),
        ("grpc.keepalive_timeout_ms", 3_000),
        ("grpc.http2.max_pings_without_data", 0),  # the node mostly listens; don't stop pinging
        ("grpc.max_receive_message_length", 256 * 1024 * 1024),  # a snapshot carries every key
    )

    def __init__(
        self,
        target: str,
        node_id: str,
        applier: Applier,
        snapshot_path: Path,
        clock: Callable[[], float] = time.monotonic,
        listen_address: str = "",
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 5.0,
        *,
        idle_timeout_s: float = 15.0,
        software_version: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        rng: random.Random | None = None,
        usage_sink: str = "",
        holder: PolicyHolder | None = None,
        ack_interval_s: float = 5.0,
        ack_quiet_s: float = 1.0,
    ) -> None:
        """`idle_timeout_s`: reconnect when the control plane sends nothing (not even a
        heartbeat) for this long; catches a wedged server that still answers pings.
        Keep it a few heartbeat intervals long; 0 disables it.
        `holder`: take deltas (issue 16): full snapshots compile off the loop and key deltas apply in place;
        `applier` is then unused. Without it the node asks for full snapshots only and applies them inline.
        `ack_interval_s`: accepted delta acks are coalesced to at most one per interval (dataplane/ack_pacer.py);
        rejections and snapshot acks always go at once. 0 = ack every delta at once. 5 s: at 100 nodes under
        10 mints/s, acks at 1 s were ~10 gRPC messages per mint, about 1 ms of the control plane's CPU, at 2 s ~5,
        at 5 s 2 (issue 16). The cost: under a steady stream of changes the node status the control plane
        records (acked version) may lag what the node applied by up to 5 s; a lone change is still acked at once.
        `ack_quiet_s`: a held ack also goes once no newer delta came for this long, so the status catches up within
        ~1 s after a run of edits ends; keep it above the control plane's publish window (<= 0.6 s), else a steady
        stream of changes is acked once per delta again."""
        if not 0 < backoff_min_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_min_s <= backoff_max_s")
        self._target = target
        self._node_id = node_id
        self._applier = applier
        self._path = Path(snapshot_path)
        self._clock = clock
        self._listen_address = listen_address
        self._usage_sink = usage_sink
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._idle_timeout_s = idle_timeout_s
        self._software_version = software_version or self._installed_version()
        self._credentials = credentials
        self._rng = rng or random.Random()
        self._log = logging.getLogger(__name__)
        self._task: asyncio.Task[None] | None = None
        self._attempt = 0
        self._applied_changed = asyncio.Event()
        self._holder = holder
        self._state: SnapshotState | None = None  # the applied content, indexed for deltas (with a holder)
        self._delta_log = DeltaLog(self._path)
        self._ack_interval_s = ack_interval_s
        self._ack_quiet_s = ack_quiet_s

        # Observable state, read by health checks, metrics and tests.
        self.applied_version = 0  # 0 = no snapshot: the node must refuse traffic
        self.applied_hash = ""
        self.connected = False
        self.last_contact_monotonic: float | None = None  # clock() at the last message from the control plane
        self.updates_applied = 0
        self.updates_rejected = 0
        self.save_failures = 0
        self.deltas_applied = 0
        self.boot_verified = ""  # how the snapshot file was verified at boot: "sum" (state_sum.py) or "full"

    @property
    def has_snapshot(self) -> bool:
        return self.applied_version > 0

    def load_from_disk(self) -> bool:
        """Apply the last good snapshot from disk, if there is a valid one. Call once at boot."""
        try:
            snapshot = self._load_file()
        except SnapshotFileError as exc:
            # Not fatal: the control plane can still supply a snapshot; the next save replaces the file.
            self._log.error("%s; ignoring it and waiting for the control plane", exc)
            return False
        if snapshot is None:
            self._log.info("no snapshot file at %s; waiting for the control plane", self._path)
            return False
        if snapshot.version <= self.applied_version:
            return False
        try:
            self._apply_loaded(snapshot)
        except SnapshotRejected as exc:
            self._log.warning("snapshot file %s (version %d) rejected: %s", self._path, snapshot.version, exc.reason)
            return False
        except Exception:
            self._log.exception("applying snapshot file %s (version %d) failed", self._path, snapshot.version)
            return False
        self._mark_applied(snapshot)
        self._log.info("applied snapshot version %d (%s) from %s", snapshot.version, snapshot.content_hash[:12], self._path)
        return True

    async def run(self) -> None:
        """Stay subscribed until stop() is called. Never raises because of the control plane."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("SnapshotSync.run() is already running")
        # The loop runs in its own task so stop() cancels only the loop, not whoever awaits run().
        task = asyncio.create_task(self._loop(), name=f"snapshot-sync:{self._node_id}")
        self._task = task
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if not task.cancelled():
            task.result()

    async def stop(self, *, compact: bool = True) -> None:
        """Close the stream and make run() return, then (`compact`) fold the delta log into the snapshot file so
        the next boot indexes one verified file instead of replaying deltas (a crash leaves the log, replayed at
        boot). Safe to call at any time, more than once."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task})
        if compact and self._delta_log.records:
            await self._compact_if_due(force=True)

    async def wait_for_version(self, version: int, timeout_s: float | None = None) -> bool:
        """Wait until a snapshot with at least `version` is applied; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.applied_version < version:
                    await self._applied_changed.wait()
        except TimeoutError:
            return False
        return True

    def backoff_delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt `attempt` (0-based): full jitter between
        the minimum and an exponentially growing cap, so restarted fleets don't reconnect in step."""
        cap = min(self._backoff_max_s, self._backoff_min_s * 2 ** min(attempt, 32))
        return self._rng.uniform(self._backoff_min_s, cap)

    async def _loop(self) -> None:
        if self._holder is not None:  # booted from disk: the key-delta indexes, off the loop, before any delta
            try:
                await asyncio.to_thread(self._holder.warm_indexer)
            except Exception:  # the first delta is then refused and the full snapshot sent: still correct
                self._log.exception("indexing the snapshot loaded from disk failed")
                self._state = None
        while True:
            try:
                await self._session()
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _REFUSED:  # a credentials problem: say which settings to check
                    self._log_failure("control plane %s refused this node: %s %s (check %s)", self._target,
                                      exc.code().name, exc.details(), _CREDENTIAL_SETTINGS)
                else:
                    self._log_failure("control plane %s: stream failed: %s %s", self._target, exc.code().name,
                                      exc.details())
            except OSError as exc:  # includes the ConnectionError/TimeoutError raised by _read
                self._log_failure("control plane %s: %s", self._target, exc)
            except Exception:
                # A bug here must not take the node down: it keeps serving its snapshot.
                self._log.exception("control plane %s: unexpected error in snapshot sync", self._target)
            delay = self.backoff_delay(self._attempt)
            self._attempt += 1
            await asyncio.sleep(delay)

    def _log_failure(self, msg: str, *args: object) -> None:
        # Warn once per outage; while the control plane stays down, retries log at debug.
        level = logging.WARNING if self._attempt == 0 else logging.DEBUG
        self._log.log(level, msg + "; keeping version %d, reconnecting", *args, self.applied_version)

    async def _session(self) -> None:
        channel = open_channel(self._target, self._credentials, self.CHANNEL_OPTIONS)
        try:
            call = control_pb2_grpc.ControlPlaneStub(channel).Subscribe()
            hello = control_pb2.Hello(
                node_id=self._node_id,
                last_version=self.applied_version,
                last_content_hash=self.applied_hash,
                software_version=self._software_version,
                listen_address=self._listen_address,
                usage_sink=self._usage_sink,
                accepts_deltas=self._holder is not None,
            )
            async with asyncio.timeout(self._idle_timeout_s or None):
                await call.write(control_pb2.NodeMessage(hello=hello))
            self.connected = True
            self._log.info("control plane %s: subscribed as %s at version %d", self._target, self._node_id, self.applied_version)
            pacer = AckPacer(self._ack_interval_s, self._ack_quiet_s)
            loop = asyncio.get_running_loop()
            while True:
                msg = await self._read_pacing(call, pacer)
                self.last_contact_monotonic = self._clock()
                self._attempt = 0  # the stream works: after the next failure, retry quickly
                kind = msg.WhichOneof("msg")
                if kind == "snapshot":
                    ack = await self._handle_snapshot(msg.snapshot)
                    await self._send_acks(call, pacer.offer(ack, loop.time(), coalescible=False))
                elif kind == "delta":
                    ack = await self._handle_delta(msg.delta)
                    await self._send_acks(call, pacer.offer(ack, loop.time(), coalescible=True))
                    await self._compact_if_due()
                elif kind == "heartbeat" and msg.heartbeat.current_version > self.applied_version:
                    self._log.debug("control plane is at version %d, node at %d", msg.heartbeat.current_version, self.applied_version)
        finally:
            self.connected = False
            await channel.close(grace=None)

    async def _send_acks(self, call: grpc.aio.StreamStreamCall, acks: list[control_pb2.Ack]) -> None:
        for ack in acks:
            await call.write(control_pb2.NodeMessage(ack=ack))

    async def _read_pacing(self, call: grpc.aio.StreamStreamCall, pacer: AckPacer) -> control_pb2.ControlMessage:
        """The next message; meanwhile the held accepted ack goes out when its interval ends."""
        if pacer.deadline() is None:
            return await self._read(call)
        loop = asyncio.get_running_loop()
        reading = asyncio.ensure_future(self._read(call))
        try:
            while (deadline := pacer.deadline()) is not None:
                done, _ = await asyncio.wait({reading}, timeout=max(0.0, deadline - loop.time()))
                if done:
                    return reading.result()
                await self._send_acks(call, pacer.due(loop.time() + 0.001))  # timers may fire a hair early
            return await reading
        finally:
            if not reading.done():
                reading.cancel()

    async def _read(self, call: grpc.aio.StreamStreamCall) -> control_pb2.ControlMessage:
        try:
            async with asyncio.timeout(self._idle_timeout_s or None):
                msg = await call.read()
        except TimeoutError:
            raise TimeoutError(f"nothing received for {self._idle_timeout_s:g}s") from None
        if msg is grpc.aio.EOF:
            raise ConnectionError("the control plane closed the stream")
        return msg

    def _rejected(self, ack: control_pb2.Ack, what: str, exc: Exception) -> control_pb2.Ack:
        """The negative ack for an update this node could not apply: a refusal says why; a crash only its kind."""
        self.updates_rejected += 1
        if isinstance(exc, SnapshotRejected):
            self._log.warning("rejected %s: %s", what, exc.reason)
            ack.reason = exc.reason
        else:
            self._log.exception("applying %s failed", what)
            ack.reason = f"the node failed to apply it: {type(exc).__name__}"
        return ack

    async def _handle_snapshot(self, snapshot: policy_pb2.PolicySnapshot) -> control_pb2.Ack:
        ack = control_pb2.Ack(version=snapshot.version, content_hash=snapshot.content_hash)
        if snapshot.version == self.applied_version and snapshot.content_hash == self.applied_hash:
            ack.accepted = True  # already serving it (e.g. re-sent after a reconnect)
            return ack
        try:
            if snapshot.version < self.applied_version:
                # Going backwards would resurrect revoked keys; a store reset needs an operator.
                raise SnapshotRejected(
                    f"version {snapshot.version} is older than the applied version {self.applied_version}; "
                    "if the policy store was reset, restart the node without its snapshot file"
                )
            if snapshot.version == self.applied_version:
                snapshot_file.verify(snapshot)  # a corrupt message is reported as such, not as a conflict
                raise SnapshotRejected(f"version {snapshot.version} is already applied with a different content hash")
            await self._apply_full(snapshot)
        except Exception as exc:
            return self._rejected(ack, f"snapshot version {snapshot.version}", exc)
        self._mark_applied(snapshot)
        self._log.info("applied snapshot version %d (%s)", snapshot.version, snapshot.content_hash[:12])
        # Apply first, save second: the file only ever holds a snapshot this node accepted.
        # A failed save costs durability, not service, so the snapshot is still acked.
        try:
            await asyncio.to_thread(self._save_full, snapshot, self._state.total if self._state else None)
        except SnapshotFileError as exc:
            self.save_failures += 1
            self._log.error("%s; still serving version %d from memory", exc, snapshot.version)
        ack.accepted = True
        return ack

    def _mark_applied(self, snapshot: policy_pb2.PolicySnapshot) -> None:
        self.applied_version = snapshot.version
        self.applied_hash = snapshot.content_hash
        self.updates_applied += 1
        changed, self._applied_changed = self._applied_changed, asyncio.Event()
        changed.set()

    # -- incremental updates (issue 16): kept apart from the stream handling above --------------------------

    def _load_file(self) -> policy_pb2.PolicySnapshot | None:
        """The snapshot file plus the delta log replayed on it, verified once (by the state's hash)."""
        if self._holder is None:
            return snapshot_file.load(self._path)
        data = snapshot_file.read(self._path)
        if data is None:
            return None
        snapshot = snapshot_file.parse(self._path, data)
        # This node verified these exact bytes when it saved them (dataplane/snapshot/state_sum.py): reuse that sum
        total = state_sum.trusted_total(self._path, data, snapshot.version, snapshot.content_hash)
        try:
            state = None if total is None else SnapshotState.from_trusted(snapshot, total)
            self.boot_verified = "sum"
            if state is None or state.computed_hash() != snapshot.content_hash:
                state, self.boot_verified = SnapshotState.from_snapshot(snapshot), "full"
        except DeltaMismatch as exc:
            raise SnapshotFileError(f"snapshot file {self._path} is corrupt: {exc}") from exc
        if state.computed_hash() != snapshot.content_hash or snapshot.version == 0:
            raise SnapshotFileError(f"snapshot file {self._path} is corrupt: its content does not match its hash")
        if self._delta_log.replay(state):
            snapshot = state.to_snapshot()
        self._state = state
        return snapshot

    def _apply_loaded(self, snapshot: policy_pb2.PolicySnapshot) -> None:
        if self._holder is None:
            self._applier(snapshot)
            return
        self._holder.install(self._holder.prepare(snapshot, defer_indexer=True), self._state)

    async def _apply_full(self, snapshot: policy_pb2.PolicySnapshot) -> None:
        """Verify and apply a full snapshot; with a holder both run off the event loop (seconds at 100k keys)."""
        if self._holder is None:
            snapshot_file.verify(snapshot)
            self._applier(snapshot)
            return
        if snapshot.version == 0:
            snapshot_file.verify(snapshot)  # raises: version 0 is reserved
        state = await asyncio.to_thread(SnapshotState.from_snapshot, snapshot)
        if state.computed_hash() != snapshot.content_hash:
            raise SnapshotRejected(f"content hash mismatch for version {snapshot.version}: snapshot claims "
                                   f"{snapshot.content_hash[:12] or '(empty)'}, content hashes to {state.computed_hash()[:12]}")
        prepared = await asyncio.to_thread(self._holder.prepare, snapshot)
        self._holder.install(prepared, state)
        self._state = state

    def _save_full(self, snapshot: policy_pb2.PolicySnapshot, total: int | None = None) -> None:
        """Blocking (run in a thread): the snapshot file, its sum (`total`: the verified digest sum of the
        indexed state it was built from), then an empty delta log."""
        file_sha256 = snapshot_file.save(self._path, snapshot)
        if total is not None:
            state_sum.write(self._path, file_sha256, snapshot.version, snapshot.content_hash, total)
        self._delta_log.reset()

    async def _handle_delta(self, delta: control_pb2.PolicyDelta) -> control_pb2.Ack:
        ack = control_pb2.Ack(version=delta.version, content_hash=delta.content_hash)
        if delta.version == self.applied_version and delta.content_hash == self.applied_hash:
            ack.accepted = True
            return ack
        state = self._state
        try:
            if state is None or self._holder is None:
                raise SnapshotRejected("this node holds no indexed state to apply a delta to; send the full snapshot")
            if delta.base_version != self.applied_version:
                raise SnapshotRejected(f"delta is based on version {delta.base_version}, the node holds "
                                       f"{self.applied_version}; send the full snapshot")
            try:
                state.apply(delta)  # verifies the resulting hash; untouched on failure
            except DeltaMismatch as exc:
                raise SnapshotRejected(str(exc)) from exc
            try:
                await self._holder.apply_delta(delta, state)
            except BaseException:
                self._state = None  # the indexed state moved on without the policy: only a full snapshot fixes it
                raise
        except Exception as exc:
            return self._rejected(ack, f"delta to version {delta.version}", exc)
        try:  # durability, not service: a failed append is logged and the delta still acked
            await asyncio.to_thread(self._delta_log.append, delta)
        except SnapshotFileError as exc:
            self.save_failures += 1
            self._log.error("%s; still serving version %d from memory", exc, delta.version)
        # Marked after the append, so an applied version is also on disk (a restart comes back to it).
        self._mark_applied_version(delta.version, delta.content_hash)
        self.deltas_applied += 1
        self._log.debug("applied delta %d -> %d (%s)", delta.base_version, delta.version, delta.content_hash[:12])
        ack.accepted = True
        return ack

    async def _compact_if_due(self, *, force: bool = False) -> None:
        """Rewrite the snapshot file from the state and empty the log. Runs between messages, so the state
        does not change while a thread serialises it."""
        state = self._state
        if state is None or not (force or self._delta_log.due()):
            return
        try:
            total = state.total
            snapshot = await asyncio.to_thread(state.to_snapshot)
            await asyncio.to_thread(self._save_full, snapshot, total)
        except SnapshotFileError as exc:
            self.save_failures += 1
            self._log.error("compacting the delta log failed: %s", exc)

    def _mark_applied_version(self, version: int, content_hash: str) -> None:
        self.applied_version = version
        self.applied_hash = content_hash
        self.updates_applied += 1
        changed, self._applied_changed = self._applied_changed, asyncio.Event()
        changed.set()

    @staticmethod
    def _installed_version() -> str:
        try:
            return importlib.metadata.version("interlock-gateway")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"
