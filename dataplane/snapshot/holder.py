"""Holds the node's current CompiledPolicy; a new snapshot is compiled fully, then swapped in one assignment.

Incremental updates (issue 16): `prepare` compiles a full snapshot anywhere (SnapshotSync runs it in a
thread), `install` swaps it in on the loop; `apply_delta` applies a key delta in place in O(delta)
(dataplane/snapshot/key_delta.py) or, for anything else, recompiles off the loop and swaps."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping

from dataplane.errors import SnapshotRejected
from dataplane.providers.base import ProviderAdapter
from dataplane.snapshot.key_delta import KeyIndexer
from dataplane.snapshot.policy import CompiledPolicy, CredentialResolver
from interlock_contracts.snapshot_state import SnapshotState
from interlock_contracts.v1 import control_pb2, policy_pb2

log = logging.getLogger(__name__)


class PolicyHolder:
    def __init__(self, adapters: Mapping[str, ProviderAdapter], credentials: CredentialResolver):
        self._adapters = adapters
        self._credentials = credentials
        self.policy: CompiledPolicy | None = None
        self._listeners: list[Callable[[CompiledPolicy], None]] = []
        self._snapshot: policy_pb2.PolicySnapshot | None = None
        self._secrets = b""  # digest of the credentials the current policy was compiled with
        self._indexer: KeyIndexer | None = None  # set by prepare/install: key deltas apply in place
        self._state: SnapshotState | None = None  # with deltas, the full content (the snapshot is rebuilt on demand)

    @property
    def snapshot_created_ms(self) -> int:
        return self._snapshot.created_unix_ms if self._snapshot is not None else 0

    def current(self) -> CompiledPolicy | None:
        return self.policy

    def apply(self, snapshot: policy_pb2.PolicySnapshot) -> None:
        """Compile and swap; raises SnapshotRejected (the old policy stays) if this node can't use it."""
        self.install(self.prepare(snapshot))

    def prepare(self, snapshot: policy_pb2.PolicySnapshot, *,
                defer_indexer: bool = False) -> tuple[CompiledPolicy, KeyIndexer, policy_pb2.PolicySnapshot]:
        """Compile without touching the current policy (thread-safe: run it off the loop). `defer_indexer`
        (boot from disk): build the key-delta indexes later, in warm_indexer(), not before serving."""
        try:
            compiled = CompiledPolicy.from_snapshot(snapshot, adapters=self._adapters, credentials=self._credentials)
            return compiled, KeyIndexer(snapshot, compiled.budgets, defer=defer_indexer), snapshot
        except SnapshotRejected:
            raise
        except Exception as exc:  # a snapshot that crashes compilation must be rejected, not kill the node
            raise SnapshotRejected(f"snapshot {snapshot.version} could not be compiled: {type(exc).__name__}: {exc}") from exc

    def install(self, prepared: tuple[CompiledPolicy, KeyIndexer, policy_pb2.PolicySnapshot],
                state: SnapshotState | None = None) -> None:
        """Swap a prepared policy in (one assignment). `state`: keep it to rebuild the snapshot on demand."""
        compiled, self._indexer, snapshot = prepared
        self._state = state
        for p in compiled.providers.values():
            if p.unavailable:
                log.warning("policy v%d: %s", compiled.version, p.unavailable)
        self.policy = compiled
        self._snapshot, self._secrets = snapshot, self._credential_digest(snapshot)
        for listener in self._listeners:
            listener(compiled)

    async def apply_delta(self, delta: control_pb2.PolicyDelta, state: SnapshotState) -> None:
        """`state` already holds the delta applied (and hash-verified). Key changes apply in place in O(delta);
        anything else recompiles `state` off the loop. Raises SnapshotRejected (the old policy stays)."""
        policy, indexer = self.policy, self._indexer
        if policy is not None and indexer is not None and indexer.fast_path(delta):
            try:
                indexer.apply(policy, delta)
            except Exception:  # a bug must not leave half-applied indexes: rebuild from the verified state
                log.exception("applying delta to version %d in place failed; recompiling", delta.version)
            else:
                self.policy = dataclasses.replace(policy, version=delta.version, content_hash=delta.content_hash)
                self._state = state
                return
        snapshot = await asyncio.to_thread(state.to_snapshot)
        self.install(await asyncio.to_thread(self.prepare, snapshot), state)

    def warm_indexer(self) -> None:
        """Build deferred key-delta indexes and the state's resource index (blocking, O(keys): run it in a
        thread before deltas arrive)."""
        if self._indexer is not None:
            self._indexer.warm()
        if self._state is not None:
            self._state.index()

    def on_swap(self, listener: Callable[[CompiledPolicy], None]) -> None:
        self._listeners.append(listener)

    def refresh_credentials(self) -> bool:
        """Re-resolve the current snapshot's credential refs; recompile and swap only if one changed.

        Short-lived tokens (Vertex/Entra access tokens, STS session credentials) are rotated in their
        file by the operator; the node's background task calls this so they take effect without a
        policy change. Never on the request path. Returns True when a new policy was swapped in."""
        snap = self._snapshot
        if snap is None or self._credential_digest(snap) == self._secrets:
            return False
        if self._state is not None:  # deltas applied since the last full compile: the snapshot is stale
            snap = self._state.to_snapshot()
        try:
            self.apply(snap)
        except SnapshotRejected as exc:
            log.error("credentials changed but policy v%d could not be recompiled: %s", snap.version, exc)
            return False
        log.info("policy v%d recompiled: a provider credential changed", snap.version)
        return True

    def _credential_digest(self, snap: policy_pb2.PolicySnapshot) -> bytes:
        h = hashlib.sha256()
        for p in snap.providers:
            if p.credential_ref:
                h.update(p.credential_ref.encode() + b"\0" + (self._credentials(p.credential_ref) or "").encode() + b"\0")
        return h.digest()
