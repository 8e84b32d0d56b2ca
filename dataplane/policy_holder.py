"""Holds the node's current CompiledPolicy; a new snapshot is compiled fully, then swapped in one assignment."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from dataplane.errors import SnapshotRejected
from dataplane.policy import CompiledPolicy, CredentialResolver
from dataplane.providers.base import ProviderAdapter
from interlock.v1 import policy_pb2

log = logging.getLogger(__name__)


class PolicyHolder:
    def __init__(self, adapters: Mapping[str, ProviderAdapter], credentials: CredentialResolver):
        self._adapters = adapters
        self._credentials = credentials
        self.policy: CompiledPolicy | None = None
        self._listeners: list[Callable[[CompiledPolicy], None]] = []

    def current(self) -> CompiledPolicy | None:
        return self.policy

    def apply(self, snapshot: policy_pb2.PolicySnapshot) -> None:
        """Compile and swap; raises SnapshotRejected (the old policy stays) if this node can't use it."""
        try:
            compiled = CompiledPolicy.from_snapshot(snapshot, adapters=self._adapters, credentials=self._credentials)
        except SnapshotRejected:
            raise
        except Exception as exc:  # a snapshot that crashes compilation must be rejected, not kill the node
            raise SnapshotRejected(f"snapshot {snapshot.version} could not be compiled: {type(exc).__name__}: {exc}") from exc
        for p in compiled.providers.values():
            if p.unavailable:
                log.warning("policy v%d: %s", compiled.version, p.unavailable)
        self.policy = compiled
        for listener in self._listeners:
            listener(compiled)

    def on_swap(self, listener: Callable[[CompiledPolicy], None]) -> None:
        self._listeners.append(listener)
