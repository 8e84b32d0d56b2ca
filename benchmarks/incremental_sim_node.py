"""A simulated data-plane node for incremental_scale.py (issue 16): the real subscription, a shared key set.

100 real nodes of 100,000 keys each do not fit one box (a compiled PolicyHolder is ~600 MB at that size). A
simulated node is a real SnapshotSync (its own gRPC channel and Subscribe stream, Hello with accepts_deltas,
idle timeout, reconnects, acks coalesced by the AckPacer exactly as a node does) with two differences:

  - its state is a SnapshotState whose keyed resources are copy-on-write overlays over ONE immutable base per
    subscriber process (the full snapshot every node of the process received, decoded and verified once per
    version and hash): a node holds only what its deltas changed. Every delta is still decoded from the node's
    own stream and applied to the node's own state by SnapshotState.apply, which checks the resulting content
    hash (a mismatch is rejected and the control plane resends everything, as for a real node);
  - it keeps no compiled policy (the per-key indexes a real node updates in O(delta), measured on a real node
    by incremental_dataplane.py) and no snapshot file or delta log on disk.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from dataplane.errors import SnapshotRejected
from dataplane.snapshot.sync import SnapshotSync
from interlock_contracts.snapshot_state import SnapshotState
from interlock_contracts.v1 import control_pb2, policy_pb2


class Overlay(MutableMapping[str, Any]):
    """A mapping over a shared base that is never written: writes and deletions stay in this overlay."""

    __slots__ = ("_base", "_gone", "_own")

    def __init__(self, base: MutableMapping[str, Any]):
        self._base = base
        self._own: dict[str, Any] = {}
        self._gone: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        if key in self._own:
            return self._own[key]
        if key in self._gone:
            raise KeyError(key)
        return self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._own or (key not in self._gone and key in self._base)

    def __setitem__(self, key: str, value: Any) -> None:
        self._own[key] = value
        self._gone.discard(key)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._own.pop(key, None)
        if key in self._base:
            self._gone.add(key)

    def __iter__(self) -> Iterator[str]:
        yield from self._own
        yield from (k for k in self._base if k not in self._own and k not in self._gone)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class SharedBases:
    """One verified, indexed full snapshot per (version, content hash), shared by a process's simulated nodes."""

    def __init__(self, keep: int = 2):
        self._keep = keep
        self._states: dict[tuple[int, str], SnapshotState] = {}
        self.verified = 0  # full snapshots indexed and hash-checked in this process

    def overlay(self, snapshot: policy_pb2.PolicySnapshot) -> SnapshotState:
        ident = (snapshot.version, snapshot.content_hash)
        base = self._states.get(ident)
        if base is None:
            base = SnapshotState.from_snapshot(snapshot)
            if base.computed_hash() != snapshot.content_hash:
                raise SnapshotRejected(f"content hash mismatch for version {snapshot.version}")
            self.verified += 1
            self._states[ident] = base
            while len(self._states) > self._keep:
                del self._states[next(iter(self._states))]
        resources: dict[str, Any] = {k: Overlay(v) for k, v in base.resources.items()}
        digests: dict[str, Any] = {k: Overlay(v) for k, v in base.digests.items()}
        return SnapshotState(version=base.version, content_hash=base.content_hash,
                             created_unix_ms=base.created_unix_ms, body=base.body, body_hex=base.body_hex,
                             resources=resources, digests=digests, total=base.total)


class _NoLog:
    """Simulated nodes keep no delta log (see the module docstring)."""

    records = 0

    def append(self, delta: control_pb2.PolicyDelta) -> None:
        pass

    def reset(self) -> None:
        pass

    def due(self) -> bool:
        return False


class _DeltaOnlyHolder:
    """Makes SnapshotSync take deltas; the node's state (SnapshotState) is what applies and verifies them."""

    def warm_indexer(self) -> None:
        pass

    async def apply_delta(self, delta: control_pb2.PolicyDelta, state: SnapshotState) -> None:
        pass


class SimNode(SnapshotSync):
    def __init__(self, target: str, node_id: str, bases: SharedBases, **kwargs: Any):
        super().__init__(target, node_id, lambda _s: None, Path("/nonexistent/sim-node"),
                         holder=_DeltaOnlyHolder(), **kwargs)  # type: ignore[arg-type]
        self._bases = bases
        self._delta_log = _NoLog()  # type: ignore[assignment]

    async def _apply_full(self, snapshot: policy_pb2.PolicySnapshot) -> None:
        # The first node of the process to get this version indexes and verifies it (on the loop, as the
        # simulation's one-off setup); the others share it.
        self._state = self._bases.overlay(snapshot)

    def _save_full(self, snapshot: policy_pb2.PolicySnapshot, total: int | None = None) -> None:
        pass


def touched(state: SnapshotState | None) -> int:
    """Resources a simulated node holds of its own (what its deltas changed), for the memory report."""
    if state is None:
        return 0
    return sum(len(m._own) + len(m._gone) for m in state.resources.values() if isinstance(m, Overlay))

