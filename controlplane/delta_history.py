"""Recent policy deltas, so a node that acked version v gets only what changed since v.

The publisher records one delta per published version. `message_since` answers with the bytes a subscriber
at (version, hash) needs: nothing, one composed delta, or the full snapshot (first connect, a version gap
beyond the history, or a node that asked for it by rejecting a delta). Answers are memoised per base
version until the next publish, so 100 nodes at the same version cost one composition and one encoding.
"""

from __future__ import annotations

from collections import OrderedDict

from interlock_contracts.snapshot_state import SnapshotState, compose
from interlock_contracts.v1 import control_pb2, policy_pb2


class DeltaHistory:
    def __init__(self, max_versions: int = 1024, max_bytes: int = 8 * 1024 * 1024):
        self._max_versions = max_versions
        self._max_bytes = max_bytes
        self._deltas: OrderedDict[int, tuple[control_pb2.PolicyDelta, int]] = OrderedDict()  # base -> delta, size
        self._bytes = 0
        self._hashes: dict[int, str] = {}  # version -> content hash, for versions the history can start from
        self._memo: dict[tuple[int, str], bytes | None] = {}
        self.current: SnapshotState | None = None
        self._ident: tuple[int, str] | None = None
        self._full: bytes | None = None
        self._snapshot: policy_pb2.PolicySnapshot | None = None

    def publish(self, state: SnapshotState, delta: control_pb2.PolicyDelta | None,
                snapshot: policy_pb2.PolicySnapshot | None = None) -> None:
        """Record the new current state and the delta from the previous one (None: no usable predecessor)."""
        if delta is None:
            self._deltas.clear()
            self._hashes.clear()
            self._bytes = 0
        else:
            size = delta.ByteSize()
            self._deltas[delta.base_version] = (delta, size)
            self._bytes += size
            while self._deltas and (len(self._deltas) > self._max_versions or self._bytes > self._max_bytes):
                base, (_, dropped) = self._deltas.popitem(last=False)
                self._bytes -= dropped
                self._hashes.pop(base, None)
        if self._ident is not None and delta is not None:
            self._hashes[self._ident[0]] = self._ident[1]
        self._ident = (state.version, state.content_hash)  # kept apart: the state object may be updated in place
        self.current = state
        self._snapshot = snapshot
        self._memo.clear()
        self._full = None

    def full_message(self) -> bytes:
        """The serialised ControlMessage(snapshot=...) of the current state, built once per version."""
        if self._full is None:
            assert self.current is not None
            snapshot = self._snapshot or self.current.to_snapshot()
            self._full = control_pb2.ControlMessage(snapshot=snapshot).SerializeToString()
        return self._full

    def delta_message(self, version: int, content_hash: str) -> bytes | None:
        """ControlMessage(delta=...) taking (version, content_hash) to the current state; None if the history
        does not reach back that far (or that version had another hash): send the full snapshot."""
        key = (version, content_hash)
        if key in self._memo:
            return self._memo[key]
        out: bytes | None = None
        if self._hashes.get(version) == content_hash:
            chain = []
            base = version
            while base in self._deltas:
                delta = self._deltas[base][0]
                chain.append(delta)
                base = delta.version
            if chain and self.current is not None and base == self.current.version:
                out = control_pb2.ControlMessage(delta=compose(chain)).SerializeToString()
        self._memo[key] = out
        return out
